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
processes as ``bench/pipeline.py``.

The signal path runs too when the stack of the current settings (``make demo``) has a
``champion`` in its MLflow registry: the model server (``uvicorn``, one worker, that MLflow) and
the trading bot on the private stack (its Redis online store and ``hft:bars:closed``, its
PostgreSQL). The replayed symbols get the last real 1m klines of their real symbol as
``market.bars`` history (moved in time to end where the replay starts), so the calculator's
warm-up yields complete feature vectors from the first closed bar on. The model was trained on
15m bars: on 1m bars its probabilities mean little, but the work per signal is the same, and
that is what is measured. Without a champion, ``tick_to_signal_ms`` holds NaN and
``tick_to_signal_note`` says why.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.pipeline import Rig, bench_symbols, histogram_quantiles, metric, replay_trades, write_trade_files
from hft.config import Settings, use_mlflow

MARKET_SPEED = 30.0
WARMUP_S = 8.0
# The producer's linger: 0 (the default setting) sends each tick at once. (The mock broker of
# 2026-12-02 needed 5 ms here, docs/bench.md finding 8; Apache Kafka does not.)
LINGER_MS = float(os.environ.get("HFT_BENCH_LATENCY_LINGER_MS", "0"))
REPEATS = int(os.environ.get("HFT_BENCH_LATENCY_REPEATS", "3"))
NAN3 = {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}


def champion(settings: Settings) -> tuple[str | None, str]:
    """(MLflow URI, "name/version") of the current stack's champion, or (None, why not)."""
    import urllib.request

    uri = use_mlflow(settings)
    try:  # a quick probe first: MlflowClient retries an unreachable server for minutes
        urllib.request.urlopen(f"{uri}/health", timeout=3).close()
    except OSError as exc:
        return None, f"no MLflow at {uri} ({exc}); run `make demo` first"
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        mv = MlflowClient(uri).get_model_version_by_alias(settings.model_name, "champion")
    except MlflowException as exc:
        return None, f"no champion of {settings.model_name} in {uri}: {exc.message[:200]}"
    return uri, f"{settings.model_name}/{mv.version}"


def seed_history(rig: Rig, data_dir: Any, first_trade_ms: int, interval: str = "1m") -> dict[str, int]:
    """The last real klines of each real symbol as the replayed symbol's ``market.bars`` and
    ``features.bar_features``, ending where the replay's first bar opens (the calculator's
    warm-up and the model server's sequence window read them)."""
    import pandas as pd

    from hft.features import FEATURE_SPEC_OHLCV, compute_features
    from hft.features.offline import upsert_features
    from hft.features.spec import FEATURE_SPEC_FULL
    from hft.market.ohlcv import read_ohlcv_csv
    from hft.storage import db
    from hft.storage.bars import interval_delta, upsert_klines

    step = pd.Timedelta(interval_delta(interval))
    first_open = pd.Timestamp(first_trade_ms, unit="ms", tz="UTC").floor(step)
    n = FEATURE_SPEC_FULL.warmup_bars + 30
    out = {}
    with db.connect(rig.settings) as conn:
        for real, name in rig.names.items():
            path = next((data_dir / f"klines_{interval}").glob(f"{real}_{interval}_ohlcv_*.csv.gz"))
            bars = read_ohlcv_csv(path).iloc[-n:]
            bars.index = bars.index + (first_open - step - bars.index[-1])
            out[name] = upsert_klines(conn, bars, name, interval)
            # the feature rows of that history: a sequence model's window reaches back into them
            feats = compute_features(bars, FEATURE_SPEC_OHLCV).dropna()
            upsert_features(conn, name, interval, feats, FEATURE_SPEC_OHLCV.version)
    return out


def _ms(q: dict[str, float]) -> dict[str, float]:
    return {k: (round(v * 1000, 3) if k.startswith("p") else v) for k, v in q.items()}


def measure_rate(
    settings: Settings, rate: int, seconds: float, model: tuple[str | None, str]
) -> dict[str, Any]:
    """One run at ``rate`` ticks/s for ``seconds`` (after the warm-up) on a private stack that is up."""
    mlflow_uri, model_note = model
    extra = {"HFT_KAFKA_LINGER_MS": f"{LINGER_MS:g}"}
    if mlflow_uri:
        extra |= {
            "HFT_MLFLOW_TRACKING_URI": mlflow_uri,
            "HFT_MLFLOW_PASSWORD": settings.mlflow_password.get_secret_value(),  # the champion's server
            "HFT_MODEL_NAME": settings.model_name,
        }
    rig = Rig.private(settings, bench_symbols(), bar_interval="1m", extra_env=extra)
    n = int(rate * (seconds + WARMUP_S + 10))
    start_ms = time.time_ns() // 1_000_000
    write_trade_files(
        replay_trades(
            settings.data_dir, rig.names, n, start_ms=start_ms, rate=rate, market_speed=MARKET_SPEED
        ),
        rig.source_dir,
    )
    signal = mlflow_uri is not None
    try:
        if signal:
            seed_history(rig, settings.data_dir, start_ms)
            rig.start("api")
            rig.start("trading-bot")
        rig.start("tick-ingestor")
        rig.start("feature-calculator")
        rig.start("exchange", "--speed", f"x{MARKET_SPEED:g}", "--no-loop")
        rig.wait_ready(
            ["tick-ingestor", "feature-calculator", "exchange", *(["api", "trading-bot"] if signal else [])]
        )
        rig.start("market-producer")
        rig.wait_ready(["market-producer"])
        time.sleep(WARMUP_S)
        calc0, pub0, t0 = rig.metrics("feature-calculator"), rig.published(), time.monotonic()
        bot0 = rig.metrics("trading-bot") if signal else {}
        time.sleep(seconds)
        calc1, pub1, t1 = rig.metrics("feature-calculator"), rig.published(), time.monotonic()
        bot1 = rig.metrics("trading-bot") if signal else {}
        feature = histogram_quantiles(calc1, "feature_calculator_tick_to_feature_seconds", before=calc0)
        update = histogram_quantiles(calc1, "feature_calculator_update_seconds", before=calc0)
        # the bar close's own costs: the online rows + announcements (one Redis round trip, on the
        # consuming thread) and the offline upsert (on the offline writer's thread)
        close_costs = {
            what: _ms(histogram_quantiles(calc1, f"feature_calculator_{what}_write_seconds", before=calc0))
            for what in ("online", "offline")
        }
        top = 5000.0  # the histograms' last finite bucket (5 s): a quantile there means "at least"
        censored = [k for k, v in _ms(feature).items() if k.startswith("p") and v >= top]
        sig = histogram_quantiles(bot1, "trading_bot_tick_to_signal_seconds", before=bot0) if signal else {}
        legs = (
            {
                leg: _ms(histogram_quantiles(bot1, f"trading_bot_leg_{leg}_seconds", before=bot0))
                for leg in ("announce", "score", "stream", "decide")
            }
            if signal
            else {}
        )
        decisions = {
            k.split('reason="', 1)[1].split('"', 1)[0]: v - bot0.get(k, 0.0)
            for k, v in bot1.items()
            if k.startswith("trading_bot_decisions_total{")
        }
        sources = {
            k.split('source="', 1)[1].split('"', 1)[0]: v - bot0.get(k, 0.0)
            for k, v in bot1.items()
            if k.startswith("trading_bot_predictions_total{")
        }
        if not signal:
            sig_note = f"not measured: {model_note}"
        elif not sig.get("n"):
            sig_note = (
                f"no signal in the window with {model_note}: decisions {decisions}, predict errors "
                f"{metric(bot1, 'trading_bot_predict_errors') - metric(bot0, 'trading_bot_predict_errors')}"
            )
        else:
            sig_note = (
                f"{int(sig['n'])} signals ({model_note}, 1m bars of 2 symbols closing every 2 s): receive "
                "time of the bar-closing tick -> bar closed, features online -> the API scores it and "
                "announces the score -> the bot decides on it (POST /predict when the score is late)"
            )
        return {
            "rate": rate,
            "achieved_rate": round((pub1 - pub0) / (t1 - t0), 1),
            "seconds": round(t1 - t0, 1),
            "tick_to_feature_ms": _ms(feature),
            "tick_to_signal_ms": _ms(sig) if sig.get("n") else dict(NAN3),
            "tick_to_signal_note": sig_note,
            "decisions": decisions,
            "prediction_sources": sources,
            # announce: bar-closing tick received -> closed-bar entry published (the calculator);
            # score: -> the API's score of it published (predict-ahead); stream: the entry decided on
            # -> read by the bot; decide: -> signal (the score carried, or the wait and POST /predict;
            # risk checks and intent come after)
            "tick_to_signal_legs_ms": legs,
            "feature_update_ms": _ms(update),
            "bar_close_write_ms": close_costs,
            "ticks_featured_per_s": round(feature.get("n", 0) / (t1 - t0), 1),
            "tick_to_feature_note": (
                f"{', '.join(censored)} at or beyond the top bucket (5 s): the calculator fell "
                "behind the rate (see ticks_featured_per_s)"
            )
            if censored
            else "",
        }
    finally:
        rig.stop_all()
        rig.delete_rows()


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose tick→feature p99 is the median one, with every run's quantiles beside it.

    A headline must be what a user sees again, not the best run: the median run by p99, with
    each quantile's spread (min, max over the runs) and all runs kept (``repeats``).
    """

    def p99(r: dict[str, Any]) -> float:
        v = r["tick_to_feature_ms"].get("p99", float("nan"))
        return float("inf") if v != v else float(v)

    ordered = sorted(runs, key=p99)
    head = dict(ordered[(len(ordered) - 1) // 2])
    for key in ("tick_to_feature_ms", "tick_to_signal_ms"):
        qs = {
            q: [r[key].get(q) for r in runs if r[key].get(q) == r[key].get(q)] for q in ("p50", "p95", "p99")
        }
        head[key] = {
            **head[key],
            "spread": {q: [min(v), max(v)] for q, v in qs.items() if v},
            "runs": len(runs),
        }
    legs: dict[str, Any] = {}
    for leg in head.get("tick_to_signal_legs_ms", {}):
        vals = [
            r["tick_to_signal_legs_ms"][leg].get("p50")
            for r in runs
            if leg in r.get("tick_to_signal_legs_ms", {})
        ]
        vals = [v for v in vals if v == v]
        legs[leg] = {
            **head["tick_to_signal_legs_ms"][leg],
            "spread": {"p50": [min(vals), max(vals)]} if vals else {},
        }
    head["tick_to_signal_legs_ms"] = legs
    head["repeats"] = runs
    return head


def run(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each fixed rate ``REPEATS`` times (interleaved), on one private stack; the median run is the headline."""
    rates = [int(r) for r in os.environ.get("HFT_BENCH_LATENCY_RATES", "1000,5000").split(",")]
    seconds = 15.0 if quick else float(os.environ.get("HFT_BENCH_LATENCY_SECONDS", "60"))
    repeats = 1 if quick else REPEATS
    model = champion(settings)
    rig = Rig.private(settings, bench_symbols())
    rig.up()
    by_rate: dict[int, list[dict[str, Any]]] = {r: [] for r in rates}
    try:
        for _ in range(repeats):
            for r in rates:
                by_rate[r].append(measure_rate(settings, r, seconds, model))
    finally:
        rig.down()
    params = {
        "model": model[1],
        "producer_linger_ms": LINGER_MS,
        "rates": rates,
        "seconds_per_rate": seconds,
        "repeats": repeats,
        "warmup_s": WARMUP_S,
        "bar_interval": "1m",
        "market_speed": MARKET_SPEED,
        "pacing": "recorded trades spaced evenly at the rate (wall time)",
        "quantiles": "from Prometheus histogram buckets of the processes, steady window only",
        "headline": "the run with the median tick->feature p99; spread = [min, max] over the runs",
    }
    return params, {"runs": [_median_run(by_rate[r]) for r in rates]}
