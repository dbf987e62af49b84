"""The Data quality page: the latest Great Expectations validation result per suite.

Great Expectations' file context keeps each suite validation result as JSON under
``<gx root>/uncommitted/validations/<suite>/<run name>/<run time>/<batch>.json``; this module
reads those files (no GX import, so the dashboard stays light) and points at the data docs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hft.config import REPO_ROOT, Settings


@dataclass(frozen=True)
class SuiteResult:
    """The newest validation of one expectation suite."""

    suite: str
    success: bool
    evaluated: int
    successful: int
    run_time: datetime | None
    batch: str
    failed_expectations: list[str]
    path: Path


def gx_roots(settings: Settings) -> list[Path]:
    """Directories that may hold Great Expectations stores for this stack."""
    home = settings.home_dir
    # not the whole home: it holds PostgreSQL's and Prometheus' data (thousands of files)
    candidates = (home / "gx", home / "great_expectations", home / "expectations", home / "data_quality",
                  REPO_ROOT / "expectations")
    return [p for p in candidates if p.is_dir()]


def data_docs_index(settings: Settings) -> Path | None:
    """The data docs' ``index.html`` (built by the validation DAG), or None before the first run."""
    for base in (settings.home_dir / "data_docs", *gx_roots(settings)):
        if not base.is_dir():
            continue
        direct = base / "index.html"
        if direct.is_file():
            return direct
        found = sorted(base.glob("**/local_site/index.html")) or sorted(base.glob("**/data_docs/**/index.html"))
        if found:
            return found[0]
    return None


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def parse_result(path: Path) -> SuiteResult | None:
    """Read one suite validation result file, or None when it is not one."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or "statistics" not in doc or "results" not in doc:
        return None
    meta = doc.get("meta") or {}
    stats = doc.get("statistics") or {}
    run_id = meta.get("run_id") or {}
    suite = str(meta.get("expectation_suite_name") or doc.get("suite_name") or path.parts[-4])
    batch = meta.get("active_batch_definition") or meta.get("batch_spec") or {}
    batch_name = str(batch.get("data_asset_name") or batch.get("batch_identifiers") or path.stem)
    failed = []
    for r in doc.get("results") or []:
        if not r.get("success", True):
            cfg = r.get("expectation_config") or {}
            kwargs = cfg.get("kwargs") or {}
            col = f" ({kwargs['column']})" if "column" in kwargs else ""
            failed.append(f"{cfg.get('type') or cfg.get('expectation_type', '?')}{col}")
    return SuiteResult(
        suite=suite, success=bool(doc.get("success")),
        evaluated=int(stats.get("evaluated_expectations", 0)), successful=int(stats.get("successful_expectations", 0)),
        run_time=_parse_time(meta.get("validation_time") or run_id.get("run_time")),
        batch=batch_name, failed_expectations=failed, path=path,
    )


def latest_results(settings: Settings) -> list[SuiteResult]:
    """The newest validation result of each suite found under the stack's GX stores."""
    newest: dict[str, SuiteResult] = {}
    seen: set[Path] = set()
    for root in gx_roots(settings):
        for path in root.glob("**/validations/**/*.json"):
            if path in seen:
                continue
            seen.add(path)
            res = parse_result(path)
            if res is None:
                continue
            key = res.run_time or datetime.fromtimestamp(path.stat().st_mtime, UTC)
            old = newest.get(res.suite)
            old_key = (old.run_time or datetime.fromtimestamp(old.path.stat().st_mtime, UTC)) if old else None
            if old_key is None or key > old_key:
                newest[res.suite] = res
    return sorted(newest.values(), key=lambda r: r.suite)
