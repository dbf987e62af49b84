"""Load kline history into ``market.bars``: OHLCV CSV files, Binance archive zips, or URLs of them.

A source is a local file (``.csv``, ``.csv.gz``, ``.zip`` holding one CSV), a directory of such
files, a ``file://`` URL or an ``https://`` URL (data.binance.vision layout; its ``.CHECKSUM``
is verified when the server has one). Files go through :func:`hft.market.ohlcv.read_ohlcv_csv`
and :func:`hft.storage.bars.upsert_klines` (COPY + upsert), so loading twice changes nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
import pandas as pd

from hft.config import ConfigurationError, Settings
from hft.market.ohlcv import read_ohlcv_csv, symbol_from_filename
from hft.storage import bars, db

_SUFFIXES = (".csv", ".csv.gz", ".zip")
_INTERVAL_RE = re.compile(r"(?:^|[_\-/])(1m|3m|5m|15m|30m|1h|2h|4h|1d)(?:[_\-.]|$)")


@dataclass(frozen=True)
class KlineFile:
    """One kline file read into memory, with what it is of."""

    name: str
    frame: pd.DataFrame
    symbol: str
    interval: str


@dataclass(frozen=True)
class LoadResult:
    """Rows read from one file and rows inserted or changed in market.bars."""

    name: str
    symbol: str
    interval: str
    rows: int
    changed: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None


def interval_from_name(name: str) -> str | None:
    """The interval token in a file name such as ``BTCUSDT_15m_...`` or ``BTCUSDT-1m-2024-01.zip``."""
    m = _INTERVAL_RE.search(Path(name).name)
    return m.group(1) if m else None


def _csv_bytes(name: str, raw: bytes) -> bytes:
    if name.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            members = [m for m in zf.namelist() if m.lower().endswith(".csv")]
            if len(members) != 1:
                raise ConfigurationError(f"{name}: expected one CSV in the zip, found {members}")
            return zf.read(members[0])
    if name.endswith(".gz"):
        return gzip.decompress(raw)
    return raw


def _fetch(url: str) -> bytes:
    with httpx.Client(timeout=60, follow_redirects=True) as client:
        resp = client.get(url)
        if resp.status_code != 200:
            raise ConfigurationError(f"{url}: HTTP {resp.status_code}")
        raw = resp.content
        check = client.get(url + ".CHECKSUM")
        if check.status_code == 200 and check.text.strip():
            expected = check.text.split()[0].lower()
            actual = hashlib.sha256(raw).hexdigest()
            if expected != actual:
                raise ConfigurationError(f"{url}: sha256 {actual} does not match .CHECKSUM {expected}")
    return raw


def _sources(source: str) -> Iterator[tuple[str, bytes]]:
    parsed = urlparse(source)
    if parsed.scheme in ("http", "https"):
        yield parsed.path.rsplit("/", 1)[-1], _fetch(source)
        return
    path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.lower().endswith(_SUFFIXES))
        if not files:
            raise ConfigurationError(f"{path}: no .csv, .csv.gz or .zip files")
    elif path.exists():
        files = [path]
    else:
        raise ConfigurationError(f"{source}: no such file, directory or URL")
    for f in files:
        yield f.name, f.read_bytes()


def read_klines(source: str, symbol: str | None = None, interval: str | None = None) -> Iterator[KlineFile]:
    """Read every kline file a source names, with its symbol and interval resolved."""
    for name, raw in _sources(source):
        frame = read_ohlcv_csv(_csv_bytes(name, raw))
        sym = symbol or symbol_from_filename(name)
        if not sym:
            raise ConfigurationError(f"{name}: cannot tell the symbol from the name: pass --symbol")
        iv = interval or interval_from_name(name) or bars.infer_interval(pd.DatetimeIndex(frame.index))
        bars.interval_delta(iv)
        yield KlineFile(name, frame, sym.upper(), iv)


def load_klines(
    settings: Settings, kf: KlineFile, progress: Callable[[int], None] | None = None
) -> LoadResult:
    """Upsert one kline file into market.bars (idempotent)."""
    with db.connect(settings) as conn:
        changed = bars.upsert_klines(conn, kf.frame, kf.symbol, kf.interval, progress=progress)
    idx = kf.frame.index
    return LoadResult(
        kf.name,
        kf.symbol,
        kf.interval,
        len(kf.frame),
        changed,
        idx[0] if len(idx) else None,
        idx[-1] if len(idx) else None,
    )
