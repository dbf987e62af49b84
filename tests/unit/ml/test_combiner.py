"""Issue 23 item 3: an equal-weight logit average with one calibration, and serving the best member
when the ensemble does not beat it (recorded per fold)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hft.ml.evaluation import WalkForwardResult, select_served
from hft.ml.models import COMPONENTS, DEFAULT_PARAMS, Ensemble, FitConfig, fit_combiners, fit_ensemble

from .conftest import synthetic_xy

STEP = 15 * 60 * 10**9
NAMES = tuple(f"f{i}" for i in range(6))


def test_the_average_weights_members_equally_after_standardising_and_never_flips_a_sign() -> None:
    rng = np.random.default_rng(0)
    signal = rng.normal(size=6000)
    y = (rng.random(6000) < 1 / (1 + np.exp(-0.3 * signal))).astype(float)
    # four members: different scales, one of them anti-correlated with the label on this slice
    logits = np.column_stack(
        [
            signal * 2 + rng.normal(size=6000),
            signal * 0.1,
            -signal + rng.normal(size=6000),
            rng.normal(size=6000),
        ]
    )
    comb = fit_combiners(logits, y)
    coef, _ = comb["ensemble"]
    sd = logits.std(axis=0)
    # equal weight per standardised member: coef * sd is the same for the three that point the
    # right way; the anti-correlated one, a constant on its own, weighs nothing in the average
    np.testing.assert_allclose(
        np.asarray(coef)[[0, 1, 3]] * sd[[0, 1, 3]], np.full(3, coef[0] * sd[0]), rtol=1e-9
    )
    assert coef[2] == 0.0
    assert coef[0] > 0
    # three of four pointing the wrong way (the 4-bar collapse): the ensemble follows the fourth
    flipped = logits * np.array([-1.0, -1.0, 1.0, 1.0])
    flipped[:, 3] = signal
    coef2, _ = fit_combiners(flipped, y)["ensemble"]
    assert [c != 0 for c in coef2] == [False, False, False, True]
    assert coef2[3] > 0
    # each member alone: one non-zero weight, and a member that points the wrong way gets none
    for i, name in enumerate(COMPONENTS):
        c, _ = comb[name]
        assert [j for j in range(4) if c[j] != 0] in ([i], [])
        assert c[i] >= 0
    assert comb["random_forest"][0][2] == 0.0  # the anti-correlated one answers the base rate
    base = comb["random_forest"][1]
    assert abs(1 / (1 + np.exp(-base)) - y.mean()) < 1e-6


def _params() -> dict[str, dict]:
    p = {k: dict(v) for k, v in DEFAULT_PARAMS.items()}
    p["xgboost"]["num_boost_round"] = 40
    p["lightgbm"]["num_boost_round"] = 40
    p["lightgbm"]["min_data_in_leaf"] = 50
    p["random_forest"].update(n_estimators=10, min_samples_leaf=50)
    p["lstm"].update(seq_len=8, hidden=8, max_epochs=1)
    return p


def test_serving_a_member_answers_like_that_member_and_survives_save_and_load(tmp_path: Path) -> None:
    X, y, times = synthetic_xy(3000)
    ens, _ = fit_ensemble(
        X, y, times, np.arange(7, 2500), NAMES, "t1", _params(), FitConfig(), STEP, 2 * STEP
    )
    assert ens.served == "ensemble"
    assert set(ens.combiners) == {"ensemble", *COMPONENTS}
    rows = np.arange(2600, 2700)
    logits = ens.component_logits(X, ens.scale(X), rows)
    np.testing.assert_allclose(ens.predict_rows(X, rows), ens.combined(logits, "ensemble"))
    ens.serve("lightgbm")
    p = ens.predict_rows(X, rows)
    np.testing.assert_allclose(p, ens.combined(logits, "lightgbm"))
    # a calibrated copy of the member alone: same ranking as its raw logits
    assert np.array_equal(np.argsort(p, kind="stable"), np.argsort(logits[:, 1], kind="stable"))
    ens.save(tmp_path / "e")
    again = Ensemble.load(tmp_path / "e")
    assert again.served == "lightgbm"
    np.testing.assert_array_equal(again.predict_rows(X, rows), p)
    window = X[2699 - ens.seq_len + 1 : 2700]
    assert abs(again.predict_window(window) - p[-1]) < 1e-6


def _result(aucs: dict[str, list[float]]) -> WalkForwardResult:
    r = WalkForwardResult()
    n = len(aucs["ensemble"])
    for k in range(n):
        member = {m: aucs[m][k] for m in COMPONENTS}
        best = max(member, key=lambda m: member[m])
        r.folds.append(
            {
                "fold": k,
                "best_member": best,
                "ensemble_beats_best_member": aucs["ensemble"][k] >= member[best],
                "models": {m: {"roc_auc": v[k]} for m, v in aucs.items()},
            }
        )
    r.overall = {m: {"roc_auc": float(np.mean(v))} for m, v in aucs.items()}
    return r


def test_a_member_serves_only_when_it_beats_the_ensemble_overall_and_in_most_windows() -> None:
    members = {
        "xgboost": [0.52, 0.53, 0.52],
        "lightgbm": [0.53, 0.52, 0.52],
        "random_forest": [0.51, 0.51, 0.51],
        "lstm": [0.5, 0.5, 0.5],
    }
    win = select_served(_result({"ensemble": [0.535, 0.531, 0.53], **members}))
    assert win["served"] == "ensemble"
    assert win["ensemble_beats_best_member_folds"] == [True, True, True]
    lose = select_served(_result({"ensemble": [0.52, 0.52, 0.515], **members}))
    assert lose["served"] in ("xgboost", "lightgbm")
    assert lose["ensemble_beats_best_member_folds"] == [False, False, False]
    assert "beats the ensemble" in lose["reason"]
    # better pooled but in one window only (noise): the ensemble keeps serving
    lucky = {**members, "lstm": [0.60, 0.50, 0.50]}
    keep = select_served(_result({"ensemble": [0.53, 0.53, 0.53], **lucky}))
    assert keep["best_member"] == "lstm"
    assert keep["served"] == "ensemble"
