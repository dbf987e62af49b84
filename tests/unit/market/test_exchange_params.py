"""The replay exchange checks integer query parameters as Binance does (issue 21, item 3).

``limit=-5`` used to slice ``trades[5:]`` and return the whole buffer; ``limit=0`` fell back to
500. Now anything but digits answers 400 ``-1100`` and a ``limit`` outside 1..1000 400 ``-1130``,
both as ``{"code", "msg"}`` JSON. Real sockets, a slice of the real spot captures.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
import websockets

from hft.market.exchange import ExchangeThread, ReplayExchange
from hft.market.replay import Timeline

ENDPOINTS = ["trades", "historicalTrades", "aggTrades", "klines"]


@pytest.fixture(scope="module")
def published(spot_timeline: Timeline) -> Iterator[tuple[ExchangeThread, int]]:
    """An exchange at ``max`` speed whose whole (small) recording has been published."""
    recording = Timeline(spot_timeline.frames[:12000], spot_timeline.sources)
    n_btc = sum(1 for f in recording.frames if f.trade is not None and f.trade.symbol == "BTCUSDT")
    ex = ReplayExchange(recording, speed=None)
    with ExchangeThread(ex) as th:

        async def drain() -> None:
            url = f"{th.ws_url}/ws/btcusdt@trade/ethusdt@trade"
            async with websockets.connect(url, compression=None, close_timeout=1, max_size=None) as ws:
                while not ex.finished:
                    try:
                        await asyncio.wait_for(ws.recv(), timeout=0.5)
                    except TimeoutError:
                        continue

        asyncio.run(asyncio.wait_for(drain(), timeout=60))
        yield th, n_btc


def _get(th: ExchangeThread, endpoint: str, **params: object) -> httpx.Response:
    query = {"symbol": "BTCUSDT", **({"interval": "1s"} if endpoint == "klines" else {}), **params}
    return httpx.get(f"{th.rest_url}/api/v3/{endpoint}", params=query, timeout=10)


def test_the_recording_holds_more_trades_than_a_page(published: tuple[ExchangeThread, int]) -> None:
    th, n_btc = published
    assert n_btc > 1000  # more than a page: a negative limit (the old bug) would show as "all but 5"
    assert len(_get(th, "trades", limit=1000).json()) == min(n_btc, 1000)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("limit", ["-5", "-1", "abc", "1.5", "1e3", " 5", "0x10"])
def test_limit_that_is_not_digits_is_400_minus_1100(
    published: tuple[ExchangeThread, int], endpoint: str, limit: str
) -> None:
    r = _get(published[0], endpoint, limit=limit)
    assert r.status_code == 400, r.text
    body = json.loads(r.text)
    assert body["code"] == -1100
    assert "'limit'" in body["msg"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("limit", ["0", "1001", "5000", "99999999999999999999"])
def test_limit_out_of_range_is_400_minus_1130(
    published: tuple[ExchangeThread, int], endpoint: str, limit: str
) -> None:
    r = _get(published[0], endpoint, limit=limit)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == -1130
    assert "1..1000" in r.json()["msg"]


@pytest.mark.parametrize(
    ("endpoint", "name"),
    [
        ("historicalTrades", "fromId"),
        ("aggTrades", "fromId"),
        ("aggTrades", "startTime"),
        ("aggTrades", "endTime"),
        ("klines", "startTime"),
        ("klines", "endTime"),
    ],
)
def test_other_integer_parameters_are_checked(
    published: tuple[ExchangeThread, int], endpoint: str, name: str
) -> None:
    r = _get(published[0], endpoint, **{name: "-1"})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == -1100
    assert f"'{name}'" in r.json()["msg"]
    assert _get(published[0], endpoint, **{name: "x"}).status_code == 400
    assert _get(published[0], endpoint, **{name: "0"}).status_code == 200


@pytest.mark.parametrize("limit", [1, 5, 1000])
def test_a_valid_limit_returns_at_most_that_many_latest_trades(
    published: tuple[ExchangeThread, int], limit: int
) -> None:
    th, n_btc = published
    rows = _get(th, "trades", limit=limit).json()
    assert len(rows) == min(limit, n_btc)
    everything = _get(th, "trades", limit=1000).json()
    assert rows == everything[-len(rows) :]  # the latest ones, oldest first


def test_no_limit_means_500(published: tuple[ExchangeThread, int]) -> None:
    th, n_btc = published
    assert len(_get(th, "trades").json()) == min(500, n_btc)
    assert len(_get(th, "trades", limit="").json()) == min(500, n_btc)
