from __future__ import annotations

import pytest
from pydantic import ValidationError

from hft.config import Settings


def test_ports_derive_from_port_base_and_never_collide() -> None:
    s = Settings(port_base=30000)
    from hft.config import PORT_OFFSETS

    ports = [s.port(n) for n in PORT_OFFSETS]
    assert len(set(ports)) == len(ports)
    assert s.port("postgres") == 30000


def test_env_prefix_and_secret_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HFT_API_KEY", "s3cret")
    monkeypatch.setenv("HFT_MARKET", "replay")
    s = Settings()
    assert s.market == "replay"
    assert s.api_key is not None
    assert s.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)


def test_bad_market_value_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HFT_MARKET", "nasdaq")
    with pytest.raises(ValidationError):
        Settings()


def test_embedded_kafka_ports_derive_from_the_port_base_and_external_wins() -> None:
    one = Settings(port_base=20000)
    assert one.kafka_bootstrap_servers() == "127.0.0.1:20002"
    assert one.kafka_replication() == 1
    three = Settings(port_base=20000, kafka_brokers=3)
    assert three.kafka_bootstrap_servers() == "127.0.0.1:20002,127.0.0.1:20013,127.0.0.1:20015"
    assert three.kafka_replication() == 3
    ports = [three.kafka_port(i) for i in (1, 2, 3)] + [three.kafka_controller_port(i) for i in (1, 2, 3)]
    assert len(set(ports)) == 6
    external = Settings(port_base=20000, kafka_bootstrap="kafka:9092")
    assert external.kafka_bootstrap_servers() == "kafka:9092"


def test_kafka_brokers_must_be_one_or_three(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HFT_KAFKA_BROKERS", "2")
    with pytest.raises(ValidationError):
        Settings()
