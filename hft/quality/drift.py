"""Population stability index (PSI) of each feature against the training reference.

PSI = Σ (cur_i − ref_i) · ln(cur_i / ref_i) over bins cut at the reference's deciles. The usual
reading: below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a major one
(``settings.psi_threshold``). Empty bins get a small floor so one empty bin does not make the
index infinite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

DRIFT_COLUMNS = ["key", "feature", "psi", "threshold", "reference_rows", "current_rows"]
_FLOOR = 1e-4


def reference_edges(values: np.ndarray, bins: int = 10) -> list[float]:
    """Return inner bin edges at the reference's quantiles (duplicates from ties merged)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    inner = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
    return [float(e) for e in np.unique(inner)]


def bin_shares(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Return the share of finite values in each bin defined by the inner ``edges``."""
    finite = values[np.isfinite(values)]
    counts = np.bincount(
        np.searchsorted(np.asarray(edges, dtype=float), finite, side="right"), minlength=len(edges) + 1
    ).astype(float)
    total = counts.sum()
    return counts / total if total else counts


def psi(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Return the PSI of two share vectors over the same bins."""
    ref = np.clip(reference_shares, _FLOOR, None)
    cur = np.clip(current_shares, _FLOOR, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def reference_profile(
    reference: pd.DataFrame, names: Sequence[str], bins: int = 10
) -> dict[str, dict[str, object]]:
    """Return, per feature, the bin edges and shares of the reference sample (JSON-serialisable)."""
    profile: dict[str, dict[str, object]] = {}
    for name in names:
        values = reference[name].to_numpy(dtype=float)
        edges = reference_edges(values, bins)
        profile[name] = {
            "edges": edges,
            "shares": bin_shares(values, edges).tolist(),
            "rows": int(np.isfinite(values).sum()),
        }
    return profile


def drift_frame(
    profile: Mapping[str, Mapping[str, object]],
    current: pd.DataFrame,
    names: Sequence[str],
    threshold: float | Mapping[str, float],
) -> pd.DataFrame:
    """Return one row per feature: PSI of ``current`` against ``profile`` and its threshold.

    PSI is NaN where the reference or the current sample has no finite value (the suite
    reports that as not computable rather than as no drift).
    """
    rows = []
    for name in names:
        ref = profile.get(name, {})
        ref_rows = int(ref.get("rows", 0))  # type: ignore[call-overload]
        values = current[name].to_numpy(dtype=float) if name in current else np.array([], dtype=float)
        cur_rows = int(np.isfinite(values).sum())
        value = float("nan")
        if ref_rows and cur_rows:
            edges = list(ref["edges"])  # type: ignore[call-overload]
            value = psi(np.asarray(ref["shares"], dtype=float), bin_shares(values, edges))
        limit = threshold.get(name, np.inf) if isinstance(threshold, Mapping) else threshold
        rows.append((name, name, value, float(limit), ref_rows, cur_rows))
    frame = pd.DataFrame(rows, columns=DRIFT_COLUMNS)
    return frame.astype(
        {"psi": "float64", "threshold": "float64", "reference_rows": "int64", "current_rows": "int64"}
    )


def retrain_decision(values: Mapping[str, float], threshold: float) -> tuple[bool, str]:
    """Whether the PSI ``values`` (feature -> PSI) call for a retrain outside the schedule, and why.

    True when any feature's PSI is above ``threshold`` (``settings.drift_retrain_threshold``);
    NaN values (not computable) never trigger. No values at all (too few bars for PSI): False.
    """
    finite = {k: v for k, v in values.items() if v == v}
    if not finite:
        return False, "drift not measured (too few bars for PSI): no retrain"
    above = sorted(((v, k) for k, v in finite.items() if v > threshold), reverse=True)
    worst_value, worst = max((v, k) for k, v in finite.items())
    if not above:
        return False, f"no drift above {threshold}: the largest PSI is {worst} {worst_value:.3f}"
    named = ", ".join(f"{k} {v:.3f}" for v, k in above)
    return True, f"drift above {threshold}: {named}: retrain"
