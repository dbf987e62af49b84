"""One implementation (issue 22): the batch is the stream's state folded; formulas checked on real data.

* batch == stream: :func:`compute_features` folds :class:`FeatureState`; feeding the same bars one
  by one through ``FeatureState.update`` (what the calculator does) gives the same rows, bit for bit.
* golden: an independent vectorised computation of the v1 formulas (``reference.py``, the former
  numpy batch path) agrees with the fold to 1e-9 on the shared real bars (BTCUSDT and ETHUSDT,
  15m 2023-01..2025-08 and 1m 2025-05..08, plus the 15m klines with trade columns).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hft.features import FEATURE_SPEC_FULL, FEATURE_SPEC_OHLCV, FeatureState, compute_features, fold_features
from hft.features.spec import FEATURE_SPEC_OHLCV_V2, OHLCV_V2_FEATURES, FeatureSpec
from tests.unit.features.conftest import FULL_KLINES, KLINES, load_klines
from tests.unit.features.reference import reference_features, reference_v2_features

CASES = [(f"{sym}-{iv}", rel, FEATURE_SPEC_OHLCV) for (sym, iv), rel in KLINES.items()]
CASES.append(("BTCUSDT-15m-full", FULL_KLINES, FEATURE_SPEC_FULL))


@pytest.mark.parametrize(("name", "rel", "spec"), CASES, ids=[c[0] for c in CASES])
def test_fold_matches_the_vectorised_formulas_on_real_bars(
    data_dir: Path, name: str, rel: str, spec: FeatureSpec
) -> None:
    bars = load_klines(data_dir, rel)
    batch = compute_features(bars, spec)
    golden = reference_features(bars, spec)
    assert list(batch.columns) == list(spec.names)
    assert (batch.dtypes == "float64").all()
    # the same NaN pattern (each feature's own warm-up), the same numbers after it
    assert (batch.isna() == golden.isna()).all().all(), name
    w = spec.warmup_bars
    assert len(bars) > 10 * w, name
    b, g = batch.iloc[w:].to_numpy(), golden.iloc[w:].to_numpy()
    assert not np.isnan(b).any()
    diff = np.abs(b - g)
    worst = np.unravel_index(diff.argmax(), diff.shape)
    assert diff.max() <= 1e-9, (
        f"{name}: {spec.names[worst[1]]} differs by {diff.max()} at {batch.index[w + worst[0]]}"
    )
    stream = fold_features(bars, spec)
    assert stream.iloc[:w].isna().all().all()  # before warm-up the stream says nothing
    pd.testing.assert_frame_equal(stream.iloc[w:], batch.iloc[w:])


@pytest.mark.parametrize("spec", [FEATURE_SPEC_OHLCV, FEATURE_SPEC_FULL], ids=lambda s: s.version)
def test_batch_is_the_stream_folded(data_dir: Path, spec: FeatureSpec) -> None:
    bars = load_klines(data_dir, FULL_KLINES).iloc[:3000]
    batch = compute_features(bars, spec)
    state = FeatureState(spec)
    rows = [
        state.update({"open_time_ns": t.value, **r})
        for t, r in zip(bars.index, _bar_records(bars), strict=True)
    ]
    w = spec.warmup_bars
    assert all(r is None for r in rows[:w])
    streamed = pd.DataFrame([r for r in rows[w:] if r is not None], index=bars.index[w:])
    assert list(streamed.columns) == list(spec.names)
    pd.testing.assert_frame_equal(streamed, batch.iloc[w:], check_exact=True, check_freq=False)


def _bar_records(bars: pd.DataFrame) -> list[dict[str, float]]:
    from hft.features import normalize_bars

    return normalize_bars(bars).to_dict("records")


def test_stream_equals_batch_when_klines_without_trade_columns_precede_trade_bars(data_dir: Path) -> None:
    # the calculator warms up on stored klines (no trade columns), then streams bars from trades
    bars = load_klines(data_dir, FULL_KLINES).iloc[:3000].copy()
    bars.loc[bars.index[:1000], ["count", "taker_buy_volume", "quote_volume"]] = np.nan
    batch = compute_features(bars, FEATURE_SPEC_FULL)
    golden = reference_features(bars, FEATURE_SPEC_FULL)
    w = FEATURE_SPEC_FULL.warmup_bars
    np.testing.assert_allclose(
        batch.iloc[w:].to_numpy(), golden.iloc[w:].to_numpy(), rtol=0, atol=1e-9, equal_nan=True
    )
    # trade features are absent while the bars lack them, present afterwards
    assert batch["buy_imbalance"].iloc[w:1000].isna().all()
    assert batch["trade_count_z_20"].iloc[w:1019].isna().all()
    assert batch["trade_count_z_20"].iloc[1019:].notna().all()


V2_CASES = [(f"{sym}-{iv}", rel) for (sym, iv), rel in KLINES.items()]


@pytest.mark.parametrize(("name", "rel"), V2_CASES, ids=[c[0] for c in V2_CASES])
def test_v2_features_match_independent_pandas_formulas_on_real_bars(
    data_dir: Path, name: str, rel: str
) -> None:
    spec = FEATURE_SPEC_OHLCV_V2
    bars = load_klines(data_dir, rel)
    batch = compute_features(bars, spec)
    assert list(batch.columns) == list(spec.names)
    # v2 extends v1: the shared columns are v1's, bit for bit
    v1 = compute_features(bars, FEATURE_SPEC_OHLCV)
    pd.testing.assert_frame_equal(batch[list(FEATURE_SPEC_OHLCV.names)], v1)
    golden = reference_v2_features(bars, batch["vol_16"])
    mine = batch[list(OHLCV_V2_FEATURES)]
    assert (mine.isna() == golden.isna()).all().all(), name
    w = spec.warmup_bars
    assert len(bars) > 10 * w
    m, g = mine.iloc[w:].to_numpy(), golden.iloc[w:].to_numpy()
    assert not np.isnan(m).any()
    diff = np.abs(m - g) / np.maximum(1.0, np.abs(g))
    worst = np.unravel_index(diff.argmax(), diff.shape)
    assert diff.max() <= 1e-8, (
        f"{name}: {OHLCV_V2_FEATURES[worst[1]]} differs by {diff.max()} at {batch.index[w + worst[0]]}"
    )
