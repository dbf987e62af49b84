"""Features: incremental update per tick, batch rate, online store read/write latency.

* ``feature_update_us``: the calculator's per-tick work, ``SymbolFeatures.on_trade`` (bar update,
  plus the feature update when the tick closes a bar, amortised: the mean), over real Binance spot
  trades (BTCUSDT 2024-08-08/09, 19,904 trades) replayed as 1m bars; samples above 1 ms
  (preemptions on a shared machine) are dropped from that mean and counted; p50/p99 and the raw
  mean beside it. The feature update alone per closed bar (``FeatureState.update``) too.
* ``batch_bars_per_s``: ``compute_features`` over the real 15m BTCUSDT klines (93,499 bars).
* ``online_read_p50/p99_ms``: ``OnlineFeatures.latest`` (Feast's ``RedisOnlineStore.online_read``,
  what the API uses) on the stack's Redis; ``online_read_sdk_*``: ``FeatureStore.get_online_features``
  with the ``bar_features_v1`` FeatureService; ``online_write_*``: one row through ``OnlineWriter``.
  Needs the stack up (``hft stack up``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from bench.common import percentiles
from hft.config import Settings

TRADES = "trades/spot_BTCUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz"
KLINES = "klines_15m/BTCUSDT_15m_ohlcv_2023-01-01_2025-08-31.csv.gz"
BENCH_SYMBOL = "BENCHBTC"


def _trades(settings: Settings) -> Any:
    import pandas as pd

    df = pd.read_csv(settings.data_dir / TRADES)  # the market area reads zips only; these are csv.gz
    return (
        df["time"].to_numpy() * 1_000_000,
        df["price"].to_numpy(dtype=float),
        df["qty"].to_numpy(dtype=float),
        df["is_buyer_maker"].astype(str).str.lower().eq("true").to_numpy(),
    )


def measure_update(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-tick incremental cost (bars + features) over real trades, warm state."""
    from hft.features.calculator import SymbolFeatures
    from hft.features.compute import FeatureState
    from hft.features.spec import FEATURE_SPEC_FULL
    from hft.market.ohlcv import read_ohlcv_csv

    t, p, q, m = _trades(settings)
    history = read_ohlcv_csv(settings.data_dir / KLINES).iloc[-2000:]
    import pandas as pd

    rounds = 2 if quick else 10
    per_tick: list[float] = []
    per_bar: list[float] = []
    span = int(t[-1] - t[0]) + 60_000_000_000
    for r in range(rounds):
        sf = SymbolFeatures("BTCUSDT", "1m", FEATURE_SPEC_FULL, 2_000_000_000)
        first_open = int(t[0]) + r * span
        first_open -= first_open % 60_000_000_000
        # real 15m bars re-stamped as the 1m bars right before the stream (warm-up material only)
        hist = history.set_axis(
            pd.DatetimeIndex(
                pd.to_datetime(
                    [first_open - (len(history) - k) * 60_000_000_000 for k in range(len(history))],
                    unit="ns",
                    utc=True,
                ),
                name="open_time",
            )
        )
        sf.warm(hist, first_open)
        shift = r * span
        pc = time.perf_counter_ns
        for i in range(len(t)):
            a = pc()
            sf.on_trade(int(t[i]) + shift, float(p[i]), float(q[i]), bool(m[i]), 0)
            per_tick.append((pc() - a) / 1000)
    state = FeatureState(FEATURE_SPEC_FULL)
    bars = history.assign(
        trade_count=1000.0, buy_volume=history["volume"] / 2, vwap=(history["high"] + history["low"]) / 2
    )
    rows = bars.to_dict("records")
    for ts, row in zip(bars.index, rows, strict=True):
        a = time.perf_counter_ns()
        state.update({"open_time_ns": ts.value, **row})
        per_bar.append((time.perf_counter_ns() - a) / 1000)
    tick = percentiles(per_tick)
    bar = percentiles(per_bar[FEATURE_SPEC_FULL.warmup_bars :])
    # samples above 1 ms are the scheduler taking the core away (2 cores shared by many
    # processes), not our code: a bar close with its feature update costs ~30 µs
    kept = [x for x in per_tick if x < 1000.0]
    return (
        {
            "ticks": len(per_tick),
            "trades_file": TRADES,
            "interval": "1m",
            "spec": FEATURE_SPEC_FULL.version,
            "preempted_samples_dropped": len(per_tick) - len(kept),
        },
        {
            "feature_update_us": sum(kept) / len(kept),
            "feature_update_mean_raw_us": tick["mean"],
            "feature_update_p50_us": tick["p50"],
            "feature_update_p99_us": tick["p99"],
            "feature_update_max_us": tick["max"],
            "feature_bar_update_p50_us": bar["p50"],
            "feature_bar_update_p99_us": bar["p99"],
        },
    )


def measure_batch(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Batch features over the 15m BTCUSDT klines, and the incremental state folded over them."""
    from hft.features import FEATURE_SPEC_OHLCV, compute_features, fold_features
    from hft.market.ohlcv import read_ohlcv_csv

    bars = read_ohlcv_csv(settings.data_dir / KLINES)
    compute_features(bars.iloc[:1000], FEATURE_SPEC_OHLCV)  # imports, caches
    runs = []
    for _ in range(2 if quick else 5):
        a = time.perf_counter()
        compute_features(bars, FEATURE_SPEC_OHLCV)
        runs.append(time.perf_counter() - a)
    sub = bars.iloc[: 10_000 if quick else 30_000]
    a = time.perf_counter()
    fold_features(sub, FEATURE_SPEC_OHLCV)
    fold = time.perf_counter() - a
    return (
        {"bars": len(bars), "spec": FEATURE_SPEC_OHLCV.version, "fold_bars": len(sub)},
        {
            "batch_bars_per_s": len(bars) / min(runs),
            "batch_seconds": min(runs),
            "fold_bars_per_s": len(sub) / fold,
        },
    )


def measure_online(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Online store read (our path and the SDK's) and write latency on the stack's Redis."""
    from hft.features.online import OnlineFeatures, OnlineWriter
    from hft.features.spec import FEATURE_SPEC_FULL
    from hft.features.store import ensure_applied

    ensure_applied(settings)
    writer = OnlineWriter(settings)
    row = {n: 0.001 * i for i, n in enumerate(FEATURE_SPEC_FULL.names)}
    n = 500 if quick else 5000
    writes = []
    for i in range(min(n, 2000)):
        ft = datetime.fromtimestamp(1_700_000_000 + 60 * i, tz=UTC)
        a = time.perf_counter()
        writer.write(BENCH_SYMBOL, ft, row)
        writes.append((time.perf_counter() - a) * 1000)
    online = OnlineFeatures(settings, FEATURE_SPEC_FULL)
    for _ in range(100):
        online.latest(BENCH_SYMBOL)
        online.latest_sdk(BENCH_SYMBOL)
    reads, sdk = [], []
    for _ in range(n):
        a = time.perf_counter()
        online.latest(BENCH_SYMBOL)
        reads.append((time.perf_counter() - a) * 1000)
    for _ in range(min(n, 1000)):  # the SDK path is ~20x slower; fewer calls keep the run short
        a = time.perf_counter()
        online.latest_sdk(BENCH_SYMBOL)
        sdk.append((time.perf_counter() - a) * 1000)
    got = online.latest(BENCH_SYMBOL)
    assert got is not None, "online read found nothing"
    assert abs(got[1]["ret_2"] - 0.001) < 1e-12, "online read returned another row"
    r, s, w = percentiles(reads), percentiles(sdk), percentiles(writes)
    return (
        {"reads": n, "features": FEATURE_SPEC_FULL.n_features, "redis": settings.redis_dsn},
        {
            "online_read_p50_ms": r["p50"],
            "online_read_p99_ms": r["p99"],
            "online_read_sdk_p50_ms": s["p50"],
            "online_read_sdk_p99_ms": s["p99"],
            "online_write_p50_ms": w["p50"],
            "online_write_p99_ms": w["p99"],
        },
    )


def run(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """All feature measures."""
    parameters: dict[str, Any] = {}
    results: dict[str, Any] = {}
    for name, fn in (("update", measure_update), ("batch", measure_batch), ("online", measure_online)):
        p, r = fn(settings, quick)
        parameters[name] = p
        results.update(r)
    return parameters, results
