"""The partition frames and PSI on real shared data (no database, no Great Expectations)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hft.quality import drift, frames


@pytest.fixture(scope="module")
def btc_trades(data_dir: Path) -> pd.DataFrame:
    from hft.market.replay import read_trade_file

    trades = read_trade_file(
        data_dir / "trades" / "spot_BTCUSDT_trades_2024-08-08T2354Z_2024-08-09T0005Z.csv.gz", "BTCUSDT"
    )
    return pd.DataFrame(
        [(t.symbol, t.trade_id, float(t.price), float(t.quantity), t.trade_time_ms) for t in trades],
        columns=["symbol", "trade_id", "price", "quantity", "trade_time_ms"],
    )


@pytest.fixture(scope="module")
def btc_klines(data_dir: Path) -> pd.DataFrame:
    from hft.market.ohlcv import read_ohlcv_csv

    return read_ohlcv_csv(
        data_dir / "klines_15m" / "BTCUSDT_15m_ohlcv_2023-01-01_2025-08-31.csv.gz", symbol="BTCUSDT"
    )


def test_tick_frame_steps_are_one_on_a_complete_capture(btc_trades: pd.DataFrame) -> None:
    frame = frames.tick_frame(btc_trades.sample(frac=1.0, random_state=1))  # order must not matter
    assert list(frame.columns) == frames.TICK_COLUMNS
    assert (frame["id_step"] == 1).all()
    assert (frame["time_step_ms"] >= 0).all()
    assert frame["key"].iloc[0] == "BTCUSDT#3735683259"


def test_tick_frame_exposes_duplicate_gap_and_time_reversal(btc_trades: pd.DataFrame) -> None:
    bad = pd.concat([btc_trades.iloc[:50], btc_trades.iloc[[10]], btc_trades.iloc[52:60]], ignore_index=True)
    bad.loc[bad["trade_id"] == btc_trades["trade_id"].iloc[55], "trade_time_ms"] -= 10_000
    frame = frames.tick_frame(bad)
    steps = dict(zip(frame["key"], frame["id_step"], strict=True))
    assert 0 in frame["id_step"].to_numpy()  # the duplicate
    assert steps[f"BTCUSDT#{btc_trades['trade_id'].iloc[52]}"] == 3  # ids 50 and 51 are missing
    assert (frame["time_step_ms"] < 0).sum() == 1


def test_bar_grid_marks_missing_bars_but_not_the_2023_03_24_halt(btc_klines: pd.DataFrame) -> None:
    bars = btc_klines.loc["2023-03-24 10:00":"2023-03-24 15:45"].reset_index().assign(symbol="BTCUSDT")
    start, end = datetime(2023, 3, 24, 10, tzinfo=UTC), datetime(2023, 3, 24, 16, tzinfo=UTC)
    halts = frames.parse_halts(["2023-03-24T12:45:00Z/2023-03-24T14:00:00Z"])
    assert not frames.bar_frame(bars, ["BTCUSDT"], "15m", start, end, halts)["missing"].any()
    without_halts = frames.bar_frame(bars, ["BTCUSDT"], "15m", start, end)
    assert without_halts.loc[without_halts["missing"], "key"].tolist() == [
        f"BTCUSDT 15m 2023-03-24T{t}Z" for t in ("12:45", "13:00", "13:15", "13:30", "13:45")
    ]
    dropped = frames.bar_frame(bars.drop(index=[0]), ["BTCUSDT", "ETHUSDT"], "15m", start, end, halts)
    assert "BTCUSDT 15m 2023-03-24T10:00Z" in set(dropped.loc[dropped["missing"], "key"])
    assert dropped["missing"].sum() == 1 + 19  # one BTC bar, every ETH bar of the grid


def test_feature_ranges_match_patterns() -> None:
    ranges = {"rsi_*": [0, 100], "vol_*": [0, None]}
    assert frames.range_for("rsi_14", ranges) == (0.0, 100.0)
    assert frames.range_for("vol_64", ranges) == (0.0, np.inf)
    assert frames.range_for("volume_z_20", ranges) == (-np.inf, np.inf)


def test_psi_is_zero_for_the_same_sample_and_large_for_a_shifted_one(btc_klines: pd.DataFrame) -> None:
    returns = np.log(btc_klines["close"]).diff().dropna()
    ref = pd.DataFrame({"ret": returns.loc["2024-01":"2024-03"].to_numpy()})
    same = pd.DataFrame({"ret": returns.loc["2024-01":"2024-03"].to_numpy()})
    profile = drift.reference_profile(ref, ["ret"])
    assert drift.drift_frame(profile, same, ["ret"], 0.25)["psi"].iloc[0] == pytest.approx(0.0, abs=1e-9)
    shifted = pd.DataFrame({"ret": same["ret"].to_numpy() * 3 + 0.002})
    out = drift.drift_frame(profile, shifted, ["ret"], {"ret": 0.25})
    assert out["psi"].iloc[0] > 0.25
    assert list(out.columns) == drift.DRIFT_COLUMNS


def test_psi_is_nan_without_current_data() -> None:
    profile = drift.reference_profile(pd.DataFrame({"x": np.arange(100.0)}), ["x"])
    out = drift.drift_frame(profile, pd.DataFrame({"x": [np.nan]}), ["x"], 0.25)
    assert np.isnan(out["psi"].iloc[0])
    assert out["current_rows"].iloc[0] == 0
