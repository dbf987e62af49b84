"""Idempotent batch writes of ``Tick`` messages into ``market.ticks`` (and their bars).

One batch is one transaction: COPY into a session temp table, ``INSERT ... SELECT ... ON
CONFLICT DO NOTHING`` into ``market.ticks``, then the bars the new ticks touched are recomputed
from ``market.ticks`` (1m and 15m). A batch replayed, or retried after a crash before the
Kafka offsets were committed, writes nothing twice. Database errors surface as
:class:`hft.config.TransientError` after the connection is dropped, so the caller can back off
and retry the same batch on a fresh connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hft.config import Settings, TransientError
from hft.schema.market_pb2 import Tick
from hft.storage import bars as bars_mod
from hft.storage import db

log = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SOURCES = {
    Tick.SOURCE_UNSPECIFIED: "unspecified",
    Tick.SOURCE_STREAM: "stream",
    Tick.SOURCE_REST_GAP_FILL: "rest_gap_fill",
    Tick.SOURCE_ARCHIVE: "archive",
}

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS tick_staging (
    symbol text, trade_id bigint, price double precision, quantity double precision,
    buyer_is_maker boolean, trade_time_ns bigint, event_time_ns bigint, receive_time_ns bigint,
    source text, venue text
) ON COMMIT DELETE ROWS
"""
# ns -> timestamptz exactly to the µs (integer division; no float rounding)
_INSERT = """
INSERT INTO market.ticks (symbol, trade_id, price, quantity, buyer_is_maker, trade_time, event_time,
                          receive_time_ns, source, venue)
SELECT symbol, trade_id, price, quantity, buyer_is_maker,
       TIMESTAMPTZ 'epoch' + (trade_time_ns / 1000) * INTERVAL '1 microsecond',
       TIMESTAMPTZ 'epoch' + (event_time_ns / 1000) * INTERVAL '1 microsecond',
       receive_time_ns, source, venue
FROM tick_staging
ON CONFLICT DO NOTHING
"""
_COPY = (
    "COPY tick_staging (symbol, trade_id, price, quantity, buyer_is_maker, trade_time_ns, event_time_ns, "
    "receive_time_ns, source, venue) FROM STDIN (FORMAT BINARY)"
)
# binary COPY: psycopg packs each value in C instead of formatting it as text (the text row
# formatter was 18 % of the ingestor's samples, docs/bench.md Left 4); the types are the staging table's
# (in-process, 5,000-tick batches, no bars: 2.1 vs 3.3 µs of client CPU per tick, 83-114k vs 75-78k ticks/s)
_COPY_TYPES = ("text", "int8", "float8", "float8", "bool", "int8", "int8", "int8", "text", "text")


@dataclass(frozen=True)
class WriteResult:
    """What one batch did: rows offered, rows new to the table, bars upserted, seconds spent."""

    received: int
    inserted: int
    bars: int
    seconds: float


def _month_start(ns: int) -> datetime:
    t = _ns_to_dt(ns)
    return datetime(t.year, t.month, 1, tzinfo=UTC)


def _months_between(first_ns: int, last_ns: int) -> list[datetime]:
    out = []
    cur, last = _month_start(first_ns), _month_start(last_ns)
    while cur <= last:
        out.append(cur)
        cur = datetime(cur.year + (cur.month == 12), cur.month % 12 + 1, 1, tzinfo=UTC)
    return out


class TickWriter:
    """Write batches of ``Tick`` into ``market.ticks`` idempotently, with bars from the new ticks.

    Holds one psycopg connection, opened lazily and dropped on any database error.
    """

    def __init__(self, settings: Settings, intervals: Sequence[str] = bars_mod.TICK_INTERVALS) -> None:
        self.settings = settings
        self.intervals = tuple(intervals)
        self._conn: Any = None
        self._timescale: bool | None = None
        self._months: set[datetime] = set()

    # -- connection ------------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            conn = db.connect(self.settings)
            try:
                with conn.cursor() as cur:
                    cur.execute(_STAGING)
                conn.commit()
                if self._timescale is None:
                    self._timescale = db.detect_backend(conn).timescale
                    conn.commit()
            except Exception:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def close(self) -> None:
        """Close the connection (uncommitted work is rolled back)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def timescale(self) -> bool:
        """Whether the store is TimescaleDB (known after the first connection)."""
        self._connection()
        return bool(self._timescale)

    # -- writes ----------------------------------------------------------------------------
    def _ensure_partitions(self, conn: Any, first_ns: int, last_ns: int) -> None:
        """Create the monthly partitions a batch needs (plain PostgreSQL), in their own transaction."""
        months = [m for m in _months_between(first_ns, last_ns) if m not in self._months]
        if not months:
            return
        with conn.cursor() as cur:
            for m in months:
                cur.execute("SELECT market.ensure_tick_partition(%s)", (m,))
        conn.commit()
        self._months.update(months)

    def write(self, ticks: Sequence[Tick]) -> WriteResult:
        """Write one batch in one transaction; raise TransientError (connection dropped) on failure."""
        import psycopg

        t0 = time.perf_counter()
        if not ticks:
            return WriteResult(0, 0, 0, 0.0)
        try:
            conn = self._connection()
            spans: dict[str, tuple[int, int]] = {}
            for t in ticks:
                s = spans.get(t.symbol)
                ns = t.trade_time_ns
                if s is None:
                    spans[t.symbol] = (ns, ns)
                elif ns < s[0] or ns > s[1]:
                    spans[t.symbol] = (min(s[0], ns), max(s[1], ns))
            if not self._timescale:
                lo = min(s[0] for s in spans.values())
                hi = max(s[1] for s in spans.values())
                self._ensure_partitions(conn, lo, hi)
            with conn.cursor() as cur:
                # One writer per symbol at a time: two ingestors hold the same partition for a
                # moment during a rebalance, and a bar rebuilt from the ticks one transaction sees
                # must not overwrite the other's newer bar when it commits later (the lock waits
                # for the other's commit, so the rebuild below sees its ticks). Sorted: no deadlock.
                for sym in sorted(spans):
                    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (sym,))
                with cur.copy(_COPY) as cp:
                    cp.set_types(_COPY_TYPES)
                    sources = _SOURCES
                    for t in ticks:
                        cp.write_row(
                            (
                                t.symbol,
                                t.trade_id,
                                t.price,
                                t.quantity,
                                t.buyer_is_maker,
                                t.trade_time_ns,
                                t.event_time_ns,
                                t.receive_time_ns,
                                sources.get(t.source, "unspecified"),
                                t.venue,
                            )
                        )
                cur.execute(_INSERT)
                inserted = max(cur.rowcount, 0)
                n_bars = 0
                if inserted and self.intervals:
                    span_dt = {sym: (_ns_to_dt(a), _ns_to_dt(b)) for sym, (a, b) in spans.items()}
                    n_bars = bars_mod.rebuild_from_ticks(
                        cur, bars_mod.touched_ranges(span_dt, self.intervals), bool(self._timescale)
                    )
            conn.commit()
        except psycopg.Error as exc:
            # the connection may be broken (server restart) or the transaction aborted: start fresh
            self.close()
            raise TransientError(
                f"tick batch of {len(ticks)} not written: {type(exc).__name__}: {exc}".strip()
            ) from exc
        return WriteResult(len(ticks), inserted, n_bars, time.perf_counter() - t0)


def _ns_to_dt(ns: int) -> datetime:
    # exact to the µs, like the database's timestamptz (a float division could land a trade at
    # a bucket's first µs in the previous bucket)
    return _EPOCH + timedelta(microseconds=ns // 1000)


def decode_batch(values: Iterable[bytes | None]) -> tuple[list[Tick], list[tuple[bytes, str]]]:
    """Parse Kafka values into Ticks; return (ticks, [(raw, reason)]) for the dead-letter topic."""
    from google.protobuf.message import DecodeError

    ticks: list[Tick] = []
    bad: list[tuple[bytes, str]] = []
    for raw in values:
        if not raw:
            bad.append((raw or b"", "empty message"))
            continue
        t = Tick()
        try:
            t.ParseFromString(raw)
        except DecodeError as exc:
            bad.append((raw, f"not a Tick protobuf: {exc}"))
            continue
        reason = validate_tick(t)
        if reason:
            bad.append((raw, reason))
        else:
            ticks.append(t)
    return ticks, bad


def validate_tick(t: Tick) -> str | None:
    """Reason a decoded Tick cannot be stored, or None when it can."""
    if not t.symbol:
        return "tick without symbol"
    if t.trade_time_ns <= 0:
        return f"tick {t.symbol}/{t.trade_id} without trade time"
    if not (t.price > 0 and t.quantity >= 0):
        return f"tick {t.symbol}/{t.trade_id} with price {t.price} quantity {t.quantity}"
    return None


def count_ticks(settings: Settings, symbols: Iterable[str] | None = None) -> int:
    """Rows in market.ticks (for the given symbols)."""
    with db.connect(settings, autocommit=True) as conn:
        if symbols is None:
            row = conn.execute("SELECT count(*) FROM market.ticks").fetchone()
        else:
            row = conn.execute(
                "SELECT count(*) FROM market.ticks WHERE symbol = ANY(%s)", (list(symbols),)
            ).fetchone()
    return int(row[0]) if row else 0
