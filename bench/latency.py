"""Latency at fixed rates (1,000 and 5,000 ticks/s): tick → feature and tick → signal, p50/p95/p99.

Measured from each tick's local receive time (stamped by the market producer when the frame
arrives) by the processes themselves: the feature calculator's histogram
``feature_calculator_tick_to_feature_seconds`` (receive time → the tick folded into its bar, or
→ the closed bar's features written when the tick closed one) and the trading bot's
``trading_bot_tick_to_signal_seconds`` (receive time of the bar-closing tick → decision). The
quantiles come from the histograms' bucket counts over the steady window (the first seconds
are dropped), interpolated inside a bucket as Prometheus' ``histogram_quantile`` does, so their
resolution is the bucket width (0.5, 1, 2.5, 5, 10 ms ...).

The rate is fixed: the recorded trades (prices, sizes, sides as recorded) are spaced evenly at
``rate`` per second of wall time, with the market clock running 30× faster so that 1m bars
close every 2 s per symbol; the exchange replays them at ``x30``. Same private stack and real
processes as ``bench/pipeline.py``. The signal needs the API with a champion model and the
trading bot; when there is none, ``tick_to_signal_ms`` holds NaN and ``tick_to_signal_note`` says why.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.pipeline import Rig, bench_symbols, histogram_quantiles, replay_trades, write_trade_files
from hft.config import Settings

MARKET_SPEED = 30.0
WARMUP_S = 8.0


def _ms(q: dict[str, float]) -> dict[str, float]:
    return {k: (round(v * 1000, 3) if k.startswith("p") else v) for k, v in q.items()}


def measure_rate(settings: Settings, rate: int, seconds: float) -> dict[str, Any]:
    """One run at ``rate`` ticks/s for ``seconds`` (after the warm-up) on a private stack that is up."""
    rig = Rig.private(settings, bench_symbols(), bar_interval="1m")
    n = int(rate * (seconds + WARMUP_S + 10))
    write_trade_files(replay_trades(settings.data_dir, rig.names, n, start_ms=time.time_ns() // 1_000_000, rate=rate,
                                    market_speed=MARKET_SPEED), rig.source_dir)
    try:
        rig.start("tick-ingestor")
        rig.start("feature-calculator")
        rig.start("exchange", "--speed", f"x{MARKET_SPEED:g}", "--no-loop")
        rig.wait_ready(["tick-ingestor", "feature-calculator", "exchange"])
        rig.start("market-producer")
        rig.wait_ready(["market-producer"])
        time.sleep(WARMUP_S)
        calc0, pub0, t0 = rig.metrics("feature-calculator"), rig.published(), time.monotonic()
        time.sleep(seconds)
        calc1, pub1, t1 = rig.metrics("feature-calculator"), rig.published(), time.monotonic()
        feature = histogram_quantiles(calc1, "feature_calculator_tick_to_feature_seconds", before=calc0)
        update = histogram_quantiles(calc1, "feature_calculator_update_seconds", before=calc0)
        top = 5000.0  # the histograms' last finite bucket (5 s): a quantile there means "at least"
        censored = [k for k, v in _ms(feature).items() if k.startswith("p") and v >= top]
        return {
            "rate": rate, "achieved_rate": round((pub1 - pub0) / (t1 - t0), 1), "seconds": round(t1 - t0, 1),
            "tick_to_feature_ms": _ms(feature),
            "tick_to_signal_ms": {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")},
            "tick_to_signal_note": "not measured: the trading bot needs the API with a champion model; "
                                   "the private bench stack has no model registry",
            "feature_update_ms": _ms(update),
            "ticks_featured_per_s": round(feature.get("n", 0) / (t1 - t0), 1),
            "tick_to_feature_note": (f"{', '.join(censored)} at or beyond the top bucket (5 s): the calculator fell "
                                     "behind the rate (see ticks_featured_per_s)") if censored else "",
        }
    finally:
        rig.stop_all()
        rig.delete_rows()


def run(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both fixed rates, one after the other, on one private stack."""
    rates = [int(r) for r in os.environ.get("HFT_BENCH_LATENCY_RATES", "1000,5000").split(",")]
    seconds = 15.0 if quick else float(os.environ.get("HFT_BENCH_LATENCY_SECONDS", "60"))
    rig = Rig.private(settings, bench_symbols())
    rig.up()
    try:
        runs = [measure_rate(settings, r, seconds) for r in rates]
    finally:
        rig.down()
    params = {"rates": rates, "seconds_per_rate": seconds, "warmup_s": WARMUP_S, "bar_interval": "1m",
              "market_speed": MARKET_SPEED, "pacing": "recorded trades spaced evenly at the rate (wall time)",
              "quantiles": "from Prometheus histogram buckets of the processes, steady window only"}
    return params, {"runs": runs}
