"""The embedded stack really serves: Kafka round trip, MLflow registry with aliases, status."""

from __future__ import annotations

import time
import uuid

import pytest

pytestmark = pytest.mark.integration


def test_stack_status_reports_every_core_part_healthy(stack) -> None:
    parts = {p.name: p for p in stack.status()}
    for name in ("postgres", "redis", "broker", "mlflow"):
        assert parts[name].healthy, f"{name} unhealthy: {parts[name]}"
    if stack.prometheus_available():
        assert parts["prometheus"].healthy


def test_stack_up_twice_is_harmless(stack) -> None:
    before = {p.name: p.url for p in stack.status()}
    stack.up()
    after = {p.name: p.url for p in stack.status()}
    assert before == after


def test_kafka_python_producer_and_consumer_group_round_trip(stack, stack_settings) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    kw = stack_settings.kafka_client_kwargs()
    producer = KafkaProducer(acks="all", **kw)
    sent = [f"msg-{i}".encode() for i in range(50)]
    for v in sent:
        producer.send(topic, key=b"BTCUSDT", value=v)
    producer.flush()
    producer.close()
    group = f"roundtrip-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(topic, group_id=group, auto_offset_reset="earliest",
                             enable_auto_commit=False, **kw)
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        for records in consumer.poll(500).values():
            got += [r.value for r in records]
    consumer.commit()
    consumer.close()
    assert sorted(got) == sorted(sent)
    # the broker's log tells the group's story (what a consumer waiting on a rebalance waits for)
    log = stack_settings.home_dir / "logs" / "broker.log"
    deadline = time.monotonic() + 5
    while f"is leaving group {group}" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = log.read_text()
    assert f"Mock consumer group {group} with 1 member(s) changing state Syncing -> Up" in text
    assert f"is leaving group {group}" in text


def test_mlflow_registers_a_model_and_resolves_an_alias(stack, stack_settings) -> None:
    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(stack_settings.mlflow_uri)
    name = f"stack-test-{uuid.uuid4().hex[:6]}"
    X = np.random.default_rng(0).normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(LogisticRegression().fit(X, y), name="model", registered_model_name=name)
    client = MlflowClient(stack_settings.mlflow_uri)
    version = info.registered_model_version
    client.set_registered_model_alias(name, "champion", version)
    resolved = client.get_model_version_by_alias(name, "champion")
    assert resolved.version == str(version)
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert list(model.predict(X[:5])) == list(LogisticRegression().fit(X, y).predict(X[:5]))
