from __future__ import annotations

import pytest
from pydantic import ValidationError

from hft.config import ConfigurationError, Settings


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


def test_embedded_broker_uses_old_api_version_and_external_autodetects(tmp_path) -> None:
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "bootstrap").write_text("127.0.0.1:9999\n")
    embedded = Settings(home=tmp_path)
    assert embedded.kafka_client_kwargs()["api_version"] == (2, 0)
    external = Settings(home=tmp_path, kafka_bootstrap="kafka:9092")
    assert "api_version" not in external.kafka_client_kwargs()


def test_missing_broker_is_a_configuration_error(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="HFT_KAFKA_BOOTSTRAP"):
        Settings(home=tmp_path).kafka_bootstrap_servers()
