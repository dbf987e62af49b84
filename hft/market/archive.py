"""Binance's public archive (data.binance.vision layout): klines and trades zips, checksums, cache.

Layout (``market`` = ``spot``, ``futures/um`` or ``futures/cm``)::

    data/spot/monthly/klines/BTCUSDT/15m/BTCUSDT-15m-2024-01.zip   (+ .zip.CHECKSUM)
    data/spot/daily/klines/BTCUSDT/15m/BTCUSDT-15m-2024-01-05.zip
    data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-01-05.zip
    data/spot/monthly/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01.zip

The base URL is ``https://`` (``http://``) or ``file://`` (``HFT_ARCHIVE_URL``). Every zip is
checked against the sha256 in its ``.CHECKSUM`` file before it is used or cached; a mismatch
raises :class:`ChecksumError` and nothing is kept. Timestamps are epoch ms in files before
2025 and µs from 2025 on; the readers detect the unit per value.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
import numpy as np
import pandas as pd

from hft.market.ohlcv import read_ohlcv_csv, symbol_from_filename
from hft.market.ticks import epoch_to_ns

Progress = Callable[[str, int, int | None], None]  # (file name, bytes so far, total or None)
TRADE_COLUMNS = ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match"]
AGG_TRADE_COLUMNS = [
    "agg_id",
    "price",
    "qty",
    "first_id",
    "last_id",
    "time",
    "is_buyer_maker",
    "is_best_match",
]


class ArchiveError(RuntimeError):
    """The archive could not give us a file."""


class ArchiveNotFound(ArchiveError):
    """The archive has no such file (404 or missing path)."""


class ChecksumError(ArchiveError):
    """A zip does not match the sha256 of its ``.CHECKSUM`` file."""


@dataclass(frozen=True)
class ArchiveFile:
    """One file of the archive."""

    kind: str  # klines, trades, aggTrades
    symbol: str
    day: str  # YYYY-MM (monthly) or YYYY-MM-DD (daily)
    interval: str | None = None
    market: str = "spot"

    @property
    def period(self) -> str:
        """``monthly`` or ``daily``."""
        return "monthly" if len(self.day) == 7 else "daily"

    @property
    def name(self) -> str:
        """File name, e.g. ``BTCUSDT-15m-2024-01.zip``."""
        mid = self.interval if self.kind == "klines" else self.kind
        return f"{self.symbol}-{mid}-{self.day}.zip"

    @property
    def path(self) -> str:
        """Path below the base URL."""
        parts = ["data", self.market, self.period, self.kind, self.symbol]
        if self.kind == "klines":
            if not self.interval:
                raise ValueError("klines need an interval")
            parts.append(self.interval)
        return "/".join([*parts, self.name])


def plan_files(
    kind: str,
    symbol: str,
    start: date,
    end: date,
    interval: str | None = None,
    market: str = "spot",
    period: str = "auto",
) -> list[ArchiveFile]:
    """Files covering ``start..end`` (inclusive): whole months monthly, the rest daily (``auto``)."""
    if end < start:
        raise ValueError("end before start")
    if kind == "klines" and not interval:
        raise ValueError("klines need an interval")
    out: list[ArchiveFile] = []
    d = start
    while d <= end:
        month_end = date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])
        whole = d.day == 1 and month_end <= end
        if period == "monthly" or (period == "auto" and whole):
            out.append(ArchiveFile(kind, symbol.upper(), f"{d:%Y-%m}", interval, market))
            d = month_end + timedelta(days=1)
        else:
            out.append(ArchiveFile(kind, symbol.upper(), f"{d:%Y-%m-%d}", interval, market))
            d += timedelta(days=1)
    return out


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_checksum(text: str, name: str) -> str:
    """The sha256 for ``name`` from a ``.CHECKSUM`` file (``<hex>  <file name>``)."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 1 and len(parts[0]) == 64 and (len(parts) == 1 or parts[-1].lstrip("*") == name):
            return parts[0].lower()
    raise ChecksumError(f"no sha256 for {name} in its CHECKSUM file")


class Archive:
    """Fetch archive files from a base URL into a local cache, verified."""

    def __init__(
        self, base_url: str, cache_dir: Path, progress: Progress | None = None, timeout_s: float = 60.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.cache_dir = Path(cache_dir)
        self.progress = progress
        self.timeout_s = timeout_s

    def _url(self, rel: str) -> str:
        return f"{self.base_url}/{rel}"

    def _get(self, rel: str, dest: Path) -> None:
        url = self._url(rel)
        parsed = urlparse(url)
        if parsed.scheme == "file":
            src = Path(unquote(parsed.path))
            if not src.exists():
                raise ArchiveNotFound(f"{url}: no such file")
            size = src.stat().st_size
            shutil.copyfile(src, dest)
            if self.progress:
                self.progress(dest.name, size, size)
            return
        if parsed.scheme not in ("http", "https"):
            raise ArchiveError(f"unsupported archive URL scheme {parsed.scheme!r} (https:// or file://)")
        with httpx.stream("GET", url, timeout=self.timeout_s, follow_redirects=True) as resp:
            if resp.status_code == 404:
                raise ArchiveNotFound(f"{url}: 404")
            if resp.status_code >= 400:
                raise ArchiveError(f"{url}: HTTP {resp.status_code}")
            total = int(resp.headers["content-length"]) if "content-length" in resp.headers else None
            done = 0
            with open(dest, "wb") as fh:
                for chunk in resp.iter_bytes(1 << 16):
                    fh.write(chunk)
                    done += len(chunk)
                    if self.progress:
                        self.progress(dest.name, done, total)

    def cached_path(self, f: ArchiveFile) -> Path:
        """Where the verified zip lives in the cache."""
        return self.cache_dir / f.path

    def fetch(self, f: ArchiveFile, refresh: bool = False) -> Path:
        """Return the local path of a verified zip, downloading it when not cached."""
        dest = self.cached_path(f)
        sums = dest.with_name(dest.name + ".CHECKSUM")
        if (
            dest.exists()
            and sums.exists()
            and not refresh
            and sha256_of(dest) == parse_checksum(sums.read_text(), f.name)
        ):
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            tmp_zip = Path(tmp) / f.name
            tmp_sum = Path(tmp) / (f.name + ".CHECKSUM")
            self._get(f.path + ".CHECKSUM", tmp_sum)
            self._get(f.path, tmp_zip)
            expected = parse_checksum(tmp_sum.read_text(), f.name)
            actual = sha256_of(tmp_zip)
            if actual != expected:
                raise ChecksumError(
                    f"{f.name}: sha256 {actual} does not match its CHECKSUM {expected}; "
                    "file refused (corrupted or truncated download)"
                )
            tmp_zip.replace(dest)
            tmp_sum.replace(sums)
        return dest


def _csv_bytes(path: Path) -> bytes:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith(".csv")]
            if not names:
                raise ArchiveError(f"{path.name}: no CSV inside")
            return zf.read(names[0])
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{path.name}: not a zip file ({exc})") from exc


def read_klines_zip(path: str | Path) -> pd.DataFrame:
    """Klines of an archive zip, indexed by UTC open time (ms or µs files)."""
    p = Path(path)
    return read_ohlcv_csv(_csv_bytes(p), symbol=symbol_from_filename(p))


def read_trades_zip(path: str | Path, symbol: str | None = None) -> pd.DataFrame:
    """Trades of an archive zip: id, price, qty, quote_qty, time (UTC, ns), is_buyer_maker, is_best_match."""
    p = Path(path)
    raw = _csv_bytes(p)
    first = raw[: raw.find(b"\n")].decode()
    has_header = not first.split(",")[0].strip().isdigit()
    df = pd.read_csv(io.BytesIO(raw), header=0 if has_header else None)
    n = df.shape[1]
    if n not in (6, 7):
        raise ArchiveError(f"{p.name}: {n} columns, expected Binance's 6 or 7 trade columns")
    df.columns = TRADE_COLUMNS[:n]
    if "is_best_match" not in df.columns:
        df["is_best_match"] = True
    ns = np.array([epoch_to_ns(int(v)) for v in df["time"].to_numpy()], dtype="int64")
    df["time"] = pd.to_datetime(ns, unit="ns", utc=True)
    for col in ("is_buyer_maker", "is_best_match"):
        if df[col].dtype != bool:
            df[col] = df[col].astype(str).str.lower().eq("true")
    df["id"] = df["id"].astype("int64")
    for col in ("price", "qty", "quote_qty"):
        df[col] = df[col].astype("float64")
    if symbol:
        df.attrs["symbol"] = symbol
    return df.sort_values("id").reset_index(drop=True)
