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
def test_stream_state_equals_batch_on_real_bars(data_dir: Path, name: str, rel: str, spec: FeatureSpec) -> None:
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
    assert diff.max() <= 1e-9, f"{name}: {spec.names[worst[1]]} differs by {diff.max()} at {batch.index[w + worst[0]]}"
    # before warm-up the stream says nothing
    assert stream.iloc[:w].isna().all().all()
