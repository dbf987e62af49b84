"""The calculator's sink while Redis or PostgreSQL is down: a retryable error, then the same writes succeed.

Before, a Redis restart surfaced as ``redis.ConnectionError`` and crashed the calculator (the
supervisor restarted it and it re-read and re-warmed every symbol: docs/bench.md finding 6).
"""

from __future__ import annotations

import time

import pytest

from hft.config import Settings, TransientError
from hft.features.bars import Bar

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SYMBOL = "FTOUTAGE"


def _last_minute_bar(symbol: str) -> Bar:
    """A closed 1m bar of the last whole minute."""
    minute = 60_000_000_000
    open_ns = (time.time_ns() // minute - 1) * minute
    return Bar(
        symbol,
        "1m",
        open_ns,
        open_ns + minute,
        100.0,
        101.0,
        99.5,
        100.5,
        volume=2.0,
        trade_count=3,
        buy_volume=1.0,
        quote_volume=201.0,
    )


def test_sink_reports_redis_down_as_transient_and_writes_once_it_is_back(feature_settings: Settings) -> None:
    import redis

    from hft.devstack.stack import Stack
    from hft.features.calculator import CLOSED_STREAM, PARTIAL_KEY, ClosedBar, FeatureSink

    bar = _last_minute_bar(SYMBOL)
    open_ns = bar.open_time_ns
    closed = ClosedBar(bar, None, time.time_ns())  # a warm-up bar: announced, no feature row
    sink = FeatureSink(feature_settings)
    stack = Stack(feature_settings)
    stack.redis.stop()
    try:
        with pytest.raises(TransientError, match="Redis unavailable"):
            sink.write_partials([bar])
        with pytest.raises(TransientError, match="Redis unavailable"):
            sink.write([closed])
        with pytest.raises(TransientError, match="Redis unavailable"):
            sink.clear_partial(SYMBOL)
    finally:
        stack.redis.start()
    try:
        # the same client reconnects by itself: the retried writes land
        sink.write_partials([bar])
        sink.write([closed])
        r = redis.Redis.from_url(feature_settings.redis_dsn)
        assert float(r.hget(PARTIAL_KEY.format(symbol=SYMBOL), "close") or 0) == 100.5
        announced = [f for _id, f in r.xrevrange(CLOSED_STREAM, count=50) if f[b"symbol"] == SYMBOL.encode()]
        assert len(announced) == 1
        assert int(announced[0][b"open_time_ns"]) == open_ns
        assert announced[0][b"has_features"] == b"0"
    finally:
        sink.clear_partial(SYMBOL)
        sink.close()


def test_sink_reports_a_postgres_restart_as_transient_and_writes_the_row_once_it_is_back(
    feature_settings: Settings,
) -> None:
    """A restarted PostgreSQL drops the sink's connection (AdminShutdown on the next use). Before,
    that escaped ``write`` and crashed the calculator, and the crash path committed offsets past
    the announced bar whose offline row was never written (a fault test caught it in CI)."""
    from hft.devstack.stack import Stack
    from hft.features.calculator import ClosedBar, FeatureSink
    from hft.features.offline import read_features
    from hft.features.spec import ALL_FEATURES
    from hft.storage import db

    symbol = "FTPGOUT"
    bar = _last_minute_bar(symbol)
    open_ns = bar.open_time_ns
    closed = ClosedBar(bar, dict.fromkeys(ALL_FEATURES, 0.25), time.time_ns())
    with db.connect(feature_settings, autocommit=True) as conn:
        conn.execute("DELETE FROM features.bar_features WHERE symbol = %s", (symbol,))
    sink = FeatureSink(feature_settings)
    stack = Stack(feature_settings)
    stack.postgres.stop()
    stack.postgres.start()
    try:
        with pytest.raises(TransientError, match="PostgreSQL unavailable"):
            sink.write([closed])  # the connection the restart dropped
        sink.write([closed])  # the retry reconnects
        with db.connect(feature_settings, autocommit=True) as conn:
            rows = read_features(conn, symbol, "1m")
        assert len(rows) == 1
        assert rows.index[0].value == open_ns
        assert rows[ALL_FEATURES[0]].iloc[0] == 0.25
    finally:
        sink.clear_partial(symbol)
        sink.close()
