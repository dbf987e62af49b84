"""Which window of market data a DAG run validates or backfills.

The rule (the ``validate_market_data`` DAG's doc_md and docs/orchestration.md say the same):

1. ``start`` and ``end`` in the trigger's config win: both or neither, ISO 8601 (UTC when no
   offset is given), ``end`` exclusive and after ``start``. Anything else is a
   :class:`PartitionError` whose message says what is wrong.
2. A run with a data interval (the hourly schedule; a manual run given a logical date)
   takes that interval when the stored data holds a row in it, or when the stored data goes on
   past its end (an empty interval inside the data is a hole: the validation must see it).
3. Otherwise (a manual or REST run without a logical date; an hour the data has not reached:
   the replay exchange's 2024 trades, a freshly started system) the latest complete interval
   of the stored data's own time line. That time line ends at the latest stored trade time
   (the live feed) or, with no ticks stored, at the latest bar's close; the window is the
   interval-long slot that ends at that time floored to the interval (one hour by default).
4. With no market data stored at all: the run's interval (or the slot before the run), which
   the validators report as "nothing to validate".

The rule itself (:func:`choose_window`) is pure; :func:`resolve_window` reads the database.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hft.config import Settings
from hft.quality.frames import interval_delta
from hft.quality.source import bar_span, holds_data, tick_span

HOUR = timedelta(hours=1)
Holds = Callable[[datetime, datetime], bool]


class PartitionError(ValueError):
    """A trigger config that names no valid window; the message says what is wrong and what to give."""


@dataclass(frozen=True)
class Window:
    """A half-open window [start, end) of market data and why it was chosen."""

    start: datetime
    end: datetime
    reason: str

    def to_dict(self) -> dict[str, str]:
        """Return ``{"start", "end", "reason"}`` with ISO 8601 UTC times (an XCom value)."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Window:
        """Read a window written by :meth:`to_dict` (or any mapping with ``start`` and ``end``)."""
        start, end = conf_window(data) or (None, None)
        if start is None or end is None:
            raise PartitionError(f"no window in {dict(data)!r}")
        return cls(start, end, str(data.get("reason", "")))


@dataclass(frozen=True)
class DataSpan:
    """How far the stored market data reaches: (first, last) trade time and (first open, last close) of bars."""

    ticks: tuple[datetime, datetime] | None = None
    bars: tuple[datetime, datetime] | None = None

    @property
    def timeline_end(self) -> datetime | None:
        """Where the data's own time line ends: the latest trade time, else the latest bar close."""
        if self.ticks is not None:
            return self.ticks[1]
        return self.bars[1] if self.bars is not None else None

    @property
    def last(self) -> datetime | None:
        """The latest time any stored row reaches (ticks or bars)."""
        ends = [s[1] for s in (self.ticks, self.bars) if s is not None]
        return max(ends) if ends else None

    def describe(self) -> str:
        """Say in words what is stored (for the run's log)."""
        parts = []
        if self.ticks is not None:
            parts.append(f"ticks {_label(self.ticks[0])} → {_label(self.ticks[1])}")
        if self.bars is not None:
            parts.append(f"bars {_label(self.bars[0])} → {_label(self.bars[1])}")
        return ", ".join(parts) or "no market data"


def _label(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").replace(":00Z", "Z")


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_time(value: object, name: str) -> datetime:
    """Parse an ISO 8601 time from a trigger config (no offset means UTC); raise PartitionError."""
    if isinstance(value, datetime):
        ts = value
    elif isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.strip())
        except ValueError:
            raise PartitionError(
                f"{name}={value!r} is not an ISO 8601 time (for example 2024-08-09T00:00:00Z)"
            ) from None
    else:
        raise PartitionError(f"{name} must be an ISO 8601 string, not {type(value).__name__} {value!r}")
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def conf_window(conf: Mapping[str, Any] | None) -> tuple[datetime, datetime] | None:
    """Return [start, end) given in a trigger config, None when it gives neither; raise PartitionError."""
    if conf is None:
        return None
    if not isinstance(conf, Mapping):
        raise PartitionError(f"the trigger's config must be a JSON object, not {type(conf).__name__}")
    start, end = conf.get("start"), conf.get("end")
    if _empty(start) and _empty(end):
        return None
    if _empty(start) or _empty(end):
        given, missing = ("end", "start") if _empty(start) else ("start", "end")
        raise PartitionError(
            f"the config gives {given} but no {missing}: give both start and end "
            "(ISO 8601 UTC, end exclusive) or neither"
        )
    lo, hi = parse_time(start, "start"), parse_time(end, "end")
    if hi <= lo:
        raise PartitionError(f"end {hi.isoformat()} is not after start {lo.isoformat()}")
    return lo, hi


def floor_to(ts: datetime, length: timedelta) -> datetime:
    """Floor an aware time to a multiple of ``length`` since the epoch (UTC)."""
    step = int(length.total_seconds())
    return datetime.fromtimestamp(int(ts.timestamp()) // step * step, UTC)


def choose_window(
    conf: Mapping[str, Any] | None,
    data_interval: tuple[datetime | None, datetime | None] | None,
    span: DataSpan,
    holds: Holds,
    now: datetime,
    length: timedelta = HOUR,
) -> Window:
    """Apply the rule of this module's docstring.

    ``data_interval`` is the run's (None, or (None, None), when it has none; an empty interval,
    as Airflow's trigger timetables give, counts as none); ``holds(start, end)`` says whether
    the stored data has a row in [start, end); ``now`` is when the run was asked for.
    """
    given = conf_window(conf)
    if given is not None:
        return Window(*given, "start/end from the trigger's config")
    lo, hi = data_interval or (None, None)
    if lo is not None and hi is not None and lo < hi:
        lo, hi = lo.astimezone(UTC), hi.astimezone(UTC)
        if holds(lo, hi):
            return Window(lo, hi, "the run's data interval")
        if span.last is not None and span.last >= hi:
            return Window(
                lo,
                hi,
                f"the run's data interval, which holds no data inside the stored data ({span.describe()})",
            )
    end_of_data = span.timeline_end
    if end_of_data is None:
        if lo is not None and hi is not None and lo < hi:
            return Window(lo, hi, "the run's data interval; no market data is stored yet")
        slot_end = floor_to(now.astimezone(UTC), length)
        return Window(slot_end - length, slot_end, "the slot before the run; no market data is stored yet")
    end = floor_to(end_of_data, length)
    why = f"the latest complete {_length_label(length)} of the stored data ({span.describe()})"
    if lo is not None and hi is not None and lo < hi:
        why += f"; the run's data interval {_label(lo)} → {_label(hi)} holds none"
    return Window(end - length, end, why)


def _length_label(length: timedelta) -> str:
    return "hour" if length == HOUR else f"{length}"


def data_span(settings: Settings, symbols: Sequence[str], interval: str) -> DataSpan:
    """Read how far market.ticks and market.bars (of ``interval``) reach for ``symbols``."""
    ticks = tick_span(settings, symbols)
    bars = bar_span(settings, symbols, interval)
    step = interval_delta(interval)
    return DataSpan(
        ticks=(min(f for f, _ in ticks.values()), max(last for _, last in ticks.values())) if ticks else None,
        bars=(min(f for f, _ in bars.values()), max(last for _, last in bars.values()) + step)
        if bars
        else None,
    )


def resolve_window(
    settings: Settings,
    conf: Mapping[str, Any] | None,
    data_interval: tuple[datetime | None, datetime | None] | None,
    now: datetime | None = None,
    length: timedelta = HOUR,
) -> Window:
    """The window a run validates, from its config, its data interval and the stored data."""
    # a bad config fails before the database is asked anything
    given = conf_window(conf)
    if given is not None:
        return Window(*given, "start/end from the trigger's config")
    symbols, interval = list(settings.symbols), settings.bar_interval
    return choose_window(
        None,
        data_interval,
        data_span(settings, symbols, interval),
        lambda lo, hi: holds_data(settings, symbols, interval, lo, hi),
        now or datetime.now(UTC),
        length,
    )


def check_conf_keys(conf: Mapping[str, Any] | None, allowed: Sequence[str]) -> None:
    """Raise PartitionError for a trigger config that is no object or names a key the DAG does not take."""
    if conf is None:
        return
    if not isinstance(conf, Mapping):
        raise PartitionError(f"the trigger's config must be a JSON object, not {type(conf).__name__}")
    unknown = sorted(set(conf) - set(allowed))
    if unknown:
        raise PartitionError(
            f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
            f"this DAG takes {', '.join(allowed) or 'no config'}"
        )


def run_facts(
    context: Mapping[str, Any],
) -> tuple[Mapping[str, Any], tuple[datetime | None, datetime | None], datetime]:
    """Return (config, data interval, run_after) of an Airflow task context, whatever kind of run it is.

    Airflow 3 leaves ``data_interval_start``/``_end`` out of the context of a run without a
    logical date (a manual or REST trigger with ``logical_date: null``) and sets them to None
    on some others; ``dag_run.run_after`` (when the run was asked for) is always there.
    """
    dag_run = context.get("dag_run")
    conf = getattr(dag_run, "conf", None) or {}
    interval = (context.get("data_interval_start"), context.get("data_interval_end"))
    run_after = getattr(dag_run, "run_after", None) or datetime.now(UTC)
    return conf, interval, run_after


SLOT_GRACE = timedelta(hours=1)


def missed_slot(context: Mapping[str, Any], now: datetime, grace: timedelta = SLOT_GRACE) -> str | None:
    """Say why a scheduled run is for a slot that passed more than ``grace`` before ``now``, else None.

    With ``catchup=False`` Airflow's trigger timetables always schedule the latest slot that has
    passed, whatever ``run_immediately`` says: a weekly DAG switched on on a Monday runs
    Sunday's slot at once. A DAG that must wait for its next slot when switched on (a full
    retraining) skips such a run; asset-triggered and manual runs are never late.
    """
    run_type = getattr(context.get("dag_run"), "run_type", None)
    if getattr(run_type, "value", run_type) != "scheduled":
        return None
    slot = run_facts(context)[2].astimezone(UTC)
    late = now.astimezone(UTC) - slot
    if late <= grace:
        return None
    return (
        f"the slot {_label(slot)} passed {late.total_seconds() / 3600:.1f} h ago (switched on, or not "
        f"running, at that time; grace {grace}): waiting for the next slot"
    )


def window_for_run(
    settings: Settings, context: Mapping[str, Any], allowed: Sequence[str] = ("start", "end")
) -> Window:
    """The window an Airflow run of a validation or backfill DAG works on (see the module's rule)."""
    conf, interval, run_after = run_facts(context)
    check_conf_keys(conf, allowed)
    return resolve_window(settings, conf, interval, run_after)
