"""The feature calculator's logic: ticks -> bars -> features per symbol, and where results go.

The process loop (Kafka, metrics, signals) is ``streamers/feature_calculator.py``; everything
a test wants is here:

* :class:`SymbolFeatures`: one symbol's :class:`BarBuilder` and :class:`FeatureState`, warmed
  up from the stored bars before the first tick's bar;
* :class:`FeatureCalculator`: all symbols, fed ``Tick`` messages and clock ticks; returns the
  :class:`ClosedBar` results (bar, features, receive time of the tick that closed it);
* :class:`FeatureSink`: writes closed bars to the online store (Feast layout), the offline
  table, and the ``hft:bars:closed`` Redis stream; keeps each symbol's partial bar in the
  Redis hash ``hft:bars:partial:<symbol>``;
* :func:`commit_offsets`: the Kafka offsets that are safe to commit: a restart re-reads the
  ticks of every bar still open, so no bar is ever built from half its trades.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from hft.config import Settings, TransientError
from hft.features.bars import Bar, BarBuilder, interval_ns, normalize_bars
from hft.features.compute import FeatureState
from hft.features.spec import FEATURE_SPEC_FULL, FeatureSpec

log = logging.getLogger(__name__)

CLOSED_STREAM = "hft:bars:closed"
PARTIAL_KEY = "hft:bars:partial:{symbol}"
CLOSED_STREAM_MAXLEN = 10_000

# loader(symbol, interval, before_open_time, n) -> the n stored bars opening before that time
BarLoader = Callable[[str, str, datetime, int], pd.DataFrame]


@dataclass(frozen=True)
class ClosedBar:
    """A bar that just closed, its features (None during warm-up) and what closed it."""

    bar: Bar
    features: dict[str, float] | None
    close_receive_time_ns: int  # receive time of the tick that closed the bar; 0: the clock did

    @property
    def feature_time(self) -> datetime:
        """The bar's close time: when its features became known (Feast's event timestamp)."""
        return datetime.fromtimestamp(self.bar.close_time_ns / 1e9, tz=UTC)


class SymbolFeatures:
    """Bars and features of one symbol."""

    def __init__(self, symbol: str, interval: str, spec: FeatureSpec, grace_ns: int) -> None:
        self.symbol = symbol
        self.interval = interval
        self.builder = BarBuilder(symbol, interval, grace_ns)
        self.state = FeatureState(spec)
        self.warmed_bars = 0
        # exchange time minus local receive time of the last tick: the clock closes bars on the
        # exchange's time line, so a replay of history (or a feed behind) never meets the wall clock
        self.clock_offset_ns = 0

    def warm(self, bars: pd.DataFrame, first_open_ns: int) -> None:
        """Fold stored bars (all opening before ``first_open_ns``) into the state.

        When the stored bars reach the stream's first bar without a hole, the builder continues
        from the last one (filling empty buckets as the stream goes on); otherwise the history
        ends earlier and the first streamed bar follows it directly, as in the batch over
        ``market.bars``.
        """
        if bars.empty:
            return
        bars = normalize_bars(bars)  # klines without trade columns: those stay NaN (absent)
        opens = pd.DatetimeIndex(bars.index).as_unit("ns").asi8
        cols = {
            c: bars[c].to_numpy(dtype="float64") if c in bars.columns else np.full(len(bars), np.nan)
            for c in ("high", "low", "close", "volume", "trade_count", "buy_volume", "vwap", "open")
        }
        for i in range(len(bars)):
            self.state.update_values(
                int(opens[i]),
                cols["high"][i],
                cols["low"][i],
                cols["close"][i],
                cols["volume"][i],
                cols["trade_count"][i],
                cols["buy_volume"][i],
                cols["vwap"][i],
                cols["open"][i],
            )
        self.warmed_bars = len(bars)
        last_open = int(opens[-1])
        if last_open + self.builder.step == first_open_ns:
            self.builder.seed(last_open, float(cols["close"][-1]))
        else:
            log.warning(
                "%s %s: stored bars end at %s, the stream starts at %s: a hole of %d bars",
                self.symbol,
                self.interval,
                pd.Timestamp(last_open, tz="UTC"),
                pd.Timestamp(first_open_ns, tz="UTC"),
                (first_open_ns - last_open) // self.builder.step - 1,
            )

    def _features(self, bars: Iterable[Bar], receive_ns: int) -> list[ClosedBar]:
        return [ClosedBar(b, self.state.update(b), receive_ns) for b in bars]

    def on_trade(
        self, trade_time_ns: int, price: float, quantity: float, buyer_is_maker: bool, receive_time_ns: int
    ) -> list[ClosedBar] | None:
        """Fold one trade; return the bars it closed with their features (None: a late trade)."""
        self.clock_offset_ns = trade_time_ns - receive_time_ns if receive_time_ns else 0
        closed = self.builder.add(trade_time_ns, price, quantity, buyer_is_maker)
        if closed is None:
            return None
        return self._features(closed, receive_time_ns) if closed else []

    def on_clock(self, now_ns: int) -> list[ClosedBar]:
        """Close the open bar once the clock (on the exchange's time line) passed its close plus grace."""
        return self._features(self.builder.on_clock(now_ns + self.clock_offset_ns), 0)


class FeatureCalculator:
    """Bars and features of every symbol, from ticks in trade-id order per symbol."""

    def __init__(
        self,
        interval: str,
        spec: FeatureSpec = FEATURE_SPEC_FULL,
        loader: BarLoader | None = None,
        grace_ns: int = 2_000_000_000,
    ) -> None:
        interval_ns(interval)
        self.interval = interval
        self.spec = spec
        self.loader = loader
        self.grace_ns = grace_ns
        self.symbols: dict[str, SymbolFeatures] = {}

    def _symbol(self, symbol: str, trade_time_ns: int) -> SymbolFeatures:
        sf = self.symbols.get(symbol)
        if sf is None:
            sf = self.symbols[symbol] = SymbolFeatures(symbol, self.interval, self.spec, self.grace_ns)
            if self.loader is not None:
                first_open = trade_time_ns - trade_time_ns % sf.builder.step
                before = datetime.fromtimestamp(first_open / 1e9, tz=UTC)
                sf.warm(self.loader(symbol, self.interval, before, self.spec.warmup_bars), first_open)
                log.info(
                    "%s %s: warmed up with %d stored bars (%d needed)",
                    symbol,
                    self.interval,
                    sf.warmed_bars,
                    self.spec.warmup_bars,
                )
        return sf

    def on_tick(self, tick: Any) -> list[ClosedBar] | None:
        """Fold one ``Tick``; return the bars it closed (None: a trade older than the open bar)."""
        sf = self._symbol(tick.symbol, tick.trade_time_ns)
        return sf.on_trade(
            tick.trade_time_ns, tick.price, tick.quantity, tick.buyer_is_maker, tick.receive_time_ns
        )

    def on_clock(self, now_ns: int, symbols: Iterable[str] | None = None) -> list[ClosedBar]:
        """Let every symbol (or only ``symbols``) close a bar whose time is over (``now_ns``: local wall clock)."""
        only = None if symbols is None else set(symbols)
        out: list[ClosedBar] = []
        for name, sf in self.symbols.items():
            if only is None or name in only:
                out += sf.on_clock(now_ns)
        return out

    def forget(self, symbol: str) -> None:
        """Drop a symbol's bars and history (its partition moved to another calculator); the next
        tick of it warms it up again from the stored bars."""
        self.symbols.pop(symbol, None)

    def partial(self, symbol: str) -> Bar | None:
        """The open (partial) bar of a symbol."""
        sf = self.symbols.get(symbol)
        return sf.builder.partial if sf else None

    def set_grace(self, grace_ns: int) -> None:
        """Change how long after its close a bar waits for late trades before the clock closes it."""
        self.grace_ns = grace_ns
        for sf in self.symbols.values():
            sf.builder.grace_ns = grace_ns

    @property
    def late_trades(self) -> int:
        """Trades dropped because their bar had already been closed by the clock."""
        return sum(sf.builder.late_trades for sf in self.symbols.values())


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(ns: int) -> datetime:
    """Nanoseconds since the epoch as an aware datetime (to the microsecond, exactly)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def commit_offsets(next_offsets: dict[Any, int], open_bar_offsets: dict[Any, list[int]]) -> dict[Any, int]:
    """Offsets to commit per partition: the first tick of the oldest open bar, else the next unread.

    ``next_offsets``: partition -> offset after the last record handled; ``open_bar_offsets``:
    partition -> offsets of the first tick of each symbol's open bar in that partition.
    """
    out = {}
    for tp, nxt in next_offsets.items():
        opens = open_bar_offsets.get(tp) or []
        out[tp] = min([nxt, *opens])
    return out


def bar_loader(settings: Settings) -> BarLoader:
    """A loader of stored bars from ``market.bars`` (the warm-up source)."""
    from hft.features.backfill import bars_frame
    from hft.storage import db

    sql = (
        "SELECT open_time, open, high, low, close, volume, trade_count, buy_volume, quote_volume, vwap "
        "FROM (SELECT * FROM market.bars WHERE symbol = %s AND interval = %s AND open_time < %s "
        "ORDER BY open_time DESC LIMIT %s) b ORDER BY open_time"
    )

    def load(symbol: str, interval: str, before: datetime, n: int) -> pd.DataFrame:
        with db.connect(settings) as conn, conn.cursor() as cur:
            cur.execute(sql, (symbol, interval, before, n))
            return bars_frame(cur.fetchall())

    return load


@dataclass
class WriteTimings:
    """Seconds spent per store in one :meth:`FeatureSink.write`."""

    online: float = 0.0  # the online rows and the announcements (one round trip)
    offline: float = 0.0


@contextlib.contextmanager
def _redis_transient(what: str) -> Iterator[None]:
    """Re-raise Redis being unreachable as :class:`TransientError` (a bug, e.g. DataError, still raises)."""
    import redis

    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise TransientError(f"Redis unavailable, {what}: {exc}") from exc


class FeatureSink:
    """Where closed bars and partial bars go: Feast's online store, the offline table, Redis."""

    def __init__(self, settings: Settings, spec: FeatureSpec = FEATURE_SPEC_FULL) -> None:
        import redis

        from hft.features.online import OnlineWriter
        from hft.features.store import ensure_applied
        from hft.storage import db

        ensure_applied(settings)
        self.settings = settings
        self.spec = spec
        self.online = OnlineWriter(settings)
        self.redis = redis.Redis.from_url(settings.redis_dsn)
        self._conn: Any = db.connect(settings)

    @property
    def conn(self) -> Any:
        """The offline store's connection, reopened after PostgreSQL dropped it (TransientError while down)."""
        if self._conn is None or self._conn.closed:
            from hft.storage import db

            self._conn = db.connect(self.settings)
        return self._conn

    def write(self, closed: list[ClosedBar]) -> WriteTimings:
        """Write the feature rows of closed bars (warm-up bars have none) and announce each bar.

        Order: Feast's online store, then the announcement (the bot reads the online row, so it
        can decide while the offline row is written), then ``features.bar_features``. Every step
        is idempotent and the caller commits the bars' offsets only after all three, so a crash or
        a retry may announce a bar again but never leaves an announced bar without its offline
        row; the bot skips a bar it already decided on. Raises :class:`TransientError` while
        Redis or PostgreSQL is unreachable (the caller retries the same bars).
        """
        t = self.write_online(closed)
        t.offline = self.write_offline(closed)
        return t

    def write_online(self, closed: list[ClosedBar]) -> WriteTimings:
        """The first two steps of :meth:`write`, in one Redis round trip: Feast's online rows, then
        the announcements (a pipeline runs in order, so a bar is never announced before its row)."""
        t = WriteTimings()
        if not closed:
            return t
        rows = [(c.bar.symbol, c.feature_time, c.features) for c in closed if c.features is not None]
        with _redis_transient(f"{len(closed)} closed bars not written"):
            t0 = time.perf_counter()
            pipe = self.online.client.pipeline(transaction=False)
            writes = self.online.queue(pipe, rows)
            self._announce(pipe, closed)
            self.online.execute(pipe, writes)
            t.online = time.perf_counter() - t0
        return t

    def write_offline(self, closed: list[ClosedBar]) -> float:
        """The last step of :meth:`write`: the rows in ``features.bar_features``; returns seconds.

        Uses the sink's PostgreSQL connection: call it from one thread only.
        """
        rows = [c for c in closed if c.features is not None]
        if not rows:
            return 0.0
        t0 = time.perf_counter()
        self._write_offline(rows)
        return time.perf_counter() - t0

    def _announce(self, pipe: Any, closed: list[ClosedBar]) -> None:
        now = time.time_ns()
        for c in closed:
            pipe.xadd(
                CLOSED_STREAM,
                {
                    "symbol": c.bar.symbol,
                    "interval": c.bar.interval,
                    "open_time_ns": c.bar.open_time_ns,
                    "feature_time_ns": c.bar.close_time_ns,
                    # the bar's last trade price: the bot's reference price (no database read, and
                    # the same trades the features came from)
                    "close": repr(c.bar.close),
                    "close_receive_time_ns": c.close_receive_time_ns,
                    "published_ns": now,
                    "has_features": int(c.features is not None),
                },
                maxlen=CLOSED_STREAM_MAXLEN,
                approximate=True,
            )

    def _write_offline(self, rows: list[ClosedBar]) -> None:
        import psycopg

        try:
            self._upsert(rows)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            # a restart or a dropped connection (AdminShutdown, CannotConnectNow, ...): reconnect
            # on the next try; a bug (ProgrammingError, DataError) still raises
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            raise TransientError(
                f"PostgreSQL unavailable, {len(rows)} feature rows not written: "
                f"{type(exc).__name__}: {exc}".strip()
            ) from exc

    def _upsert(self, rows: list[ClosedBar]) -> None:
        from hft.features.offline import upsert_feature_rows

        upsert_feature_rows(
            self.conn,
            (
                (c.bar.symbol, c.bar.interval, _utc(c.bar.open_time_ns), c.feature_time, c.features)
                for c in rows
            ),
            self.spec.version,
        )

    def write_partials(self, bars: Iterable[Bar]) -> None:
        """Keep each symbol's open bar in ``hft:bars:partial:<symbol>`` for tick-level decisions
        (:class:`TransientError` while Redis is unreachable)."""
        with _redis_transient("partial bars not written"):
            self._write_partials(bars)

    def _write_partials(self, bars: Iterable[Bar]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        now = time.time_ns()
        n = 0
        for b in bars:
            fields: dict[str | bytes, str | int | float] = {
                k: v for k, v in b.as_dict().items() if k != "symbol"
            }
            fields["updated_ns"] = now
            pipe.hset(PARTIAL_KEY.format(symbol=b.symbol), mapping=fields)  # type: ignore[arg-type]
            n += 1
        if n:
            pipe.execute()

    def clear_partial(self, symbol: str) -> None:
        """Forget a symbol's partial bar (the clock closed it and no trade opened the next)."""
        with _redis_transient(f"partial bar of {symbol} not cleared"):
            self.redis.delete(PARTIAL_KEY.format(symbol=symbol))

    def close(self) -> None:
        """Close the database connection."""
        if self._conn is not None:
            self._conn.close()


def read_partial(redis_client: Any, symbol: str) -> dict[str, float | str] | None:
    """Read a symbol's partial bar as written by :meth:`FeatureSink.write_partials`."""
    raw = redis_client.hgetall(PARTIAL_KEY.format(symbol=symbol))
    if not raw:
        return None
    out: dict[str, float | str] = {}
    for k, v in raw.items():
        key = k.decode() if isinstance(k, bytes) else str(k)
        val = v.decode() if isinstance(v, bytes) else str(v)
        out[key] = val if key == "interval" else float(val)
    return out
