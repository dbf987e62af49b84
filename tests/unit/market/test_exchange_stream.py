"""The replay exchange and the stream client against each other, in-process (real sockets, no Kafka).

Both run for real: the exchange serves HTTP/WebSocket on a loopback port from a thread, the
stream client connects to it. The recording is a slice of the real 2024-08-08 spot captures.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from hft.market.exchange import ExchangeThread, Faults, ReplayExchange, parse_speed
from hft.market.replay import Timeline, expected_trades, load_source
from hft.market.rest import BinanceRest
from hft.market.stream import TradeStream
from hft.market.ticks import Tick

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


@pytest.fixture(scope="module")
def recording(spot_timeline: Timeline) -> Timeline:
    """The first ~25,000 frames of the real captures (about 4,800 trades of both symbols)."""
    return Timeline(spot_timeline.frames[:25000], spot_timeline.sources)


class ListSink:
    def __init__(self) -> None:
        self.ticks: list[Tick] = []
        self.dead: list[tuple[str, bytes, str]] = []

    def tick(self, tick: Tick) -> None:
        self.ticks.append(tick)

    def dead_letter(self, reason: str, raw: bytes, receive_time_ns: int, stream: str) -> None:
        self.dead.append((reason, raw, stream))


def _stream_all(
    th: ExchangeThread, want: int, timeout: float = 60, **kw: object
) -> tuple[ListSink, TradeStream]:
    sink = ListSink()

    async def main() -> TradeStream:
        stop = asyncio.Event()
        st = TradeStream(
            th.ws_url, BinanceRest(th.rest_url), SYMBOLS, sink, backoff=lambda a: 0.05, idle_check_s=0.5, **kw
        )  # type: ignore[arg-type]
        task = asyncio.create_task(st.run(stop))
        deadline = time.monotonic() + timeout
        while len(sink.ticks) < want and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a plain list
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # anything beyond `want` would be a duplicate: give it time to show
        stop.set()
        await task
        return st

    return sink, asyncio.run(main())


def _ids(ticks: list[Tick]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for t in ticks:
        out.setdefault(t.symbol, []).append(t.trade_id)
    return out


@pytest.fixture
def exchange(recording: Timeline, request: pytest.FixtureRequest) -> Iterator[ExchangeThread]:
    kw = getattr(request, "param", {})
    ex = ReplayExchange(
        recording, speed=kw.get("speed"), loop=kw.get("loop", False), faults=Faults(**kw.get("faults", {}))
    )
    with ExchangeThread(ex) as th:
        yield th


def test_speed_names_parse() -> None:
    assert parse_speed("x1") == 1.0
    assert parse_speed("x100") == 100.0
    assert parse_speed("max") is None
    with pytest.raises(ValueError):
        parse_speed("fast")


def test_stream_gets_every_trade_once_in_order_at_max_speed(
    exchange: ExchangeThread, recording: Timeline
) -> None:
    want = recording.trades
    sink, st = _stream_all(exchange, len(want))
    assert [(t.symbol, t.trade_id) for t in sink.ticks] == [(t.symbol, t.trade_id) for t in want]
    assert [t.trade_time_ns // 10**6 for t in sink.ticks] == [t.trade_time_ms for t in want]
    assert [t.event_time_ns // 10**6 for t in sink.ticks] == [t.event_time_ms for t in want]
    assert all(t.receive_time_ns > 1_700_000_000 * 10**9 for t in sink.ticks)
    assert st.stats.gaps_detected == 0
    assert not sink.dead


@pytest.mark.parametrize(
    "exchange",
    [{"faults": {"drop_every": 1500, "skip_every": 700, "skip": 3, "malformed_every": 1100}}],
    indirect=True,
)
def test_drops_skips_and_malformed_frames_still_give_every_trade_once(
    exchange: ExchangeThread, recording: Timeline
) -> None:
    want = recording.trades
    sink, st = _stream_all(exchange, len(want))
    ids = _ids(sink.ticks)
    for sym, span in recording.id_span().items():
        assert ids[sym] == list(range(span[0], span[1] + 1)), sym
    assert st.stats.reconnects >= 2
    assert st.stats.gaps_detected >= 3
    assert st.stats.gaps_unfilled == 0
    assert any(t.source == Tick.SOURCE_REST_GAP_FILL for t in sink.ticks)
    assert len(sink.dead) >= 3
    assert all(reason for reason, _, _ in sink.dead)
    assert {s for _, _, s in sink.dead} >= {"btcusdt@trade"} or {s for _, _, s in sink.dead} >= {
        "ethusdt@trade"
    }


@pytest.mark.parametrize("exchange", [{"loop": True}], indirect=True)
def test_loop_mode_continues_ids_and_times_and_says_so(exchange: ExchangeThread, recording: Timeline) -> None:
    want = expected_trades(recording, passes=2)
    sink, _ = _stream_all(exchange, len(want))
    got = [(t.symbol, t.trade_id, t.trade_time_ns // 10**6) for t in sink.ticks[: len(want)]]
    assert got == [(t.symbol, t.trade_id, t.trade_time_ms) for t in want]
    status = httpx.get(f"{exchange.rest_url}/control/status").json()
    assert status["pass"] >= 1
    assert status["loop"] is True


@pytest.mark.parametrize("exchange", [{"speed": 2.0}], indirect=True)
def test_rest_serves_only_published_trades(exchange: ExchangeThread, recording: Timeline) -> None:
    base = exchange.rest_url
    assert httpx.get(f"{base}/api/v3/trades", params={"symbol": "BTCUSDT"}).json() == []  # clock not started
    info = httpx.get(f"{base}/api/v3/exchangeInfo").json()
    assert {s["symbol"] for s in info["symbols"]} == set(SYMBOLS)
    bad = httpx.get(f"{base}/api/v3/trades", params={"symbol": "DOGEUSDT"})
    assert bad.status_code == 400
    assert bad.json()["code"] == -1121

    async def listen() -> list[dict[str, object]]:
        async with websockets.connect(
            f"{exchange.ws_url}/ws/btcusdt@trade", compression=None, close_timeout=1
        ) as ws:
            return [json.loads(await ws.recv()) for _ in range(5)]

    raw = asyncio.run(listen())
    assert all(m["e"] == "trade" and m["s"] == "BTCUSDT" for m in raw)  # /ws/<stream>: raw events
    resp = httpx.get(f"{base}/api/v3/trades", params={"symbol": "BTCUSDT", "limit": 1000})
    assert int(resp.headers["X-MBX-USED-WEIGHT-1M"]) > 0
    published = resp.json()
    last = published[-1]["id"]
    span = recording.id_span()["BTCUSDT"]
    assert span[0] <= last < span[1]  # x2: only the first seconds are out yet, never the future
    hist = httpx.get(
        f"{base}/api/v3/historicalTrades", params={"symbol": "BTCUSDT", "fromId": span[0], "limit": 3}
    ).json()
    assert [r["id"] for r in hist] == [span[0], span[0] + 1, span[0] + 2]
    agg = httpx.get(
        f"{base}/api/v3/aggTrades", params={"symbol": "BTCUSDT", "fromId": span[0], "limit": 2}
    ).json()
    assert [a["a"] for a in agg] == [span[0], span[0] + 1]
    assert agg[0]["f"] == agg[0]["l"] == span[0]
    kl = httpx.get(f"{base}/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1s"}).json()
    assert kl
    assert all(len(k) == 12 and float(k[2]) >= float(k[3]) for k in kl)
    assert sum(k[8] for k in kl) >= len(hist)


def test_fault_control_endpoint_validates_and_applies(exchange: ExchangeThread) -> None:
    url = f"{exchange.rest_url}/control/faults"
    assert httpx.post(url, json={"drop_every": 10, "malformed_every": 3}).json()["drop_every"] == 10
    assert httpx.get(url).json()["malformed_every"] == 3
    assert httpx.post(url, json={"drop_everything": 1}).status_code == 400
    assert httpx.post(url, json={"skip": -1}).status_code == 400
    assert httpx.post(url, json={"drop_every": 0, "malformed_every": 0}).json()["drop_every"] == 0


def test_rest_client_waits_on_rate_limit(recording: Timeline) -> None:
    ex = ReplayExchange(recording, speed=None)
    ex._weight = [time.time_ns() // 60_000_000_000, 6000]  # this minute's budget is spent
    with ExchangeThread(ex) as th:

        async def call() -> int:
            rest = BinanceRest(th.rest_url, retries=1)
            rest._client.timeout = httpx.Timeout(5)
            try:
                await asyncio.wait_for(rest.exchange_info(), timeout=1.5)
            except TimeoutError:
                return -1  # still waiting for Retry-After: it respected the limit instead of hammering
            finally:
                await rest.aclose()
            return 0

        assert asyncio.run(call()) == -1
        assert int(ex.metrics.rest.labels("exchangeInfo", "429")._value.get()) == 1


@pytest.mark.parametrize("exchange", [{"speed": 5.0}], indirect=True)
def test_planned_reconnects_lose_nothing(exchange: ExchangeThread) -> None:
    sink = ListSink()

    async def main() -> TradeStream:
        stop = asyncio.Event()
        st = TradeStream(
            exchange.ws_url,
            BinanceRest(exchange.rest_url),
            SYMBOLS,
            sink,
            max_session_s=1.0,
            backoff=lambda a: 0.05,
        )
        task = asyncio.create_task(st.run(stop))
        await asyncio.sleep(4.5)
        stop.set()
        await task
        return st

    st = asyncio.run(main())
    assert st.stats.planned_reconnects >= 2
    assert st.stats.reconnects == 0
    for sym, ids in _ids(sink.ticks).items():
        assert ids == list(range(ids[0], ids[0] + len(ids))), sym


@pytest.mark.parametrize("exchange", [{"speed": 20.0}], indirect=True)
def test_a_restarted_client_resumes_from_its_last_ids_through_rest(
    exchange: ExchangeThread, recording: Timeline
) -> None:
    want = recording.trades
    first, st1 = _stream_all(exchange, 1000, timeout=30)
    resume = dict(st1.last)
    second, _ = _stream_all(exchange, len(want) - len(first.ticks), last_ids=resume)
    both = [(t.symbol, t.trade_id) for t in first.ticks + second.ticks]
    assert sorted(both) == sorted((t.symbol, t.trade_id) for t in want)  # nothing lost, nothing twice
    for sym, last in resume.items():
        assert next(t.trade_id for t in second.ticks if t.symbol == sym) == last + 1


def test_ids_far_below_the_last_mean_the_venue_restarted(
    exchange: ExchangeThread, recording: Timeline
) -> None:
    span = recording.id_span()
    stale = {s: hi + 10_000_000 for s, (_, hi) in span.items()}  # ids of an earlier, longer run
    sink, st = _stream_all(exchange, len(recording.trades), last_ids=stale)
    assert sorted((t.symbol, t.trade_id) for t in sink.ticks) == sorted(
        (t.symbol, t.trade_id) for t in recording.trades
    )
    assert st.stats.duplicates == 0


def test_archive_trade_files_replay_and_a_drop_on_command_loses_nothing(data_dir: Path) -> None:
    src = data_dir / "trades" / "spot_ETHUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz"
    timeline = load_source([src], ["ETHUSDT"]).head(3000)
    sink = ListSink()
    with ExchangeThread(ReplayExchange(timeline, speed=None)) as th:

        async def main() -> TradeStream:
            stop = asyncio.Event()
            st = TradeStream(
                th.ws_url,
                BinanceRest(th.rest_url),
                ["ETHUSDT"],
                sink,
                backoff=lambda a: 0.05,
                idle_check_s=0.5,
            )
            task = asyncio.create_task(st.run(stop))
            while len(sink.ticks) < 500:  # noqa: ASYNC110 - polls a plain list
                await asyncio.sleep(0.01)
            async with httpx.AsyncClient() as client:
                dropped = (await client.post(f"{th.rest_url}/control/drop")).json()["dropped"]
            assert dropped == 1
            # At max speed all 3,000 frames can already sit in the client's queue when the drop
            # lands; the close frame comes after them, so wait for the reconnect as well.
            deadline = time.monotonic() + 30
            while (len(sink.ticks) < 3000 or st.stats.reconnects < 1) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            stop.set()
            await task
            return st

        st = asyncio.run(main())
    assert [t.trade_id for t in sink.ticks] == [t.trade_id for t in timeline.trades]
    assert st.stats.reconnects >= 1
    assert sink.ticks[0].trade_time_ns == timeline.trades[0].trade_time_ms * 10**6


def test_subscribe_requests_on_a_bare_stream(exchange: ExchangeThread) -> None:
    async def talk() -> list[dict[str, object]]:
        async with websockets.connect(f"{exchange.ws_url}/stream", compression=None, close_timeout=1) as ws:
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["ETHUSDT@trade"], "id": 7}))
            got = [json.loads(await ws.recv())]
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
            while not any(m.get("id") == 8 for m in got) or not any("stream" in m for m in got):
                got.append(json.loads(await ws.recv()))
            return got

    got = asyncio.run(talk())
    assert got[0] == {"result": None, "id": 7}
    assert next(m for m in got if m.get("id") == 8)["result"] == ["ethusdt@trade"]
    trade = next(m for m in got if "stream" in m)
    assert trade["stream"] == "ethusdt@trade"
    assert trade["data"]["s"] == "ETHUSDT"  # type: ignore[index]
