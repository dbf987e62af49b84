"""Soak: the streaming stack at ~1,000 ticks/s for N minutes; memory per process over time, and loss.

``make soak MINUTES=60`` → ``python -m bench.soak --minutes 60`` → ``bench/results/soak.json``.
The replay exchange loops over the recorded spot captures (times moved to the run's start, ids and
times shifted per pass as loop mode does) at ``x19`` (the recording averages ~53 trades/s, so
~1,000 ticks/s with the recording's own burstiness) into the real market producer, broker,
tick ingestor and feature calculator on the private bench stack (PostgreSQL, Redis, broker).
Every ``--sample-s`` seconds: resident memory (RSS, with children) of each process and stack part.

Loss: the recording's trade ids are contiguous per symbol and loop passes continue them, so every
id from the first stored to the exchange's last published must be in ``market.ticks`` once:
``lost = (ids missing inside the stored range) + (published after the last stored)``, read after
the exchange stops and the pipeline drains.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.common import write_result
from bench.memory import pids_mb, stack_processes, with_children
from bench.pipeline import Rig, bench_symbols, metric, replay_trades, write_trade_files
from hft.config import Settings, get_settings


def sample_memory(rig: Rig, kind: str = "rss") -> dict[str, float]:
    """RSS (or PSS: shared pages split between their sharers, so PostgreSQL's shared buffers count
    once, not once per backend) in MB of every process of the rig and every part of its stack."""
    out = {name: pids_mb(with_children(p.pid), kind) for name, p in rig.procs.items()}
    for name, pids in stack_processes(rig.settings).items():
        out[f"stack:{name}"] = pids_mb(with_children(pids[0]), kind)
    return out


def _loss(rig: Rig, last_published: dict[str, int]) -> dict[str, Any]:
    from hft.storage import db

    out: dict[str, Any] = {}
    with db.connect(rig.settings, autocommit=True) as conn:
        for sym in rig.symbols:
            row = conn.execute(
                "SELECT min(trade_id), max(trade_id), count(*), count(DISTINCT trade_id) "
                "FROM market.ticks WHERE symbol = %s",
                (sym,),
            ).fetchone()
            assert row is not None
            lo, hi, rows, distinct = (int(x) if x is not None else 0 for x in row)
            inside = (hi - lo + 1 - distinct) if distinct else 0
            tail = max(0, last_published.get(sym, hi) - hi)
            out[sym] = {
                "first_id": lo,
                "last_id": hi,
                "rows": rows,
                "duplicates": rows - distinct,
                "missing_inside": inside,
                "missing_tail": tail,
            }
    out["lost"] = sum(v["missing_inside"] + v["missing_tail"] for v in out.values() if isinstance(v, dict))
    out["duplicates"] = sum(v["duplicates"] for v in out.values() if isinstance(v, dict))
    return out


def soak(
    settings: Settings, minutes: float, sample_s: float = 30.0, speed: str = "x19", linger_ms: float = 0.0
) -> dict[str, Any]:
    """Run the soak and return parameters + results.

    ``linger_ms``: the producer's ``HFT_KAFKA_LINGER_MS`` (0, the default: each tick at once; the
    mock broker of 2026-12-02 needed 5 ms, docs/bench.md finding 8; Apache Kafka does not).
    """
    rig = Rig.private(settings, bench_symbols(), extra_env={"HFT_KAFKA_LINGER_MS": f"{linger_ms:g}"})
    write_trade_files(
        replay_trades(settings.data_dir, rig.names, start_ms=time.time_ns() // 1_000_000), rig.source_dir
    )
    rig.up()
    samples: list[dict[str, Any]] = []
    try:
        rig.start("tick-ingestor")
        rig.start("feature-calculator")
        rig.start("exchange", "--speed", speed, "--loop")
        rig.wait_ready(["tick-ingestor", "feature-calculator", "exchange"])
        rig.start("market-producer")
        rig.wait_ready(["market-producer"])
        t0 = time.monotonic()
        end = t0 + minutes * 60
        last_pub = 0
        while True:
            now = time.monotonic()
            pub = rig.published()
            samples.append(
                {
                    "t_s": round(now - t0, 1),
                    "published": pub,
                    "rate": round((pub - last_pub) / sample_s, 1) if samples else None,
                    "stored": metric(rig.metrics("tick-ingestor"), "tick_ingestor_rows_written"),
                    "featured": metric(rig.metrics("feature-calculator"), "feature_calculator_ticks"),
                    "rss_mb": sample_memory(rig),
                    "pss_mb": sample_memory(rig, "pss"),
                }
            )
            last_pub = pub
            print(
                f"soak {samples[-1]['t_s']:>7.0f}s published {pub:,} rss "
                f"{sum(samples[-1]['rss_mb'].values()):,.0f} MB",
                flush=True,
            )
            if now >= end:
                break
            time.sleep(min(sample_s, max(0.0, end - now)))
        status = rig.exchange_status()
        last_published = {
            s: int(v["last_id"]) for s, v in status.get("published", {}).items() if v.get("last_id")
        }
        ticks_in = sum(int(v["count"]) for v in status.get("published", {}).values())
        rig.procs["exchange"].stop()
        # drain: until every tick the producer sent is stored, or nothing moved for two minutes
        # (the ingestor's consumer can pause for a minute when far behind: docs/bench.md, finding 4)
        prev, still_since = -1.0, time.monotonic()
        while time.monotonic() - still_since < 120:
            sent = metric(rig.metrics("market-producer"), "market_producer_ticks_out")
            cur = metric(rig.metrics("tick-ingestor"), "tick_ingestor_rows_written")
            if cur >= sent:
                break
            if cur != prev:
                prev, still_since = cur, time.monotonic()
            time.sleep(5)
        loss = _loss(rig, last_published)
    finally:
        rig.stop_all()
        rig.delete_rows()
        rig.down()
    first, last = samples[0]["rss_mb"], samples[-1]["rss_mb"]
    growth = {k: round(last.get(k, 0.0) - first.get(k, 0.0), 1) for k in last}
    pss_first, pss_last = samples[0]["pss_mb"], samples[-1]["pss_mb"]
    params = {
        "minutes": minutes,
        "speed": speed,
        "sample_s": sample_s,
        "producer_linger_ms": linger_ms,
        "symbols": rig.symbols,
        "processes": sorted(rig.procs),
        "source": "spot captures 2024-08-08/09, looped",
    }
    results = {
        "ticks_in": ticks_in,
        "lost": loss["lost"],
        "duplicates": loss["duplicates"],
        "loss": loss,
        "avg_rate_ticks_per_s": round(ticks_in / max(1.0, samples[-1]["t_s"]), 1),
        "stack_rss_mb_start": round(sum(first.values()), 1),
        "stack_rss_mb_end": round(sum(last.values()), 1),
        "rss_growth_mb": growth,
        "stack_pss_mb_start": round(sum(pss_first.values()), 1),
        "stack_pss_mb_end": round(sum(pss_last.values()), 1),
        "pss_growth_mb": {k: round(pss_last.get(k, 0.0) - pss_first.get(k, 0.0), 1) for k in pss_last},
        "samples": samples,
    }
    return {"parameters": params, "results": results}


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.soak --minutes N``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--sample-s", type=float, default=30.0)
    p.add_argument(
        "--speed", default="x19", help="replay speed (x19 ≈ 1,000 ticks/s on the default recording)"
    )
    p.add_argument("--linger-ms", type=float, default=0.0, help="the market producer's HFT_KAFKA_LINGER_MS")
    args = p.parse_args(argv)
    out = soak(get_settings(), args.minutes, args.sample_s, args.speed, args.linger_ms)
    path = write_result("soak", out["parameters"], out["results"])
    r = out["results"]
    print(
        f"-> {path}: {r['ticks_in']:,} ticks, lost {r['lost']}, duplicates {r['duplicates']}, "
        f"RSS {r['stack_rss_mb_start']:,.0f} → {r['stack_rss_mb_end']:,.0f} MB"
    )
    return 0 if r["lost"] == 0 and r["duplicates"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
