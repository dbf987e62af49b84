"""Closed bars of ``market.bars`` by symbol: what training from the store and the promotion gate read
(``data="store"``). Apart from :mod:`hft.ml.store_frame` so that :mod:`hft.ml.dataset` can read them
without importing the training frame's module (which imports the dataset's)."""

from __future__ import annotations

import pandas as pd

from hft.config import ConfigurationError, Settings
from hft.storage import db


def read_store_bars(
    settings: Settings,
    symbols: list[str],
    interval: str,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> dict[str, pd.DataFrame]:
    """Closed bars of each symbol from ``market.bars`` with open time in [start, end)."""
    from hft.features.backfill import load_closed_bars  # Feast and pandas behind it

    out = {}
    with db.connect(settings) as conn:
        for sym in symbols:
            bars = load_closed_bars(
                conn,
                sym,
                interval,
                None if start is None else start.to_pydatetime(),
                None if end is None else end.to_pydatetime(),
            )
            if bars.empty:
                raise ConfigurationError(
                    f"market.bars holds no closed {interval} bars of {sym} in [{start}, {end}): "
                    "load history (hft data load) or pass --data <OHLCV CSV>"
                )
            out[sym] = bars
    return out
