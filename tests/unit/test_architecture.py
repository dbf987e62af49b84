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
