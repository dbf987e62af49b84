"""One definition of a bar in ``market.bars``, from exchange klines or from ``market.ticks``.

A bar is stamped with its open time and known only at its close: ``close_time = open_time +
interval`` (exclusive end). Bars from klines (``source='kline'``) and from ticks
(``source='ticks'``) share the table; a ticks bar never overwrites a kline bar (a replay's first
bar is partial; the exchange's kline is complete), while loading klines replaces ticks bars.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

INTERVALS: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "3m": timedelta(minutes=3),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "2h": timedelta(hours=2),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}
TICK_INTERVALS = ("1m", "15m")  # the intervals the tick ingestor maintains
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

BAR_COLUMNS = [
    "open_time",
    "close_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trade_count",
    "buy_volume",
    "quote_volume",
    "vwap",
    "source",
]

_SET_BAR = """open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, trade_count = excluded.trade_count, buy_volume = excluded.buy_volume,
    quote_volume = excluded.quote_volume, vwap = excluded.vwap, close_time = excluded.close_time,
    source = excluded.source, updated_at = now()"""


def interval_delta(interval: str) -> timedelta:
    """Length of a Binance interval name (``1m``, ``15m``, ``1h`` ...)."""
    try:
        return INTERVALS[interval]
    except KeyError:
        raise ValueError(f"unknown interval {interval!r}; one of {', '.join(INTERVALS)}") from None


def bucket_start(ts: datetime, interval: str) -> datetime:
    """Open time of the bar of ``interval`` that contains ``ts`` (buckets aligned to the epoch)."""
    step = interval_delta(interval)
    return _EPOCH + ((ts - _EPOCH) // step) * step


# ---------------------------------------------------------------------------------------------
# bars from ticks
# ---------------------------------------------------------------------------------------------


def _ticks_to_bars_sql(timescale: bool) -> str:
    bucket = (
        "time_bucket(%(step)s::interval, trade_time)"
        if timescale
        else "date_bin(%(step)s::interval, trade_time, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
    )
    return f"""
INSERT INTO market.bars AS b (symbol, interval, open_time, close_time, open, high, low, close, volume,
                              trade_count, buy_volume, quote_volume, vwap, source, updated_at)
SELECT symbol, %(interval)s, bucket, bucket + %(step)s::interval,
       (array_agg(price ORDER BY trade_id))[1], max(price), min(price),
       (array_agg(price ORDER BY trade_id DESC))[1],
       sum(quantity), count(*), coalesce(sum(quantity) FILTER (WHERE NOT buyer_is_maker), 0),
       sum(price * quantity), sum(price * quantity) / nullif(sum(quantity), 0), 'ticks', now()
FROM (SELECT symbol, trade_id, price, quantity, buyer_is_maker, {bucket} AS bucket
      FROM market.ticks
      WHERE symbol = %(symbol)s AND trade_time >= %(lo)s AND trade_time < %(hi)s) t
GROUP BY symbol, bucket
ON CONFLICT (symbol, interval, open_time) DO UPDATE SET {_SET_BAR}
WHERE b.source = 'ticks'
"""


@dataclass(frozen=True)
class TouchedRange:
    """The bars of one symbol and interval that a batch of ticks touched: [lo, hi) open times."""

    symbol: str
    interval: str
    lo: datetime
    hi: datetime


def touched_ranges(
    span_by_symbol: dict[str, tuple[datetime, datetime]], intervals: Iterable[str] = TICK_INTERVALS
) -> list[TouchedRange]:
    """Bucket ranges to recompute for each symbol's (min, max) trade time in a batch."""
    out = []
    for symbol, (first, last) in sorted(span_by_symbol.items()):
        for iv in intervals:
            out.append(
                TouchedRange(symbol, iv, bucket_start(first, iv), bucket_start(last, iv) + interval_delta(iv))
            )
    return out


def _rollup_sql(timescale: bool) -> str:
    """Bars of a longer interval from the ``ticks`` bars of a shorter one (same sums, fewer rows)."""
    bucket = (
        "time_bucket(%(step)s::interval, open_time)"
        if timescale
        else "date_bin(%(step)s::interval, open_time, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
    )
    return f"""
INSERT INTO market.bars AS b (symbol, interval, open_time, close_time, open, high, low, close, volume,
                              trade_count, buy_volume, quote_volume, vwap, source, updated_at)
SELECT symbol, %(interval)s, bucket, bucket + %(step)s::interval,
       (array_agg(open ORDER BY open_time))[1], max(high), min(low), (array_agg(close ORDER BY open_time DESC))[1],
       sum(volume), sum(trade_count), sum(buy_volume), sum(quote_volume),
       sum(quote_volume) / nullif(sum(volume), 0), 'ticks', now()
FROM (SELECT *, {bucket} AS bucket FROM market.bars
      WHERE symbol = %(symbol)s AND interval = %(base)s AND open_time >= %(lo)s AND open_time < %(hi)s) t
GROUP BY symbol, bucket
ON CONFLICT (symbol, interval, open_time) DO UPDATE SET {_SET_BAR}
WHERE b.source = 'ticks'
"""


_HAS_KLINES = (
    "SELECT EXISTS (SELECT 1 FROM market.bars WHERE symbol = %(symbol)s AND interval = %(base)s "
    "AND open_time >= %(lo)s AND open_time < %(hi)s AND source <> 'ticks')"
)


def rebuild_from_ticks(cur: Any, ranges: Iterable[TouchedRange], timescale: bool) -> int:
    """Recompute the bars in ``ranges`` from ``market.ticks`` (idempotent upsert); return rows touched.

    The shortest interval of each symbol is aggregated from the ticks; a longer one that it
    divides is rolled up from those fresh ``ticks`` bars (the same sums over fewer rows),
    unless a kline bar sits among them, in which case it too comes from the ticks. Runs on
    the caller's cursor so that ticks and their bars commit in one transaction.
    """
    from_ticks = _ticks_to_bars_sql(timescale)
    rollup = _rollup_sql(timescale)
    n = 0
    by_symbol: dict[str, list[TouchedRange]] = {}
    for r in ranges:
        by_symbol.setdefault(r.symbol, []).append(r)
    for symbol, rs in by_symbol.items():
        rs.sort(key=lambda r: interval_delta(r.interval))
        base = rs[0]
        for r in rs:
            step = interval_delta(r.interval)
            params = {
                "interval": r.interval,
                "step": step,
                "symbol": symbol,
                "lo": r.lo,
                "hi": r.hi,
                "base": base.interval,
            }
            sql = from_ticks
            if r is not base and step % interval_delta(base.interval) == timedelta(0):
                cur.execute(_HAS_KLINES, params)
                row = cur.fetchone()
                if row is not None and not row[0]:
                    sql = rollup
            cur.execute(sql, params)
            n += max(cur.rowcount, 0)
    return n


# ---------------------------------------------------------------------------------------------
# bars from klines
# ---------------------------------------------------------------------------------------------

_KLINE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS kline_staging (
    open_time_us bigint, open double precision, high double precision, low double precision,
    close double precision, volume double precision, trade_count bigint, buy_volume double precision,
    quote_volume double precision
) ON COMMIT DELETE ROWS
"""

_KLINE_UPSERT = f"""
INSERT INTO market.bars AS b (symbol, interval, open_time, close_time, open, high, low, close, volume,
                              trade_count, buy_volume, quote_volume, vwap, source, updated_at)
SELECT %(symbol)s, %(interval)s, t.ot, t.ot + %(step)s::interval, open, high, low, close, volume,
       trade_count, buy_volume, quote_volume, quote_volume / nullif(volume, 0), 'kline', now()
FROM (SELECT *, TIMESTAMPTZ 'epoch' + open_time_us * INTERVAL '1 microsecond' AS ot FROM kline_staging) t
ON CONFLICT (symbol, interval, open_time) DO UPDATE SET {_SET_BAR}
-- re-loading the same klines rewrites nothing
WHERE b.source <> 'kline' OR (b.open, b.high, b.low, b.close, b.volume, b.trade_count, b.buy_volume,
       b.quote_volume) IS DISTINCT FROM (excluded.open, excluded.high, excluded.low, excluded.close,
       excluded.volume, excluded.trade_count, excluded.buy_volume, excluded.quote_volume)
"""


def _opt(df: pd.DataFrame, col: str) -> list[Any]:
    if col not in df.columns:
        return [None] * len(df)
    values = df[col].to_numpy(dtype="float64")
    return [None if np.isnan(v) else float(v) for v in values]


def upsert_klines(
    conn: Any,
    df: pd.DataFrame,
    symbol: str,
    interval: str,
    chunk_rows: int = 20_000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write klines (a :func:`hft.market.ohlcv.read_ohlcv_csv` frame) into ``market.bars``.

    COPY into a staging table, then one upsert per chunk, each chunk its own transaction (a
    re-run after a crash redoes only what is missing: the upsert is idempotent). Returns the
    rows inserted or changed; ``progress`` gets the rows processed after each chunk.
    """
    step = interval_delta(interval)
    open_us = pd.DatetimeIndex(df.index).as_unit("us").asi8
    cols = {c: df[c].to_numpy(dtype="float64").tolist() for c in ("open", "high", "low", "close", "volume")}
    counts = _opt(df, "count")
    trade_count = [None if v is None else int(v) for v in counts]
    buy = _opt(df, "taker_buy_volume")
    quote = _opt(df, "quote_volume")
    changed = 0
    with conn.cursor() as cur:
        cur.execute(_KLINE_STAGING)
        for start in range(0, len(df), chunk_rows):
            end = min(start + chunk_rows, len(df))
            with cur.copy("COPY kline_staging FROM STDIN") as cp:
                for i in range(start, end):
                    cp.write_row(
                        (
                            int(open_us[i]),
                            cols["open"][i],
                            cols["high"][i],
                            cols["low"][i],
                            cols["close"][i],
                            cols["volume"][i],
                            trade_count[i],
                            buy[i],
                            quote[i],
                        )
                    )
            cur.execute(_KLINE_UPSERT, {"symbol": symbol, "interval": interval, "step": step})
            changed += max(cur.rowcount, 0)
            conn.commit()
            if progress:
                progress(end - start)
    return changed


def infer_interval(index: pd.DatetimeIndex) -> str:
    """The interval name whose length equals the most common spacing of ``index``."""
    if len(index) < 2:
        raise ValueError("cannot infer the interval from fewer than two bars: pass --interval")
    spacing = pd.Series(index[1:] - index[:-1]).mode().iloc[0].to_pytimedelta()
    for name, delta in INTERVALS.items():
        if delta == spacing:
            return name
    raise ValueError(f"bar spacing {spacing} matches no interval: pass --interval")


def read_bars(
    conn: Any, symbol: str, interval: str, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """Bars of one symbol and interval, indexed by open time, [start, end) on open time."""
    sql = (
        "SELECT open_time, close_time, open, high, low, close, volume, trade_count, buy_volume, "
        "quote_volume, vwap, source FROM market.bars WHERE symbol = %s AND interval = %s "
        "AND open_time >= %s AND open_time < %s ORDER BY open_time"
    )
    lo = start or datetime(1970, 1, 1, tzinfo=UTC)
    hi = end or datetime(9999, 1, 1, tzinfo=UTC)
    with conn.cursor() as cur:
        cur.execute(sql, (symbol, interval, lo, hi))
        rows = cur.fetchall()
    df = pd.DataFrame(rows, columns=BAR_COLUMNS)
    df["open_time"] = pd.to_datetime(df["open_time"], utc=True)
    df["close_time"] = pd.to_datetime(df["close_time"], utc=True)
    return df.set_index("open_time")
