"""The model server's scorer: the champion model, the online feature window, hot reload.

The hot path (:meth:`Scorer.score`) reads the symbol's latest online feature row, and only
when its ``feature_time`` moved does it extend the cached window of past rows and run the
model; otherwise it answers from the cached probability. The active model and its caches are
one immutable reference swapped atomically by :meth:`Scorer.reload_if_moved`, so a request
that started on the old version finishes on it and none fails during the switch.

mlflow, Feast and the hft modules that load pandas (the registry, the online and offline feature
stores, the bar helpers) are imported inside functions: the API process would otherwise pay
seconds for them at start-up.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np

from hft.config import use_mlflow
from hft.storage.db import connect

log = logging.getLogger(__name__)


class ServingModel(Protocol):
    """What ``hft.ml.registry.load_serving_model`` returns (see docs/INTERFACES.md)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def feature_version(self) -> str: ...
    @property
    def feature_names(self) -> Sequence[str]: ...
    @property
    def sequence_length(self) -> int: ...

    def predict_proba_window(self, window: np.ndarray) -> float: ...


class OnlineReader(Protocol):
    """What ``hft.features.online.OnlineFeatures`` offers the scorer."""

    def latest(self, symbol: str) -> tuple[datetime, dict[str, float]] | None: ...


# (symbol, feature_time strictly before, n rows) -> up to n (time, row) pairs, oldest first
HistoryLoader = Callable[[str, datetime, int], list[tuple[datetime, dict[str, float]]]]


NO_ALIAS = "no model version holds the alias"


class UnknownSymbolError(LookupError):
    """The online store has no features for this symbol."""


class ModelUnavailableError(RuntimeError):
    """No champion model is loaded yet."""


class FeatureMismatchError(ValueError):
    """A feature row misses names the model needs."""


@dataclass(frozen=True)
class Score:
    """One prediction with everything needed to trace it."""

    symbol: str
    prob_up: float
    model_name: str
    model_version: str
    feature_version: str
    feature_time: datetime


# The API's predict-ahead announces each closed bar it scored here: the closed-bar entry's fields
# (``hft:bars:closed``) plus the prediction, so the trading bot decides without asking /predict.
SCORED_STREAM = "hft:bars:scored"
SCORED_STREAM_MAXLEN = 10_000


def scored_entry(closed: dict[bytes, bytes], score: Score, scored_ns: int) -> dict[Any, Any]:
    """The ``hft:bars:scored`` entry for a closed-bar entry and its score."""
    entry: dict[Any, Any] = {k.decode(): v for k, v in closed.items()}
    entry.update(
        prob_up=repr(score.prob_up),
        model_name=score.model_name,
        model_version=score.model_version,
        feature_version=score.feature_version,
        scored_feature_time=score.feature_time.isoformat(),
        scored_ns=scored_ns,
    )
    return entry


def prediction_from_scored(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """The prediction a ``hft:bars:scored`` entry carries, shaped as ``POST /predict`` answers it."""
    return {
        "symbol": fields[b"symbol"].decode(),
        "prob_up": float(fields[b"prob_up"]),
        "model_name": fields.get(b"model_name", b"").decode(),
        "model_version": fields.get(b"model_version", b"").decode(),
        "feature_version": fields.get(b"feature_version", b"").decode(),
        "feature_time": fields.get(b"scored_feature_time", b"").decode() or None,
    }


# symbol -> an opaque token that changes whenever the symbol's online row changes (cheap to read)
FeatureTimeProbe = Callable[[str], bytes | None]


@dataclass
class _Window:
    rows: deque[tuple[datetime, np.ndarray]]
    prob: float | None = None
    token: bytes | None = None


@dataclass(frozen=True)
class _Active:
    model: ServingModel
    windows: dict[str, _Window] = field(default_factory=dict)


def row_vector(row: dict[str, float], names: Sequence[str]) -> np.ndarray:
    """Order a feature row as the model's feature vector (raise on a missing name)."""
    try:
        vec = np.fromiter((float(row[n]) for n in names), dtype=np.float64, count=len(names))
    except KeyError as exc:
        raise FeatureMismatchError(f"feature {exc.args[0]!r} missing") from exc
    if not np.isfinite(vec).all():
        bad = [n for n, v in zip(names, vec, strict=True) if not np.isfinite(v)]
        raise FeatureMismatchError(f"features absent (NaN): {', '.join(bad[:5])}")
    return vec


class Scorer:
    """Score symbols with the active model; reload when the alias points at a new version."""

    def __init__(
        self,
        load_model: Callable[[], ServingModel],
        alias_version: Callable[[], str | None],
        features: OnlineReader,
        history: HistoryLoader | None = None,
        probe: FeatureTimeProbe | None = None,
    ) -> None:
        self._load_model = load_model
        self._probe = probe
        self._alias_version = alias_version
        self._features = features
        self._history = history
        self._active: _Active | None = None
        self._reload_lock = threading.Lock()
        self._symbol_locks: dict[str, threading.Lock] = {}
        self.last_reload_error: str | None = None

    # ---- model -----------------------------------------------------------------------------
    @property
    def model(self) -> ServingModel | None:
        """The model serving now (None before the first load)."""
        active = self._active
        return active.model if active else None

    def reload_if_moved(self, force: bool = False) -> bool:
        """Load the alias's model when its version differs from the active one; True when swapped."""
        with self._reload_lock:
            try:
                target = self._alias_version()
                current = self._active.model.version if self._active else None
                if target is None or (target == current and not force):
                    self.last_reload_error = None if target else NO_ALIAS
                    return False
                model = self._load_model()
            except Exception as exc:
                self.last_reload_error = f"{type(exc).__name__}: {exc}"
                log.warning("model reload failed: %s", self.last_reload_error)
                return False
            self._active = _Active(model)  # one reference assignment: atomic for readers
            self.last_reload_error = None
            log.info("serving %s version %s", model.name, model.version)
            return True

    # ---- scoring ---------------------------------------------------------------------------
    def score(self, symbol: str) -> Score:
        """Score the symbol's latest online feature row (with its window of past rows)."""
        active = self._active
        if active is None:
            raise ModelUnavailableError("no champion model loaded")
        token = self._probe(symbol) if self._probe is not None else None
        hit = self._hit(active, symbol, token)
        if hit is not None:  # the row has not changed since it was scored: one small read
            return hit
        # one computation per symbol at a time: a caller that comes while the same row is being
        # scored (the API's predict-ahead task and the bot's request for the bar) waits, then reuses it
        lock = self._symbol_locks.setdefault(symbol, threading.Lock())
        with lock:
            hit = self._hit(active, symbol, token)
            if hit is not None:
                return hit
            return self._score_row(active, symbol, active.windows.get(symbol), token)

    @staticmethod
    def _hit(active: _Active, symbol: str, token: bytes | None) -> Score | None:
        """The cached score of ``symbol`` when it was computed for the row ``token`` names."""
        win = active.windows.get(symbol)
        if token is None or win is None or win.token != token or win.prob is None or not win.rows:
            return None
        model = active.model
        return Score(symbol, win.prob, model.name, str(model.version), model.feature_version, win.rows[-1][0])

    def score_cached(self, symbol: str) -> Score | None:
        """The cached score when the symbol's row has not changed (one small read), else None.

        Cheap enough to call on an event loop; :meth:`score` does the rest (row read, model).
        """
        active = self._active
        if active is None or self._probe is None:
            return None
        win = active.windows.get(symbol)
        if win is None or win.prob is None or not win.rows or win.token is None:
            return None
        return self._hit(active, symbol, self._probe(symbol))

    def _score_row(self, active: _Active, symbol: str, win: _Window | None, token: bytes | None) -> Score:
        model = active.model
        latest = self._features.latest(symbol)
        if latest is None:
            raise UnknownSymbolError(symbol)
        feature_time, row = latest
        if win is None or not win.rows or win.rows[-1][0] != feature_time or win.prob is None:
            win = self._advance(active, symbol, win, feature_time, row)
        win.token = token
        assert win.prob is not None
        return Score(symbol, win.prob, model.name, str(model.version), model.feature_version, feature_time)

    def _advance(
        self, active: _Active, symbol: str, win: _Window | None, feature_time: datetime, row: dict[str, float]
    ) -> _Window:
        model = active.model
        n = max(int(model.sequence_length), 1)
        vec = row_vector(row, model.feature_names)
        rows: deque[tuple[datetime, np.ndarray]] = deque(win.rows if win else (), maxlen=n)
        if rows and rows[-1][0] > feature_time:
            rows.clear()  # the store went back in time (a replay restarted): rebuild
        if rows and rows[-1][0] == feature_time:
            rows.pop()
        rows.append((feature_time, vec))
        if len(rows) < n:
            if self._history is None:
                raise ModelUnavailableError(f"model needs {n} rows of history and no history loader is set")
            past = self._history(symbol, rows[0][0], n - len(rows))
            older = [(t, row_vector(r, model.feature_names)) for t, r in past if t < rows[0][0]]
            rows = deque([*older, *rows], maxlen=n)
            if len(rows) < n:
                raise ModelUnavailableError(f"only {len(rows)} of {n} feature rows of history for {symbol}")
        window = np.vstack([v for _, v in rows])
        new = _Window(rows, float(model.predict_proba_window(window)))
        active.windows[symbol] = new  # a dict item swap; a concurrent request at worst recomputes
        return new

    def score_rows(self, rows: Sequence[dict[str, float]]) -> tuple[ServingModel, list[float]]:
        """Score explicit feature rows, each as a window of one row (``sequence_length`` 1)."""
        active = self._active
        if active is None:
            raise ModelUnavailableError("no champion model loaded")
        model = active.model
        n = max(int(model.sequence_length), 1)
        if len(rows) < n:
            raise FeatureMismatchError(f"the model needs windows of {n} rows; got {len(rows)} rows")
        mat = np.vstack([row_vector(r, model.feature_names) for r in rows])
        # each row is the decision bar of the window that ends at it
        probs = [float(model.predict_proba_window(mat[i + 1 - n : i + 1])) for i in range(n - 1, len(rows))]
        return model, probs


def describe(model: ServingModel) -> dict[str, Any]:
    """Plain description of a serving model for /model."""
    return {
        "name": model.name,
        "version": str(model.version),
        "feature_version": model.feature_version,
        "feature_names": list(model.feature_names),
        "sequence_length": int(model.sequence_length),
    }


def champion_version(settings: Any, alias: str = "champion") -> str | None:
    """Version number the registry alias points at (None when the alias or the model is missing)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        uri = use_mlflow(settings)
        mv = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(
            settings.model_name, alias
        )
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in (
            "RESOURCE_DOES_NOT_EXIST",
            "INVALID_PARAMETER_VALUE",
            "NOT_FOUND",
        ):
            return None
        raise
    return str(mv.version)


def build_scorer(settings: Any, alias: str = "champion") -> Scorer:
    """Wire the scorer to the registry (``hft.ml.registry``) and the online store (``hft.features.online``)."""
    from hft.features.online import OnlineFeatures
    from hft.ml.registry import load_serving_model

    features = OnlineFeatures(settings)
    return Scorer(
        load_model=lambda: load_serving_model(settings, alias),
        alias_version=lambda: champion_version(settings, alias),
        features=features,
        history=offline_history(settings),
        probe=feast_timestamp_probe(features),
    )


def challenger_scorer(settings: Any, champion: Scorer, alias: str = "challenger") -> Scorer:
    """A scorer of the model under ``alias`` that shares the champion's online store, history and probe
    (the shadow: scored on every closed bar, traded by nobody). It holds no model while the alias
    is missing or points at the version the champion serves (after a promotion, or the first model)."""
    from hft.ml.registry import load_serving_model

    def version() -> str | None:
        target = champion_version(settings, alias)
        serving = champion.model
        return None if serving is not None and str(serving.version) == target else target

    return Scorer(
        load_model=lambda: load_serving_model(settings, alias),
        alias_version=version,
        features=champion._features,
        history=champion._history,
        probe=champion._probe,
    )


def feast_timestamp_probe(features: Any) -> FeatureTimeProbe | None:
    """Read only the row's event-timestamp field of Feast's Redis hash (``_ts:<view>``).

    Feast keeps one hash per entity with a field per feature and one for the timestamp; the
    timestamp field changes with every write, so it tells whether the cached score is still
    current with one HGET instead of the whole row. Built from Feast's own key functions; None
    (the scorer then reads the whole row every time) when the store is not Feast's Redis store.
    """
    try:
        from feast.infra.online_stores.redis import _versioned_fv_name

        online, config, view = features.online, features.config, features.view
        client = online._get_client(config.online_store)
        field = f"_ts:{_versioned_fv_name(view, config)}"
        keys: dict[str, bytes] = {}
    except (AttributeError, ImportError) as exc:
        log.warning("no timestamp probe (%s): every request reads the whole feature row", exc)
        return None

    def probe(symbol: str) -> bytes | None:
        key = keys.get(symbol)
        if key is None:
            key = keys[symbol] = online._generate_redis_keys_for_entities(config, [features._key(symbol)])[0]
        value = client.hget(key, field)
        return bytes(value) if value is not None else None

    return probe


def offline_history(settings: Any) -> HistoryLoader:
    """Past feature rows from ``features.bar_features`` (the window of a sequence model at start-up)."""
    from hft.features.bars import interval_ns
    from hft.features.offline import read_features

    step = timedelta(microseconds=interval_ns(settings.bar_interval) / 1000)

    def load(symbol: str, before: datetime, n: int) -> list[tuple[datetime, dict[str, float]]]:
        # twice the span: a few missing bars must not leave the window short
        with connect(settings) as conn:
            df = read_features(conn, symbol, settings.bar_interval, before - step * (2 * n + 2), before)
        df = df.tail(n)
        return [
            (ts.to_pydatetime(), row)
            for ts, row in zip(df["event_timestamp"], df.to_dict("records"), strict=True)
        ]

    return load
