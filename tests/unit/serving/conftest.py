"""Fixtures for serving unit tests: a small real sklearn model and an in-memory feature reader.

The in-memory reader stands in for the Redis online store only in unit tests of routing,
caching and error shapes; the integration tests read the real store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

NAMES = ["ret_1", "ret_4", "vol_16"]
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class SklearnServingModel:
    """The ServingModel seam over a fitted sklearn classifier, counting calls."""

    clf: LogisticRegression
    name: str = "test-model"
    version: str = "1"
    feature_version: str = "v-test"
    feature_names: list[str] = field(default_factory=lambda: list(NAMES))
    sequence_length: int = 1
    calls: int = 0

    def predict_proba_window(self, window: np.ndarray) -> float:
        self.calls += 1
        assert window.shape == (self.sequence_length, len(self.feature_names))
        return float(self.clf.predict_proba(window[-1:])[0, 1])


def fit_model(seed: int = 0, **kw: object) -> SklearnServingModel:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, len(NAMES)))
    y = (x[:, 0] + 0.1 * rng.normal(size=200) > 0).astype(int)
    return SklearnServingModel(LogisticRegression().fit(x, y), **kw)  # type: ignore[arg-type]


class MemoryFeatures:
    """Latest feature rows by symbol, with a history of earlier rows."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[datetime, dict[str, float]]]] = {}
        self.down = False

    def put(self, symbol: str, t: datetime, row: dict[str, float]) -> None:
        self.rows.setdefault(symbol, []).append((t, row))

    def latest(self, symbol: str) -> tuple[datetime, dict[str, float]] | None:
        if self.down:
            raise ConnectionError("store down")
        rows = self.rows.get(symbol)
        return rows[-1] if rows else None

    def history(self, symbol: str, before: datetime, n: int) -> list[tuple[datetime, dict[str, float]]]:
        return [r for r in self.rows.get(symbol, []) if r[0] < before][-n:]


@pytest.fixture
def features() -> MemoryFeatures:
    f = MemoryFeatures()
    for i in range(5):
        f.put("BTCUSDT", T0 + timedelta(minutes=15 * i), {"ret_1": 0.01 * i, "ret_4": 0.0, "vol_16": 1.0})
    return f
