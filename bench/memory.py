"""Whole-stack resident memory: every embedded service and application process, with children.

Measures the running stack of the current settings (start it with `hft up` first). Key:
``stack_rss_mb`` (goal ≤ 4 GB), plus ``per_process_mb``. RSS counts a page shared by forked
children (PostgreSQL backends, Airflow's and uvicorn's workers, copy-on-write) once per process,
so ``stack_pss_mb`` (proportional set size: each shared page split between its sharers, from
``/proc/<pid>/smaps_rollup``) is the machine's real cost; ``per_process_pss_mb`` beside it.
"""

from __future__ import annotations

from typing import Any

from hft.config import Settings


def stack_processes(settings: Settings) -> dict[str, list[int]]:
    """Name -> pids (the process and its descendants) of every part started by the stack or supervisor."""
    import psutil

    out: dict[str, list[int]] = {}
    pids_dir = settings.home_dir / "pids"
    roots: dict[str, int] = {}
    for pf in sorted(pids_dir.glob("*.pid")) if pids_dir.exists() else []:
        text = pf.read_text().strip()
        if text.isdigit():
            roots[pf.stem] = int(text)
    sup_pid = settings.home_dir / "supervisor" / "supervisord.pid"
    if sup_pid.exists() and sup_pid.read_text().strip().isdigit():
        sup = psutil.Process(int(sup_pid.read_text().strip()))
        roots["supervisord"] = sup.pid
        # program names from supervisord itself: command lines collide (celery rewrites its title)
        from hft.devstack.supervisor import Supervisor

        for line in Supervisor(settings).status().splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "RUNNING" and parts[2] == "pid":
                roots[f"app:{parts[0]}"] = int(parts[3].rstrip(","))
    for name, pid in roots.items():
        try:
            proc = psutil.Process(pid)
            kids = [] if name == "supervisord" else [c.pid for c in proc.children(recursive=True)]
            out[name] = [pid, *kids]
        except psutil.Error:
            continue
    return out


def pids_mb(pids: list[int], kind: str = "rss") -> float:
    """RSS (or ``kind="pss"``) in MB summed over these pids (gone ones count 0)."""
    import psutil

    total = 0
    for pid in pids:
        try:
            p = psutil.Process(pid)
            total += p.memory_full_info().pss if kind == "pss" else p.memory_info().rss
        except psutil.Error:
            continue
    return round(total / 2**20, 1)


def with_children(pid: int) -> list[int]:
    """The pid and its descendants' (just the pid when they cannot be read)."""
    import psutil

    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return [pid]


def measure(settings: Settings, kind: str = "rss") -> dict[str, float]:
    """RSS (or ``kind="pss"``) in MB per part (process + descendants)."""
    return {name: pids_mb(pids, kind) for name, pids in stack_processes(settings).items()}


def run(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    per = measure(settings)
    if not per:
        raise RuntimeError("nothing running: start the stack first (hft up)")
    pss = measure(settings, "pss")
    return {"home": str(settings.home_dir)}, {
        "stack_rss_mb": round(sum(per.values()), 1),
        "per_process_mb": per,
        "stack_pss_mb": round(sum(pss.values()), 1),
        "per_process_pss_mb": pss,
    }
