"""Archive reader on tiny zips in Binance's published layout, built here (ms and µs variants).

Served over ``file://`` and over a real local HTTP server (``http.server`` in a thread).
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from datetime import date
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from hft.market.archive import (
    Archive,
    ArchiveFile,
    ArchiveNotFound,
    ChecksumError,
    plan_files,
    read_klines_zip,
    read_trades_zip,
)

# Two BTCUSDT 15m klines as Binance's spot archive writes them (no header, 12 columns);
# 2025 files carry µs open/close times.
KLINES_MS = (
    "1704067200000,42283.58000000,42554.57000000,42261.02000000,42475.23000000,1271.68108000,"
    "1704068099999,53957248.97378900,47134,682.57581000,28957416.81964070,0\n"
    "1704068100000,42475.23000000,42475.23000000,42356.31000000,42413.22000000,701.35526000,"
    "1704068999999,29745632.25407110,24950,337.27458000,14302978.45346190,0\n"
)
KLINES_US = (
    KLINES_MS.replace("1704067200000,", "1735689600000000,")
    .replace("1704068099999,", "1735690499999999,")
    .replace("1704068100000,", "1735690500000000,")
    .replace("1704068999999,", "1735691399999999,")
)
TRADES_MS = (
    "3735683259,61837.63000000,0.02000000,1236.75260000,1723161255342,True,True\n"
    "3735683260,61837.63000000,0.04800000,2968.20624000,1723161255617,True,True\n"
)
TRADES_US = TRADES_MS.replace("1723161255342,", "1735689600123456,").replace(
    "1723161255617,", "1735689600617001,"
)


def _publish(root: Path, f: ArchiveFile, csv_text: str, corrupt: bool = False) -> Path:
    path = root / f.path
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f.name.replace(".zip", ".csv"), csv_text)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(f.name + ".CHECKSUM").write_text(f"{digest}  {f.name}\n")
    if corrupt:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    return path


@pytest.fixture
def archive_root(tmp_path: Path) -> Path:
    root = tmp_path / "vision"
    _publish(root, ArchiveFile("klines", "BTCUSDT", "2024-01", "15m"), KLINES_MS)
    _publish(root, ArchiveFile("klines", "BTCUSDT", "2025-01", "15m"), KLINES_US)
    _publish(root, ArchiveFile("trades", "BTCUSDT", "2024-08-08"), TRADES_MS)
    _publish(root, ArchiveFile("trades", "BTCUSDT", "2025-01-01"), TRADES_US)
    _publish(root, ArchiveFile("klines", "BTCUSDT", "2024-02", "15m"), KLINES_MS, corrupt=True)
    return root


@pytest.fixture
def http_base(archive_root: Path) -> Iterator[str]:
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(archive_root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined, method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_paths_follow_binance_layout() -> None:
    assert (
        ArchiveFile("klines", "BTCUSDT", "2024-01", "15m").path
        == "data/spot/monthly/klines/BTCUSDT/15m/BTCUSDT-15m-2024-01.zip"
    )
    assert (
        ArchiveFile("trades", "BTCUSDT", "2024-01-05").path
        == "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-01-05.zip"
    )
    plan = plan_files("klines", "btcusdt", date(2024, 1, 1), date(2024, 2, 2), "15m")
    assert [f.day for f in plan] == ["2024-01", "2024-02-01", "2024-02-02"]


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_fetch_verifies_and_reads_ms_and_us_klines(
    scheme: str, archive_root: Path, http_base: str, tmp_path: Path
) -> None:
    base = archive_root.as_uri() if scheme == "file" else http_base
    seen: list[tuple[str, int]] = []
    arch = Archive(base, tmp_path / "cache", progress=lambda name, done, total: seen.append((name, done)))
    ms = read_klines_zip(arch.fetch(ArchiveFile("klines", "BTCUSDT", "2024-01", "15m")))
    us = read_klines_zip(arch.fetch(ArchiveFile("klines", "BTCUSDT", "2025-01", "15m")))
    assert ms.index[0] == pd.Timestamp("2024-01-01 00:00", tz="UTC")
    assert us.index[0] == pd.Timestamp("2025-01-01 00:00", tz="UTC")
    assert ms["open"].iloc[0] == 42283.58
    assert list(ms["close"]) == list(us["close"])
    assert ms["count"].iloc[0] == 47134
    assert seen  # the progress callback saw bytes arrive


def test_trades_read_in_ms_and_us(archive_root: Path, tmp_path: Path) -> None:
    arch = Archive(archive_root.as_uri(), tmp_path / "cache")
    ms = read_trades_zip(arch.fetch(ArchiveFile("trades", "BTCUSDT", "2024-08-08")))
    us = read_trades_zip(arch.fetch(ArchiveFile("trades", "BTCUSDT", "2025-01-01")))
    assert list(ms["id"]) == [3735683259, 3735683260]
    assert ms["time"].iloc[0] == pd.Timestamp("2024-08-08 23:54:15.342", tz="UTC")
    assert us["time"].iloc[0] == pd.Timestamp("2025-01-01 00:00:00.123456", tz="UTC")
    assert bool(ms["is_buyer_maker"].iloc[0]) is True


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_corrupted_zip_is_refused_and_not_cached(
    scheme: str, archive_root: Path, http_base: str, tmp_path: Path
) -> None:
    base = archive_root.as_uri() if scheme == "file" else http_base
    arch = Archive(base, tmp_path / "cache")
    f = ArchiveFile("klines", "BTCUSDT", "2024-02", "15m")
    with pytest.raises(ChecksumError, match="does not match its CHECKSUM"):
        arch.fetch(f)
    assert not arch.cached_path(f).exists()


def test_missing_file_says_not_found(http_base: str, tmp_path: Path) -> None:
    with pytest.raises(ArchiveNotFound):
        Archive(http_base, tmp_path / "cache").fetch(ArchiveFile("klines", "BTCUSDT", "2019-01", "15m"))


def test_cached_file_is_reverified_and_refetched_when_tampered(archive_root: Path, tmp_path: Path) -> None:
    arch = Archive(archive_root.as_uri(), tmp_path / "cache")
    f = ArchiveFile("klines", "BTCUSDT", "2024-01", "15m")
    path = arch.fetch(f)
    path.write_bytes(b"tampered")
    assert read_klines_zip(arch.fetch(f))["open"].iloc[0] == 42283.58


def test_cli_fetch_and_refusal(archive_root: Path, tmp_path: Path) -> None:
    from hft.cli import app

    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "data",
            "fetch",
            "--symbol",
            "BTCUSDT",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-31",
            "--base-url",
            archive_root.as_uri(),
            "--cache",
            str(tmp_path / "c"),
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "c" / "data/spot/monthly/klines/BTCUSDT/15m/BTCUSDT-15m-2024-01.zip").exists()
    bad = runner.invoke(
        app,
        [
            "data",
            "fetch",
            "--symbol",
            "BTCUSDT",
            "--start",
            "2024-02-01",
            "--end",
            "2024-02-29",
            "--base-url",
            archive_root.as_uri(),
            "--cache",
            str(tmp_path / "c"),
        ],
    )
    assert bad.exit_code == 1
    assert "CHECKSUM" in bad.output


def test_cli_import_reads_the_shared_ohlcv_files(data_dir: Path, tmp_path: Path) -> None:
    from hft.cli import app

    src = data_dir / "klines_15m" / "ETHUSDT_15m_ohlcv_2023-01-01_2025-08-31.csv.gz"
    result = CliRunner().invoke(
        app, ["data", "import", str(src), "--out", str(tmp_path)], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    assert "93,499" in result.output  # rows (PROVENANCE.md)
    df = pd.read_parquet(tmp_path / "ETHUSDT" / "15m.parquet")
    assert len(df) == 93499
    assert df.index[0] == pd.Timestamp("2023-01-01", tz="UTC")
    missing = (df.index.to_series().diff() > pd.Timedelta("15min")).sum()
    assert missing == 1  # the one real halt, 2023-03-24 12:45–13:45
