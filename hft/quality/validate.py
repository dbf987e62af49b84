"""Validate one partition of ticks, bars or features and keep the outcome.

``validate_ticks/bars/features(settings, start, end)`` read the partition from the database,
shape it (:mod:`hft.quality.frames`), run its checkpoint (:mod:`hft.quality.gx_runner`),
rebuild the data docs, append the summary to ``<home>/quality/validation_runs.jsonl`` and
return a :class:`ValidationSummary` whose ``text()`` names every failing check and the rows
that broke it. A failed validation is a result, not an exception: callers (the DAGs, ``hft
validate``) decide to fail. ``*_frame`` variants validate a frame already in hand.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from hft.config import Settings
from hft.features import FEATURE_SPEC, OHLCV_FEATURES, TRADE_FEATURES
from hft.quality import frames
from hft.quality.drift import drift_frame
from hft.quality.drift import reference_profile as profile_of
from hft.quality.gx_runner import CheckResult, data_docs_dir, run_checkpoint, suite_json
from hft.quality.source import bar_span, first_bar_times, load_bars, load_features, load_ticks, tick_span

Clock = Callable[[], datetime]
KINDS = ("ticks", "bars", "features")
# the exchange's clock may run ahead of ours (1.5 s seen in the captures): allow some slack
FUTURE_TOLERANCE = timedelta(seconds=5)
# fewer bars than this (one day of 15m bars) in the drift window or the reference: no PSI
MIN_DRIFT_ROWS = 96


def utc_now() -> datetime:
    """Return the current UTC time (the default clock; tests inject their own)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class ValidationSummary:
    """The outcome of validating one partition of one kind of data."""

    kind: str
    start: datetime
    end: datetime
    rows: int
    checks: tuple[CheckResult, ...]
    data_docs: str
    pages: tuple[str, ...] = ()
    finished_at: datetime = field(default_factory=utc_now)
    notes: tuple[str, ...] = ()
    # why nothing was validated (no data in the window, none expected there); empty when checked
    skipped: str = ""
    # PSI per feature against the training reference (features only; empty when not computed)
    drift: dict[str, float] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        """Whether every critical check passed (warnings such as drift do not fail a validation)."""
        return not any(c.blocking for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        """The critical checks that failed."""
        return [c for c in self.checks if c.blocking]

    @property
    def warnings(self) -> list[CheckResult]:
        """The warning-severity checks that failed (e.g. PSI above its threshold)."""
        return [c for c in self.checks if not c.success and not c.blocking]

    def text(self) -> str:
        """Return a readable summary naming each failing check and its first failing rows."""
        state = "passed" if self.success else f"FAILED {len(self.failed)} of {len(self.checks)} checks"
        if self.skipped:
            state = f"skipped, nothing to validate: {self.skipped}"
        lines = [f"{self.kind} {_label(self.start)} → {_label(self.end)}: {state} ({self.rows:,} rows)"]
        if self.success and self.warnings:
            lines[0] += f", {len(self.warnings)} warning{'s' if len(self.warnings) != 1 else ''}"
        for check in self.failed + self.warnings:
            count = check.unexpected_count
            detail = f"{count:,} row{'s' if count != 1 else ''}" if count else (check.observed or "")
            if check.error:
                detail = f"error: {check.error}"
            named = ", ".join(check.examples[:10])
            more = " …" if check.unexpected_count > 10 and named else ""
            mark = "✗" if check.blocking else "⚠ warning:"
            lines.append(f"  {mark} {check.description}: {detail}{': ' + named + more if named else ''}")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f"  data docs: {self.pages[0] if self.pages else self.data_docs}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (the line written to validation_runs.jsonl)."""
        return {
            "kind": self.kind,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "success": self.success,
            "rows": self.rows,
            "failed": [c.description for c in self.failed],
            "warnings": [c.description for c in self.warnings],
            "checks": [c.to_dict() for c in self.checks],
            "data_docs": self.data_docs,
            "pages": list(self.pages),
            "finished_at": self.finished_at.isoformat(),
            "notes": list(self.notes),
            "drift": dict(self.drift),
            "skipped": self.skipped,
            "summary": self.text(),
        }


def _label(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _aware(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: partitions are given in UTC")
    return ts.astimezone(UTC)


# ---- where results are kept --------------------------------------------------------------------


def runs_file(settings: Settings) -> Path:
    """Return ``<home>/quality/validation_runs.jsonl`` (one JSON summary a line, oldest first)."""
    return settings.home_dir / "quality" / "validation_runs.jsonl"


def record(settings: Settings, summary: ValidationSummary) -> Path:
    """Append the summary to the runs file (one write: concurrent tasks never interleave lines)."""
    path = runs_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(summary.to_dict(), default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return path


def read_runs(settings: Settings, limit: int = 50, kind: str | None = None) -> list[dict[str, Any]]:
    """Return the latest recorded summaries, newest first (what the dashboard shows)."""
    path = runs_file(settings)
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    for line in reversed(path.read_text().splitlines()):
        if not line.strip():
            continue
        row = json.loads(line)
        if kind is None or row.get("kind") == kind:
            out.append(row)
            if len(out) >= limit:
                break
    return out


def _finish(
    settings: Settings,
    kind: str,
    start: datetime,
    end: datetime,
    rows: int,
    results: Sequence[tuple[list[CheckResult], list[str]]],
    notes: Sequence[str] = (),
    skipped: str = "",
    drift: Mapping[str, float] | None = None,
) -> ValidationSummary:
    checks = tuple(c for part, _ in results for c in part)
    pages = tuple(p for _, part in results for p in part)
    summary = ValidationSummary(
        kind=kind,
        start=start,
        end=end,
        rows=rows,
        checks=checks,
        data_docs=(data_docs_dir(settings) / "index.html").as_uri(),
        pages=pages,
        notes=tuple(notes),
        skipped=skipped,
        drift=dict(drift or {}),
    )
    record(settings, summary)
    return summary


def _run_name(kind: str, start: datetime, end: datetime) -> str:
    return f"{kind}-{start:%Y%m%dT%H%M}Z-{end:%Y%m%dT%H%M}Z"


# ---- ticks ------------------------------------------------------------------------------------


Spans = Mapping[str, tuple[datetime, datetime]]


def _span_text(spans: Spans, what: str) -> str:
    if not spans:
        return f"no {what} stored at all"
    return "stored: " + ", ".join(f"{s} {_label(lo)} → {_label(hi)}" for s, (lo, hi) in sorted(spans.items()))


def tick_holes(
    spans: Spans, present: set[str], symbols: Sequence[str], start: datetime, end: datetime
) -> list[str]:
    """Return the symbols with no tick in [start, end) although their stored ticks begin before and go on after."""
    return [
        s for s in symbols if s not in present and s in spans and spans[s][0] < start and spans[s][1] >= end
    ]


def _hole_check(holes: Sequence[str], spans: Spans, start: datetime, end: datetime) -> CheckResult:
    # not a Great Expectations expectation: GE sees only the rows inside the window, and a hole
    # is the absence of rows that the data around the window says should be there
    observed = "; ".join(
        f"no {s} ticks in {_label(start)} → {_label(end)} while its ticks span "
        f"{_label(spans[s][0])} → {_label(spans[s][1])}"
        for s in holes
    )
    return CheckResult(
        description="no window without ticks inside a symbol's stored stream",
        expectation="hft_ticks_inside_stored_stream",
        success=not holes,
        unexpected_count=len(holes),
        examples=tuple(holes),
        observed=observed,
    )


def validate_ticks_frame(
    settings: Settings,
    ticks: pd.DataFrame,
    start: datetime,
    end: datetime,
    clock: Clock = utc_now,
    spans: Spans | None = None,
    symbols: Sequence[str] | None = None,
) -> ValidationSummary:
    """Validate ticks (``symbol, trade_id, price, quantity, trade_time_ms``) of [start, end).

    ``spans`` (symbol → first and last stored trade time), when given, adds the check that no
    symbol lacks ticks in a window its stored stream spans, and lets an empty window whose
    emptiness the stored data explains (no ticks stored there at all) pass as skipped.
    """
    start, end = _aware(start), _aware(end)
    syms = list(symbols or settings.symbols)
    holes = tick_holes(spans or {}, set(ticks["symbol"]), syms, start, end)
    if len(ticks) == 0 and not holes:
        stored = f" ({_span_text(spans, 'ticks')})" if spans is not None else ""
        reason = f"no ticks of {', '.join(syms)} in this window{stored}"
        return _finish(settings, "ticks", start, end, 0, [], skipped=reason)
    frame = frames.tick_frame(ticks)
    latest = frames.to_ms(clock() + FUTURE_TOLERANCE)
    result = run_checkpoint(
        settings, "ticks", frame, {"latest_allowed_ms": latest}, _run_name("ticks", start, end)
    )
    results = [result]
    if spans is not None:
        results.append(([_hole_check(holes, spans, start, end)], []))
    return _finish(settings, "ticks", start, end, len(frame), results)


def validate_ticks(
    settings: Settings,
    start: datetime,
    end: datetime,
    symbols: Sequence[str] | None = None,
    clock: Clock = utc_now,
) -> ValidationSummary:
    """Validate the ticks of [start, end) in market.ticks (and that no symbol's stored stream has a hole there)."""
    syms = list(symbols or settings.symbols)
    ticks = load_ticks(settings, syms, _aware(start), _aware(end))
    return validate_ticks_frame(settings, ticks, start, end, clock, tick_span(settings, syms), syms)


# ---- bars -------------------------------------------------------------------------------------


def validate_bars_frame(
    settings: Settings,
    bars: pd.DataFrame,
    start: datetime,
    end: datetime,
    symbols: Sequence[str] | None = None,
    interval: str | None = None,
    coverage: Spans | None = None,
) -> ValidationSummary:
    """Validate bars (``symbol, open_time, open, high, low, close, volume``) of [start, end).

    ``coverage`` (symbol → first and last open time a bar is expected at; see
    :func:`frames.bar_frame`) limits the expected bars to the stored data's extent; without it
    every bar of the window is expected. No bar present and none expected: skipped.
    """
    start, end = _aware(start), _aware(end)
    syms = list(symbols or settings.symbols)
    iv = interval or settings.bar_interval
    halts = frames.parse_halts(settings.exchange_halts)
    frame = frames.bar_frame(bars, syms, iv, start, end, halts, coverage)
    if len(frame) == 0:
        stored = f" ({_span_text(coverage, 'bars')})" if coverage is not None else ""
        reason = f"no {iv} bars of {', '.join(syms)} in this window{stored}"
        return _finish(settings, "bars", start, end, 0, [], skipped=reason)
    notes = []
    step = frames.interval_delta(iv)
    if coverage is not None:
        partial = {
            s: coverage[s]
            for s in syms
            if s in coverage and (coverage[s][0] > start or coverage[s][1] + step < end)
        }
        absent = [s for s in syms if s not in coverage]
        if partial:
            notes.append(
                "bars expected only from a symbol's first stored bar to the latest: "
                + _span_text(partial, "bars")
            )
        if absent:
            notes.append(f"no {iv} bars stored for {', '.join(absent)}: none expected")
    result = run_checkpoint(settings, "bars", frame, run_name=_run_name("bars", start, end))
    return _finish(settings, "bars", start, end, int((~frame["missing"]).sum()), [result], notes)


def validate_bars(
    settings: Settings,
    start: datetime,
    end: datetime,
    symbols: Sequence[str] | None = None,
    interval: str | None = None,
) -> ValidationSummary:
    """Validate the bars of [start, end) in market.bars (every expected bar present, OHLC consistent).

    A bar is expected from its symbol's first stored bar up to the latest bar stored for any of
    the symbols: a window before the data or after its end has nothing to validate, a bar
    missing inside the data (or a symbol that stopped while another goes on) fails.
    """
    syms = list(symbols or settings.symbols)
    iv = interval or settings.bar_interval
    bars = load_bars(settings, syms, iv, _aware(start), _aware(end))
    spans = bar_span(settings, syms, iv)
    latest = max((last for _, last in spans.values()), default=None)
    coverage = {s: (first, latest) for s, (first, _) in spans.items() if latest is not None}
    return validate_bars_frame(settings, bars, start, end, syms, iv, coverage)


# ---- features ---------------------------------------------------------------------------------


def feature_ranges() -> dict[str, list[float | None]]:
    """Return the declared feature ranges (fnmatch pattern → [lower, upper]) from the features suite."""
    ranges: dict[str, list[float | None]] = suite_json("features")["meta"].get("feature_ranges", {})
    return ranges


def drop_warmup(
    long: pd.DataFrame, first_bar: Mapping[str, pd.Timestamp], warmup: Mapping[str, int], interval: str
) -> pd.DataFrame:
    """Leave out long-form feature rows inside their feature's warm-up (NaN there is expected).

    Bar index i (from the symbol's first stored bar) closes at first + (i + 1) · interval; a
    feature is defined from index ``warmup[name]`` on. Rows of a symbol with no stored bar stay.
    """
    step_ms = frames.interval_delta(interval).total_seconds() * 1000
    first_ms = long["symbol"].map(lambda s: frames.to_ms(first_bar[s]) if s in first_bar else float("nan"))
    index = (long["event_time_ms"] - first_ms.astype("float64")) / step_ms - 1
    needed = long["feature"].map(lambda n: warmup.get(n, 0)).astype("float64")
    return long[~(index < needed)].reset_index(drop=True)


def reference_profile(
    settings: Settings,
    names: Sequence[str],
    interval: str,
    reference: tuple[datetime, datetime] | None = None,
) -> dict[str, Any]:
    """Return the training reference profile (bin edges and shares per feature).

    The reference is features.bar_features over the training window (``settings.train_start``
    … ``train_end`` unless given), all symbols together. Read each time (a few hundred
    thousand rows at most): a cached profile would go stale as history is backfilled.
    """
    lo, hi = reference or (
        datetime.fromisoformat(settings.train_start).replace(tzinfo=UTC),
        datetime.fromisoformat(settings.train_end).replace(tzinfo=UTC) + timedelta(days=1),
    )
    return profile_of(load_features(settings, settings.symbols, interval, names, lo, hi), names)


def validate_features(
    settings: Settings,
    start: datetime,
    end: datetime,
    symbols: Sequence[str] | None = None,
    interval: str | None = None,
    reference: tuple[datetime, datetime] | None = None,
    drift_window: timedelta | None = None,
) -> ValidationSummary:
    """Validate features.bar_features of [start, end): ranges, no NaN after warm-up, and PSI drift.

    Drift compares the trailing ``drift_window`` (``settings.drift_window_days``) ending at
    ``end`` with the training reference; a feature whose PSI exceeds ``settings.psi_threshold``
    fails the check.
    """
    start, end = _aware(start), _aware(end)
    syms = list(symbols or settings.symbols)
    iv = interval or settings.bar_interval
    names = list(FEATURE_SPEC.names)
    window = drift_window or timedelta(days=settings.drift_window_days)
    current = load_features(settings, syms, iv, names, min(start, end - window), end)
    step = pd.Timedelta(frames.interval_delta(iv))
    opened = current["event_timestamp"] - step
    partition = current[(opened >= start) & (opened < end)]
    if len(partition) == 0 and len(load_bars(settings, syms, iv, start, end)) == 0:
        reason = f"no {iv} bars of {', '.join(syms)} stored in this window, so no features to check"
        return _finish(settings, "features", start, end, 0, [], skipped=reason)
    ranges = feature_ranges()
    ohlcv = [n for n in names if n in OHLCV_FEATURES]
    trade = [n for n in names if n in TRADE_FEATURES]
    # trade-derived features exist only for bars built from ticks; kline bars leave them NULL,
    # so their warm-up counts from the symbol's first bar built from ticks (a system started on
    # kline history has trade features only `warmup` bars after its first live bar)
    long = pd.concat(
        [
            drop_warmup(
                frames.feature_frame(partition, ohlcv, ranges),
                first_bar_times(settings, syms, iv),
                FEATURE_SPEC.warmup,
                iv,
            ),
            drop_warmup(
                frames.feature_frame(partition[partition["bar_source"] == "ticks"], trade, ranges),
                first_bar_times(settings, syms, iv, source="ticks"),
                FEATURE_SPEC.warmup,
                iv,
            ),
        ],
        ignore_index=True,
    )
    result = run_checkpoint(settings, "features", long, run_name=_run_name("features", start, end))
    # the training reference is kline history: drift is measured on the OHLCV features
    results = [result]
    profile = reference_profile(settings, ohlcv, iv, reference)
    ref_rows = min((int(p["rows"]) for p in profile.values()), default=0)
    cur_rows = int(current[ohlcv].notna().all(axis=1).sum()) if len(current) else 0
    span = f"{_label(end - window)} → {_label(end)}"
    psi_values: dict[str, float] = {}
    if min(ref_rows, cur_rows) < MIN_DRIFT_ROWS:
        # PSI over a handful of bars measures sampling noise, not drift
        notes = [
            f"drift not checked: {cur_rows} bars in {span} and {ref_rows} in the training reference "
            f"(at least {MIN_DRIFT_ROWS} each needed)"
        ]
    else:
        drift = drift_frame(profile, current, ohlcv, settings.psi_threshold)
        results.append(
            run_checkpoint(settings, "feature_drift", drift, run_name=_run_name("drift", start, end))
        )
        notes = [
            f"PSI over {span} vs training reference: "
            + ", ".join(f"{r.feature} {r.psi:.3f}" for r in drift.itertuples() if r.psi == r.psi)
        ]
        psi_values = {str(r.feature): float(r.psi) for r in drift.itertuples() if r.psi == r.psi}
    return _finish(settings, "features", start, end, len(partition), results, notes, drift=psi_values)


VALIDATORS: dict[str, Callable[..., ValidationSummary]] = {
    "ticks": validate_ticks,
    "bars": validate_bars,
    "features": validate_features,
}


def validate(
    settings: Settings, kind: str, start: datetime, end: datetime, **kwargs: Any
) -> ValidationSummary:
    """Validate one partition of ``kind`` (ticks, bars or features)."""
    if kind not in VALIDATORS:
        raise ValueError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    return VALIDATORS[kind](settings, start, end, **kwargs)
