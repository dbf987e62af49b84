"""The embedded Kafka-protocol broker: librdkafka's mock cluster held open by one small process.

A confluent-kafka client configured with ``test.mock.num.brokers`` creates an in-process mock
cluster and logs its bootstrap address through the ``mock`` debug context; this process
keeps that client alive, writes the address to a file for the rest of the stack, creates the
topics and serves a liveness metric. The mock cluster keeps data in memory only: restarting
this process loses the topics' contents (a real Kafka, ``HFT_KAFKA_BOOTSTRAP``, does not).

Run by ``hft stack up``; not meant to be started by hand.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import threading
import time
from pathlib import Path

_BOOTSTRAP_RE = re.compile(r"(?:bootstrap\.servers|Mock cluster enabled).*?((?:\d{1,3}\.){3}\d{1,3}:\d+(?:,(?:\d{1,3}\.){3}\d{1,3}:\d+)*)")


class _CaptureBootstrap(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.bootstrap: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.bootstrap is None:
            m = _BOOTSTRAP_RE.search(record.getMessage())
            if m:
                self.bootstrap = m.group(1)


# The mock cluster's consumer-group events worth a line in broker.log: joins, syncs, leaves, state
# changes, session time-outs (not heartbeats, offset commits or the per-request chatter)
_GROUP_EVENT_RE = re.compile(r"(JoinGroup|SyncGroup|LeaveGroup)Re|changing state|session timed out|"
                             r"is leaving group|is rebalancing|FSM timeout")
_groups_log = logging.getLogger("broker.groups")


class _GroupEvents(logging.Handler):
    """Forward the mock cluster's group events to the broker's own log (why a consumer waits)."""

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if _GROUP_EVENT_RE.search(msg):
            _groups_log.info("group event: %s", msg.split("]: ", 1)[-1])


def main(argv: list[str] | None = None) -> int:
    """Start the mock cluster, write its bootstrap address, create topics, wait for SIGTERM."""
    from confluent_kafka import Producer
    from prometheus_client import Gauge, start_http_server

    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap-file", required=True, type=Path)
    p.add_argument("--topics", default="")
    p.add_argument("--metrics-port", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s broker %(levelname)s %(message)s")
    capture = _CaptureBootstrap()
    rdlog = logging.getLogger("librdkafka")
    rdlog.setLevel(logging.DEBUG)
    rdlog.addHandler(capture)
    rdlog.propagate = False

    holder = Producer({
        "bootstrap.servers": "localhost:1",  # replaced by the mock cluster's own address
        "test.mock.num.brokers": 1,
        "debug": "mock",
        "logger": rdlog,
    })
    deadline = time.monotonic() + 20
    while capture.bootstrap is None and time.monotonic() < deadline:
        holder.poll(0.1)
    if capture.bootstrap is None:
        logging.error("mock cluster did not report its bootstrap address")
        return 2
    bootstrap = capture.bootstrap
    logging.info("mock cluster at %s", bootstrap)

    # The mock cluster has no controller for CreateTopics; asking for a topic's metadata
    # auto-creates it (4 partitions, the mock cluster's default).
    for topic in [t for t in args.topics.split(",") if t]:
        holder.list_topics(topic, timeout=10)
    # written last: the file's presence means "ready"
    tmp = args.bootstrap_file.with_suffix(".tmp")
    tmp.write_text(bootstrap + "\n")
    tmp.replace(args.bootstrap_file)

    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.host)
        Gauge("hft_broker_up", "1 while the embedded broker runs").set(1)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # from now on only the consumer-group events (librdkafka hands every debug line to Python anyway)
    rdlog.removeHandler(capture)
    rdlog.addHandler(_GroupEvents())
    while not stop.is_set():
        holder.poll(0.5)
    logging.info("broker stopping")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
