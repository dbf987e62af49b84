"""Binance spot WebSocket events: ``trade``, ``aggTrade``, ``bookTicker`` and ``depthUpdate``.

:func:`parse_event` accepts a raw event or the combined-stream envelope
(``{"stream": "btcusdt@trade", "data": {...}}``) and returns a typed, frozen event. Prices and
quantities stay the exchange's decimal strings (exact); callers convert where they need floats.
``bookTicker`` carries no event time on spot, so its ``event_time_ms`` is ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from hft.market.ticks import MalformedMessage


@dataclass(frozen=True, slots=True)
class Trade:
    """One spot trade (``<symbol>@trade``)."""

    symbol: str
    trade_id: int
    price: str
    quantity: str
    trade_time_ms: int
    event_time_ms: int
    buyer_is_maker: bool
    best_match: bool = True


@dataclass(frozen=True, slots=True)
class AggTrade:
    """One aggregate trade (``<symbol>@aggTrade``): trades first_id..last_id at one price."""

    symbol: str
    agg_id: int
    price: str
    quantity: str
    first_trade_id: int
    last_trade_id: int
    trade_time_ms: int
    event_time_ms: int
    buyer_is_maker: bool


@dataclass(frozen=True, slots=True)
class BookTicker:
    """Best bid/ask update (``<symbol>@bookTicker``)."""

    symbol: str
    update_id: int
    bid_price: str
    bid_qty: str
    ask_price: str
    ask_qty: str
    event_time_ms: int | None = None


@dataclass(frozen=True, slots=True)
class DepthUpdate:
    """Order book diff (``<symbol>@depth`` / ``@depth@100ms``)."""

    symbol: str
    first_update_id: int
    final_update_id: int
    bids: tuple[tuple[str, str], ...]
    asks: tuple[tuple[str, str], ...]
    event_time_ms: int


Event = Trade | AggTrade | BookTicker | DepthUpdate

_decode = msgspec.json.Decoder()


def unwrap(obj: Any) -> tuple[str, dict[str, Any]]:
    """Return ``(stream, data)`` of a combined-stream envelope, or ``("", obj)`` for a raw event."""
    if not isinstance(obj, dict):
        raise MalformedMessage(f"expected a JSON object, got {type(obj).__name__}")
    if "stream" in obj and "data" in obj:
        data = obj["data"]
        if not isinstance(data, dict):
            raise MalformedMessage("envelope data is not an object", str(obj["stream"]))
        return str(obj["stream"]), data
    return "", obj


def _levels(raw: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(p), str(q)) for p, q in raw)


def parse_event(message: bytes | str | dict[str, Any]) -> Event:
    """Parse one Binance spot event (raw or enveloped); raise MalformedMessage when it is none."""
    try:
        obj = message if isinstance(message, dict) else _decode.decode(message)
    except msgspec.DecodeError as exc:
        raise MalformedMessage(f"invalid JSON: {exc}") from exc
    stream, d = unwrap(obj)
    kind = d.get("e")
    try:
        if kind == "trade":
            return Trade(
                str(d["s"]),
                int(d["t"]),
                str(d["p"]),
                str(d["q"]),
                int(d["T"]),
                int(d["E"]),
                bool(d["m"]),
                bool(d.get("M", True)),
            )
        if kind == "aggTrade":
            return AggTrade(
                str(d["s"]),
                int(d["a"]),
                str(d["p"]),
                str(d["q"]),
                int(d["f"]),
                int(d["l"]),
                int(d["T"]),
                int(d["E"]),
                bool(d["m"]),
            )
        if kind == "depthUpdate":
            return DepthUpdate(
                str(d["s"]), int(d["U"]), int(d["u"]), _levels(d["b"]), _levels(d["a"]), int(d["E"])
            )
        if kind is None and {"u", "s", "b", "B", "a", "A"} <= d.keys():
            return BookTicker(
                str(d["s"]),
                int(d["u"]),
                str(d["b"]),
                str(d["B"]),
                str(d["a"]),
                str(d["A"]),
                int(d["E"]) if "E" in d else None,
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedMessage(f"bad {kind or 'event'} fields: {exc!r}", stream) from exc
    raise MalformedMessage(f"unknown event type {kind!r}", stream)


def trade_to_json(t: Trade) -> dict[str, Any]:
    """Return the ``trade`` event dict Binance sends for this trade."""
    return {
        "e": "trade",
        "E": t.event_time_ms,
        "s": t.symbol,
        "t": t.trade_id,
        "p": t.price,
        "q": t.quantity,
        "T": t.trade_time_ms,
        "m": t.buyer_is_maker,
        "M": t.best_match,
    }


def trade_to_rest(t: Trade) -> dict[str, Any]:
    """Return the ``/api/v3/trades`` row of this trade."""
    quote = f"{float(t.price) * float(t.quantity):.8f}"
    return {
        "id": t.trade_id,
        "price": t.price,
        "qty": t.quantity,
        "quoteQty": quote,
        "time": t.trade_time_ms,
        "isBuyerMaker": t.buyer_is_maker,
        "isBestMatch": t.best_match,
    }


def trade_to_agg_rest(t: Trade) -> dict[str, Any]:
    """Return the ``/api/v3/aggTrades`` row of this trade (one trade per aggregate)."""
    return {
        "a": t.trade_id,
        "p": t.price,
        "q": t.quantity,
        "f": t.trade_id,
        "l": t.trade_id,
        "T": t.trade_time_ms,
        "m": t.buyer_is_maker,
        "M": t.best_match,
    }
