"""Render bench/results/*.json as the README's benchmark table (between markers in README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

# (file, label, key path, unit, goal)
ROWS: list[tuple[str, str, str, str, str]] = [
    (
        "pipeline",
        "pipeline throughput (replay → Kafka → calculator + ingestor)",
        "throughput_ticks_per_s",
        "ticks/s",
        "≥ 50,000",
    ),
    ("pipeline", "pipeline lost ticks", "lost", "ticks", "0"),
    ("pipeline", "pipeline run completed", "completed", "", "true"),
    ("pipeline", "pipeline trades replayed", "ticks_in", "ticks", "1,000,000"),
    ("ingest", "tick ingestor alone into PostgreSQL", "throughput_ticks_per_s", "ticks/s", "≥ 50,000"),
    (
        "latency",
        "tick→feature p50 / p99 @ 1,000 ticks/s (median run of 3; p99 spread)",
        "runs[rate=1000].tick_to_feature_ms",
        "ms",
        "p50 ≤ 1, p99 ≤ 3",
    ),
    (
        "latency",
        "tick→signal p50 / p99 @ 1,000 ticks/s",
        "runs[rate=1000].tick_to_signal_ms",
        "ms",
        "p50 ≤ 2, p99 ≤ 5",
    ),
    (
        "latency",
        "tick→signal leg 1: closing tick → bar announced (calculator) p50 / p99",
        "runs[rate=1000].tick_to_signal_legs_ms.announce",
        "ms",
        "legs 1 + 3: p50 ≤ 1",
    ),
    (
        "latency",
        "tick→signal leg 2: bar announced → its score announced (the API's predict-ahead) p50 / p99",
        "runs[rate=1000].tick_to_signal_legs_ms.score",
        "ms",
        "",
    ),
    (
        "latency",
        "tick→signal leg 3: announced → read by the bot (Redis stream) p50 / p99",
        "runs[rate=1000].tick_to_signal_legs_ms.stream",
        "ms",
        "legs 1 + 3: p50 ≤ 1",
    ),
    (
        "latency",
        "tick→signal leg 4: read → signal (the bot's decide leg) p50 / p99",
        "runs[rate=1000].tick_to_signal_legs_ms.decide",
        "ms",
        "p50 ≤ 0.5, p99 ≤ 2",
    ),
    (
        "latency",
        "ticks featured per s @ 1,000 ticks/s offered",
        "runs[rate=1000].ticks_featured_per_s",
        "ticks/s",
        "1,000",
    ),
    (
        "latency",
        "tick→feature p50 / p99 @ 5,000 ticks/s (median run of 3; p99 spread)",
        "runs[rate=5000].tick_to_feature_ms",
        "ms",
        "p99 ≤ 10",
    ),
    ("api", "/predict p50 / p99 @ 100 req/s", "runs[rate=100]", "ms", ""),
    ("api", "/predict p50 / p99 @ 500 req/s", "runs[rate=500]", "ms", "p99 ≤ 2"),
    ("api", "/predict p50 / p99 @ 1,000 req/s", "runs[rate=1000]", "ms", ""),
    ("api", "/predict p50 / p99 @ 2,000 req/s", "runs[rate=2000]", "ms", "p99 ≤ 5"),
    (
        "api",
        "/predict: most req/s one worker answers with p99 ≤ 10 ms",
        "sustained.max_rps_at_p99_le_10ms",
        "req/s",
        "",
    ),
    (
        "kafka_clients",
        "Kafka producer, confluent-kafka (acks=all, idempotent; median of 3)",
        "confluent_producer_msgs_per_s",
        "msg/s",
        "",
    ),
    (
        "kafka_clients",
        "Kafka producer, kafka-python (acks=all, idempotent; median of 3)",
        "kafka_python_producer_msgs_per_s",
        "msg/s",
        "",
    ),
    (
        "kafka_clients",
        "Kafka consumer, confluent-kafka (median of 3)",
        "confluent_consumer_msgs_per_s",
        "msg/s",
        "",
    ),
    (
        "kafka_clients",
        "Kafka consumer, kafka-python (median of 3)",
        "kafka_python_consumer_msgs_per_s",
        "msg/s",
        "",
    ),
    (
        "kafka_clients",
        "Kafka produce→consume p50 / p99 @ 1,000 msg/s, confluent-kafka",
        "confluent_latency_ms",
        "ms",
        "",
    ),
    (
        "kafka_clients",
        "Kafka produce→consume p50 / p99 @ 1,000 msg/s, kafka-python",
        "kafka_python_latency_ms",
        "ms",
        "",
    ),
    ("micro", "feature update per tick", "feature_update_us", "µs", "≤ 10"),
    ("micro", "one-row ensemble inference p99", "inference_p99_ms", "ms", "≤ 1"),
    ("micro", "online-store read p99", "online_read_p99_ms", "ms", "≤ 1"),
    ("training", "full retrain with tuning", "seconds", "s", "≤ 900"),
    (
        "memory",
        "whole-stack memory incl. the Kafka JVM, PSS (shared pages split)",
        "stack_pss_mb",
        "MB",
        "≤ 4,096",
    ),
    ("memory", "whole-stack memory, RSS sum (shared pages counted per process)", "stack_rss_mb", "MB", ""),
    ("soak", "soak minutes at ~1,000 ticks/s", "parameters.minutes", "min", "60"),
    ("soak", "soak lost ticks", "lost", "ticks", "0"),
    ("soak", "soak streaming-stack RSS start → end", "stack_rss_mb_start,stack_rss_mb_end", "MB", "flat"),
]


def _lookup(doc: dict[str, Any], path: str) -> Any:
    if "," in path:  # two values shown as "a → b"
        a, b = (_lookup(doc, p) for p in path.split(",", 1))
        return None if a is None or b is None else f"{_fmt(a)} → {_fmt(b)}"
    cur: Any = doc
    for part in path.split("."):
        if "[" in part:
            key, sel = part[:-1].split("[")
            field, value = sel.split("=")
            cur = next((r for r in cur.get(key, []) if str(r.get(field)) == value), None)
        else:
            cur = cur.get(part) if isinstance(cur, dict) else None
        if cur is None:
            return None
    return cur


def _fmt(value: Any) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        if "p50_ms" in value:
            return f"{value['p50_ms']:.2f} / {value['p99_ms']:.2f}"
        if "p50" in value:
            # 5,000 ms is the streaming histograms' top finite bucket: a quantile there is censored
            out = " / ".join("≥ 5,000" if value[q] >= 5000 else f"{value[q]:.2f}" for q in ("p50", "p99"))
            spread = value.get("spread", {}).get("p99")
            if spread and value.get("runs", 1) > 1:
                out += f" (p99 {spread[0]:.2f}–{spread[1]:.2f} over {value['runs']} runs)"
            return out
    if isinstance(value, float):
        if value.is_integer():
            return f"{int(value):,}"
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def render() -> str:
    lines = ["| measure | result | unit | goal | date | machine |", "| --- | --- | --- | --- | --- | --- |"]
    for name, label, path, unit, goal in ROWS:
        f = ROOT / "bench" / "results" / f"{name}.json"
        if not f.exists():
            lines.append(f"| {label} | not measured yet | {unit} | {goal} | | |")
            continue
        doc = json.loads(f.read_text())
        m = doc.get("machine", {})
        where = f"{m.get('cores')} cores, {m.get('memory_gb')} GB, Python {m.get('python')}"
        lines.append(
            f"| {label} | {_fmt(_lookup(doc, path))} | {unit} | {goal} | {doc.get('date', '')[:10]} | {where} |"
        )
    return "\n".join(lines)


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text() if readme.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        readme.write_text(f"{head}{BEGIN}\n{render()}\n{END}{tail}")
    print(render())


if __name__ == "__main__":
    main()
