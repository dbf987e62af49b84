"""Walk-forward splits: training always precedes its test window, purged and embargoed."""

from __future__ import annotations

import numpy as np

from hft.ml.splits import validation_split, walk_forward

STEP = 15 * 60 * 10**9


def test_walk_forward_purges_and_embargoes_every_fold() -> None:
    # two symbols pooled: every time appears twice
    times = np.repeat(np.arange(1, 5001, dtype=np.int64) * STEP, 2)
    rows = np.arange(len(times))
    h, emb = 3 * STEP, 4 * STEP
    folds = walk_forward(times, rows, 4, 0.4, h, emb)
    assert len(folds) == 4
    prev_end = None
    for f in folds:
        assert (times[f.train] + h < f.test_start).all()
        assert (times[f.train] < f.test_start - emb).all()
        assert times[f.test].min() >= f.test_start
        assert times[f.test].max() < f.test_end
        if prev_end is not None:
            assert f.test_start == prev_end  # consecutive, non-overlapping windows
        prev_end = f.test_end
        # nothing closer than the purge + embargo gap is lost beyond it
        assert times[f.train].max() >= f.test_start - emb - 2 * STEP


def test_walk_forward_caps_training_to_the_most_recent_rows() -> None:
    times = np.arange(1, 3001, dtype=np.int64) * STEP
    folds = walk_forward(times, np.arange(3000), 2, 0.5, STEP, STEP, max_train_rows=500)
    for f in folds:
        assert len(f.train) == 500
        assert times[f.train].max() < f.test_start


def test_validation_slice_is_later_than_the_fit_slice_and_purged() -> None:
    times = np.arange(1, 1001, dtype=np.int64) * STEP
    fit, val = validation_split(times, np.arange(1000), 0.2, 2 * STEP, 2 * STEP)
    assert times[fit].max() + 2 * STEP < times[val].min()
    assert 150 < len(val) < 250
