"""The feature spec: the ordered feature vector, its version and each feature's warm-up.

Every feature is scale-free (a log return, a ratio to the price, an oscillator or a z-score),
so one model serves BTC and ETH. Two sets exist:

* OHLCV features, computable from any bar series (klines included);
* trade-derived features (taker-buy imbalance, VWAP distance, trade-count z-score), which need
  bars built from trades or full Binance klines. For OHLCV-only input they are **absent**
  from the vector (never zero-filled): a model trained on OHLCV history uses
  :data:`FEATURE_SPEC_OHLCV`, one trained on full bars :data:`FEATURE_SPEC_FULL`.

The spec's ``version`` is also the name of the Feast ``FeatureService`` that serves it.

Warm-up: a feature is defined from bar index ``warmup[name]`` on (0-based, counted from the
first bar the state saw). Recursive smoothers (EMA, Wilder's RMA) are seeded with their
first input; their warm-up is the number of bars after which the seed's weight has fallen
below :data:`SEED_WEIGHT`, so that after warm-up a feature no longer depends on where the
series started: the stream (warmed up from the last stored bars) and the batch (over all
history) agree to far better than 1e-9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

SEED_WEIGHT = 1e-13

RETURN_LAGS = (1, 2, 4, 8, 16)
VOL_WINDOWS = (16, 64)
RSI_PERIOD = 14
ATR_PERIOD = 14
EMA_FAST, EMA_SLOW, MACD_SIGNAL = 12, 26, 9
SMA_WINDOWS = (20, 50)
BB_WINDOW, BB_K = 20, 2.0
VOLUME_Z_WINDOW = 20
TRADE_COUNT_Z_WINDOW = 20

# bar_features_ohlcv_v2 (issue 23, item 2): what the 15m OHLCV bars support, on top of v1
RETURN_LAGS_V2 = (32, 96, 288)  # 8 h, 1 day, 3 days of 15m bars
LONG_VOL_WINDOW = 256
RANGE_VOL_WINDOWS = (16, 64)  # Parkinson and Garman-Klass
RANGE_WINDOW = 96  # range z-score, position in the range, volume z-score and ratio
VOLUME_RATIO_SHORT = 4  # mean volume of the last 4 bars over that of the last RANGE_WINDOW
ADX_PERIOD = 14
TREND_WINDOW = 64  # ret_64 / (vol_64 sqrt 64)
EFFICIENCY_WINDOW = 32  # Kaufman's efficiency ratio
VOL_PCT_WINDOW = 672  # percentile of vol_16 among the last 672 bars (7 days of 15m bars)


def ema_alpha(period: int) -> float:
    """Smoothing factor of an EMA with the conventional span ``period``."""
    return 2.0 / (period + 1.0)


def wilder_alpha(period: int) -> float:
    """Smoothing factor of Wilder's moving average (RMA) over ``period``."""
    return 1.0 / period


def seed_decay_bars(alpha: float) -> int:
    """Bars until a recursive smoother's seed weight ``(1 - alpha)^k`` drops below SEED_WEIGHT."""
    return math.ceil(math.log(SEED_WEIGHT) / math.log(1.0 - alpha))


def _ohlcv_warmup() -> dict[str, int]:
    w: dict[str, int] = {}
    for k in RETURN_LAGS:
        w[f"ret_{k}"] = k
    for n in VOL_WINDOWS:
        w[f"vol_{n}"] = n  # n one-bar returns, the first of which exists at bar 1
    w["hl_range"] = 0
    w[f"rsi_{RSI_PERIOD}"] = 1 + seed_decay_bars(wilder_alpha(RSI_PERIOD))
    w[f"ema_dist_{EMA_FAST}"] = seed_decay_bars(ema_alpha(EMA_FAST))
    w[f"ema_dist_{EMA_SLOW}"] = seed_decay_bars(ema_alpha(EMA_SLOW))
    for n in SMA_WINDOWS:
        w[f"sma_dist_{n}"] = n - 1
    macd = max(seed_decay_bars(ema_alpha(EMA_FAST)), seed_decay_bars(ema_alpha(EMA_SLOW)))
    w["macd"] = macd
    w["macd_signal"] = macd + seed_decay_bars(ema_alpha(MACD_SIGNAL))
    w["macd_hist"] = w["macd_signal"]
    w[f"bb_pos_{BB_WINDOW}"] = BB_WINDOW - 1
    w[f"bb_width_{BB_WINDOW}"] = BB_WINDOW - 1
    w[f"atr_{ATR_PERIOD}"] = 1 + seed_decay_bars(wilder_alpha(ATR_PERIOD))
    w[f"volume_z_{VOLUME_Z_WINDOW}"] = VOLUME_Z_WINDOW - 1
    w["hour_sin"] = 0
    w["hour_cos"] = 0
    return w


def _trade_warmup() -> dict[str, int]:
    return {
        "buy_imbalance": 0,
        "vwap_dist": 0,
        f"trade_count_z_{TRADE_COUNT_Z_WINDOW}": TRADE_COUNT_Z_WINDOW - 1,
    }


def _ohlcv_v2_warmup() -> dict[str, int]:
    w: dict[str, int] = {}
    for k in RETURN_LAGS_V2:
        w[f"ret_{k}"] = k
    w[f"vol_{LONG_VOL_WINDOW}"] = LONG_VOL_WINDOW
    w[f"vol_ratio_{VOL_WINDOWS[0]}_{LONG_VOL_WINDOW}"] = LONG_VOL_WINDOW
    for n in RANGE_VOL_WINDOWS:
        w[f"pk_vol_{n}"] = n - 1
    for n in RANGE_VOL_WINDOWS:
        w[f"gk_vol_{n}"] = n - 1
    w["body"] = 0
    w["upper_wick"] = 0
    w["lower_wick"] = 0
    w["close_pos"] = 0
    w["gap"] = 1
    w[f"range_z_{RANGE_WINDOW}"] = RANGE_WINDOW - 1
    w[f"range_pos_{RANGE_WINDOW}"] = RANGE_WINDOW - 1
    w[f"volume_z_{RANGE_WINDOW}"] = RANGE_WINDOW - 1
    w[f"volume_ratio_{VOLUME_RATIO_SHORT}_{RANGE_WINDOW}"] = RANGE_WINDOW - 1
    w["dow_sin"] = 0
    w["dow_cos"] = 0
    dm = 1 + seed_decay_bars(wilder_alpha(ADX_PERIOD))
    w[f"dmi_{ADX_PERIOD}"] = dm
    w[f"adx_{ADX_PERIOD}"] = dm + seed_decay_bars(wilder_alpha(ADX_PERIOD))
    w[f"trend_ratio_{TREND_WINDOW}"] = TREND_WINDOW
    w[f"eff_ratio_{EFFICIENCY_WINDOW}"] = EFFICIENCY_WINDOW
    w[f"vol_pct_{VOL_PCT_WINDOW}"] = VOL_WINDOWS[0] + VOL_PCT_WINDOW - 1
    return w


OHLCV_FEATURES: tuple[str, ...] = tuple(_ohlcv_warmup())
TRADE_FEATURES: tuple[str, ...] = tuple(_trade_warmup())
# the v1 vector (bar_features_v1): also the offline table's and the Feast view's columns
ALL_FEATURES: tuple[str, ...] = OHLCV_FEATURES + TRADE_FEATURES
OHLCV_V2_FEATURES: tuple[str, ...] = tuple(_ohlcv_v2_warmup())
WARMUP: MappingProxyType[str, int] = MappingProxyType(
    {**_ohlcv_warmup(), **_trade_warmup(), **_ohlcv_v2_warmup()}
)


@dataclass(frozen=True)
class FeatureSpec:
    """An ordered, versioned feature vector (frozen and hashable: log its hash as an identity).

    ``version`` doubles as the Feast FeatureService name; ``uses_trades`` says whether the
    trade-derived features are part of the vector.
    """

    version: str
    names: tuple[str, ...]
    uses_trades: bool

    def __post_init__(self) -> None:
        unknown = [n for n in self.names if n not in WARMUP]
        if unknown:
            raise ValueError(f"unknown features {unknown}")
        if not self.uses_trades and set(self.names) & set(TRADE_FEATURES):
            raise ValueError("an OHLCV-only spec cannot hold trade-derived features")

    @property
    def warmup(self) -> dict[str, int]:
        """Bars before each feature is defined (0-based index of its first valid bar)."""
        return {n: WARMUP[n] for n in self.names}

    @property
    def warmup_bars(self) -> int:
        """Bars the longest feature needs: the first bar index where the whole vector is defined."""
        return max(WARMUP[n] for n in self.names)

    @property
    def n_features(self) -> int:
        """Length of the feature vector."""
        return len(self.names)


FEATURE_SPEC_OHLCV = FeatureSpec("bar_features_ohlcv_v1", OHLCV_FEATURES, uses_trades=False)
FEATURE_SPEC_FULL = FeatureSpec("bar_features_v1", ALL_FEATURES, uses_trades=True)
FEATURE_SPEC = FEATURE_SPEC_FULL
# issue 23: v1's OHLCV features plus multi-scale returns and range volatility, range and gap,
# volume, day of week and regime features. Not in the offline table nor the Feast view yet:
# CSV training and evaluation compute it from bars (docs/features.md)
FEATURE_SPEC_OHLCV_V2 = FeatureSpec(
    "bar_features_ohlcv_v2", OHLCV_FEATURES + OHLCV_V2_FEATURES, uses_trades=False
)
SPECS: MappingProxyType[str, FeatureSpec] = MappingProxyType(
    {s.version: s for s in (FEATURE_SPEC_OHLCV, FEATURE_SPEC_FULL, FEATURE_SPEC_OHLCV_V2)}
)
# specs whose columns the offline table and the Feast view hold (a store-fed frame needs one)
STORE_SPECS: frozenset[str] = frozenset({FEATURE_SPEC_OHLCV.version, FEATURE_SPEC_FULL.version})


def get_spec(version: str) -> FeatureSpec:
    """Return the spec with this version (the FeatureService name a model stored)."""
    try:
        return SPECS[version]
    except KeyError:
        raise ValueError(f"unknown feature spec {version!r}; known: {', '.join(SPECS)}") from None
