"""The parity test of issue 5: the stream's incremental state equals the batch computation.

Both run over the shared real Binance bars (BTCUSDT and ETHUSDT, 15m and 1m, plus the full
15m klines with trade columns); every feature and every bar after warm-up must agree to 1e-9.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hft.features import FEATURE_SPEC_FULL, FEATURE_SPEC_OHLCV, compute_features, fold_features
from hft.features.spec import FeatureSpec
from tests.unit.features.conftest import FULL_KLINES, KLINES, load_klines

CASES = [(f"{sym}-{iv}", rel, FEATURE_SPEC_OHLCV) for (sym, iv), rel in KLINES.items()]
CASES.append(("BTCUSDT-15m-full", FULL_KLINES, FEATURE_SPEC_FULL))


@pytest.mark.parametrize(("name", "rel", "spec"), CASES, ids=[c[0] for c in CASES])
def test_stream_state_equals_batch_on_real_bars(
    data_dir: Path, name: str, rel: str, spec: FeatureSpec
) -> None:
    bars = load_klines(data_dir, rel)
    batch = compute_features(bars, spec)
    stream = fold_features(bars, spec)
    w = spec.warmup_bars
    assert len(bars) > 10 * w, name
    b, s = batch.iloc[w:].to_numpy(), stream.iloc[w:].to_numpy()
    assert not np.isnan(b).any()
    assert not np.isnan(s).any()
    diff = np.abs(b - s)
    worst = np.unravel_index(diff.argmax(), diff.shape)
    assert diff.max() <= 1e-9, (
        f"{name}: {spec.names[worst[1]]} differs by {diff.max()} at {batch.index[w + worst[0]]}"
    )
    # before warm-up the stream says nothing
    assert stream.iloc[:w].isna().all().all()


def test_stream_equals_batch_when_klines_without_trade_columns_precede_trade_bars(data_dir: Path) -> None:
    # the calculator warms up on stored klines (no trade columns), then streams bars from trades
    bars = load_klines(data_dir, FULL_KLINES).iloc[:3000].copy()
    bars.loc[bars.index[:1000], ["count", "taker_buy_volume", "quote_volume"]] = np.nan
    batch = compute_features(bars, FEATURE_SPEC_FULL)
    stream = fold_features(bars, FEATURE_SPEC_FULL)
    w = FEATURE_SPEC_FULL.warmup_bars
    np.testing.assert_allclose(
        stream.iloc[w:].to_numpy(), batch.iloc[w:].to_numpy(), rtol=0, atol=1e-9, equal_nan=True
    )
    # trade features are absent while the bars lack them, present afterwards
    assert batch["buy_imbalance"].iloc[w:1000].isna().all()
    assert batch["trade_count_z_20"].iloc[w:1019].isna().all()
    assert batch["trade_count_z_20"].iloc[1019:].notna().all()
