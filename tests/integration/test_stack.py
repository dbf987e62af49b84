"""The embedded stack really serves: Apache Kafka round trip, MLflow registry with aliases, status."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_stack_status_reports_every_core_part_healthy(stack) -> None:
    parts = {p.name: p for p in stack.status()}
    for name in ("postgres", "redis", "kafka", "mlflow"):
        assert parts[name].healthy, f"{name} unhealthy: {parts[name]}"
    if stack.prometheus.available():
        assert parts["prometheus"].healthy


def test_stack_up_twice_is_harmless(stack) -> None:
    before = {p.name: p.url for p in stack.status()}
    stack.up()
    after = {p.name: p.url for p in stack.status()}
    assert before == after


def test_kafka_is_apache_kafka_and_round_trips_through_a_consumer_group(stack, stack_settings) -> None:
    from confluent_kafka import TopicPartition

    from hft.bus.client import commit, make_consumer, make_producer, partition_for
    from hft.bus.topics import ensure_topics

    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    ensure_topics(stack_settings, extra={topic: (4, {})})
    producer = make_producer(stack_settings, "test-roundtrip")
    partitions: dict[bytes, set[int]] = {}

    def delivered(err, msg) -> None:
        assert err is None, err
        partitions.setdefault(msg.key(), set()).add(msg.partition())

    sent = [(b"BTCUSDT" if i % 2 else b"ETHUSDT", f"msg-{i}".encode()) for i in range(50)]
    for key, value in sent:
        producer.produce(topic, value, key, on_delivery=delivered)
    assert producer.flush(30) == 0
    # one key, one partition: the one the Java client's murmur2 names
    assert partitions == {k: {partition_for(k, 4)} for k in (b"BTCUSDT", b"ETHUSDT")}
    group = f"roundtrip-{uuid.uuid4().hex[:8]}"
    consumer = make_consumer(stack_settings, group, "test-roundtrip")
    consumer.subscribe([topic])
    got: list[bytes] = []
    last: dict[tuple[str, int], int] = {}
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        for m in consumer.consume(100, timeout=0.5):
            assert m.error() is None, m.error()
            got.append(m.value())
            last[(m.topic(), m.partition())] = m.offset() + 1
    commit(consumer, last)
    committed = {
        (c.topic, c.partition): c.offset
        for c in consumer.committed([TopicPartition(t, p) for t, p in last], timeout=10)
    }
    consumer.close()
    assert sorted(got) == sorted(v for _, v in sent)
    assert committed == last
    # kcat (librdkafka's CLI) sees the broker as Apache Kafka 4, KRaft
    import subprocess

    out = subprocess.run(
        ["kcat", "-b", stack_settings.kafka_bootstrap_servers(), "-L", "-t", topic],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert "4 partitions" in out, out


def test_kafka_keeps_messages_and_committed_offsets_across_a_stop_and_a_start(stack, stack_settings) -> None:
    """What `hft down` / `hft up` do to Kafka: a clean stop (SIGTERM) and a start on the same storage."""
    from confluent_kafka import TopicPartition

    from hft.bus.client import commit, make_consumer, make_producer
    from hft.bus.topics import ensure_topics

    topic = f"durable-{uuid.uuid4().hex[:8]}"
    group = f"durable-{uuid.uuid4().hex[:8]}"
    ensure_topics(stack_settings, extra={topic: (1, {})})
    producer = make_producer(stack_settings, "test-durable")
    for i in range(20):
        producer.produce(topic, f"m{i}".encode(), b"k")
    assert producer.flush(30) == 0
    consumer = make_consumer(stack_settings, group, "test-durable")
    commit(consumer, {(topic, 0): 12})
    consumer.close()
    cluster_id = (stack_settings.home_dir / "kafka" / "cluster.id").read_text()

    stack.kafka.stop()
    assert not stack.kafka.healthy()
    stack.kafka.start()
    assert stack.kafka.healthy()

    assert (stack_settings.home_dir / "kafka" / "cluster.id").read_text() == cluster_id
    consumer = make_consumer(stack_settings, group, "test-durable")
    try:
        committed = _committed_after_restart(consumer, TopicPartition(topic, 0))
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        consumer.subscribe([topic])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < 8 and time.monotonic() < deadline:
            got += [m.value() for m in consumer.consume(10, timeout=0.5) if m.error() is None]
    finally:
        consumer.close()
    assert (committed, low, high) == (12, 0, 20)
    assert got == [f"m{i}".encode() for i in range(12, 20)]  # the group resumes where it committed


def _committed_after_restart(consumer: Any, tp: Any) -> int:
    """The committed offset; right after a start the broker may still be loading the group
    coordinator's partition and answer NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS (retriable)."""
    from confluent_kafka import KafkaError, KafkaException

    loading = {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
    deadline = time.monotonic() + 30
    while True:
        try:
            return int(consumer.committed([tp], timeout=10)[0].offset)
        except KafkaException as exc:
            if exc.args[0].code() not in loading or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


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
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit(X, y), name="model", registered_model_name=name
        )
    client = MlflowClient(stack_settings.mlflow_uri)
    version = info.registered_model_version
    client.set_registered_model_alias(name, "champion", version)
    resolved = client.get_model_version_by_alias(name, "champion")
    assert resolved.version == str(version)
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert list(model.predict(X[:5])) == list(LogisticRegression().fit(X, y).predict(X[:5]))
