"""Imports point one way: service folders import hft, never each other; hft never imports them."""

from __future__ import annotations

import ast
from pathlib import Path

from hft.config import REPO_ROOT

SERVICES = ("api", "workers", "streamers", "dashboard")


def _imported_top_levels(folder: Path) -> dict[Path, set[str]]:
    out: dict[Path, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        out[path] = names
    return out


def test_hft_imports_no_service_folder() -> None:
    for path, names in _imported_top_levels(REPO_ROOT / "hft").items():
        assert not names & set(SERVICES), f"{path} imports {names & set(SERVICES)}"


def test_no_service_folder_imports_another() -> None:
    for service in SERVICES:
        others = set(SERVICES) - {service}
        for path, names in _imported_top_levels(REPO_ROOT / service).items():
            assert not names & others, f"{path} imports {names & others}"


def test_nothing_uses_sys_path_append() -> None:
    for folder in ("hft", *SERVICES, "dags", "plugins", "tests", "bench"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            assert "sys.path.append" not in path.read_text().replace('"sys.path.append"', ""), path


def test_airflow_folders_hold_no_shadowing_module_names() -> None:
    banned = {"config", "common", "utils", "features"}
    for folder in ("dags", "plugins"):
        for path in (REPO_ROOT / folder).iterdir():
            assert path.stem not in banned, f"{path} shadows a common module name on Airflow's sys.path"


def test_one_kafka_client_on_every_path() -> None:
    """confluent-kafka everywhere; kafka-python only in the benchmark that compares the two."""
    allowed = {REPO_ROOT / "bench" / "kafka_clients.py"}
    for folder in ("hft", *SERVICES, "dags", "plugins", "tests", "bench"):
        for path, names in _imported_top_levels(REPO_ROOT / folder).items():
            assert "kafka" not in names or path in allowed, f"{path} imports kafka-python"


def test_no_production_code_imports_the_dev_stack() -> None:
    """hft.devstack starts local services for development; a service or library path never needs it."""
    for folder in (*SERVICES, "dags", "plugins"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
            mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            assert not {m for m in mods if m.startswith(("hft.devstack", "hft.stack"))}, (
                f"{path} imports the dev stack"
            )


def test_feast_does_not_drag_torch_into_a_process() -> None:
    """PyPI's torch is a CUDA build (~700 MB per process): only the code that needs it loads it."""
    import subprocess
    import sys

    code = (
        "import sys, hft; from hft.features.store import feature_store; import feast; "
        "from feast.infra.offline_stores import offline_store; print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "False", out.stdout + out.stderr
