"""Recorded market data for the replay exchange: WebSocket captures and archive trade files.

Two sources become one :class:`Timeline` of frames ordered by the time they were received:

* raw WebSocket captures (``ws_capture/*.txt.gz``: ``<receive time> <json>`` per line, the
  receive time in ns (2024 files) or µs (2023 files), detected by digit count; the JSON a
  combined-stream envelope; REST snapshot lines without a ``stream`` key are skipped);
* trade files in Binance's archive column order (``id,price,qty,quote_qty,time,is_buyer_maker
  [,is_best_match]``, with or without header, ``.csv``, ``.csv.gz`` or ``.zip``; time in ms
  before 2025 and µs from 2025 on), paced by trade time.

:func:`load_capture_trades` returns the trades a replay of the given files sends, in order:
tests and benchmarks compare it with what reached Kafka or the database.
"""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgspec

from hft.market.binance import Trade
from hft.market.ticks import epoch_to_ns

_decode = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class Frame:
    """One recorded message: when it was received (ns), its stream and its event JSON (``data``)."""

    time_ns: int
    stream: str
    data: bytes
    trade: Trade | None = None


@dataclass
class Timeline:
    """Frames of one or more recordings, ordered by receive time, with the trades among them."""

    frames: list[Frame] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def trades(self) -> list[Trade]:
        """Every trade in replay order."""
        return [f.trade for f in self.frames if f.trade is not None]

    @property
    def symbols(self) -> list[str]:
        """Symbols that have trades, sorted."""
        return sorted({f.trade.symbol for f in self.frames if f.trade is not None})

    def streams(self) -> set[str]:
        """Stream names present (lower-case Binance names such as ``btcusdt@trade``)."""
        return {f.stream for f in self.frames}

    def id_span(self) -> dict[str, tuple[int, int]]:
        """First and last trade id per symbol."""
        spans: dict[str, tuple[int, int]] = {}
        for t in self.trades:
            lo, hi = spans.get(t.symbol, (t.trade_id, t.trade_id))
            spans[t.symbol] = (min(lo, t.trade_id), max(hi, t.trade_id))
        return spans

    def head(self, n_trades: int) -> Timeline:
        """The recording up to and including its ``n_trades``-th trade (shorter runs for tests)."""
        seen = 0
        for i, f in enumerate(self.frames):
            if f.trade is not None:
                seen += 1
                if seen == n_trades:
                    return Timeline(self.frames[: i + 1], self.sources)
        return self

    def duration_ns(self) -> int:
        """Time from the first to the last frame."""
        return self.frames[-1].time_ns - self.frames[0].time_ns if self.frames else 0


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    if path.suffix == ".zip":
        zf = zipfile.ZipFile(path)
        name = next(n for n in zf.namelist() if not n.endswith("/"))
        return io.TextIOWrapper(zf.open(name), encoding="utf-8")
    return open(path, encoding="utf-8")


def _receive_ns(token: str) -> int:
    value = int(token)
    # 19 digits: ns (2024 captures); 16 digits: µs (2023 captures); 13: ms
    if value >= 10**18:
        return value
    if value >= 10**15:
        return value * 1000
    return value * 1_000_000


def _trade_from_data(d: dict[str, Any]) -> Trade:
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


def read_capture(path: str | Path, streams: Iterable[str] | None = None) -> Iterator[Frame]:
    """Yield the frames of one capture file in file order (optionally only some streams)."""
    wanted = {s.lower() for s in streams} if streams is not None else None
    with _open_text(Path(path)) as fh:
        for line in fh:
            ts, _, body = line.rstrip("\n").partition(" ")
            if not body.startswith('{"stream":'):
                continue  # the REST depth snapshot line of the first file
            raw = body.encode()
            cut = raw.find(b',"data":')
            stream = raw[11 : cut - 1].decode()
            if wanted is not None and stream not in wanted:
                continue
            data = raw[cut + 8 : -1]
            trade = _trade_from_data(_decode.decode(data)) if stream.endswith("@trade") else None
            yield Frame(_receive_ns(ts), stream, data, trade)


def load_captures(paths: Sequence[str | Path], streams: Iterable[str] | None = None) -> Timeline:
    """Merge capture files into one timeline ordered by receive time (stable within a file)."""
    frames: list[Frame] = []
    wanted = list(streams) if streams is not None else None
    for p in paths:
        frames.extend(read_capture(p, wanted))
    frames.sort(key=lambda f: f.time_ns)
    _check_trade_order(frames)
    return Timeline(frames, [str(p) for p in paths])


def _check_trade_order(frames: list[Frame]) -> None:
    last: dict[str, int] = {}
    for f in frames:
        if f.trade is not None:
            prev = last.get(f.trade.symbol)
            if prev is not None and f.trade.trade_id <= prev:
                raise ValueError(
                    f"trade ids go backwards in the recording: {f.trade.symbol} {prev} -> {f.trade.trade_id}"
                )
            last[f.trade.symbol] = f.trade.trade_id


def read_trade_file(path: str | Path, symbol: str) -> list[Trade]:
    """Read an archive trades file (ms or µs times; header optional) into trades ordered by id."""
    trades: list[Trade] = []
    with _open_text(Path(path)) as fh:
        for row in csv.reader(fh):
            if not row or not row[0].strip().isdigit():
                continue  # header
            t_ns = epoch_to_ns(int(row[4]))
            best = row[6].strip().lower() == "true" if len(row) > 6 else True
            trades.append(
                Trade(
                    symbol,
                    int(row[0]),
                    row[1],
                    row[2],
                    t_ns // 1_000_000,
                    t_ns // 1_000_000,
                    row[5].strip().lower() == "true",
                    best,
                )
            )
    trades.sort(key=lambda t: t.trade_id)
    return trades


def trades_timeline(trades_by_symbol: dict[str, list[Trade]]) -> Timeline:
    """Build a timeline from trade lists, paced and interleaved by trade time."""
    frames = [
        Frame(
            t.trade_time_ms * 1_000_000, f"{t.symbol.lower()}@trade", msgspec.json.encode(trade_event(t)), t
        )
        for trades in trades_by_symbol.values()
        for t in trades
    ]
    frames.sort(key=lambda f: (f.time_ns, f.trade.trade_id if f.trade else 0))
    return Timeline(frames, sorted(trades_by_symbol))


def trade_event(t: Trade) -> dict[str, object]:
    """The ``trade`` event JSON object of a trade."""
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


def default_capture_paths(data_dir: str | Path, symbols: Iterable[str]) -> list[Path]:
    """The spot captures of 2024-08-08/09 for these symbols (the replay exchange's default source)."""
    base = Path(data_dir) / "ws_capture"
    paths: list[Path] = []
    for sym in symbols:
        found = sorted(base.glob(f"hftbacktest_spot_{sym.lower()}_2024080[89].txt.gz"))
        if not found:
            raise FileNotFoundError(f"no spot capture for {sym} under {base}")
        paths.extend(found)
    return paths


def load_source(source: str | Path | Sequence[str | Path], symbols: Iterable[str]) -> Timeline:
    """Load a replay source: capture files, archive trade files, or a directory holding either.

    A directory with a ``ws_capture`` folder (the shared data dir) or one of capture files
    gives the default 2024-08-08/09 spot captures of ``symbols``.
    """
    syms = [s.upper() for s in symbols]
    items = [Path(p) for p in ([source] if isinstance(source, str | Path) else source)]
    if len(items) == 1 and items[0].is_dir():
        d = items[0]
        if (d / "ws_capture").is_dir():
            return load_captures(default_capture_paths(d, syms))
        if any(d.glob("hftbacktest_*")):
            return load_captures(default_capture_paths(d.parent, syms))
        items = sorted(p for p in d.iterdir() if p.is_file())
    captures = [p for p in items if ".txt" in p.name]
    trade_files = [p for p in items if ".txt" not in p.name]
    if captures and trade_files:
        raise ValueError("mix of capture and trade files in one replay source")
    if captures:
        return load_captures(captures)
    by_symbol: dict[str, list[Trade]] = {}
    for p in trade_files:
        sym = next((s for s in syms if s in p.name.upper()), None)
        if sym is None:
            continue
        by_symbol.setdefault(sym, []).extend(read_trade_file(p, sym))
    if not by_symbol:
        raise FileNotFoundError(f"no trade files for {syms} in {items}")
    return trades_timeline(by_symbol)


def load_capture_trades(paths: Sequence[str | Path]) -> list[Trade]:
    """Return the trades a replay of these capture files sends, in replay order."""
    return load_captures(paths, streams=None).trades


def shifted(trade: Trade, passes: int, id_span: dict[str, tuple[int, int]], period_ms: int) -> Trade:
    """The trade as loop pass ``passes`` replays it: ids and times moved forward."""
    if passes == 0:
        return trade
    lo, hi = id_span[trade.symbol]
    dt = passes * period_ms
    return replace(
        trade,
        trade_id=trade.trade_id + passes * (hi - lo + 1),
        trade_time_ms=trade.trade_time_ms + dt,
        event_time_ms=trade.event_time_ms + dt,
    )


def expected_trades(timeline: Timeline, passes: int = 1) -> list[Trade]:
    """The trades of ``passes`` loop passes of a timeline (what the exchange sends in loop mode)."""
    span = timeline.id_span()
    period = loop_period_ms(timeline)
    base = timeline.trades
    return [shifted(t, k, span, period) for k in range(passes) for t in base]


def loop_period_ms(timeline: Timeline) -> int:
    """How far each loop pass moves times forward: the recording's length plus one second."""
    return timeline.duration_ns() // 1_000_000 + 1000
