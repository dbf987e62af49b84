"""The one definition of a time bar built from trades, incremental and in batch.

A bar covers ``[open_time, open_time + interval)`` by **exchange trade time**; it is stamped
with its open time but only known at its close (``close_time = open_time + interval``, the
instant every trade of the bucket can have been seen). Columns:

``open, high, low, close, volume`` (base asset), ``trade_count``, ``buy_volume`` (taker-buy
base volume: trades with ``buyer_is_maker = False``, i.e. the aggressor bought),
``quote_volume`` (sum of price x quantity) and ``vwap = quote_volume / volume``.

A bucket without trades between two traded buckets becomes an empty bar, as Binance's klines
do: ``open = high = low = close = previous close``, zero volume and count, ``vwap = close``.

:class:`BarBuilder` closes a bar when a trade of a later bucket arrives or when the clock
passes the bar's close plus a grace period; :func:`bars_from_trades` is its batch twin (a test
holds them equal). :func:`normalize_bars` maps kline columns (``read_ohlcv_csv`` output) to
bar columns so features read one layout.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

BAR_COLUMNS = ("open", "high", "low", "close", "volume", "trade_count", "buy_volume", "quote_volume", "vwap")
TRADE_COLUMNS = ("trade_count", "buy_volume", "quote_volume", "vwap")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def interval_ns(interval: str) -> int:
    """Return the length of a bar interval such as ``1m``, ``15m``, ``1h`` in nanoseconds."""
    try:
        n, unit = int(interval[:-1]), interval[-1]
        seconds = n * _UNITS[unit]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"bad bar interval {interval!r}: use e.g. 1m, 15m, 1h") from exc
    if seconds <= 0:
        raise ValueError(f"bad bar interval {interval!r}")
    return seconds * 1_000_000_000


@dataclass(slots=True)
class Bar:
    """One time bar (mutable while it is the open, partial bar of a builder)."""

    symbol: str
    interval: str
    open_time_ns: int
    close_time_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    trade_count: int = 0
    buy_volume: float = 0.0
    quote_volume: float = 0.0
    last_trade_time_ns: int = 0

    @property
    def vwap(self) -> float:
        """Volume-weighted average price (the close when the bar has no volume)."""
        return self.quote_volume / self.volume if self.volume > 0 else self.close

    def as_dict(self) -> dict[str, Any]:
        """Return the bar's fields plus ``vwap`` as a plain dict."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["vwap"] = self.vwap
        return out


class BarBuilder:
    """Incremental bars for one symbol and interval from trades in trade-id order.

    ``add`` returns the bars a trade closes (the previous bar and any empty bars between);
    ``on_clock`` closes the open bar once ``now_ns >= close_time + grace_ns``. A trade older
    than the open bar (it can only happen after a clock close) is not folded in: it is counted
    in ``late_trades`` and ``add`` reports it by returning ``None``.
    """

    def __init__(self, symbol: str, interval: str, grace_ns: int = 2_000_000_000) -> None:
        self.symbol = symbol
        self.interval = interval
        self.step = interval_ns(interval)
        self.grace_ns = grace_ns
        self.partial: Bar | None = None
        self.last_close: float | None = None
        self.last_closed_open_ns: int | None = None
        self.late_trades = 0

    def seed(self, last_bar_open_ns: int, last_close: float) -> None:
        """Continue after a known closed bar (warm-up from stored bars): gaps after it are filled."""
        self.last_closed_open_ns = last_bar_open_ns
        self.last_close = last_close

    def _new(self, open_ns: int, price: float) -> Bar:
        return Bar(self.symbol, self.interval, open_ns, open_ns + self.step, price, price, price, price)

    def _close_through(self, open_ns: int) -> list[Bar]:
        """Close the partial bar and emit empty bars for every bucket before ``open_ns``."""
        out: list[Bar] = []
        if self.partial is not None:
            out.append(self.partial)
            self.last_close = self.partial.close
            self.last_closed_open_ns = self.partial.open_time_ns
            self.partial = None
        if self.last_closed_open_ns is not None and self.last_close is not None:
            t = self.last_closed_open_ns + self.step
            while t < open_ns:
                out.append(self._new(t, self.last_close))
                self.last_closed_open_ns = t
                t += self.step
        return out

    def add(
        self, trade_time_ns: int, price: float, quantity: float, buyer_is_maker: bool
    ) -> list[Bar] | None:
        """Fold one trade in; return the bars it closed (often empty), or None for a late trade."""
        open_ns = trade_time_ns - trade_time_ns % self.step
        bar = self.partial
        if bar is None or open_ns != bar.open_time_ns:
            if (bar is not None and open_ns < bar.open_time_ns) or (
                self.last_closed_open_ns is not None and open_ns <= self.last_closed_open_ns
            ):
                self.late_trades += 1
                return None
            closed = self._close_through(open_ns)
            bar = self.partial = self._new(open_ns, price)
        else:
            closed = []
            if price > bar.high:
                bar.high = price
            elif price < bar.low:
                bar.low = price
        bar.close = price
        bar.volume += quantity
        bar.quote_volume += price * quantity
        bar.trade_count += 1
        if not buyer_is_maker:
            bar.buy_volume += quantity
        bar.last_trade_time_ns = trade_time_ns
        return closed

    def on_clock(self, now_ns: int) -> list[Bar]:
        """Close the open bar (and fill empty buckets) once the clock passed its close plus grace."""
        out: list[Bar] = []
        if self.partial is not None:
            if now_ns < self.partial.close_time_ns + self.grace_ns:
                return out
            out = self._close_through(self.partial.close_time_ns)
        if self.last_closed_open_ns is None:
            return out
        # no trade at all since the last close: emit empty bars whose close passed
        due = now_ns - self.grace_ns
        upto = due - due % self.step  # open time of the bucket still running at `due`
        if upto > self.last_closed_open_ns + self.step:
            out += self._close_through(upto)
        return out


def bars_to_frame(bars: list[Bar]) -> pd.DataFrame:
    """Turn closed bars into the batch layout: indexed by UTC open time, :data:`BAR_COLUMNS`."""
    index = pd.DatetimeIndex(
        pd.to_datetime([b.open_time_ns for b in bars], unit="ns", utc=True), name="open_time"
    )
    data = {c: [getattr(b, c) for b in bars] for c in BAR_COLUMNS}
    df = pd.DataFrame(data, index=index)
    return df.astype({c: "float64" for c in BAR_COLUMNS if c != "trade_count"}).astype(
        {"trade_count": "int64"}
    )


def bars_from_trades(trades: pd.DataFrame, interval: str) -> pd.DataFrame:
    """Build bars in batch from trades (the twin of :class:`BarBuilder`).

    ``trades`` has ``trade_time_ns`` (int), ``price``, ``quantity`` and ``buyer_is_maker``,
    in trade-id order. Only complete information is used: every bucket from the first trade's
    to the last trade's is returned, the last one included (the caller drops it when the
    stream has not passed its close yet). Empty buckets in between become empty bars.
    """
    step = interval_ns(interval)
    t = trades["trade_time_ns"].to_numpy(dtype="int64")
    price = trades["price"].to_numpy(dtype="float64")
    qty = trades["quantity"].to_numpy(dtype="float64")
    buy = ~trades["buyer_is_maker"].to_numpy(dtype=bool)
    bucket = t - t % step
    frame = pd.DataFrame(
        {"bucket": bucket, "price": price, "qty": qty, "quote": price * qty, "buy": np.where(buy, qty, 0.0)}
    )
    g = frame.groupby("bucket", sort=True)
    agg = pd.DataFrame(
        {
            "open": g["price"].first(),
            "high": g["price"].max(),
            "low": g["price"].min(),
            "close": g["price"].last(),
            "volume": g["qty"].sum(),
            "trade_count": g["price"].size(),
            "buy_volume": g["buy"].sum(),
            "quote_volume": g["quote"].sum(),
        }
    )
    full = np.arange(int(agg.index[0]), int(agg.index[-1]) + step, step, dtype="int64")
    agg = agg.reindex(full)
    empty = agg["trade_count"].isna()
    agg["close"] = agg["close"].ffill()
    for c in ("open", "high", "low"):
        agg[c] = agg[c].where(~empty, agg["close"])
    for c in ("volume", "trade_count", "buy_volume", "quote_volume"):
        agg[c] = agg[c].fillna(0)
    agg["trade_count"] = agg["trade_count"].astype("int64")
    agg["vwap"] = np.where(
        agg["volume"] > 0, agg["quote_volume"] / agg["volume"].where(agg["volume"] > 0, 1.0), agg["close"]
    )
    agg.index = pd.DatetimeIndex(pd.to_datetime(agg.index.to_numpy(), unit="ns", utc=True), name="open_time")
    return agg[list(BAR_COLUMNS)]


def normalize_bars(df: pd.DataFrame) -> pd.DataFrame:
    """Return bars in the feature layout from bars or klines (``read_ohlcv_csv`` output).

    Kline columns map to bar columns: ``count`` -> ``trade_count``, ``taker_buy_volume`` ->
    ``buy_volume``; ``vwap`` comes from ``quote_volume / volume`` when absent. Trade columns
    that the input lacks stay absent (never zero-filled).
    """
    out = df.rename(columns={"count": "trade_count", "taker_buy_volume": "buy_volume"})
    if "vwap" not in out.columns and "quote_volume" in out.columns:
        vol = out["volume"]
        out = out.assign(vwap=np.where(vol > 0, out["quote_volume"] / vol.where(vol > 0, 1.0), out["close"]))
    if not isinstance(out.index, pd.DatetimeIndex):
        raise ValueError("bars must be indexed by their UTC open time")
    return out[[c for c in BAR_COLUMNS if c in out.columns]]


def has_trade_columns(df: pd.DataFrame) -> bool:
    """Tell whether bars carry the trade-derived columns (count, taker-buy volume, VWAP)."""
    return all(c in df.columns for c in ("trade_count", "buy_volume", "vwap"))
