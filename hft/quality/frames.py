"""Shape one partition of ticks, bars or features into the frames the expectation suites read.

Great Expectations checks columns, not sequences, so what needs an order (contiguous trade ids,
monotonic times) or a calendar (missing bars) becomes a column here: ``id_step`` and
``time_step_ms`` per symbol in trade-id order, and one row per *expected* bar with
``missing=True`` where the bar is absent. Every frame has a ``key`` column that names a row in
words (``BTCUSDT#3735693100``, ``BTCUSDT 15m 2024-08-09T00:30Z``); the summaries and data docs
name failing rows by it. Pure pandas: no database, no Great Expectations.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

TICK_COLUMNS = ["key", "symbol", "trade_id", "price", "quantity", "trade_time_ms", "id_step", "time_step_ms"]
BAR_COLUMNS = [
    "key",
    "symbol",
    "interval",
    "open_time_ms",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "missing",
]
FEATURE_COLUMNS = ["key", "symbol", "event_time_ms", "feature", "value", "lower", "upper"]

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def interval_delta(interval: str) -> timedelta:
    """Return the length of a Binance interval name (``1m``, ``15m``, ``1h``, ``1d``)."""
    match = re.fullmatch(r"(\d+)([smhdw])", interval)
    if not match:
        raise ValueError(f"unknown bar interval {interval!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def to_ms(ts: datetime | pd.Timestamp) -> int:
    """Return epoch milliseconds of an aware datetime."""
    return int(pd.Timestamp(ts).tz_convert("UTC").value // 1_000_000)


def ms_label(ms: int) -> str:
    """Format epoch milliseconds as a short ISO UTC label (``2024-08-09T00:30Z``; seconds when not 0)."""
    ts = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if ts.second == 0 and ts.microsecond == 0:
        return ts.strftime("%Y-%m-%dT%H:%MZ")
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_halts(halts: Iterable[str]) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Parse ``'start/end'`` ISO UTC strings into [start, end) pairs."""
    out = []
    for item in halts:
        start, sep, end = item.partition("/")
        if not sep:
            raise ValueError(f"exchange halt {item!r} is not 'start/end'")
        out.append((pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")))
    return out


def tick_frame(ticks: pd.DataFrame) -> pd.DataFrame:
    """Return the ticks frame: ``symbol, trade_id, price, quantity, trade_time_ms`` plus steps and key.

    ``ticks`` holds those five columns (``trade_time_ms`` as epoch ms). ``id_step`` is the
    difference to the previous trade id of the same symbol (1 for the first), ``time_step_ms``
    the difference of trade times in that order (0 for the first): a duplicate id gives step 0,
    a gap a step above 1, a time going backwards a negative step.
    """
    df = ticks[["symbol", "trade_id", "price", "quantity", "trade_time_ms"]].copy()
    df = df.sort_values(["symbol", "trade_id"], kind="stable").reset_index(drop=True)
    grouped = df.groupby("symbol", sort=False)
    df["id_step"] = grouped["trade_id"].diff().fillna(1).astype("int64")
    df["time_step_ms"] = grouped["trade_time_ms"].diff().fillna(0).astype("int64")
    df["key"] = df["symbol"].astype(str) + "#" + df["trade_id"].astype(str)
    return df[TICK_COLUMNS]


def expected_open_times(
    start: datetime, end: datetime, interval: str, halts: Sequence[tuple[pd.Timestamp, pd.Timestamp]] = ()
) -> pd.DatetimeIndex:
    """Return the open times of every bar expected in [start, end), known halts left out."""
    step = interval_delta(interval)
    first = pd.Timestamp(start).tz_convert("UTC").ceil(step)
    grid = pd.date_range(first, pd.Timestamp(end).tz_convert("UTC"), freq=step, inclusive="left")
    keep = np.ones(len(grid), dtype=bool)
    for h_start, h_end in halts:
        keep &= ~((grid >= h_start) & (grid < h_end))
    return grid[keep]


def bar_frame(
    bars: pd.DataFrame,
    symbols: Sequence[str],
    interval: str,
    start: datetime,
    end: datetime,
    halts: Sequence[tuple[pd.Timestamp, pd.Timestamp]] = (),
    coverage: Mapping[str, tuple[datetime, datetime]] | None = None,
) -> pd.DataFrame:
    """Return the bars frame on the grid of expected bars (``missing=True`` where one is absent).

    ``bars`` holds ``symbol, open_time`` (aware timestamps), ``open, high, low, close,
    volume`` for ``interval``. Present bars outside the grid (a bar during a listed halt) are
    kept and checked like any other. ``coverage`` (symbol → first and last open time, both
    included) limits where a symbol's bars are expected; a symbol missing from it is expected
    nowhere. Without ``coverage`` every symbol is expected on the whole grid.
    """
    present = bars[["symbol", "open_time", "open", "high", "low", "close", "volume"]].copy()
    present["open_time"] = pd.to_datetime(present["open_time"], utc=True)
    grid = expected_open_times(start, end, interval, halts)

    def expected_for(symbol: str) -> pd.DatetimeIndex:
        if coverage is None:
            return grid
        if symbol not in coverage:
            return grid[:0]
        lo, hi = (pd.Timestamp(t).tz_convert("UTC") for t in coverage[symbol])
        return grid[(grid >= lo) & (grid <= hi)]

    expected = pd.DataFrame(
        [(s, t) for s in symbols for t in expected_for(s)], columns=["symbol", "open_time"]
    ).astype({"open_time": present["open_time"].dtype if len(present) else "datetime64[ns, UTC]"})
    expected["open_time"] = pd.to_datetime(expected["open_time"], utc=True)
    merged = expected.merge(present, on=["symbol", "open_time"], how="outer", indicator=True)
    merged["missing"] = merged["_merge"] == "left_only"
    merged = merged.drop(columns="_merge").sort_values(["symbol", "open_time"]).reset_index(drop=True)
    merged["interval"] = interval
    merged["open_time_ms"] = merged["open_time"].map(to_ms).astype("int64")
    merged["key"] = merged["symbol"] + " " + interval + " " + merged["open_time_ms"].map(ms_label)
    for col in ("open", "high", "low", "close", "volume"):
        merged[col] = merged[col].astype("float64")
    return merged[BAR_COLUMNS]


def range_for(feature: str, ranges: Mapping[str, Sequence[float | None]]) -> tuple[float, float]:
    """Return the declared [lower, upper] of a feature (first matching fnmatch pattern; else unbounded)."""
    for pattern, (lower, upper) in ranges.items():
        if fnmatch.fnmatchcase(feature, pattern):
            return (-np.inf if lower is None else float(lower), np.inf if upper is None else float(upper))
    return -np.inf, np.inf


def feature_frame(
    features: pd.DataFrame, names: Sequence[str], ranges: Mapping[str, Sequence[float | None]]
) -> pd.DataFrame:
    """Return features in long form (one row per bar and feature) with declared ranges.

    ``features`` holds ``symbol, event_timestamp`` and one column per name, warm-up rows
    already left out by the caller.
    """
    if len(features) == 0:
        return pd.DataFrame(
            {
                c: pd.Series(dtype=t)
                for c, t in zip(
                    FEATURE_COLUMNS,
                    ["object", "object", "int64", "object", "float64", "float64", "float64"],
                    strict=True,
                )
            }
        )
    wide = features[["symbol", "event_timestamp", *names]].copy()
    wide["event_time_ms"] = pd.to_datetime(wide["event_timestamp"], utc=True).map(to_ms).astype("int64")
    long = wide.drop(columns="event_timestamp").melt(
        id_vars=["symbol", "event_time_ms"], value_vars=list(names), var_name="feature", value_name="value"
    )
    long["value"] = long["value"].astype("float64")
    bounds = {name: range_for(name, ranges) for name in names}
    long["lower"] = long["feature"].map(lambda n: bounds[n][0]).astype("float64")
    long["upper"] = long["feature"].map(lambda n: bounds[n][1]).astype("float64")
    long["key"] = long["symbol"] + " " + long["event_time_ms"].map(ms_label) + " " + long["feature"]
    return long[FEATURE_COLUMNS].reset_index(drop=True)
