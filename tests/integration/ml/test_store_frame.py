"""Training from the store gives the training frame a CSV gives, for the same bars.

Real Binance 15m klines of BTCUSDT and ETHUSDT (June-July 2024) go into ``market.bars`` under
test-only symbol names (``SFBTC``, ``SFETH``, so other areas' tests never see them) through the
storage's kline writer, and the same bars into OHLCV CSV files in a temporary folder. Then:

* the store path (:func:`hft.ml.store_frame.store_inputs`: backfill of what is missing, bars
  from ``market.bars``, features through Feast's ``get_historical_features`` with the
  FeatureService ``bar_features_ohlcv_v1``) and the CSV path (:func:`hft.ml.dataset.load_bars`
  + ``compute_features``) give the same frame: same columns, same rows, same labels, features
  equal to float tolerance;
* a bar whose feature row is missing is backfilled before the join (Feast alone would hand
  its decision the previous bar's row, or nothing);
* point in time: each row's features equal the batch over only the bars closed at or before
  its decision time.

Runs on the project's test stack (real PostgreSQL and Redis from ``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hft.config import Settings

pytestmark = pytest.mark.integration

SOURCES = {
    "SFBTC": "klines_15m/BTCUSDT_15m_ohlcv_2023-01-01_2025-08-31.csv.gz",
    "SFETH": "klines_15m/ETHUSDT_15m_ohlcv_2023-01-01_2025-08-31.csv.gz",
}
BARS_FROM, BARS_TO = "2024-06-01", "2024-07-20"  # stored bars (the first 524 are warm-up only)
START, END = "2024-06-10", "2024-07-15"  # the training window, as `hft train --start/--end` take it
STEP = pd.Timedelta(minutes=15)


def _clear(settings: Settings) -> None:
    from hft.storage import db

    with db.connect(settings) as conn:
        for table in ("market.bars", "features.bar_features"):
            conn.execute(f"DELETE FROM {table} WHERE symbol = ANY(%s)", (list(SOURCES),))
        conn.commit()


@pytest.fixture(scope="module")
def stored(
    stack: object, stack_settings: Settings, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, dict[str, pd.DataFrame], Path]]:
    """The same real bars in market.bars and in a folder of OHLCV CSVs; returns (settings, bars, folder)."""
    from hft.market.ohlcv import read_ohlcv_csv
    from hft.storage import db
    from hft.storage.bars import upsert_klines

    db.migrate(stack_settings)
    _clear(stack_settings)
    folder = tmp_path_factory.mktemp("store_frame_csv")
    bars = {}
    with db.connect(stack_settings) as conn:
        for sym, rel in SOURCES.items():
            df = read_ohlcv_csv(data_dir / rel).loc[BARS_FROM:BARS_TO]
            upsert_klines(conn, df, sym, "15m")
            out = df[["open", "high", "low", "close", "volume"]].copy()
            out.insert(0, "open_time", pd.DatetimeIndex(df.index).as_unit("ms").asi8)
            out.to_csv(folder / f"{sym}_15m_test.csv", index=False)
            bars[sym] = df
    yield stack_settings, bars, folder
    _clear(stack_settings)


def _frames(settings: Settings, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, object]:
    from hft.ml.dataset import build_dataset, default_feature_set, load_bars
    from hft.ml.store_frame import decision_window, store_inputs, training_frame

    syms = sorted(SOURCES)
    lo, hi = decision_window(START, END)
    kw = {
        "horizon": settings.label_horizon,
        "dead_zone_bps": settings.label_dead_zone_bps,
        "start": lo,
        "end": hi,
    }
    inputs = store_inputs(settings, syms, "15m", START, END)
    from_store = training_frame(build_dataset(inputs.bars, inputs.features, "15m", **kw))
    csv_bars = load_bars(folder, syms, "15m")
    from_csv = training_frame(build_dataset(csv_bars, default_feature_set(), "15m", **kw))
    return from_store, from_csv, inputs


def _assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    pd.testing.assert_frame_equal(a[["symbol", "decision_time"]], b[["symbol", "decision_time"]])
    exact = ["label", "fwd_ret", "prev_dir", "run_start"]
    pd.testing.assert_frame_equal(a[exact], b[exact], check_exact=True)
    feats = [c for c in a.columns if c not in {"symbol", "decision_time", *exact}]
    # X is float32 in a Dataset: equal to float32 rounding
    np.testing.assert_allclose(a[feats].to_numpy(), b[feats].to_numpy(), rtol=1e-6, atol=1e-7)


def test_store_and_csv_give_the_same_training_frame(
    stored: tuple[Settings, dict[str, pd.DataFrame], Path],
) -> None:
    from hft.features import FEATURE_SPEC_OHLCV, compute_features
    from hft.ml.dataset import STORE_DATA, load_bars
    from hft.ml.store_frame import decision_window

    settings, bars, folder = stored
    from_store, from_csv, inputs = _frames(settings, folder)
    # nothing was in the offline table: every bar of the window was backfilled first
    lo, hi = decision_window(START, END)
    assert inputs.backfilled == {s: int(((b.index >= lo) & (b.index < hi)).sum()) for s, b in bars.items()}
    _assert_same(from_store, from_csv)
    assert len(from_store) > 6000
    assert set(from_store["symbol"]) == set(SOURCES)
    assert from_store["decision_time"].min() == pd.Timestamp(START, tz="UTC") + STEP
    assert from_store["decision_time"].max() == pd.Timestamp(END, tz="UTC") + pd.Timedelta(days=1)
    assert from_store["label"].notna().all()
    # the store's float64 features against the batch over the CSV's bars, before X's float32
    for sym, got in inputs.store_features.items():
        want = compute_features(bars[sym], FEATURE_SPEC_OHLCV)
        rows = got.index[(got.index >= lo) & (got.index < hi)]
        assert got.loc[rows].notna().all().all()
        np.testing.assert_allclose(
            got.loc[rows, list(FEATURE_SPEC_OHLCV.names)].to_numpy(),
            want.loc[rows].to_numpy(),
            rtol=0,
            atol=1e-9,
        )
    # a second run finds nothing missing and gives the same frame
    again, _, inputs2 = _frames(settings, folder)
    assert inputs2.backfilled == dict.fromkeys(sorted(SOURCES), 0)
    pd.testing.assert_frame_equal(again, from_store)
    # what a store-trained model's `data` tag re-reads (the promotion gate): the stored bars
    reread = load_bars(STORE_DATA, sorted(SOURCES), "15m")
    for sym in SOURCES:
        pd.testing.assert_frame_equal(
            reread[sym][["open", "high", "low", "close", "volume"]],
            bars[sym][["open", "high", "low", "close", "volume"]],
            check_freq=False,
        )


def test_bars_without_feature_rows_are_backfilled_before_the_join(
    stored: tuple[Settings, dict[str, pd.DataFrame], Path],
) -> None:
    from hft.features.store import historical_features
    from hft.storage import db

    settings, _, folder = stored
    reference, _, _ = _frames(settings, folder)
    hole = pd.date_range("2024-06-20 10:00", periods=5, freq="15min", tz="UTC")  # bar closes
    with db.connect(settings) as conn:
        conn.execute(
            "DELETE FROM features.bar_features WHERE symbol = %s AND interval = %s AND event_timestamp = ANY(%s)",
            ("SFBTC", "15m", [t.to_pydatetime() for t in hole]),
        )
        conn.commit()
    # Feast alone hands the hole's first decision the bar before's row (one bar old: within the
    # view's ttl of one interval) and the others nothing
    alone = historical_features(
        settings, "bar_features_ohlcv_v1", pd.DataFrame({"symbol": "SFBTC", "event_timestamp": hole})
    )
    before = reference[(reference["symbol"] == "SFBTC") & (reference["decision_time"] == hole[0] - STEP)]
    assert alone["ret_1"].iloc[0] == pytest.approx(before["ret_1"].iloc[0], rel=1e-6)
    assert alone["ret_1"].iloc[1:].isna().all()
    from_store, from_csv, inputs = _frames(settings, folder)
    assert inputs.backfilled["SFBTC"] == len(hole)
    assert inputs.backfilled["SFETH"] == 0
    _assert_same(from_store, reference)
    _assert_same(from_store, from_csv)


def test_a_row_uses_only_bars_closed_at_or_before_its_decision_time(
    stored: tuple[Settings, dict[str, pd.DataFrame], Path],
) -> None:
    from hft.features import FEATURE_SPEC_OHLCV, compute_features

    settings, bars, folder = stored
    from_store, _, _ = _frames(settings, folder)
    names = list(FEATURE_SPEC_OHLCV.names)
    for sym in SOURCES:
        rows = from_store[from_store["symbol"] == sym].iloc[[0, 1, 500, 1700, -1]]
        for _, row in rows.iterrows():
            t = row["decision_time"]
            known = bars[sym][bars[sym].index + STEP <= t]  # bars closed at or before t
            want = compute_features(known, FEATURE_SPEC_OHLCV).iloc[-1][names].to_numpy(dtype="float64")
            np.testing.assert_allclose(row[names].to_numpy(dtype="float64"), want, rtol=1e-6, atol=1e-7)


def test_hft_train_without_data_trains_from_the_store(
    stored: tuple[Settings, dict[str, pd.DataFrame], Path],
) -> None:
    """The CLI as a user runs it (a subprocess): no --data, so market.bars + Feast; tiny budget."""
    import os
    import re
    import subprocess
    import sys
    import uuid

    from mlflow import MlflowClient

    from hft.config import REPO_ROOT

    settings, _, _ = stored
    name = f"test-store-{uuid.uuid4().hex[:8]}"
    args = ["--symbol", "SFBTC", "--symbol", "SFETH", "--interval", "15m", "--start", START, "--end", END]
    out = subprocess.run(
        [sys.executable, "-m", "hft.cli", "train", *args, "--budget-minutes", "0.1", "--model-name", name],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO_ROOT,
        env=os.environ.copy(),
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    m = re.fullmatch(rf"models:/{name}/(\d+)", last)
    assert m, f"last stdout line is not the model URI: {last!r}"
    client = MlflowClient(tracking_uri=settings.mlflow_uri)
    mv = client.get_model_version_by_alias(name, "challenger")
    assert str(mv.version) == m.group(1)
    assert mv.tags["feature_version"] == "bar_features_ohlcv_v1"
    assert mv.tags["data"] == "store"  # what the promotion gate re-reads the bars from
    params = client.get_run(mv.run_id).data.params
    assert params["data"] == "store"
    assert "store_backfilled_rows" in params
    assert (params["start"], params["end"]) == (START, END)
    assert params["symbols"] == '["SFBTC", "SFETH"]'
