"""Read OHLCV kline files: plain CSV as users hold them, and Binance's kline column order.

Accepted inputs (optionally gzip-compressed):

* ``open_time,...,open,high,low,close,volume[,...]`` with a header (the files in
  ``shared/data/binance/klines_*``; extra columns such as ``open_time_utc`` or ``source`` are
  ignored, Binance's extra kline columns are kept when present);
* Binance's archive kline CSV without a header (12 columns, data.binance.vision order).

``open_time`` may be epoch milliseconds (before 2025 in Binance's archive) or microseconds
(from 2025 on); the unit is detected per row by magnitude. The result is indexed by the bar's
open time (UTC). A bar is stamped with its open time but is only known at its close.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

OHLCV = ["open", "high", "low", "close", "volume"]
KLINE_COLUMNS = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
]
OPTIONAL = ["quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume"]
_MICROS_THRESHOLD = 10**14  # epoch ms stay below 1e14 until the year 5138


class OHLCVFormatError(ValueError):
    """The file is not an OHLCV/kline CSV we can read."""


def epoch_to_utc(values: pd.Series | np.ndarray) -> pd.DatetimeIndex:
    """Convert epoch ms or µs (detected per value) to UTC timestamps."""
    arr = np.asarray(values, dtype="int64")
    micros = np.where(arr >= _MICROS_THRESHOLD, arr, arr * 1000)
    return pd.DatetimeIndex(pd.to_datetime(micros, unit="us", utc=True))


def read_ohlcv_csv(source: str | Path | bytes, symbol: str | None = None) -> pd.DataFrame:
    """Read an OHLCV or Binance kline CSV into a DataFrame indexed by UTC open time.

    Columns: open, high, low, close, volume (float64), plus quote_volume, count,
    taker_buy_volume, taker_buy_quote_volume when the file has them. Rows are sorted, exact
    duplicate open times are dropped, and a row whose high/low contradict open/close is refused.
    """
    buf: str | Path | io.BytesIO = io.BytesIO(source) if isinstance(source, bytes) else source
    compression = "gzip" if str(source).endswith(".gz") and not isinstance(source, bytes) else "infer"
    head = pd.read_csv(buf, nrows=1, header=None, compression=compression)
    if isinstance(buf, io.BytesIO):
        buf.seek(0)
    first = str(head.iloc[0, 0])
    has_header = not first.strip().lstrip("-").isdigit()
    if has_header:
        df = pd.read_csv(buf, compression=compression)
        df.columns = [c.strip().lower() for c in df.columns]
        rename = {
            "timestamp": "open_time",
            "date": "open_time",
            "number_of_trades": "count",
            "trades": "count",
            "quote_asset_volume": "quote_volume",
            "taker_buy_base_asset_volume": "taker_buy_volume",
            "taker_buy_quote_asset_volume": "taker_buy_quote_volume",
        }
        df = df.rename(columns={k: v for k, v in rename.items() if k in df.columns and v not in df.columns})
    else:
        df = pd.read_csv(buf, header=None, compression=compression)
        if df.shape[1] < 6:
            raise OHLCVFormatError(f"headerless kline file needs >= 6 columns, found {df.shape[1]}")
        df.columns = KLINE_COLUMNS[: df.shape[1]] + [
            f"extra_{i}" for i in range(df.shape[1] - len(KLINE_COLUMNS))
        ]
    missing = [c for c in ["open_time", *OHLCV] if c not in df.columns]
    if missing:
        raise OHLCVFormatError(f"missing columns {missing}; found {list(df.columns)}")
    if pd.api.types.is_numeric_dtype(df["open_time"]):
        index = epoch_to_utc(df["open_time"])
    else:
        index = pd.DatetimeIndex(pd.to_datetime(df["open_time"], utc=True))
    keep = OHLCV + [c for c in OPTIONAL if c in df.columns]
    out = df[keep].astype("float64")
    out.index = index.rename("open_time")
    out = out[~out.index.duplicated(keep="first")].sort_index()
    bad = (out["high"] < out[["open", "close"]].max(axis=1)) | (
        out["low"] > out[["open", "close"]].min(axis=1)
    )
    if bool(bad.any()):
        raise OHLCVFormatError(f"{int(bad.sum())} rows with inconsistent OHLC, first at {out.index[bad][0]}")
    if symbol:
        out.attrs["symbol"] = symbol
    return out


def symbol_from_filename(path: str | Path) -> str | None:
    """Guess the symbol from a file name like ``BTCUSDT_15m_...`` or ``BTCUSDT-15m-2024-01.zip``."""
    name = Path(path).name.upper()
    for sep in ("_", "-"):
        token = name.split(sep)[0]
        if token.isalnum() and token.endswith(("USDT", "USDC", "BTC", "ETH", "BUSD", "FDUSD")):
            return token
    return None
