"""The Data quality page: the latest validation of each kind of data, and the data docs.

The validation code (:mod:`hft.quality.validate`, run by the ``validate_market_data`` DAG and
``hft validate``) appends one summary per validated partition to
``<home>/quality/validation_runs.jsonl`` and rebuilds the Great Expectations data docs under
``<home>/data_docs``; this module reads both and never imports Great Expectations.

:mod:`hft.quality.validate` is imported inside a function: it loads psycopg, which the dashboard
does not otherwise import at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from hft.config import Settings
from hft.quality.gx_runner import data_docs_dir


@dataclass(frozen=True)
class SuiteResult:
    """The newest validation of one kind of data (ticks, bars, features)."""

    kind: str
    success: bool
    rows: int
    checks: int
    passed: int
    start: datetime | None
    end: datetime | None
    finished_at: datetime | None
    failed: list[str]
    warnings: list[str]  # checks that warn without failing (e.g. feature drift)
    pages: list[str]  # data docs pages, relative to the data docs folder
    summary: str


def data_docs_index(settings: Settings) -> Path | None:
    """The data docs' ``index.html``, or None before the first validation built it."""
    index = data_docs_dir(settings) / "index.html"
    return index if index.is_file() else None


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _relative_page(settings: Settings, url: str) -> str | None:
    path = Path(url2pathname(urlparse(url).path)) if url.startswith("file:") else Path(url)
    try:
        return path.resolve().relative_to(data_docs_dir(settings).resolve()).as_posix()
    except ValueError:
        return None


def summarize(settings: Settings, row: dict[str, Any]) -> SuiteResult:
    """One recorded validation summary as the page shows it."""
    checks = row.get("checks") or []
    pages = [p for p in (_relative_page(settings, str(u)) for u in row.get("pages") or []) if p]
    return SuiteResult(
        kind=str(row.get("kind", "?")),
        success=bool(row.get("success")),
        rows=int(row.get("rows") or 0),
        checks=len(checks),
        passed=sum(1 for c in checks if c.get("success")),
        start=_time(row.get("start")),
        end=_time(row.get("end")),
        finished_at=_time(row.get("finished_at")),
        failed=[str(f) for f in row.get("failed") or []],
        warnings=[str(w) for w in row.get("warnings") or []],
        pages=pages,
        summary=str(row.get("summary", "")),
    )


def latest_results(settings: Settings, history: int = 200) -> list[SuiteResult]:
    """The newest recorded validation of each kind, sorted by kind."""
    from hft.quality.validate import read_runs

    newest: dict[str, SuiteResult] = {}
    for row in read_runs(settings, limit=history):  # newest first
        kind = str(row.get("kind", "?"))
        if kind not in newest:
            newest[kind] = summarize(settings, row)
    return sorted(newest.values(), key=lambda r: r.kind)
