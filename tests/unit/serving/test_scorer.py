"""The scorer: cached windows, recompute only on a new feature_time, atomic hot reload."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hft.trading.scoring import FeatureMismatchError, ModelUnavailableError, Scorer, UnknownSymbolError
from tests.unit.serving.conftest import T0, MemoryFeatures, SklearnServingModel, fit_model


def _scorer(features: MemoryFeatures, models: dict[str, SklearnServingModel], alias: list[str]) -> Scorer:
    return Scorer(
        load_model=lambda: models[alias[0]],
        alias_version=lambda: alias[0],
        features=features,
        history=features.history,
    )


def test_score_before_any_model_is_unavailable(features: MemoryFeatures) -> None:
    s = _scorer(features, {}, [None])  # type: ignore[list-item]
    assert s.reload_if_moved() is False
    with pytest.raises(ModelUnavailableError):
        s.score("BTCUSDT")


def test_model_runs_once_per_feature_time(features: MemoryFeatures) -> None:
    m = fit_model()
    s = _scorer(features, {"1": m}, ["1"])
    assert s.reload_if_moved() is True
    first = s.score("BTCUSDT")
    again = s.score("BTCUSDT")
    assert m.calls == 1
    assert first == again
    features.put("BTCUSDT", T0 + timedelta(hours=2), {"ret_1": -0.5, "ret_4": 0.0, "vol_16": 1.0})
    third = s.score("BTCUSDT")
    assert m.calls == 2
    assert third.feature_time == T0 + timedelta(hours=2)
    assert third.prob_up < first.prob_up  # a negative return lowers the learnt up-probability


def test_window_model_gets_history_rows(features: MemoryFeatures) -> None:
    m = fit_model(sequence_length=3)
    s = _scorer(features, {"1": m}, ["1"])
    s.reload_if_moved()
    s.score("BTCUSDT")  # the assert inside the model checks the window shape (3, n)
    assert m.calls == 1
    short = fit_model(sequence_length=10)
    s2 = _scorer(features, {"1": short}, ["1"])
    s2.reload_if_moved()
    with pytest.raises(ModelUnavailableError, match="history"):
        s2.score("BTCUSDT")


def test_unknown_symbol_and_missing_feature(features: MemoryFeatures) -> None:
    s = _scorer(features, {"1": fit_model()}, ["1"])
    s.reload_if_moved()
    with pytest.raises(UnknownSymbolError):
        s.score("DOGEUSDT")
    features.put("ETHUSDT", T0, {"ret_1": 0.0})
    with pytest.raises(FeatureMismatchError, match="ret_4"):
        s.score("ETHUSDT")


def test_alias_move_swaps_model_and_keeps_old_on_load_failure(features: MemoryFeatures) -> None:
    alias = ["1"]
    models = {"1": fit_model(version="1"), "2": fit_model(seed=1, version="2")}
    s = _scorer(features, models, alias)
    s.reload_if_moved()
    assert s.score("BTCUSDT").model_version == "1"
    assert s.reload_if_moved() is False  # alias unchanged
    alias[0] = "2"
    assert s.reload_if_moved() is True
    assert s.score("BTCUSDT").model_version == "2"
    alias[0] = "3"  # no such model: loading fails, version 2 keeps serving
    assert s.reload_if_moved() is False
    assert s.last_reload_error is not None
    assert s.score("BTCUSDT").model_version == "2"


def test_score_rows_windows(features: MemoryFeatures) -> None:
    s = _scorer(features, {"1": fit_model(sequence_length=2)}, ["1"])
    s.reload_if_moved()
    rows = [{"ret_1": 0.1 * i, "ret_4": 0.0, "vol_16": 1.0} for i in range(4)]
    _, probs = s.score_rows(rows)
    assert len(probs) == 3
    with pytest.raises(FeatureMismatchError):
        s.score_rows(rows[:1])


def test_probe_token_skips_the_row_read_until_it_changes(features: MemoryFeatures) -> None:
    reads = {"n": 0}
    latest = features.latest

    def counting_latest(symbol: str):  # type: ignore[no-untyped-def]
        reads["n"] += 1
        return latest(symbol)

    features.latest = counting_latest  # type: ignore[method-assign]
    token = {"BTCUSDT": b"t1"}
    s = Scorer(lambda: fit_model(), lambda: "1", features, features.history, probe=lambda sym: token.get(sym))
    s.reload_if_moved()
    first = s.score("BTCUSDT")
    for _ in range(5):
        assert s.score("BTCUSDT") == first
    assert reads["n"] == 1
    features.put("BTCUSDT", T0 + timedelta(hours=3), {"ret_1": 0.3, "ret_4": 0.0, "vol_16": 1.0})
    token["BTCUSDT"] = b"t2"
    assert s.score("BTCUSDT").feature_time == T0 + timedelta(hours=3)
    assert reads["n"] == 2


def test_callers_of_the_same_new_row_share_one_computation(features: MemoryFeatures) -> None:
    """The API's predict-ahead task and the bot's request for a just-closed bar arrive together:
    the second waits for the first's computation instead of running the model again."""
    import threading
    import time

    m = fit_model()
    slow = m.predict_proba_window

    def slow_predict(window):  # type: ignore[no-untyped-def]
        time.sleep(0.2)  # long enough for the second caller to arrive mid-computation
        return slow(window)

    m.predict_proba_window = slow_predict  # type: ignore[method-assign]
    token = {"BTCUSDT": b"t1"}
    s = Scorer(lambda: m, lambda: "1", features, features.history, probe=lambda sym: token.get(sym))
    s.reload_if_moved()
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(s.score("BTCUSDT"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert m.calls == 1
    assert len(got) == 3
    assert len(set(got)) == 1  # one Score, the same for every caller
    assert s.score_cached("BTCUSDT") == got[0]  # and the event loop's cheap path finds it too
