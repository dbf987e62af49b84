"""Whole-stack resident memory: every embedded service and application process, with children.

Measures the running stack of the current settings (start it with `hft up` first). Key:
``stack_rss_mb`` (goal ≤ 4 GB), plus ``per_process_mb``. RSS counts a page shared by forked
children (PostgreSQL backends, Airflow's and uvicorn's workers, copy-on-write) once per process,
so ``stack_pss_mb`` (proportional set size: each shared page split between its sharers, from
``/proc/<pid>/smaps_rollup``) is the machine's real cost; ``per_process_pss_mb`` beside it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
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


SAMPLES, GAP_S = 3, 30.0


def sample(settings: Settings) -> dict[str, Any]:
    """One look at the running stack: RSS and PSS, summed and per part."""
    per = measure(settings)
    if not per:
        raise RuntimeError("nothing running: start the stack first (hft up)")
    pss = measure(settings, "pss")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "stack_rss_mb": round(sum(per.values()), 1),
        "per_process_mb": per,
        "stack_pss_mb": round(sum(pss.values()), 1),
        "per_process_pss_mb": pss,
    }


def run(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """``SAMPLES`` looks ``GAP_S`` apart (one with ``quick``); the median look by PSS is the headline,
    every look's totals stay in ``repeats`` with the spread beside them."""
    looks = []
    for i in range(1 if quick else SAMPLES):
        if i:
            time.sleep(GAP_S)
        looks.append(sample(settings))
    ordered = sorted(looks, key=lambda look: look["stack_pss_mb"])
    head = ordered[len(ordered) // 2]
    pss = [look["stack_pss_mb"] for look in looks]
    return {"home": str(settings.home_dir), "samples": len(looks), "gap_s": GAP_S}, {
        **{k: v for k, v in head.items() if k != "date"},
        "repeats": [{k: look[k] for k in ("date", "stack_pss_mb", "stack_rss_mb")} for look in looks],
        "spread": {"stack_pss_mb": [min(pss), max(pss)], "runs": len(looks)},
        "headline": f"the median of {len(looks)} looks {GAP_S:.0f} s apart by stack_pss_mb",
    }
