"""The one feature implementation, used by the feature calculator, the backfill and training.

* :mod:`hft.features.bars`: time bars from trades (incremental :class:`BarBuilder`, batch
  :func:`bars_from_trades`).
* :mod:`hft.features.spec`: the versioned, ordered feature vector with its warm-up
  (:data:`FEATURE_SPEC_OHLCV`, :data:`FEATURE_SPEC_FULL`).
* :mod:`hft.features.compute`: :func:`compute_features` (batch) and :class:`FeatureState`
  (incremental), held equal to 1e-9 by the parity test.

Feast and the stores live in :mod:`hft.features.store`, :mod:`hft.features.online`,
:mod:`hft.features.offline` and :mod:`hft.features.backfill` (imported on demand: Feast is slow
to import).
"""

from hft.features.bars import Bar, BarBuilder, bars_from_trades, interval_ns, normalize_bars
from hft.features.compute import FeatureState, compute_features, fold_features
from hft.features.spec import (
    FEATURE_SPEC,
    FEATURE_SPEC_FULL,
    FEATURE_SPEC_OHLCV,
    OHLCV_FEATURES,
    TRADE_FEATURES,
    FeatureSpec,
    get_spec,
)

__all__ = [
    "FEATURE_SPEC",
    "FEATURE_SPEC_FULL",
    "FEATURE_SPEC_OHLCV",
    "OHLCV_FEATURES",
    "TRADE_FEATURES",
    "Bar",
    "BarBuilder",
    "FeatureSpec",
    "FeatureState",
    "bars_from_trades",
    "compute_features",
    "fold_features",
    "get_spec",
    "interval_ns",
    "normalize_bars",
]
