"""kafka-python vs confluent-kafka (librdkafka), side by side, against a private Apache Kafka broker.

One run starts its own single-node broker with the project's code (:class:`hft.devstack.kafka.KafkaCluster`,
``port_base + 20000``, state in a temporary directory removed afterwards), so it needs no running stack
and disturbs none. Both clients see the same messages: 120 random bytes each, keyed by ``BTCUSDT`` or
``ETHUSDT`` (alternating), into fresh topics of 4 partitions, replication 1.

Before the first run an unrecorded warm-up (50,000 messages produced and consumed with confluent-kafka)
lets the broker's JVM compile its produce and fetch paths. Three measures follow, each repeated three
times (client order alternating per repetition):

* producer throughput: acks=all, idempotent (both clients support it), linger 5 ms for both (librdkafka's
  default; kafka-python's default is 0), one warm-up message first so connections and the producer id are
  in place; the clock runs from the first ``produce``/``send`` until ``flush()`` returns, and the topic's
  end offsets are checked afterwards.
* consumer throughput: a fresh consumer group reads the topic that the same client wrote, from earliest,
  auto-commit off (kafka-python ``poll(max_records=5000)``, confluent ``consume(num_messages=5000)``), touching
  every value. The headline rate runs from the first batch returned to the last record, counting the
  records after the first batch (the group join is excluded; ``with_join_msgs_per_s`` includes it).
* produce→consume latency: 1,000 msg/s for 20 s from a paced sender in the main thread, each value
  carrying ``time.perf_counter_ns()`` at send; a consumer thread records receive − send. Low-latency
  settings: linger 0, Nagle off, fetch wait 5 ms, fetch.min.bytes 1; confluent's consumer uses
  ``poll()`` (its ``consume(n)`` waits for n messages or the timeout). The first 200 messages are dropped
  as warm-up.

Keys: ``confluent_producer_msgs_per_s``, ``kafka_python_producer_msgs_per_s``,
``confluent_consumer_msgs_per_s``, ``kafka_python_consumer_msgs_per_s`` (the median of the three runs),
``confluent_latency_ms`` / ``kafka_python_latency_ms`` (p50/p95/p99 of the run with the median p99),
``spread`` (min and max over the runs of each headline figure), ``runs`` (every run), ``cpu_us_per_msg``
(median CPU of this process per message, client threads included).
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import percentiles
from hft.config import Settings

PORT_SHIFT = 20_000
SYMBOLS = (b"BTCUSDT", b"ETHUSDT")
VALUE_BYTES = 120
PARTITIONS = 4
BATCH = 5000
THROUGHPUT_LINGER_MS = 5
WARMUP_DROP = 200
WARMUP_MESSAGES = 50_000
CLIENTS = ("confluent", "kafka_python")


# ---- helpers ---------------------------------------------------------------------------------
def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def _messages(n: int) -> tuple[list[bytes], list[bytes]]:
    blob = os.urandom(n * VALUE_BYTES)
    values = [blob[i * VALUE_BYTES : (i + 1) * VALUE_BYTES] for i in range(n)]
    keys = [SYMBOLS[i % 2] for i in range(n)]
    return keys, values


def _create_topics(bootstrap: str, names: list[str]) -> None:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in names], operation_timeout=30
    )
    for fut in futures.values():
        fut.result()
    # wait until every partition has a leader before a client starts on it
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=5)
        if all(
            t in md.topics
            and len(md.topics[t].partitions) == PARTITIONS
            and all(p.leader >= 0 for p in md.topics[t].partitions.values())
            for t in names
        ):
            return
        time.sleep(0.2)
    raise TimeoutError(f"topics {names} have no leaders after 30 s")


def _topic_count(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-count", "enable.auto.commit": False})
    try:
        return sum(
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)
        )
    finally:
        c.close()


def _span(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "max": max(values)}


# ---- producer throughput ---------------------------------------------------------------------
def _produce_confluent(
    bootstrap: str, topic: str, warm_topic: str, keys: list[bytes], values: list[bytes]
) -> float:
    from confluent_kafka import Producer

    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": THROUGHPUT_LINGER_MS,
            "socket.nagle.disable": True,
        }
    )
    p.produce(warm_topic, b"warm-up", b"warm-up")
    if p.flush(30) != 0:
        raise RuntimeError("confluent warm-up message not delivered")
    produce, poll = p.produce, p.poll
    t0 = time.perf_counter()
    for k, v in zip(keys, values, strict=True):
        while True:
            try:
                produce(topic, v, k)
                break
            except BufferError:  # local queue full (queue.buffering.max.messages): serve and retry
                poll(0.005)
    left = p.flush(120)
    elapsed = time.perf_counter() - t0
    if left:
        raise RuntimeError(f"confluent producer: {left} messages not delivered")
    return elapsed


def _produce_kafka_python(
    bootstrap: str, topic: str, warm_topic: str, keys: list[bytes], values: list[bytes]
) -> float:
    from kafka import KafkaProducer

    p = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=THROUGHPUT_LINGER_MS,
    )
    try:
        p.send(warm_topic, value=b"warm-up", key=b"warm-up").get(timeout=30)
        p.partitions_for(topic)
        send = p.send
        t0 = time.perf_counter()
        for k, v in zip(keys, values, strict=True):
            send(topic, value=v, key=k)
        p.flush(timeout=120)
        return time.perf_counter() - t0
    finally:
        p.close(timeout=10)


# ---- consumer throughput ---------------------------------------------------------------------
def _consume_confluent(bootstrap: str, topic: str, n: int) -> tuple[float, float, int]:
    """Return (seconds from subscribe, seconds from first batch, records in the first batch)."""
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        t_sub = time.perf_counter()
        c.subscribe([topic])
        got = first = 0
        t_first = None
        deadline = time.monotonic() + 180
        nbytes = 0
        while got < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"confluent consumer read {got} of {n}")
            # consume(n) waits for n messages or the timeout: never ask for more than are left
            msgs = c.consume(num_messages=min(BATCH, n - got), timeout=1.0)
            for m in msgs:
                if m.error():
                    raise RuntimeError(f"confluent consumer: {m.error()}")
                nbytes += len(m.value() or b"")
            got += len(msgs)
            if msgs and t_first is None:
                t_first, first = time.perf_counter(), len(msgs)
        t_end = time.perf_counter()
        if t_first is None or nbytes == 0:
            raise RuntimeError("consumer read no data")
        return t_end - t_sub, t_end - t_first, first
    finally:
        c.close()


def _consume_kafka_python(bootstrap: str, topic: str, n: int) -> tuple[float, float, int]:
    from kafka import KafkaConsumer

    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        t_sub = time.perf_counter()
        c.subscribe([topic])
        got = first = 0
        t_first = None
        deadline = time.monotonic() + 180
        nbytes = 0
        while got < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"kafka-python consumer read {got} of {n}")
            batch = c.poll(timeout_ms=1000, max_records=BATCH)
            k = 0
            for records in batch.values():
                for r in records:
                    nbytes += len(r.value or b"")
                k += len(records)
            got += k
            if k and t_first is None:
                t_first, first = time.perf_counter(), k
        t_end = time.perf_counter()
        if t_first is None or nbytes == 0:
            raise RuntimeError("consumer read no data")
        return t_end - t_sub, t_end - t_first, first
    finally:
        c.close(autocommit=False)


# ---- latency ---------------------------------------------------------------------------------
def _paced_send(send: Callable[[bytes, bytes], None], rate: int, seconds: float) -> int:
    n = int(rate * seconds)
    pad = os.urandom(VALUE_BYTES - 8)
    t0 = time.perf_counter_ns()
    step = 1_000_000_000 // rate
    for i in range(n):
        target = t0 + i * step
        while True:
            wait = target - time.perf_counter_ns()
            if wait <= 0:
                break
            time.sleep(wait / 1e9 if wait > 200_000 else 0)
        send(SYMBOLS[i % 2], struct.pack(">q", time.perf_counter_ns()) + pad)
    return n


def _latency_confluent(bootstrap: str, topic: str, rate: int, seconds: float) -> dict[str, Any]:
    from confluent_kafka import Consumer, Producer

    assigned = threading.Event()
    stop = threading.Event()
    lat: list[float] = []
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
            "fetch.min.bytes": 1,
            "socket.nagle.disable": True,
        }
    )

    def consume() -> None:
        c.subscribe([topic], on_assign=lambda _c, parts: assigned.set() if parts else None)
        while not stop.is_set():
            m = c.poll(0.1)
            if m is None:
                continue
            now = time.perf_counter_ns()
            if m.error():
                continue
            v = m.value()
            if v:
                lat.append((now - struct.unpack_from(">q", v)[0]) / 1e6)

    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 0,
            "socket.nagle.disable": True,
        }
    )
    th = threading.Thread(target=consume, daemon=True, name="bench-consumer")
    th.start()
    try:
        if not assigned.wait(60):
            raise TimeoutError("confluent latency consumer got no partitions")
        p.list_topics(topic, timeout=10)
        time.sleep(0.5)  # let the consumer's first fetches settle at the end of the empty partitions

        def send(k: bytes, v: bytes) -> None:
            p.produce(topic, v, k)
            p.poll(0)

        sent = _paced_send(send, rate, seconds)
        p.flush(30)
        return _collect(lat, sent, stop, th)
    finally:
        stop.set()
        th.join(10)
        c.close()


def _latency_kafka_python(bootstrap: str, topic: str, rate: int, seconds: float) -> dict[str, Any]:
    from kafka import KafkaConsumer, KafkaProducer

    stop = threading.Event()
    lat: list[float] = []
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=5,
        fetch_min_bytes=1,
    )
    c.subscribe([topic])
    # join the group in this thread before the consumer thread takes over (not thread-safe: one user)
    deadline = time.monotonic() + 60
    while not c.assignment():
        if time.monotonic() > deadline:
            raise TimeoutError("kafka-python latency consumer got no partitions")
        c.poll(timeout_ms=100)

    def consume() -> None:
        while not stop.is_set():
            batch = c.poll(timeout_ms=100)
            now = time.perf_counter_ns()
            for records in batch.values():
                for r in records:
                    if r.value:
                        lat.append((now - struct.unpack_from(">q", r.value)[0]) / 1e6)

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    th = threading.Thread(target=consume, daemon=True, name="bench-consumer")
    th.start()
    try:
        p.partitions_for(topic)
        time.sleep(0.5)

        def send(k: bytes, v: bytes) -> None:
            p.send(topic, value=v, key=k)

        sent = _paced_send(send, rate, seconds)
        p.flush(timeout=30)
        return _collect(lat, sent, stop, th)
    finally:
        stop.set()
        th.join(10)
        p.close(timeout=10)
        c.close(autocommit=False)


def _collect(lat: list[float], sent: int, stop: threading.Event, th: threading.Thread) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while len(lat) < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    th.join(10)
    sample = lat[WARMUP_DROP:]
    pct = {k: round(v, 3) if isinstance(v, float) else v for k, v in percentiles(sample).items()}
    return {"sent": sent, "received": len(lat), "latency_ms": pct}


# ---- the benchmark ---------------------------------------------------------------------------
def run(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start a private broker; measure both clients' producer, consumer and latency three times."""
    from hft.devstack.kafka import KafkaCluster, kafka_version

    n = 50_000 if quick else 200_000
    reps = 3
    rate, seconds = 1000, (5.0 if quick else 20.0)
    base = settings.port_base + PORT_SHIFT
    home = Path(tempfile.mkdtemp(prefix="hft-bench-kafka-clients-"))
    s = Settings(home=home, port_base=base, kafka_bootstrap=None, kafka_brokers=1)
    for port in (s.kafka_port(), s.kafka_controller_port()):
        if not _port_free(s.bind_host, port):
            raise RuntimeError(f"port {port} (port_base {base}) is taken: another broker runs there")
    keys, values = _messages(n)
    cluster = KafkaCluster(s)
    runs: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    t_start = time.monotonic()
    try:
        cluster.start()
        bootstrap = s.kafka_bootstrap_servers()
        producers = {"confluent": _produce_confluent, "kafka_python": _produce_kafka_python}
        consumers = {"confluent": _consume_confluent, "kafka_python": _consume_kafka_python}
        latencies = {"confluent": _latency_confluent, "kafka_python": _latency_kafka_python}
        # unrecorded warm-up: the broker's JVM compiles its produce and fetch paths before run 1
        warm = f"bench_warmup_{uuid.uuid4().hex[:6]}"
        ping = f"bench_ping_{uuid.uuid4().hex[:6]}"  # each producer's one warm-up message goes here
        _create_topics(bootstrap, [warm, ping])
        w = min(n, WARMUP_MESSAGES)
        _produce_confluent(bootstrap, warm, ping, keys[:w], values[:w])
        _consume_confluent(bootstrap, warm, w)
        for rep in range(1, reps + 1):
            order = CLIENTS if rep % 2 else CLIENTS[::-1]
            topics = {c: f"bench_{c}_{rep}_{uuid.uuid4().hex[:6]}" for c in order}
            lat_topics = {c: f"bench_lat_{c}_{rep}_{uuid.uuid4().hex[:6]}" for c in order}
            _create_topics(bootstrap, [*topics.values(), *lat_topics.values()])
            for client in order:
                cpu0 = time.process_time()
                secs = producers[client](bootstrap, topics[client], ping, keys, values)
                cpu = time.process_time() - cpu0
                in_topic = _topic_count(bootstrap, topics[client])
                if in_topic != n:
                    raise RuntimeError(f"{client} producer: {in_topic} of {n} messages in {topics[client]}")
                runs.append(
                    {
                        "rep": rep,
                        "client": client,
                        "measure": "producer",
                        "messages": n,
                        "seconds": round(secs, 3),
                        "msgs_per_s": round(n / secs, 1),
                        "cpu_us_per_msg": round(1e6 * cpu / n, 2),
                        "load_average": os.getloadavg(),
                    }
                )
                print(f"   rep {rep} {client:12s} producer {n / secs:>10,.0f} msg/s", flush=True)
            for client in order:
                cpu0 = time.process_time()
                total, secs, first = consumers[client](bootstrap, topics[client], n)
                cpu = time.process_time() - cpu0
                runs.append(
                    {
                        "rep": rep,
                        "client": client,
                        "measure": "consumer",
                        "messages": n,
                        "seconds": round(secs, 3),
                        "first_batch": first,
                        "msgs_per_s": round((n - first) / secs, 1),
                        "with_join_seconds": round(total, 3),
                        "with_join_msgs_per_s": round(n / total, 1),
                        "cpu_us_per_msg": round(1e6 * cpu / n, 2),
                        "load_average": os.getloadavg(),
                    }
                )
                print(f"   rep {rep} {client:12s} consumer {(n - first) / secs:>10,.0f} msg/s", flush=True)
            for client in order:
                res = latencies[client](bootstrap, lat_topics[client], rate, seconds)
                runs.append(
                    {
                        "rep": rep,
                        "client": client,
                        "measure": "latency",
                        "rate": rate,
                        "seconds": seconds,
                        **res,
                        "load_average": os.getloadavg(),
                    }
                )
                lm = res["latency_ms"]
                print(
                    f"   rep {rep} {client:12s} latency  p50 {lm['p50']:.2f} p95 {lm['p95']:.2f} "
                    f"p99 {lm['p99']:.2f} ms ({res['received']}/{res['sent']})",
                    flush=True,
                )
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)

    results: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    cpu_per_msg: dict[str, float] = {}
    for client in CLIENTS:
        for measure in ("producer", "consumer"):
            key = f"{client}_{measure}_msgs_per_s"
            rows = [r for r in runs if r["client"] == client and r["measure"] == measure]
            rates = [r["msgs_per_s"] for r in rows]
            results[key] = statistics.median(rates)
            spread[key] = _span(rates)
            cpu_per_msg[f"{client}_{measure}"] = statistics.median(r["cpu_us_per_msg"] for r in rows)
        lat_rows = sorted(
            (r for r in runs if r["client"] == client and r["measure"] == "latency"),
            key=lambda r: r["latency_ms"]["p99"],
        )
        median_run = lat_rows[len(lat_rows) // 2]
        key = f"{client}_latency_ms"
        results[key] = {q: median_run["latency_ms"][q] for q in ("p50", "p95", "p99")} | {
            "rep": median_run["rep"]
        }
        spread[key] = {q: _span([r["latency_ms"][q] for r in lat_rows]) for q in ("p50", "p95", "p99")}
        spread[f"{client}_latency_lost"] = sum(r["sent"] - r["received"] for r in lat_rows)
    parameters = {
        "messages": n,
        "value_bytes": VALUE_BYTES,
        "keys": [k.decode() for k in SYMBOLS],
        "partitions": PARTITIONS,
        "replication": 1,
        "repetitions": reps,
        "broker": f"Apache Kafka {kafka_version()} (KRaft, 1 node, private)",
        "port_base": base,
        "producer": f"acks=all, idempotent, linger {THROUGHPUT_LINGER_MS} ms (both clients)",
        "consumer": f"fresh group, earliest, auto-commit off, batches of {BATCH}",
        "latency": {
            "rate": rate,
            "seconds": seconds,
            "warmup_dropped": WARMUP_DROP,
            "producer": "acks=all, idempotent, linger 0, Nagle off",
            "consumer": "fetch wait 5 ms, fetch.min.bytes 1; confluent poll(), kafka-python poll()",
        },
        "headline": "median of 3 runs (throughput); run with the median p99 (latency)",
        "note": "shared 2-core machine: broker, producer and consumer on the same cores as other work",
    }
    results |= {
        "spread": spread,
        "cpu_us_per_msg": cpu_per_msg,
        "runs": runs,
        "seconds_total": round(time.monotonic() - t_start, 1),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    return parameters, results
