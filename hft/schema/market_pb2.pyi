from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tick(_message.Message):
    __slots__ = ("symbol", "trade_id", "price", "quantity", "buyer_is_maker", "trade_time_ns", "event_time_ns", "receive_time_ns", "source", "venue")
    class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SOURCE_UNSPECIFIED: _ClassVar[Tick.Source]
        SOURCE_STREAM: _ClassVar[Tick.Source]
        SOURCE_REST_GAP_FILL: _ClassVar[Tick.Source]
        SOURCE_ARCHIVE: _ClassVar[Tick.Source]
    SOURCE_UNSPECIFIED: Tick.Source
    SOURCE_STREAM: Tick.Source
    SOURCE_REST_GAP_FILL: Tick.Source
    SOURCE_ARCHIVE: Tick.Source
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    BUYER_IS_MAKER_FIELD_NUMBER: _ClassVar[int]
    TRADE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    trade_id: int
    price: float
    quantity: float
    buyer_is_maker: bool
    trade_time_ns: int
    event_time_ns: int
    receive_time_ns: int
    source: Tick.Source
    venue: str
    def __init__(self, symbol: _Optional[str] = ..., trade_id: _Optional[int] = ..., price: _Optional[float] = ..., quantity: _Optional[float] = ..., buyer_is_maker: _Optional[bool] = ..., trade_time_ns: _Optional[int] = ..., event_time_ns: _Optional[int] = ..., receive_time_ns: _Optional[int] = ..., source: _Optional[_Union[Tick.Source, str]] = ..., venue: _Optional[str] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("reason", "raw", "receive_time_ns", "stream")
    REASON_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    reason: str
    raw: bytes
    receive_time_ns: int
    stream: str
    def __init__(self, reason: _Optional[str] = ..., raw: _Optional[bytes] = ..., receive_time_ns: _Optional[int] = ..., stream: _Optional[str] = ...) -> None: ...
