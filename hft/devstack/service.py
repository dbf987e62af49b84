"""What every embedded service is: start, stop, health, status and its log, under ``Settings.home``.

A service module (``postgres``, ``redis``, ``kafka``, ``mlflow``, ``prometheus``) subclasses
:class:`Service`; :mod:`hft.devstack.stack` lists them in start order. Adding or swapping a
service is one module and one line in that list.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hft.config import Settings
from hft.devstack.host import child_env, pid_alive


@dataclass(frozen=True)
class PartStatus:
    """Health of one part of the stack."""

    name: str
    url: str
    healthy: bool
    detail: str = ""
    managed: bool = True  # False: an external service named in the settings
    # overrides the health label when the part is not expected to answer: "absent" (an optional
    # part whose binary is not installed), "stopped" (an application process not started), "not
    # ready" (it answers but is not ready yet); empty: "healthy" or "down" from ``healthy``
    state: str = ""

    @property
    def label(self) -> str:
        """What the status table shows in its health column."""
        return self.state or ("healthy" if self.healthy else "down")

    @property
    def failing(self) -> bool:
        """Expected to answer and does not (``hft stack status`` exits 1)."""
        return not self.healthy and not self.state


class Service:
    """One embedded service. Subclasses set ``name`` and implement the four methods below."""

    name = ""
    start_timeout = 60.0

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.home = settings.home_dir
        self.host = settings.bind_host

    # ---- the interface ----------------------------------------------------------------------
    @property
    def managed(self) -> bool:
        """False when the settings name an external service: we neither start nor stop it."""
        return True

    def available(self) -> bool:
        """Whether this part can run here (an optional part, such as an exporter, may be absent)."""
        return True

    def start(self, timeout: float | None = None) -> None:
        """Start it unless it already runs; return once it answers (TimeoutError otherwise)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop what :meth:`start` started (nothing for an external service)."""
        raise NotImplementedError

    def healthy(self) -> bool:
        """Whether it answers its readiness check now."""
        raise NotImplementedError

    def status(self) -> PartStatus:
        """Its URL, health and a line of detail."""
        raise NotImplementedError

    def log(self) -> Path:
        """Its log file under ``Settings.home/logs``."""
        return self.logfile(self.name)

    def crashed(self) -> bool:
        """Started by us and gone without a stop: its pid file remains, its process does not
        (:meth:`stop` removes the pid file, so a stopped service is never taken for a crashed one)."""
        return pid_file_orphaned(self.pidfile(self.name))

    # ---- helpers for subclasses -------------------------------------------------------------
    def dir(self, *parts: str) -> Path:
        """A directory under ``Settings.home`` (created)."""
        p = self.home.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def pidfile(self, name: str) -> Path:
        """Where the pid of a process we started is kept."""
        return pidfile(self.s, name)

    def logfile(self, name: str) -> Path:
        """Where a process we started logs."""
        return logfile(self.s, name)

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> int:
        """Start a long-lived child in its own session, logging to .hft/logs, and record its pid."""
        out = self.logfile(name).open("ab")
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(env),
            start_new_session=True,
        )
        self.pidfile(name).write_text(str(proc.pid))
        return proc.pid

    def stop_pid(self, name: str, timeout: float = 20.0) -> bool:
        """SIGTERM the process group of a recorded pid, SIGKILL after ``timeout``; forget the pid.

        The group, not only its leader: a child can outlive a leader that crashed (``mlflow
        server``'s uvicorn goes on serving after a SIGKILL of the CLI that started it)."""
        pf = self.pidfile(name)
        if not pf.exists():
            return False
        pid = int(pf.read_text().strip() or 0)
        if pid and (pid_alive(pid) or group_alive(pid)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while (pid_alive(pid) or group_alive(pid)) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid) or group_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        pf.unlink(missing_ok=True)
        return True


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` (a session we spawned) still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_file_orphaned(path: Path) -> bool:
    """Whether ``path`` names a process that no longer exists."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return False
    return not pid_alive(pid)


def pidfile(settings: Settings, name: str) -> Path:
    """``Settings.home/pids/<name>.pid``."""
    d = settings.home_dir / "pids"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{name}.pid"


def logfile(settings: Settings, name: str) -> Path:
    """``Settings.home/logs/<name>.log``."""
    d = settings.home_dir / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{name}.log"
