"""Cross-asset features (BTC for ETH and the reverse): one state folded; pandas formulas; no look-ahead."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hft.features.cross import CROSS_FEATURES, CROSS_WARMUP, CrossAssetState, compute_cross_features
from tests.unit.features.conftest import KLINES, load_klines


@pytest.fixture(scope="module")
def pair(data_dir: Path) -> dict[str, pd.DataFrame]:
    return {sym: load_klines(data_dir, KLINES[(sym, "15m")]) for sym in ("BTCUSDT", "ETHUSDT")}


def _two_pass_z(x: pd.Series, n: int) -> pd.Series:
    # pandas' rolling std keeps running sums: on a near-constant log ratio (~3.0) it loses ~1e-8
    w = np.lib.stride_tricks.sliding_window_view(x.to_numpy(), n)
    z = np.full(len(x), math.nan)
    z[n - 1 :] = (w[:, -1] - w.mean(axis=1)) / w.std(axis=1, ddof=1)
    return pd.Series(z, index=x.index)


def _reference(own: pd.DataFrame, partner: pd.DataFrame) -> pd.DataFrame:
    ls, lp = np.log(own["close"]), np.log(partner["close"].reindex(own.index).ffill())
    rs, rp = ls.diff(), lp.diff()
    ratio = ls - lp
    out = pd.DataFrame(
        {
            "x_ret_1": lp.diff(1),
            "x_ret_4": lp.diff(4),
            "x_ret_16": lp.diff(16),
            "x_corr_96": rs.rolling(96).corr(rp),
            "x_spread_16": ls.diff(16) - lp.diff(16),
            "x_spread_z_96": _two_pass_z(ratio, 96),
        }
    )[list(CROSS_FEATURES)]
    for name in out.columns:
        out.iloc[: CROSS_WARMUP[name], out.columns.get_loc(name)] = math.nan
    return out


def test_cross_features_match_pandas_formulas_on_real_btc_and_eth(pair: dict[str, pd.DataFrame]) -> None:
    got = compute_cross_features(pair)
    assert set(got) == {"BTCUSDT", "ETHUSDT"}
    for sym, other in (("BTCUSDT", "ETHUSDT"), ("ETHUSDT", "BTCUSDT")):
        mine, ref = got[sym], _reference(pair[sym], pair[other])
        assert list(mine.columns) == list(CROSS_FEATURES)
        assert (mine.isna() == ref.isna()).all().all(), sym
        w = max(CROSS_WARMUP.values())
        diff = np.abs(mine.iloc[w:].to_numpy() - ref.iloc[w:].to_numpy())
        assert diff.max() <= 1e-8, (sym, mine.columns[diff.max(axis=0).argmax()], diff.max())
        # BTC's 1-bar return is ETH's x_ret_1 and the reverse
        np.testing.assert_allclose(
            mine["x_ret_1"].iloc[w:], np.log(pair[other]["close"]).diff().iloc[w:], atol=1e-12
        )
    corr = got["BTCUSDT"]["x_corr_96"].dropna()
    assert 0.5 < corr.median() < 0.95  # BTC and ETH move together
    np.testing.assert_allclose(corr, got["ETHUSDT"]["x_corr_96"].dropna(), atol=1e-12)


def test_cross_features_at_bar_i_ignore_every_later_bar_of_either_symbol(
    pair: dict[str, pd.DataFrame],
) -> None:
    bars = {s: b.iloc[:3000].copy() for s, b in pair.items()}
    before = compute_cross_features(bars)
    cut = 2500
    rng = np.random.default_rng(3)
    for b in bars.values():
        scale = np.exp(rng.normal(0.0, 0.01, len(b) - cut))
        for col in ("open", "high", "low", "close"):
            b.iloc[cut:, b.columns.get_loc(col)] = b[col].to_numpy()[cut:] * scale
    after = compute_cross_features(bars)
    for sym in bars:
        pd.testing.assert_frame_equal(before[sym].iloc[:cut], after[sym].iloc[:cut], check_exact=True)
        assert (before[sym].iloc[cut + 100 :] != after[sym].iloc[cut + 100 :]).all().all()


def test_the_stream_state_gives_the_batch_rows_and_a_missing_partner_bar_uses_its_last_close(
    pair: dict[str, pd.DataFrame],
) -> None:
    btc, eth = pair["BTCUSDT"].iloc[:400], pair["ETHUSDT"].iloc[:400]
    batch = compute_cross_features({"BTCUSDT": btc, "ETHUSDT": eth})["BTCUSDT"]
    state = CrossAssetState()
    rows = [state.update(c, p) for c, p in zip(btc["close"], eth["close"], strict=True)]
    assert [rows[-1][n] for n in CROSS_FEATURES] == batch.iloc[-1].tolist()
    holed = compute_cross_features({"BTCUSDT": btc, "ETHUSDT": eth.drop(eth.index[300])})["BTCUSDT"]
    assert holed["x_ret_1"].iloc[300] == 0.0  # the partner's last close stands in: no move
    assert compute_cross_features({"BTCUSDT": btc}) == {}
