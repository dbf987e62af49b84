"""The replay exchange: recorded Binance trades served over Binance's WS paths and REST endpoints.

One shared market clock, as on a real exchange: the recording starts when the first client
subscribes and then runs at the chosen speed (``x1``, ``xN``) whether or not anyone listens,
so a client that drops misses trades and has to fill them through REST. At ``max`` the clock
advances only while a client is connected, as fast as the slowest subscriber reads
(backpressure instead of loss). Loop mode replays the recording again with trade ids and times
shifted forward and logs that the content repeats.

WebSocket: ``/ws/<stream>[/<stream>...]`` (raw events) and ``/stream?streams=a/b`` (combined
envelopes), plus ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS`` requests. Streams:
``<sym>@trade``, ``<sym>@aggTrade`` (one aggregate per trade) and whatever else the recording
holds (``@bookTicker``, ``@depth@100ms``). REST: ``/api/v3/ping``, ``time``, ``exchangeInfo``,
``trades``, ``historicalTrades``, ``aggTrades``, ``klines``, with ``X-MBX-USED-WEIGHT-1M``
headers and 429 + ``Retry-After`` past the weight limit. Only trades already published by the
clock are visible: no look-ahead through REST. Integer parameters are checked as Binance does:
anything but digits answers 400 ``{"code": -1100}``, ``limit`` outside 1..1000 400
``{"code": -1130}``.

Control: ``GET /control/status``; ``GET|POST /control/faults`` with
``{"drop_every": N, "skip_every": N, "skip": K, "malformed_every": M}`` (0 turns a fault off;
counted per connection); ``POST /control/drop`` closes every connection now. ``GET /metrics``
(also on the separate metrics port when given).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec
from aiohttp import WSMsgType, web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, start_http_server

from hft.market.binance import Trade, trade_to_agg_rest, trade_to_rest
from hft.market.replay import Timeline, loop_period_ms, shifted, trade_event

log = logging.getLogger("hft.market.exchange")

WEIGHT_LIMIT_1M = 6000
DEFAULT_LIMIT, MAX_LIMIT = 500, 1000  # ``limit`` of the trade and kline endpoints, as on Binance
_MAX_LONG = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,20}")
_WEIGHTS = {
    "trades": 25,
    "historicalTrades": 25,
    "aggTrades": 4,
    "klines": 2,
    "exchangeInfo": 20,
    "ping": 1,
    "time": 1,
}
_INTERVAL_MS = {
    "1s": 1000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}
_MALFORMED = [
    b'{"stream":"%s","data":{"e":"trade","E":',  # truncated JSON
    b'{"stream":"%s","data":{"e":"trade","s":"BTCUSDT","t":"x"}}',  # wrong types, missing fields
    b"not json at all: %s",
    b'{"stream":"%s","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"abc","q":"1","T":1,"m":true}}',
]


def parse_speed(speed: str) -> float | None:
    """``x1`` → 1.0, ``x100`` → 100.0, ``max`` → None (as fast as the clients read)."""
    s = speed.strip().lower()
    if s == "max":
        return None
    try:
        value = float(s[1:] if s.startswith("x") else s)
    except ValueError:
        raise ValueError(f"speed must be x1, xN or max, not {speed!r}") from None
    if value <= 0:
        raise ValueError(f"speed must be positive, not {speed!r}")
    return value


def normalize_stream(name: str) -> str:
    """Binance stream names: the symbol part is lower-case, the rest as Binance spells it."""
    sym, sep, rest = name.partition("@")
    return f"{sym.lower()}{sep}{rest}"


class BadParameter(ValueError):
    """A query parameter Binance would refuse: answered 400 with its ``{"code", "msg"}``."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


@dataclass
class Faults:
    """Fault injection, counted per connection; 0 turns a fault off."""

    drop_every: int = 0  # close the connection after every N-th message sent on it
    skip_every: int = 0  # every N-th message, silently skip ...
    skip: int = 1  # ... this many consecutive messages
    malformed_every: int = 0  # send a malformed frame before every M-th message (extra frame)

    def update(self, values: dict[str, Any]) -> None:
        """Set faults from a JSON object; refuse unknown keys and negative values."""
        known = set(asdict(self))
        bad = set(values) - known
        if bad:
            raise ValueError(f"unknown fault(s) {sorted(bad)}; known: {sorted(known)}")
        for k, v in values.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{k} must be a non-negative integer")
            setattr(self, k, v)


@dataclass(eq=False)
class _Subscriber:
    ws: web.WebSocketResponse
    streams: set[str]
    combined: bool
    n: int = 0
    skip_left: int = 0


@dataclass
class _Published:
    """Trades of one symbol published so far (bounded; ids contiguous from ``base_id``)."""

    trades: list[Trade] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    base_id: int = 0
    keep: int = 500_000

    def add(self, t: Trade) -> None:
        if not self.trades:
            self.base_id = t.trade_id
        self.trades.append(t)
        self.times.append(t.trade_time_ms)
        if len(self.trades) > self.keep * 1.2:
            cut = len(self.trades) - self.keep
            del self.trades[:cut], self.times[:cut]
            self.base_id = self.trades[0].trade_id

    def from_id(self, trade_id: int, limit: int) -> list[Trade]:
        start = max(0, trade_id - self.base_id)
        return self.trades[start : start + limit]

    def from_time(self, start_ms: int | None, end_ms: int | None, limit: int) -> list[Trade]:
        i = bisect.bisect_left(self.times, start_ms) if start_ms is not None else 0
        j = bisect.bisect_right(self.times, end_ms) if end_ms is not None else len(self.times)
        return self.trades[i : min(j, i + limit)]


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter("exchange_messages_sent", "WebSocket messages sent", registry=registry)
        self.published = Counter(
            "exchange_trades_published", "Trades published by the market clock", ["symbol"], registry=registry
        )
        self.faults = Counter("exchange_faults_injected", "Injected faults", ["kind"], registry=registry)
        self.subscribers = Gauge("exchange_subscribers", "Connected WebSocket clients", registry=registry)
        self.passes = Gauge(
            "exchange_replay_pass", "Loop pass of the recording (0 = first)", registry=registry
        )
        self.rest = Counter(
            "exchange_rest_requests", "REST requests", ["endpoint", "status"], registry=registry
        )


class ReplayExchange:
    """A Binance-compatible market served from a recorded :class:`Timeline`."""

    def __init__(
        self,
        timeline: Timeline,
        speed: float | None = 1.0,
        loop: bool = False,
        faults: Faults | None = None,
        registry: CollectorRegistry | None = None,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        if not timeline.frames:
            raise ValueError("empty recording: nothing to replay")
        self.timeline = timeline
        self.speed = speed
        self.loop = loop
        self.faults = faults or Faults()
        self.registry = registry or CollectorRegistry()
        self.metrics = _Metrics(self.registry)
        self._clock_ns = clock_ns
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._span = timeline.id_span()
        self._n_trades = len(timeline.trades)
        self._period_ms = loop_period_ms(timeline)
        self._subs: set[_Subscriber] = set()
        self._by_stream: dict[str, set[_Subscriber]] = {}
        self._published: dict[str, _Published] = {s: _Published() for s in timeline.symbols}
        self._has_subscriber = asyncio.Event()
        self._weight: list[int] = [0, 0]  # minute, used weight
        self._malformed_i = 0
        self.pass_no = 0
        self.started = False
        self.finished = False
        self.frames_done = 0
        self._task: asyncio.Task[None] | None = None

    # --- the market clock ---------------------------------------------------------------------
    async def _publish(self) -> None:
        await self._has_subscriber.wait()
        self.started = True
        frames = self.timeline.frames
        t0 = frames[0].time_ns
        period_ns = self._period_ms * 1_000_000
        log.info(
            "replay starts: %d frames, %d trades, speed %s, loop %s",
            len(frames),
            self._n_trades,
            "max" if self.speed is None else f"x{self.speed:g}",
            self.loop,
        )
        wall0 = self._clock_ns()
        while True:
            k = self.pass_no
            if k:
                log.warning(
                    "loop pass %d: the recording repeats (same content), trade ids shifted by %s and "
                    "times by %d ms",
                    k,
                    {s: k * (hi - lo + 1) for s, (lo, hi) in self._span.items()},
                    k * self._period_ms,
                )
            self.metrics.passes.set(k)
            for i, fr in enumerate(frames):
                if self.speed is not None:
                    due = wall0 + int((fr.time_ns - t0 + k * period_ns) / self.speed)
                    delay = due - self._clock_ns()
                    if delay > 500_000:
                        await asyncio.sleep(delay / 1e9)
                else:
                    if not self._subs:
                        await self._has_subscriber.wait()
                    if i % 64 == 0:
                        await asyncio.sleep(0)  # let REST and control requests in
                await self._emit(fr.stream, fr.data, fr.trade, k)
                self.frames_done += 1
            if not self.loop:
                break
            self.pass_no += 1
        self.finished = True
        log.info("replay finished: %d frames sent", self.frames_done)

    async def _emit(self, stream: str, data: bytes, trade: Trade | None, k: int) -> None:
        if trade is not None:
            if k:
                trade = shifted(trade, k, self._span, self._period_ms)
                data = msgspec.json.encode(trade_event(trade))
            self._published[trade.symbol].add(trade)
            self.metrics.published.labels(trade.symbol).inc()
            agg = self._by_stream.get(f"{trade.symbol.lower()}@aggTrade")
            if agg:
                body = msgspec.json.encode(
                    {"e": "aggTrade", "E": trade.event_time_ms, "s": trade.symbol, **trade_to_agg_rest(trade)}
                )
                for sub in list(agg):
                    await self._deliver(sub, f"{trade.symbol.lower()}@aggTrade", body)
        elif k:
            obj = msgspec.json.decode(data)
            for key in ("E", "T"):
                if key in obj:
                    obj[key] += k * self._period_ms
            data = msgspec.json.encode(obj)
        subs = self._by_stream.get(stream)
        if subs:
            for sub in list(subs):
                await self._deliver(sub, stream, data)

    async def _deliver(self, sub: _Subscriber, stream: str, data: bytes) -> None:
        f = self.faults
        sub.n += 1
        n = sub.n
        try:
            if f.malformed_every and n % f.malformed_every == 0:
                bad = _MALFORMED[self._malformed_i % len(_MALFORMED)]
                self._malformed_i += 1  # cycle the kinds across connections too
                await sub.ws.send_frame(bad.replace(b"%s", stream.encode()), WSMsgType.TEXT)
                self.metrics.faults.labels("malformed").inc()
            if sub.skip_left:
                sub.skip_left -= 1
                self.metrics.faults.labels("skip").inc()
                return
            if f.skip_every and n % f.skip_every == 0:
                sub.skip_left = max(0, f.skip - 1)
                self.metrics.faults.labels("skip").inc()
                return
            payload = (
                (b'{"stream":"' + stream.encode() + b'","data":' + data + b"}") if sub.combined else data
            )
            await sub.ws.send_frame(payload, WSMsgType.TEXT)
            self.metrics.sent.inc()
            if f.drop_every and n % f.drop_every == 0:
                self.metrics.faults.labels("drop").inc()
                self._remove(sub)
                await sub.ws.close(code=1001, message=b"fault injection: drop")
        except (ConnectionError, RuntimeError):
            self._remove(sub)

    # --- subscribers --------------------------------------------------------------------------
    def _add(self, sub: _Subscriber, streams: list[str]) -> None:
        self._subs.add(sub)
        for s in streams:
            sub.streams.add(s)
            self._by_stream.setdefault(s, set()).add(sub)
        self.metrics.subscribers.set(len(self._subs))
        if sub.streams:
            self._has_subscriber.set()

    def _unsubscribe(self, sub: _Subscriber, streams: list[str]) -> None:
        for s in streams:
            sub.streams.discard(s)
            self._by_stream.get(s, set()).discard(sub)

    def _remove(self, sub: _Subscriber) -> None:
        self._unsubscribe(sub, list(sub.streams))
        self._subs.discard(sub)
        self.metrics.subscribers.set(len(self._subs))
        if not self._subs:
            self._has_subscriber.clear()

    async def _ws(self, request: web.Request, streams: list[str], combined: bool) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        sub = _Subscriber(ws, set(), combined)
        self._add(sub, [normalize_stream(s) for s in streams if s])
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_request(sub, msg.data)
        finally:
            self._remove(sub)
        return ws

    async def _on_request(self, sub: _Subscriber, text: str) -> None:
        try:
            req = msgspec.json.decode(text)
            method, rid = req.get("method"), req.get("id")
            params = [normalize_stream(str(p)) for p in req.get("params", [])]
        except (msgspec.DecodeError, AttributeError, TypeError):
            await sub.ws.send_str('{"error":{"code":3,"msg":"Invalid JSON"}}')
            return
        if method == "SUBSCRIBE":
            self._add(sub, params)
            await sub.ws.send_str(msgspec.json.encode({"result": None, "id": rid}).decode())
        elif method == "UNSUBSCRIBE":
            self._unsubscribe(sub, params)
            await sub.ws.send_str(msgspec.json.encode({"result": None, "id": rid}).decode())
        elif method == "LIST_SUBSCRIPTIONS":
            await sub.ws.send_str(msgspec.json.encode({"result": sorted(sub.streams), "id": rid}).decode())
        else:
            await sub.ws.send_str(
                msgspec.json.encode({"error": {"code": 2, "msg": "Invalid request"}, "id": rid}).decode()
            )

    async def _ws_raw(self, request: web.Request) -> web.StreamResponse:
        return await self._ws(request, request.match_info["tail"].split("/"), combined=False)

    async def _ws_combined(self, request: web.Request) -> web.StreamResponse:
        return await self._ws(request, request.query.get("streams", "").split("/"), combined=True)

    # --- REST ---------------------------------------------------------------------------------
    def _json(self, endpoint: str, body: Any, status: int = 200, weight: int = 0) -> web.Response:
        self.metrics.rest.labels(endpoint, str(status)).inc()
        headers = {"X-MBX-USED-WEIGHT-1M": str(self._weight[1])}
        return web.Response(
            body=msgspec.json.encode(body), status=status, content_type="application/json", headers=headers
        )

    def _charge(self, endpoint: str) -> web.Response | None:
        minute = self._wall_ms() // 60_000
        if self._weight[0] != minute:
            self._weight = [minute, 0]
        self._weight[1] += _WEIGHTS.get(endpoint, 1)
        if self._weight[1] > WEIGHT_LIMIT_1M:
            resp = self._json(endpoint, {"code": -1003, "msg": "Too much request weight used"}, 429)
            resp.headers["Retry-After"] = str(60 - (self._wall_ms() // 1000) % 60)
            return resp
        return None

    def _symbol(self, request: web.Request, endpoint: str) -> tuple[str, _Published] | web.Response:
        sym = request.query.get("symbol", "").upper()
        if sym not in self._published:
            return self._json(endpoint, {"code": -1121, "msg": "Invalid symbol."}, 400)
        return sym, self._published[sym]

    @staticmethod
    def _int(
        request: web.Request, name: str, default: int | None = None, lo: int = 0, hi: int = _MAX_LONG
    ) -> int | None:
        """An integer query parameter as Binance checks it: digits only (-1100), within ``lo..hi`` (-1130)."""
        v = request.query.get(name)
        if v is None or v == "":
            return default
        if not _DIGITS.fullmatch(v):
            raise BadParameter(
                -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
            )
        n = int(v)
        if not lo <= n <= hi:
            raise BadParameter(
                -1130, f"Data sent for parameter '{name}' is not valid; legal range is {lo}..{hi}."
            )
        return n

    def _limit(self, request: web.Request) -> int:
        return self._int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT) or DEFAULT_LIMIT

    async def _rest(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"]
        limited = self._charge(endpoint)
        if limited is not None:
            return limited
        try:
            return self._rest_answer(request, endpoint)
        except BadParameter as exc:
            return self._json(endpoint, {"code": exc.code, "msg": exc.msg}, 400)
        except ValueError as exc:
            return self._json(endpoint, {"code": -1100, "msg": f"Illegal parameter: {exc}"}, 400)

    def _rest_answer(self, request: web.Request, endpoint: str) -> web.Response:
        if endpoint == "ping":
            return self._json(endpoint, {})
        if endpoint == "time":
            return self._json(endpoint, {"serverTime": self._wall_ms()})
        if endpoint == "exchangeInfo":
            return self._json(endpoint, self._exchange_info())
        if endpoint not in ("trades", "historicalTrades", "aggTrades", "klines"):
            return self._json(endpoint, {"code": -1000, "msg": f"unknown endpoint {endpoint}"}, 404)
        found = self._symbol(request, endpoint)
        if isinstance(found, web.Response):
            return found
        _, pub = found
        if endpoint == "klines":
            return self._json(endpoint, self._klines(request, pub))
        limit = self._limit(request)
        from_id = self._int(request, "fromId")
        if endpoint == "aggTrades":
            start, end = self._int(request, "startTime"), self._int(request, "endTime")
            rows = (
                pub.from_id(from_id, limit)
                if from_id is not None
                else (
                    pub.from_time(start, end, limit)
                    if start is not None or end is not None
                    else pub.trades[-limit:]
                )
            )
            return self._json(endpoint, [trade_to_agg_rest(t) for t in rows])
        if endpoint == "historicalTrades" and from_id is not None:
            return self._json(endpoint, [trade_to_rest(t) for t in pub.from_id(from_id, limit)])
        return self._json(endpoint, [trade_to_rest(t) for t in pub.trades[-limit:]])

    def _klines(self, request: web.Request, pub: _Published) -> list[list[Any]]:
        interval = request.query.get("interval", "")
        if interval not in _INTERVAL_MS:
            raise ValueError(f"interval {interval!r}")
        step = _INTERVAL_MS[interval]
        limit = self._limit(request)
        trades = pub.from_time(
            self._int(request, "startTime"), self._int(request, "endTime"), len(pub.trades)
        )
        bars: dict[int, list[Any]] = {}
        for t in trades:
            ot = t.trade_time_ms - t.trade_time_ms % step
            p, q = float(t.price), float(t.quantity)
            b = bars.get(ot)
            if b is None:
                bars[ot] = [
                    ot,
                    p,
                    p,
                    p,
                    p,
                    q,
                    ot + step - 1,
                    p * q,
                    1,
                    0.0 if t.buyer_is_maker else q,
                    0.0 if t.buyer_is_maker else p * q,
                ]
                continue
            b[2], b[3], b[4] = max(b[2], p), min(b[3], p), p
            b[5] += q
            b[7] += p * q
            b[8] += 1
            if not t.buyer_is_maker:
                b[9] += q
                b[10] += p * q
        out = []
        for b in list(bars.values())[:limit]:
            out.append(
                [
                    b[0],
                    f"{b[1]:.8f}",
                    f"{b[2]:.8f}",
                    f"{b[3]:.8f}",
                    f"{b[4]:.8f}",
                    f"{b[5]:.8f}",
                    b[6],
                    f"{b[7]:.8f}",
                    b[8],
                    f"{b[9]:.8f}",
                    f"{b[10]:.8f}",
                    "0",
                ]
            )
        return out

    def _exchange_info(self) -> dict[str, Any]:
        return {
            "timezone": "UTC",
            "serverTime": self._wall_ms(),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": WEIGHT_LIMIT_1M,
                }
            ],
            "symbols": [
                {"symbol": s, "status": "TRADING", "baseAsset": s[:-4], "quoteAsset": s[-4:]}
                for s in self._published
            ],
        }

    # --- control ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Where the replay stands: pass, published trades per symbol, faults, subscribers."""
        return {
            "speed": "max" if self.speed is None else f"x{self.speed:g}",
            "loop": self.loop,
            "started": self.started,
            "finished": self.finished,
            "pass": self.pass_no,
            "frames_total": len(self.timeline.frames),
            "frames_done": self.frames_done,
            "subscribers": len(self._subs),
            "faults": asdict(self.faults),
            "published": {
                s: {
                    "count": int(self.metrics.published.labels(s)._value.get()),
                    "last_id": p.trades[-1].trade_id if p.trades else None,
                }
                for s, p in self._published.items()
            },
            "recording": {"trades": self._n_trades, "id_span": self._span, "sources": self.timeline.sources},
        }

    async def _status(self, request: web.Request) -> web.Response:
        return self._json("status", self.status())

    async def _faults(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                body = await request.json()
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                self.faults.update(body)
            except ValueError as exc:
                return self._json("faults", {"error": str(exc)}, 400)
            log.warning("faults now %s", asdict(self.faults))
        return self._json("faults", asdict(self.faults))

    async def _drop(self, request: web.Request) -> web.Response:
        subs = list(self._subs)
        for sub in subs:
            self._remove(sub)
            await sub.ws.close(code=1001, message=b"fault injection: drop")
        self.metrics.faults.labels("drop").inc(len(subs))
        return self._json("drop", {"dropped": len(subs)})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain")

    # --- app ----------------------------------------------------------------------------------
    def app(self) -> web.Application:
        """The aiohttp application (the market clock starts with it)."""
        app = web.Application()
        app.router.add_get("/ws/{tail:.+}", self._ws_raw)
        app.router.add_get("/stream", self._ws_combined)
        app.router.add_get("/api/v3/{endpoint}", self._rest)
        app.router.add_get("/control/status", self._status)
        app.router.add_route("*", "/control/faults", self._faults)
        app.router.add_post("/control/drop", self._drop)
        app.router.add_get("/metrics", self._metrics)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._has_subscriber = asyncio.Event()  # bound to the running loop
        self._task = asyncio.get_running_loop().create_task(self._publish())

    async def _on_cleanup(self, app: web.Application) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sub in list(self._subs):
            await sub.ws.close(code=1001, message=b"server shutdown")


async def serve(
    exchange: ReplayExchange, host: str, port: int, stop: asyncio.Event, metrics_port: int | None = None
) -> None:
    """Serve until ``stop`` is set."""
    runner = web.AppRunner(exchange.app(), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    if metrics_port:
        start_http_server(metrics_port, addr=host, registry=exchange.registry)
    log.info("replay exchange on ws://%s:%d and http://%s:%d", host, port, host, port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


class ExchangeThread:
    """Run a ReplayExchange on its own event loop in a thread (tests, benchmarks)."""

    def __init__(self, exchange: ReplayExchange, host: str = "127.0.0.1", port: int = 0) -> None:
        self.exchange = exchange
        self.host = host
        self.port = port or _free_port(host)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replay-exchange", daemon=True)

    @property
    def ws_url(self) -> str:
        """Base WebSocket URL."""
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """Base REST URL."""
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            task = asyncio.create_task(serve(self.exchange, self.host, self.port, self._stop))
            await asyncio.sleep(0.05)
            self._ready.set()
            await task

        self._loop.run_until_complete(main())

    def start(self) -> ExchangeThread:
        """Start serving; return when the port is open."""
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("replay exchange did not start")
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def __enter__(self) -> ExchangeThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
