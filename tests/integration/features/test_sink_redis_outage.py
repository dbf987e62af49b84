"""The calculator's sink while Redis is down: a retryable error, then the same writes succeed.

Before, a Redis restart surfaced as ``redis.ConnectionError`` and crashed the calculator (the
supervisor restarted it and it re-read and re-warmed every symbol: docs/bench.md finding 6).
"""

from __future__ import annotations

import time

import pytest

from hft.config import Settings, TransientError

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SYMBOL = "FTOUTAGE"


def test_sink_reports_redis_down_as_transient_and_writes_once_it_is_back(feature_settings: Settings) -> None:
    import redis

    from hft.features.bars import Bar
    from hft.features.calculator import CLOSED_STREAM, PARTIAL_KEY, ClosedBar, FeatureSink
    from hft.stack import Stack

    minute = 60_000_000_000
    open_ns = (time.time_ns() // minute - 1) * minute
    bar = Bar(SYMBOL, "1m", open_ns, open_ns + minute, 100.0, 101.0, 99.5, 100.5, volume=2.0, trade_count=3,
              buy_volume=1.0, quote_volume=201.0)
    closed = ClosedBar(bar, None, time.time_ns())  # a warm-up bar: announced, no feature row
    sink = FeatureSink(feature_settings)
    stack = Stack(feature_settings)
    stack.stop_redis()
    try:
        with pytest.raises(TransientError, match="Redis unavailable"):
            sink.write_partials([bar])
        with pytest.raises(TransientError, match="Redis unavailable"):
            sink.write([closed])
        with pytest.raises(TransientError, match="Redis unavailable"):
            sink.clear_partial(SYMBOL)
    finally:
        stack.start_redis()
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
