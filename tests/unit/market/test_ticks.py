"""Binance trade JSON → Tick, Tick ↔ bytes, dead letters, and the event parsers."""

from __future__ import annotations

import json

import pytest

from hft.market.binance import AggTrade, BookTicker, DepthUpdate, Trade, parse_event
from hft.market.ticks import (
    MalformedMessage,
    Tick,
    dead_letter_bytes,
    decode_dead_letter,
    decode_tick,
    encode_tick,
    epoch_to_ns,
    tick_from_frame,
    tick_from_rest_trade,
    tick_from_trade,
)

# A real spot trade from the 2024-08-08 capture (hftbacktest_spot_btcusdt_20240808, first trade)
TRADE = {
    "e": "trade",
    "E": 1723161255343,
    "s": "BTCUSDT",
    "t": 3735683259,
    "p": "61837.63000000",
    "q": "0.02000000",
    "T": 1723161255342,
    "m": True,
    "M": True,
}
RECEIVED = 1723161254087896568


def test_enveloped_trade_keeps_three_distinct_clocks() -> None:
    frame = json.dumps({"stream": "btcusdt@trade", "data": TRADE}, separators=(",", ":")).encode()
    tick = tick_from_frame(frame, RECEIVED)
    assert (tick.symbol, tick.trade_id, tick.price, tick.quantity) == ("BTCUSDT", 3735683259, 61837.63, 0.02)
    assert tick.buyer_is_maker is True
    assert tick.trade_time_ns == 1723161255342 * 10**6
    assert tick.event_time_ns == 1723161255343 * 10**6
    assert tick.receive_time_ns == RECEIVED
    assert len({tick.trade_time_ns, tick.event_time_ns, tick.receive_time_ns}) == 3
    assert tick.source == Tick.SOURCE_STREAM


def test_raw_trade_frame_and_str_input_give_the_same_tick() -> None:
    raw = json.dumps(TRADE)
    assert (
        tick_from_frame(raw, RECEIVED)
        == tick_from_frame(raw.encode(), RECEIVED)
        == tick_from_trade(TRADE, RECEIVED)
    )


def test_tick_round_trips_through_bytes() -> None:
    tick = tick_from_trade(TRADE, RECEIVED, venue="replay")
    back = decode_tick(encode_tick(tick))
    assert back == tick
    assert back.venue == "replay"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b'{"stream":"btcusdt@trade","data":{"e":"trade","E":', "invalid JSON"),
        (b"not json", "invalid JSON"),
        (b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":"x"}}', "not a valid trade"),
        (json.dumps({**TRADE, "p": "abc"}).encode(), "bad number"),
        (json.dumps({**TRADE, "p": "-1"}).encode(), "out-of-range"),
        (json.dumps({**TRADE, "e": "aggTrade"}).encode(), "not a trade event"),
    ],
)
def test_malformed_frames_raise_with_a_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage) as err:
        tick_from_frame(frame, RECEIVED)
    assert reason in err.value.reason


def test_malformed_enveloped_frame_names_its_stream() -> None:
    with pytest.raises(MalformedMessage) as err:
        tick_from_frame(b'{"stream":"ethusdt@trade","data":{"e":"trade","t":"x"}}', RECEIVED)
    assert err.value.stream == "ethusdt@trade"


def test_rest_row_becomes_a_gap_fill_tick_with_trade_time_as_event_time() -> None:
    row = {
        "id": 28457,
        "price": "4.00000100",
        "qty": "12.00000000",
        "quoteQty": "48.000012",
        "time": 1499865549590,
        "isBuyerMaker": True,
        "isBestMatch": True,
    }
    tick = tick_from_rest_trade(row, "BNBBTC", RECEIVED)
    assert tick.source == Tick.SOURCE_REST_GAP_FILL
    assert tick.trade_time_ns == tick.event_time_ns == 1499865549590 * 10**6
    assert tick.trade_id == 28457
    assert tick.receive_time_ns == RECEIVED
    with pytest.raises(MalformedMessage):
        tick_from_rest_trade({"id": 1}, "BNBBTC", RECEIVED)


def test_dead_letter_keeps_reason_raw_bytes_and_stream() -> None:
    dl = decode_dead_letter(dead_letter_bytes("invalid JSON", b"\xff{", RECEIVED, "btcusdt@trade"))
    assert (dl.reason, dl.raw, dl.receive_time_ns, dl.stream) == (
        "invalid JSON",
        b"\xff{",
        RECEIVED,
        "btcusdt@trade",
    )


def test_epoch_units_ms_and_us_are_detected() -> None:
    assert epoch_to_ns(1723161255342) == 1723161255342000000
    assert epoch_to_ns(1735689600123456) == 1735689600123456000


def test_parse_event_reads_every_spot_event_kind_raw_and_enveloped() -> None:
    assert isinstance(parse_event({"stream": "btcusdt@trade", "data": TRADE}), Trade)
    agg = parse_event(
        b'{"e":"aggTrade","E":2,"s":"BTCUSDT","a":5,"p":"1.0","q":"2.0","f":10,"l":12,"T":1,'
        b'"m":false,"M":true}'
    )
    assert isinstance(agg, AggTrade)
    assert (agg.first_trade_id, agg.last_trade_id) == (10, 12)
    book = parse_event(
        b'{"stream":"btcusdt@bookTicker","data":{"u":400900217,"s":"BTCUSDT","b":"25.35190000",'
        b'"B":"31.21000000","a":"25.36520000","A":"40.66000000"}}'
    )
    assert isinstance(book, BookTicker)
    assert book.event_time_ms is None
    assert book.ask_price == "25.36520000"
    depth = parse_event(
        b'{"e":"depthUpdate","E":123456789,"s":"BNBBTC","U":157,"u":160,'
        b'"b":[["0.0024","10"]],"a":[["0.0026","100"]]}'
    )
    assert isinstance(depth, DepthUpdate)
    assert depth.bids == (("0.0024", "10"),)
    assert depth.final_update_id == 160
    with pytest.raises(MalformedMessage, match="unknown event"):
        parse_event(b'{"e":"kline"}')
    with pytest.raises(MalformedMessage, match="bad trade"):
        parse_event(b'{"e":"trade","s":"BTCUSDT"}')
