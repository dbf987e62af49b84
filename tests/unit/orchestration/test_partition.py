"""Which window a validation or backfill run takes (hft.quality.partition), and where bars are expected.

The rule is pure (the stored data's extent and a "holds data" test are inputs), so these tests
state each case of it without a database; the integration tests run it on the real stack. The
data extents are those of the shared captures (trades 2024-08-08 23:54 → 2024-08-09 00:05) and
klines the orchestration fixture loads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from hft.quality import frames
from hft.quality.partition import (
    DataSpan,
    PartitionError,
    Window,
    check_conf_keys,
    choose_window,
    conf_window,
)
from hft.quality.validate import tick_holes


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


TICKS = (utc(2024, 8, 8, 23, 54, 0), utc(2024, 8, 9, 0, 5, 17))
BARS = (utc(2024, 7, 20), utc(2024, 8, 9, 6))  # first open, last close
SPAN = DataSpan(ticks=TICKS, bars=BARS)
NOW = utc(2026, 12, 6, 11, 7)
WALL_CLOCK_HOUR = (utc(2026, 12, 6, 10), utc(2026, 12, 6, 11))


def holds_between(lo: datetime, hi: datetime):  # type: ignore[no-untyped-def]
    """A stored extent [lo, hi): holds(start, end) as the database would answer it."""
    return lambda start, end: start < hi and end > lo


HOLDS = holds_between(BARS[0], BARS[1])


def test_config_window_wins_over_everything() -> None:
    conf = {"start": "2024-01-01T00:00:00Z", "end": "2024-01-01T01:00:00+00:00"}
    w = choose_window(conf, WALL_CLOCK_HOUR, SPAN, HOLDS, NOW)
    assert (w.start, w.end) == (utc(2024, 1, 1), utc(2024, 1, 1, 1))
    assert "config" in w.reason


def test_config_without_offset_is_utc_and_empty_strings_mean_not_given() -> None:
    assert conf_window({"start": "2024-08-09T00:00", "end": "2024-08-09 01:00"}) == (
        utc(2024, 8, 9),
        utc(2024, 8, 9, 1),
    )
    # the UI's trigger form sends every declared param, unset ones as null or ""
    assert conf_window({"start": None, "end": ""}) is None
    assert conf_window({}) is None
    assert conf_window(None) is None


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"start": "2024-08-09T00:00Z"}, "gives start but no end"),
        ({"end": "2024-08-09T00:00Z"}, "gives end but no start"),
        ({"start": "yesterday", "end": "2024-08-09T00:00Z"}, "start='yesterday' is not an ISO 8601 time"),
        ({"start": 1723161600, "end": "2024-08-09T00:00Z"}, "start must be an ISO 8601 string"),
        ({"start": "2024-08-09T01:00Z", "end": "2024-08-09T00:00Z"}, "is not after start"),
        ({"start": "2024-08-09T01:00Z", "end": "2024-08-09T01:00Z"}, "is not after start"),
    ],
)
def test_bad_config_says_what_is_wrong(conf: dict[str, object], message: str) -> None:
    with pytest.raises(PartitionError, match=message):
        choose_window(conf, WALL_CLOCK_HOUR, SPAN, HOLDS, NOW)


def test_unknown_config_key_is_named() -> None:
    with pytest.raises(PartitionError, match="unknown config key 'strat': this DAG takes start, end"):
        check_conf_keys({"strat": "2024-08-09", "end": "2024-08-09T01:00Z"}, ("start", "end"))
    with pytest.raises(PartitionError, match="must be a JSON object"):
        check_conf_keys(["start"], ("start", "end"))  # type: ignore[arg-type]
    check_conf_keys({"start": None, "end": None}, ("start", "end"))
    check_conf_keys(None, ("start", "end"))


def test_data_interval_that_holds_data_is_validated_as_is() -> None:
    interval = (utc(2024, 8, 9, 3), utc(2024, 8, 9, 4))
    w = choose_window(None, interval, SPAN, HOLDS, NOW)
    assert (w.start, w.end) == interval
    assert w.reason == "the run's data interval"


def test_empty_interval_inside_the_data_is_validated_so_the_hole_is_seen() -> None:
    # bars stored before and after, none in 02:00-03:00: the run must look at that hour
    def holes(start: datetime, end: datetime) -> bool:
        return HOLDS(start, end) and not (start >= utc(2024, 8, 9, 2) and end <= utc(2024, 8, 9, 3))

    interval = (utc(2024, 8, 9, 2), utc(2024, 8, 9, 3))
    w = choose_window(None, interval, SPAN, holes, NOW)
    assert (w.start, w.end) == interval
    assert "holds no data inside the stored data" in w.reason


def test_wall_clock_hour_the_replay_data_never_reached_falls_back_to_the_datas_latest_hour() -> None:
    # the case: the hourly run of 2026 on the replay's 2024 trades
    w = choose_window(None, WALL_CLOCK_HOUR, SPAN, HOLDS, NOW)
    # the data's time line is the live feed (ticks): it ends 00:05:17, so 23:00-00:00 is complete
    assert (w.start, w.end) == (utc(2024, 8, 8, 23), utc(2024, 8, 9))
    assert "latest complete hour" in w.reason
    assert "holds none" in w.reason


@pytest.mark.parametrize(
    "interval",
    [None, (None, None), (utc(2026, 12, 6, 11, 7), utc(2026, 12, 6, 11, 7))],
    ids=["no-logical-date", "interval-keys-none", "trigger-timetable-empty-interval"],
)
def test_run_without_a_data_interval_takes_the_datas_latest_complete_hour(interval: object) -> None:
    w = choose_window(None, interval, SPAN, HOLDS, NOW)  # type: ignore[arg-type]
    assert (w.start, w.end) == (utc(2024, 8, 8, 23), utc(2024, 8, 9))
    assert "holds none" not in w.reason


def test_without_ticks_the_bars_close_ends_the_time_line() -> None:
    w = choose_window(None, None, DataSpan(bars=BARS), HOLDS, NOW)
    assert (w.start, w.end) == (utc(2024, 8, 9, 5), utc(2024, 8, 9, 6))


def test_time_line_ending_on_the_hour_makes_that_hour_complete() -> None:
    w = choose_window(None, None, DataSpan(ticks=(TICKS[0], utc(2024, 8, 9, 1))), HOLDS, NOW)
    assert (w.start, w.end) == (utc(2024, 8, 9), utc(2024, 8, 9, 1))


def test_no_data_stored_at_all_keeps_the_runs_interval_or_the_hour_before_the_run() -> None:
    nothing = lambda start, end: False  # noqa: E731
    w = choose_window(None, WALL_CLOCK_HOUR, DataSpan(), nothing, NOW)
    assert (w.start, w.end) == WALL_CLOCK_HOUR
    assert "no market data is stored yet" in w.reason
    w = choose_window(None, None, DataSpan(), nothing, NOW)
    assert (w.start, w.end) == (utc(2026, 12, 6, 10), utc(2026, 12, 6, 11))


def test_window_round_trips_through_xcom() -> None:
    w = Window(utc(2024, 8, 9), utc(2024, 8, 9, 1), "why")
    assert Window.from_dict(w.to_dict()) == w
    assert w.to_dict()["start"] == "2024-08-09T00:00:00+00:00"


# ---- where bars and ticks are expected ----------------------------------------------------------


@pytest.fixture(scope="module")
def klines(data_dir: Path) -> pd.DataFrame:
    from hft.market.ohlcv import read_ohlcv_csv

    frames_ = []
    for sym in ("BTCUSDT", "ETHUSDT"):
        df = read_ohlcv_csv(
            data_dir / "klines_15m" / f"{sym}_15m_ohlcv_2023-01-01_2025-08-31.csv.gz", symbol=sym
        )
        frames_.append(df.loc["2024-08-08 20:00":"2024-08-09 05:45"].reset_index().assign(symbol=sym))
    return pd.concat(frames_, ignore_index=True)


def bars_frame(
    bars: pd.DataFrame, symbols: list[str], start: datetime, end: datetime, **kw: object
) -> pd.DataFrame:
    """frames.bar_frame on the bars of [start, end), as hft.quality.source.load_bars reads them."""
    inside = bars[(bars["open_time"] >= start) & (bars["open_time"] < end)]
    return frames.bar_frame(inside, symbols, "15m", start, end, **kw)  # type: ignore[arg-type]


def test_bars_after_the_stored_data_are_not_expected_but_a_hole_inside_is(klines: pd.DataFrame) -> None:
    first = utc(2024, 8, 8, 20)
    last = utc(2024, 8, 9, 5, 45)
    coverage = {"BTCUSDT": (first, last), "ETHUSDT": (first, last)}
    # after the data: nothing expected, nothing present
    after = bars_frame(
        klines, ["BTCUSDT", "ETHUSDT"], utc(2024, 8, 9, 6), utc(2024, 8, 9, 7), coverage=coverage
    )
    assert len(after) == 0
    # without coverage the same window expects eight bars (the old behaviour, which failed)
    old = bars_frame(klines, ["BTCUSDT", "ETHUSDT"], utc(2024, 8, 9, 6), utc(2024, 8, 9, 7))
    assert int(old["missing"].sum()) == 8
    # a window straddling the end: the bars up to the last stored one are checked, none missing
    edge = bars_frame(
        klines, ["BTCUSDT", "ETHUSDT"], utc(2024, 8, 9, 5), utc(2024, 8, 9, 7), coverage=coverage
    )
    assert len(edge) == 8
    assert not edge["missing"].any()
    # a bar deleted inside the data is still missing
    holed = klines[
        ~(
            (klines["symbol"] == "ETHUSDT")
            & (klines["open_time"] == pd.Timestamp("2024-08-09 02:15", tz="UTC"))
        )
    ]
    frame = bars_frame(
        holed, ["BTCUSDT", "ETHUSDT"], utc(2024, 8, 9, 2), utc(2024, 8, 9, 3), coverage=coverage
    )
    assert frame.loc[frame["missing"], "key"].tolist() == ["ETHUSDT 15m 2024-08-09T02:15Z"]


def test_symbol_that_stopped_while_another_goes_on_is_missing_bars(klines: pd.DataFrame) -> None:
    eth_stops = klines[
        ~(
            (klines["symbol"] == "ETHUSDT")
            & (klines["open_time"] >= pd.Timestamp("2024-08-09 04:30", tz="UTC"))
        )
    ]
    latest = utc(2024, 8, 9, 5, 45)  # the latest bar of any symbol
    coverage = {"BTCUSDT": (utc(2024, 8, 8, 20), latest), "ETHUSDT": (utc(2024, 8, 8, 20), latest)}
    frame = bars_frame(
        eth_stops, ["BTCUSDT", "ETHUSDT"], utc(2024, 8, 9, 4), utc(2024, 8, 9, 5), coverage=coverage
    )
    assert frame.loc[frame["missing"], "key"].tolist() == [
        "ETHUSDT 15m 2024-08-09T04:30Z",
        "ETHUSDT 15m 2024-08-09T04:45Z",
    ]
    # a symbol with no stored bar at all is expected nowhere
    only_btc = bars_frame(
        klines[klines["symbol"] == "BTCUSDT"],
        ["BTCUSDT", "XRPUSDT"],
        utc(2024, 8, 9, 4),
        utc(2024, 8, 9, 5),
        coverage={"BTCUSDT": coverage["BTCUSDT"]},
    )
    assert set(only_btc["symbol"]) == {"BTCUSDT"}
    assert not only_btc["missing"].any()


def test_tick_hole_needs_stored_ticks_on_both_sides() -> None:
    spans = {"BTCUSDT": TICKS, "ETHUSDT": (TICKS[0], utc(2024, 8, 8, 23, 59))}
    # 23:56-23:57 empty for ETHUSDT inside its stream: a hole; BTCUSDT has ticks there
    assert tick_holes(
        spans, {"BTCUSDT"}, ["BTCUSDT", "ETHUSDT"], utc(2024, 8, 8, 23, 56), utc(2024, 8, 8, 23, 57)
    ) == ["ETHUSDT"]
    # after ETHUSDT's last tick, or before anyone's first: not a hole (nothing there to expect)
    assert (
        tick_holes(spans, {"BTCUSDT"}, ["BTCUSDT", "ETHUSDT"], utc(2024, 8, 9), utc(2024, 8, 9, 0, 1)) == []
    )
    assert tick_holes(spans, set(), ["BTCUSDT", "ETHUSDT"], utc(2024, 8, 8, 22), utc(2024, 8, 8, 23)) == []


def test_a_scheduled_run_long_after_its_slot_is_a_missed_slot() -> None:
    from types import SimpleNamespace

    from airflow.utils.types import DagRunType

    from hft.quality.partition import missed_slot

    sunday = utc(2026, 12, 6)

    def run(kind: DagRunType, run_after: datetime) -> dict[str, object]:
        return {"dag_run": SimpleNamespace(run_type=kind, run_after=run_after)}

    # switched on on Monday at 01:38: Sunday's slot is skipped, saying when it was
    why = missed_slot(run(DagRunType.SCHEDULED, sunday), utc(2026, 12, 7, 1, 38))
    assert why is not None
    assert "2026-12-06T00:00Z" in why
    assert "25.6 h" in why
    # on time (the scheduler a few minutes late): it runs
    assert missed_slot(run(DagRunType.SCHEDULED, sunday), utc(2026, 12, 6, 0, 7)) is None
    # drift and hand-made runs are never late
    assert missed_slot(run(DagRunType.ASSET_TRIGGERED, sunday), utc(2026, 12, 9)) is None
    assert missed_slot(run(DagRunType.MANUAL, sunday), utc(2026, 12, 9)) is None
    assert missed_slot({}, utc(2026, 12, 9)) is None


def test_airflow_schedules_the_latest_passed_slot_whatever_run_immediately_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Why missed_slot exists: with catchup=False a trigger timetable's first run is the latest
    passed slot even with run_immediately=timedelta(0). When Airflow changes that, this fails
    and the skip can go."""
    from datetime import timedelta

    import airflow.timetables.trigger as trigger
    from airflow.timetables.base import TimeRestriction

    monkeypatch.setattr(trigger, "utcnow", lambda: utc(2026, 12, 7, 1, 38))  # a Monday
    timetable = trigger.CronTriggerTimetable("@weekly", timezone="UTC", run_immediately=timedelta(0))
    info = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=utc(2024, 1, 1), latest=None, catchup=False),
    )
    assert info is not None
    assert info.run_after == utc(2026, 12, 6)
