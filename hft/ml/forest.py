"""Tree ensembles compiled to flat numpy arrays for fast, dependency-light one-row inference.

A compiled forest walks every tree at once, one level per step (leaves loop onto themselves), so
one row costs ``depth`` vectorised steps instead of one Python call per tree. It reproduces the
native predictions: scikit-learn compares float32 inputs with float64 thresholds using ``<=``,
XGBoost compares float32 inputs with float32 thresholds using ``<`` and sends NaN to the
default child. XGBoost is imported inside a function: it costs seconds at start-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class CompiledForest:
    """Flat arrays of all nodes of all trees; ``raw`` sums (or averages) the leaf values reached."""

    feature: np.ndarray  # int64 per node (0 on leaves)
    threshold: np.ndarray  # per node (+inf on leaves)
    left: np.ndarray  # int64 per node; leaves point to themselves
    right: np.ndarray
    default_left: np.ndarray  # bool per node: where NaN goes
    value: np.ndarray  # float64 per node (leaf values; 0 inside)
    roots: np.ndarray  # int64 per tree
    depth: int
    strict: bool  # True: go left if x < thr (XGBoost); False: x <= thr (scikit-learn)
    average: bool  # True: mean of trees (random forest probability); False: sum (boosted margin)
    offset: float = 0.0
    float32_thresholds: bool = False

    def raw(self, X: np.ndarray) -> np.ndarray:
        """Sum (or mean) of leaf values plus offset, one value per row of ``X`` (n, k)."""
        X = np.asarray(X, dtype=np.float32)
        Xc = X if self.float32_thresholds else X.astype(np.float64)
        n = X.shape[0]
        if n == 1 and not np.isnan(X).any():
            return self._raw_one(Xc[0])
        cur = np.broadcast_to(self.roots, (n, len(self.roots)))
        has_nan = bool(np.isnan(X).any())
        for _ in range(self.depth):
            xf = np.take_along_axis(Xc, self.feature[cur], axis=1)
            thr = self.threshold[cur]
            go_left = xf < thr if self.strict else xf <= thr
            if has_nan:
                go_left = np.where(np.isnan(xf), self.default_left[cur], go_left)
            cur = np.where(go_left, self.left[cur], self.right[cur])
        leaves = self.value[cur]
        out = leaves.mean(axis=1) if self.average else leaves.sum(axis=1)
        return np.asarray(out + self.offset, dtype=np.float64)

    def _raw_one(self, x: np.ndarray) -> np.ndarray:
        # the serving path: plain fancy indexing over all trees, a handful of C calls per level
        cur = self.roots
        feature, threshold, left, right = self.feature, self.threshold, self.left, self.right
        for _ in range(self.depth):
            go_left = x[feature[cur]] < threshold[cur] if self.strict else x[feature[cur]] <= threshold[cur]
            cur = np.where(go_left, left[cur], right[cur])
        leaves = self.value[cur]
        out = leaves.mean() if self.average else leaves.sum()
        return np.array([out + self.offset], dtype=np.float64)

    def save(self, path: Path) -> None:
        """Write the arrays to one ``.npz`` file."""
        np.savez(
            path,
            feature=self.feature,
            threshold=self.threshold,
            left=self.left,
            right=self.right,
            default_left=self.default_left,
            value=self.value,
            roots=self.roots,
            meta=np.array(
                json.dumps(
                    {
                        "depth": self.depth,
                        "strict": self.strict,
                        "average": self.average,
                        "offset": self.offset,
                        "f32": self.float32_thresholds,
                    }
                )
            ),
        )

    @classmethod
    def load(cls, path: Path) -> CompiledForest:
        """Read a forest written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(
                feature=z["feature"],
                threshold=z["threshold"],
                left=z["left"],
                right=z["right"],
                default_left=z["default_left"],
                value=z["value"],
                roots=z["roots"],
                depth=int(meta["depth"]),
                strict=bool(meta["strict"]),
                average=bool(meta["average"]),
                offset=float(meta["offset"]),
                float32_thresholds=bool(meta["f32"]),
            )


def _assemble(trees: list[dict[str, np.ndarray]], strict: bool, average: bool, f32: bool) -> CompiledForest:
    feats, thrs, lefts, rights, dls, vals, roots = [], [], [], [], [], [], []
    offset = 0
    depth = 0
    for t in trees:
        n = len(t["left"])
        leaf = t["left"] < 0
        idx = np.arange(n)
        left = np.where(leaf, idx, t["left"]) + offset
        right = np.where(leaf, idx, t["right"]) + offset
        feats.append(np.where(leaf, 0, t["feature"]).astype(np.int64))
        thrs.append(np.where(leaf, np.inf, t["threshold"]))
        lefts.append(left.astype(np.int64))
        rights.append(right.astype(np.int64))
        dls.append(t["default_left"].astype(bool))
        vals.append(np.where(leaf, t["value"], 0.0).astype(np.float64))
        roots.append(offset)
        depth = max(depth, _tree_depth(t["left"], t["right"]))
        offset += n
    dtype = np.float32 if f32 else np.float64
    return CompiledForest(
        feature=np.concatenate(feats),
        threshold=np.concatenate(thrs).astype(dtype),
        left=np.concatenate(lefts),
        right=np.concatenate(rights),
        default_left=np.concatenate(dls),
        value=np.concatenate(vals),
        roots=np.array(roots, dtype=np.int64),
        depth=depth,
        strict=strict,
        average=average,
        float32_thresholds=f32,
    )


def _tree_depth(left: np.ndarray, right: np.ndarray) -> int:
    depth = np.zeros(len(left), dtype=np.int64)
    # children always have larger ids than their parent in both libraries' layouts
    for i in range(len(left)):
        if left[i] >= 0:
            depth[left[i]] = depth[i] + 1
            depth[right[i]] = depth[i] + 1
    return int(depth.max())


def compile_sklearn_forest(model: Any) -> CompiledForest:
    """Compile a fitted scikit-learn RandomForestClassifier (binary) to P(class 1) averaged over trees."""
    pos = int(np.flatnonzero(model.classes_ == 1)[0]) if 1 in model.classes_ else len(model.classes_) - 1
    trees = []
    for est in model.estimators_:
        tr = est.tree_
        v = tr.value[:, 0, :]
        p1 = v[:, pos] / np.maximum(v.sum(axis=1), 1e-12)
        trees.append(
            {
                "left": tr.children_left,
                "right": tr.children_right,
                "feature": tr.feature,
                "threshold": tr.threshold,
                "value": p1,
                "default_left": np.zeros(len(p1), dtype=bool),
            }
        )
    return _assemble(trees, strict=False, average=True, f32=False)


def compile_xgboost(booster: Any, probe: np.ndarray) -> CompiledForest:
    """Compile an XGBoost binary booster to its margin; ``probe`` rows fix the base margin exactly."""
    import xgboost as xgb

    model = json.loads(booster.save_raw("json"))
    trees: list[dict[str, np.ndarray]] = []
    for t in model["learner"]["gradient_booster"]["model"]["trees"]:
        left = np.asarray(t["left_children"], dtype=np.int64)
        trees.append(
            {
                "left": left,
                "right": np.asarray(t["right_children"], dtype=np.int64),
                "feature": np.asarray(t["split_indices"], dtype=np.int64),
                "threshold": np.asarray(t["split_conditions"], dtype=np.float32),
                "value": np.asarray(t["split_conditions"], dtype=np.float64),
                "default_left": np.asarray(t["default_left"], dtype=bool),
            }
        )
    forest = _assemble(trees, strict=True, average=False, f32=True)
    probe = np.asarray(probe[:1], dtype=np.float32)
    native = float(booster.predict(xgb.DMatrix(probe), output_margin=True)[0])
    forest.offset = native - float(forest.raw(probe)[0])
    return forest
