"""The market topics, created explicitly: partitions, replication and retention from the settings.

The embedded stack creates them when Kafka starts; the market producer makes sure they exist
before its first send (an external cluster may have them already: then nothing happens).
Brokers run with ``auto.create.topics.enable=false``, so a typo in a topic name is an error,
never a new topic with default settings.
"""

from __future__ import annotations

import time

from hft.config import Settings


def topic_specs(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Topic name → (partitions, config) of the market topics, from the settings."""
    hours_ms = 3_600_000
    isr = "2" if settings.kafka_replication() >= 3 else "1"
    return {
        settings.topic_ticks: (
            settings.kafka_partitions,
            {
                "retention.ms": str(int(settings.kafka_retention_hours * hours_ms)),
                "min.insync.replicas": isr,
                "cleanup.policy": "delete",
            },
        ),
        # dead letters are few and worth keeping longer: a human reads them
        settings.topic_dlq: (
            1,
            {
                "retention.ms": str(int(max(settings.kafka_retention_hours, 168) * hours_ms)),
                "min.insync.replicas": isr,
                "cleanup.policy": "delete",
            },
        ),
    }


def ensure_topics(
    settings: Settings, timeout: float = 60, extra: dict[str, tuple[int, dict[str, str]]] | None = None
) -> list[str]:
    """Create the market topics (and ``extra``) where missing; return the names created.

    Waits for the cluster to answer first (a fresh KRaft quorum elects its controller in a few
    seconds). Works against the embedded cluster and an external one (``HFT_KAFKA_BOOTSTRAP``).
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient(
        {"bootstrap.servers": settings.kafka_bootstrap_servers(), "socket.nagle.disable": True}
    )
    specs = {**topic_specs(settings), **(extra or {})}
    rf = settings.kafka_replication()
    deadline = time.monotonic() + timeout
    created: list[str] = []
    while True:
        try:
            md = admin.list_topics(timeout=5)
            if len(md.brokers) < min(rf, settings.kafka_brokers if not settings.kafka_bootstrap else rf):
                raise KafkaException(f"{len(md.brokers)} brokers registered of {rf}")
            missing = [t for t in specs if t not in md.topics]
            if not missing:
                return created
            futures = admin.create_topics(
                [
                    NewTopic(t, num_partitions=specs[t][0], replication_factor=rf, config=specs[t][1])
                    for t in missing
                ],
                operation_timeout=10,
                request_timeout=15,
            )
            for t, fut in futures.items():
                try:
                    fut.result()
                    created.append(t)
                except KafkaException as exc:
                    if "TOPIC_ALREADY_EXISTS" not in str(exc):
                        raise
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Kafka at {settings.kafka_bootstrap_servers()} did not take the topics "
                    f"within {timeout:.0f}s: {exc}"
                ) from exc
            time.sleep(0.5)
