"""Binance trade messages → ``Tick`` protobuf, and ``Tick`` / ``DeadLetter`` ↔ bytes.

The hot path of the market producer: :func:`tick_from_frame` decodes one WebSocket frame
(a raw ``trade`` event or the combined-stream envelope ``{"stream": ..., "data": ...}``) with
a typed msgspec decoder and builds a ``Tick``. Anything that is not a valid trade raises
:class:`MalformedMessage` with a reason that goes to the dead-letter topic with the raw bytes.

Three clocks stay distinct: ``trade_time_ns`` (``T``, the matching engine), ``event_time_ns``
(``E``, when the exchange emitted the event) and ``receive_time_ns`` (stamped by the caller
when the frame arrived). A trade fetched through REST has no event: its ``event_time_ns``
equals its trade time and its ``source`` says ``SOURCE_REST_GAP_FILL``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hft.schema.market_pb2 import DeadLetter, Tick

__all__ = [
    "DeadLetter",
    "MalformedMessage",
    "Tick",
    "dead_letter_bytes",
    "decode_dead_letter",
    "decode_tick",
    "encode_tick",
    "epoch_to_ns",
    "tick_from_frame",
    "tick_from_rest_trade",
    "tick_from_trade",
]

SOURCE_STREAM = Tick.SOURCE_STREAM
SOURCE_REST_GAP_FILL = Tick.SOURCE_REST_GAP_FILL
SOURCE_ARCHIVE = Tick.SOURCE_ARCHIVE
_MICROS_THRESHOLD = 10**14  # epoch ms stay below 1e14 until the year 5138; µs are above since 1973


class MalformedMessage(ValueError):
    """A frame that is not a valid trade; ``reason`` is what the dead letter records."""

    def __init__(self, reason: str, stream: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.stream = stream


class _Trade(msgspec.Struct):
    e: str
    E: int
    s: str
    t: int
    p: str
    q: str
    T: int
    m: bool


class _Envelope(msgspec.Struct):
    stream: str
    data: _Trade


_decode_envelope = msgspec.json.Decoder(_Envelope)
_decode_trade = msgspec.json.Decoder(_Trade)
_decode_any = msgspec.json.Decoder()


def epoch_to_ns(value: int) -> int:
    """Convert an epoch time in ms or µs (detected by magnitude) to ns."""
    return value * 1000 if value >= _MICROS_THRESHOLD else value * 1_000_000


def _build(tr: _Trade, receive_time_ns: int, venue: str) -> Tick:
    if tr.e != "trade":
        raise MalformedMessage(f"not a trade event: e={tr.e!r}")
    try:
        price = float(tr.p)
        qty = float(tr.q)
    except ValueError as exc:
        raise MalformedMessage(f"bad number in trade {tr.t}: {exc}") from exc
    if not (price > 0 and qty >= 0) or tr.t < 0:
        raise MalformedMessage(f"out-of-range trade {tr.t}: price={tr.p} qty={tr.q}")
    return Tick(
        symbol=tr.s,
        trade_id=tr.t,
        price=price,
        quantity=qty,
        buyer_is_maker=tr.m,
        trade_time_ns=epoch_to_ns(tr.T),
        event_time_ns=epoch_to_ns(tr.E),
        receive_time_ns=receive_time_ns,
        source=SOURCE_STREAM,
        venue=venue,
    )


def tick_from_frame(raw: bytes | str, receive_time_ns: int, venue: str = "binance-spot") -> Tick:
    """Decode one WebSocket frame holding a ``trade`` event (raw or in an envelope) into a Tick.

    Raise :class:`MalformedMessage` (with the reason and, when known, the stream) otherwise.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    try:
        if data[:10] == b'{"stream":':
            env = _decode_envelope.decode(data)
            try:
                return _build(env.data, receive_time_ns, venue)
            except MalformedMessage as exc:
                exc.stream = env.stream
                raise
        return _build(_decode_trade.decode(data), receive_time_ns, venue)
    except msgspec.DecodeError as exc:
        # ValidationError is a DecodeError: say which, and which stream when we can tell
        stream = ""
        try:
            obj = _decode_any.decode(data)
            stream = str(obj.get("stream", "")) if isinstance(obj, dict) else ""
        except msgspec.DecodeError:
            raise MalformedMessage(f"invalid JSON: {exc}") from exc
        raise MalformedMessage(f"not a valid trade message: {exc}", stream) from exc


def tick_from_trade(data: dict[str, Any], receive_time_ns: int, venue: str = "binance-spot") -> Tick:
    """Build a Tick from an already decoded ``trade`` event dict (``e, E, s, t, p, q, T, m``)."""
    try:
        tr = msgspec.convert(data, _Trade)
    except msgspec.ValidationError as exc:
        raise MalformedMessage(f"not a valid trade event: {exc}") from exc
    return _build(tr, receive_time_ns, venue)


def tick_from_rest_trade(
    row: dict[str, Any], symbol: str, receive_time_ns: int, venue: str = "binance-spot"
) -> Tick:
    """Build a Tick from a REST ``/api/v3/trades`` or ``historicalTrades`` row (gap fill).

    REST rows carry no event time: ``event_time_ns`` is the trade time and ``source`` is
    ``SOURCE_REST_GAP_FILL``.
    """
    try:
        trade_ns = epoch_to_ns(int(row["time"]))
        return Tick(
            symbol=symbol,
            trade_id=int(row["id"]),
            price=float(row["price"]),
            quantity=float(row["qty"]),
            buyer_is_maker=bool(row["isBuyerMaker"]),
            trade_time_ns=trade_ns,
            event_time_ns=trade_ns,
            receive_time_ns=receive_time_ns,
            source=SOURCE_REST_GAP_FILL,
            venue=venue,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedMessage(f"not a valid REST trade row: {exc!r}") from exc


def encode_tick(tick: Tick) -> bytes:
    """Serialize a Tick for the wire."""
    out: bytes = tick.SerializeToString()
    return out


def decode_tick(data: bytes) -> Tick:
    """Parse a Tick from its wire bytes."""
    tick = Tick()
    tick.ParseFromString(data)
    return tick


def dead_letter_bytes(reason: str, raw: bytes | str, receive_time_ns: int, stream: str = "") -> bytes:
    """Serialize a DeadLetter holding the raw input and why it was refused."""
    body = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
    out: bytes = DeadLetter(
        reason=reason, raw=body, receive_time_ns=receive_time_ns, stream=stream
    ).SerializeToString()
    return out


def decode_dead_letter(data: bytes) -> DeadLetter:
    """Parse a DeadLetter from its wire bytes."""
    dl = DeadLetter()
    dl.ParseFromString(data)
    return dl
