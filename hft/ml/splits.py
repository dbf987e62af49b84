"""Walk-forward splits by time, with purge and embargo.

Rows of several symbols are pooled, so folds are cut by decision time, never by row number.
A training row is kept only if its label is settled before the test window opens (purge: its
decision time + horizon < test start) and it lies outside the embargo before the test window
(serial correlation of features across the boundary). Training only ever looks backwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fold:
    """One walk-forward step: fit on ``train``, score on ``test`` (row positions)."""

    index: int
    train: np.ndarray
    test: np.ndarray
    test_start: int  # ns
    test_end: int  # ns, exclusive


def purged_before(
    times: np.ndarray, rows: np.ndarray, cut: int, horizon_ns: int, embargo_ns: int
) -> np.ndarray:
    """Rows whose label is settled before ``cut`` and that lie outside the embargo before it."""
    t = times[rows]
    ok = (t + horizon_ns < cut) & (t < cut - embargo_ns)
    return np.asarray(rows[ok])


def walk_forward(
    times: np.ndarray,
    rows: np.ndarray,
    n_folds: int,
    test_fraction: float,
    horizon_ns: int,
    embargo_ns: int,
    max_train_rows: int | None = None,
) -> list[Fold]:
    """Split the last ``test_fraction`` of the time span into ``n_folds`` consecutive test windows.

    Each fold trains on every labelled row before its window (purged and embargoed), capped to
    the ``max_train_rows`` most recent ones when given (expanding, then sliding).
    """
    if not 0 < test_fraction < 1 or n_folds < 1:
        raise ValueError("need 0 < test_fraction < 1 and n_folds >= 1")
    rows = rows[np.argsort(times[rows], kind="stable")]
    t = times[rows]
    t0, t1 = int(t[0]), int(t[-1]) + 1
    first_test = t0 + int((t1 - t0) * (1 - test_fraction))
    edges = np.linspace(first_test, t1, n_folds + 1).astype(np.int64)
    folds = []
    for k in range(n_folds):
        lo, hi = int(edges[k]), int(edges[k + 1])
        test = rows[(t >= lo) & (t < hi)]
        train = purged_before(times, rows[t < lo], lo, horizon_ns, embargo_ns)
        if max_train_rows is not None and len(train) > max_train_rows:
            train = train[-max_train_rows:]
        if len(test) and len(train):
            folds.append(Fold(k, train, test, lo, hi))
    return folds


def validation_split(
    times: np.ndarray, rows: np.ndarray, val_fraction: float, horizon_ns: int, embargo_ns: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the last ``val_fraction`` of a training window off as a validation slice (purged)."""
    rows = rows[np.argsort(times[rows], kind="stable")]
    t = times[rows]
    cut = int(t[0] + (t[-1] - t[0]) * (1 - val_fraction))
    val = rows[t >= cut]
    fit = purged_before(times, rows[t < cut], cut, horizon_ns, embargo_ns)
    return fit, val
