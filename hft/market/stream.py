"""Binance trade stream client: combined streams, reconnects, gap detection and REST gap fill.

:class:`TradeStream` subscribes to ``<symbol>@trade`` for several symbols on one combined
stream (``/stream?streams=btcusdt@trade/ethusdt@trade``) and hands every trade, exactly once
and in trade-id order per symbol, to a :class:`TickSink`:

* pings are answered by ``websockets``; a dropped connection is retried with jittered
  exponential backoff; a planned reconnect happens before Binance's 24 h cut;
* per symbol it remembers the last trade id; a live trade further ahead than the next id is
  a gap, filled through REST (``historicalTrades`` from the missing id) before the live
  trade is passed on; after each reconnect it catches up through REST from the last id
  before the live stream resumes; trades seen twice (REST and live overlap) are dropped;
* a frame that is not a valid trade goes to ``sink.dead_letter`` with the reason and the raw
  bytes, and the stream goes on.

Receive time is stamped from the injected clock when the frame arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import websockets
from websockets.asyncio.client import ClientConnection, connect

from hft.bus.retry import backoff_delays
from hft.config import TransientError
from hft.market.rest import BinanceRest
from hft.market.ticks import MalformedMessage, Tick, tick_from_frame, tick_from_rest_trade

log = logging.getLogger("hft.market.stream")


class TickSink(Protocol):
    """Where the stream client hands its output."""

    def tick(self, tick: Tick) -> None:
        """Take one trade (live or filled), in trade-id order per symbol."""

    def dead_letter(self, reason: str, raw: bytes, receive_time_ns: int, stream: str) -> None:
        """Take one frame that is not a valid trade."""


@dataclass
class StreamStats:
    """Counters of a TradeStream (read by the producer's metrics)."""

    frames: int = 0
    ticks: int = 0
    filled: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    reconnects: int = 0
    planned_reconnects: int = 0
    gaps_detected: int = 0
    gaps_filled: int = 0
    gaps_unfilled: int = 0
    last_trade_id: dict[str, int] = field(default_factory=dict)


class TradeStream:
    """Every trade of ``symbols`` from a Binance-compatible WebSocket + REST endpoint, once."""

    def __init__(
        self,
        ws_url: str,
        rest: BinanceRest,
        symbols: list[str],
        sink: TickSink,
        *,
        venue: str = "binance-spot",
        clock_ns: Callable[[], int] = time.time_ns,
        max_session_s: float = 23.5 * 3600,
        backoff: Callable[[int], float] | None = None,
        last_ids: dict[str, int] | None = None,
        rest_page: int = 1000,
        idle_check_s: float = 5.0,
        max_fill: int = 1_000_000,
        reset_below: int = 50_000,
    ) -> None:
        self.ws_url = ws_url.rstrip("/")
        self.rest = rest
        self.symbols = [s.upper() for s in symbols]
        self.sink = sink
        self.venue = venue
        self.clock_ns = clock_ns
        self.max_session_s = max_session_s
        self.backoff = backoff or backoff_delays()
        self.rest_page = rest_page
        self.idle_check_s = idle_check_s
        self.max_fill = max_fill
        self.reset_below = reset_below
        self._lock = asyncio.Lock()
        self._last_frame = time.monotonic()
        self.stats = StreamStats()
        self.last: dict[str, int] = dict(last_ids or {})
        self.stats.last_trade_id = self.last
        self.connected = asyncio.Event()

    @property
    def url(self) -> str:
        """The combined-stream URL."""
        streams = "/".join(f"{s.lower()}@trade" for s in self.symbols)
        return f"{self.ws_url}/stream?streams={streams}"

    async def run(self, stop: asyncio.Event) -> None:
        """Stream until ``stop`` is set, reconnecting as needed."""
        attempt = 0
        while not stop.is_set():
            try:
                async with connect(
                    self.url,
                    compression=None,
                    max_queue=4096,
                    open_timeout=10,
                    ping_interval=20,
                    ping_timeout=20,
                    close_timeout=2,
                ) as ws:
                    self.connected.set()
                    planned = await self._session(ws, stop)
                    attempt = 0
                    if planned:
                        self.stats.planned_reconnects += 1
                        continue
            except (OSError, websockets.exceptions.WebSocketException, TimeoutError, TransientError) as exc:
                log.warning("stream connection lost (%r); reconnecting", exc)
            finally:
                self.connected.clear()
            if stop.is_set():
                break
            self.stats.reconnects += 1
            delay = self.backoff(attempt)
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def _session(self, ws: ClientConnection, stop: asyncio.Event) -> bool:
        """One connection: REST catch-up, then live frames. True for a planned reconnect."""
        planned = asyncio.Event()
        closer = asyncio.ensure_future(self._close_when(ws, stop, planned))
        watchdog = asyncio.ensure_future(self._idle_catch_up())
        try:
            async with self._lock:
                for sym in self.symbols:
                    if sym in self.last:
                        await self.fill(sym, self.last[sym] + 1, None)
            while True:
                # returns at once while frames are buffered: no per-frame task or timer
                frame = await ws.recv(decode=False)
                await self._frame(frame if isinstance(frame, bytes) else frame.encode())
        except websockets.exceptions.ConnectionClosed:
            if planned.is_set() or stop.is_set():
                return planned.is_set()
            raise
        finally:
            closer.cancel()
            watchdog.cancel()

    async def _idle_catch_up(self) -> None:
        # A skipped last message leaves no later trade id to reveal the gap: when the stream
        # has been quiet for idle_check_s, ask REST whether trades were published meanwhile.
        while True:
            await asyncio.sleep(self.idle_check_s / 2)
            if time.monotonic() - self._last_frame < self.idle_check_s:
                continue
            async with self._lock:
                for sym in self.symbols:
                    if sym in self.last:
                        got = await self.fill(sym, self.last[sym] + 1, None)
                        if got:
                            self.stats.gaps_detected += 1
                            self.stats.gaps_filled += 1
                            log.info("quiet stream: %d %s trades caught up through REST", got, sym)
            self._last_frame = time.monotonic()

    async def _close_when(self, ws: ClientConnection, stop: asyncio.Event, planned: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(stop.wait(), timeout=self.max_session_s)
        except TimeoutError:
            log.info("planned reconnect before the 24 h cut")
            planned.set()
        await ws.close()

    async def _frame(self, raw: bytes) -> None:
        self._last_frame = time.monotonic()
        if self._lock.locked():  # a REST fill runs: wait for it, then go on in order
            async with self._lock:
                await self._handle(raw)
            return
        # Lock-free on the hot path: _handle only awaits inside a gap fill, which takes the lock.
        await self._handle(raw)

    async def _handle(self, raw: bytes) -> None:
        now = self.clock_ns()
        self.stats.frames += 1
        try:
            tick = tick_from_frame(raw, now, self.venue)
        except MalformedMessage as exc:
            self.stats.dead_lettered += 1
            self.sink.dead_letter(exc.reason, raw, now, exc.stream)
            return
        sym, tid = tick.symbol, tick.trade_id
        last = self.last.get(sym)
        if last is not None:
            if tid <= last - self.reset_below:
                # Binance ids never go back this far: the venue restarted (a replay exchange)
                log.warning(
                    "%s trade ids went back from %d to %d: venue restarted; following it", sym, last, tid
                )
                last = None
            elif tid <= last:
                self.stats.duplicates += 1
                return
        if last is not None and tid > last + 1:
            self.stats.gaps_detected += 1
            log.info("gap in %s: trades %d..%d missing; filling through REST", sym, last + 1, tid - 1)
            async with self._lock:
                await self.fill(sym, last + 1, tid - 1)
            reached = self.last.get(sym)
            if reached is not None and reached >= tid:
                self.stats.duplicates += 1  # another fill already delivered this trade
                return
            if reached is not None and tid > reached + 1:
                self.stats.gaps_unfilled += 1
                log.error("gap in %s not fillable: %d..%d", sym, reached + 1, tid - 1)
            elif reached is not None:
                self.stats.gaps_filled += 1
        self.last[sym] = tid
        self.stats.ticks += 1
        self.sink.tick(tick)

    async def fill(self, symbol: str, from_id: int, to_id: int | None) -> int:
        """Fetch trades ``from_id..to_id`` (None: up to the latest) through REST; return how many."""
        got = 0
        next_id = from_id
        while to_id is None or next_id <= to_id:
            limit = self.rest_page if to_id is None else min(self.rest_page, to_id - next_id + 1)
            rows = await self.rest.historical_trades(symbol, from_id=next_id, limit=limit)
            if not rows:
                break
            now = self.clock_ns()
            for row in rows:
                try:
                    tick = tick_from_rest_trade(row, symbol, now, self.venue)
                except MalformedMessage as exc:
                    self.stats.dead_lettered += 1
                    self.sink.dead_letter(exc.reason, repr(row).encode(), now, f"rest:{symbol}")
                    continue
                if tick.trade_id < next_id or (to_id is not None and tick.trade_id > to_id):
                    continue
                if tick.trade_id != self.last.get(symbol, tick.trade_id - 1) + 1:
                    break  # REST itself skipped ids: stop; the gap stays visible
                if got >= self.max_fill:
                    log.error(
                        "%s: more than %d trades missing from %d on; giving up the fill and "
                        "following the live stream",
                        symbol,
                        self.max_fill,
                        from_id,
                    )
                    self.stats.gaps_unfilled += 1
                    self.last.pop(symbol, None)
                    return got
                self.last[symbol] = tick.trade_id
                self.stats.ticks += 1
                self.stats.filled += 1
                got += 1
                self.sink.tick(tick)
            next_id = self.last.get(symbol, next_id - 1) + 1
            if len(rows) < limit:
                break
        return got
