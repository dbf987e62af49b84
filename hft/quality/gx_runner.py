"""Run the expectation suites of ``expectations/`` with Great Expectations 1.x.

The suites and checkpoints are files in the repository (``expectations/suites/*.json`` in
GE's own suite format, ``expectations/checkpoints/*.json`` naming suite, asset, result format
and actions). At run time they are loaded into a file data context under
``settings.home / "gx"`` (validation results land there, never in the repository) whose data
docs site ``hft`` writes to ``settings.home / "data_docs"``. One pandas data asset per suite;
each run passes its partition as the batch's dataframe. Runs are serialised with a file lock
because the validation tasks of one DAG run in parallel and GE's file stores are not safe
for concurrent writers.

Great Expectations is imported inside functions: it costs seconds at start-up, and the dashboard
reads :func:`data_docs_dir` from here.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hft.config import REPO_ROOT, Settings

log = logging.getLogger(__name__)

EXPECTATIONS_DIR = REPO_ROOT / "expectations"
SITE_NAME = "hft"
DATASOURCE = "hft"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one expectation on one partition."""

    description: str
    expectation: str
    success: bool
    unexpected_count: int = 0
    examples: tuple[str, ...] = ()  # keys of the first failing rows
    observed: str = ""
    error: str = ""
    severity: str = "critical"  # "warning": reported, but the validation still succeeds

    @property
    def blocking(self) -> bool:
        """Whether this check failed with critical severity (fails the validation)."""
        return not self.success and self.severity == "critical"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {
            "description": self.description,
            "expectation": self.expectation,
            "success": self.success,
            "unexpected_count": self.unexpected_count,
            "examples": list(self.examples),
            "observed": self.observed,
            "error": self.error,
            "severity": self.severity,
        }


def data_docs_dir(settings: Settings) -> Path:
    """Return the folder of the data docs site (``<home>/data_docs``; its index.html is the entry)."""
    return settings.home_dir / "data_docs"


def suite_json(name: str) -> dict[str, Any]:
    """Return the suite file ``expectations/suites/<name>.json``."""
    data: dict[str, Any] = json.loads((EXPECTATIONS_DIR / "suites" / f"{name}.json").read_text())
    return data


def checkpoint_json(name: str) -> dict[str, Any]:
    """Return the checkpoint file ``expectations/checkpoints/<name>.json``."""
    data: dict[str, Any] = json.loads((EXPECTATIONS_DIR / "checkpoints" / f"{name}.json").read_text())
    return data


@contextmanager
def _locked(settings: Settings) -> Iterator[Path]:
    root = settings.home_dir / "gx"
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".run.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield root
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _context(root: Path, docs: Path) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="file", project_root_dir=str(root))
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    sites = ctx.variables.data_docs_sites or {}
    site: Any = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs)},
    }
    if "local_site" in sites:
        ctx.delete_data_docs_site("local_site")  # one site, outside the GX project folder
    if SITE_NAME in sites:
        ctx.update_data_docs_site(SITE_NAME, site)
    else:
        ctx.add_data_docs_site(SITE_NAME, site)
    ctx.variables.save()
    return ctx


def _checkpoint(ctx: Any, name: str) -> Any:
    import great_expectations as gx

    spec = checkpoint_json(name)
    suite = ctx.suites.add_or_update(gx.ExpectationSuite(**suite_json(spec["suite"])))
    source = ctx.data_sources.add_or_update_pandas(DATASOURCE)
    try:
        asset = source.get_asset(spec["asset"])
    except LookupError:
        asset = source.add_dataframe_asset(spec["asset"])
    try:
        batch = asset.get_batch_definition("partition")
    except KeyError:
        batch = asset.add_batch_definition_whole_dataframe("partition")
    definition = ctx.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    return ctx.checkpoints.add_or_update(
        gx.Checkpoint(
            name=name,
            validation_definitions=[definition],
            actions=spec.get("actions", []),
            result_format=spec.get("result_format", "SUMMARY"),
        )
    )


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value.item() if hasattr(value, "item") else value)[:200]


def _result(er: Any) -> CheckResult:
    config = er.expectation_config
    result = er.result or {}
    rows = result.get("partial_unexpected_index_list") or (result.get("unexpected_index_list") or [])[:20]
    examples = tuple(dict.fromkeys(_text(row.get("key")) for row in rows if isinstance(row, dict)))
    exc = er.exception_info or {}
    error = exc.get("exception_message") or "" if exc.get("raised_exception") else ""
    column = config.kwargs.get("column") or config.kwargs.get("column_A") or ""
    return CheckResult(
        description=config.description or f"{config.type} {column}".strip(),
        expectation=config.type,
        success=bool(er.success),
        unexpected_count=int(result.get("unexpected_count") or 0),
        examples=examples,
        observed=_text(result.get("observed_value")),
        error=str(error)[:300],
        severity=str(getattr(config, "severity", None) or "critical").lower().split(".")[-1],
    )


def run_checkpoint(
    settings: Settings,
    name: str,
    frame: pd.DataFrame,
    parameters: Mapping[str, Any] | None = None,
    run_name: str | None = None,
) -> tuple[list[CheckResult], list[str]]:
    """Validate ``frame`` with the checkpoint ``name`` and update the data docs.

    Return each check's outcome and the data docs page of each validation result.
    """
    from great_expectations.core.run_identifier import RunIdentifier

    with _locked(settings) as root:
        ctx = _context(root, data_docs_dir(settings))
        checkpoint = _checkpoint(ctx, name)
        outcome = checkpoint.run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=dict(parameters or {}),
            run_id=RunIdentifier(run_name=run_name) if run_name else None,
        )
        pages: list[str] = []
        for identifier in outcome.run_results:
            for site in ctx.get_docs_sites_urls(resource_identifier=identifier, site_name=SITE_NAME):
                if site.get("site_url"):
                    pages.append(str(site["site_url"]))
    checks: list[CheckResult] = []
    for validation in outcome.run_results.values():
        checks += [_result(er) for er in validation.results]
    return checks, pages
