"""Small helpers every embedded service shares: find a binary, is a process alive, is a port open,
wait for readiness, a clean environment for children."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from hft.config import ConfigurationError


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def pid_alive(pid: int) -> bool:
    """Whether the process exists (a reaped or zombie child of ours counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); reap it if it is ours
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def find_binary(name: str, extra_dirs: Iterable[Path] = (), hint: str = "") -> str:
    """Locate a server binary or raise ConfigurationError with one line saying what to install."""
    for d in extra_dirs:
        if (d / name).exists():
            return str(d / name)
    found = shutil.which(name)
    if found:
        return found
    raise ConfigurationError(f"{name} not found: {hint or f'install it (apt-get install {name})'}")


def is_root() -> bool:
    """Whether we run as root (PostgreSQL then runs as ``postgres``, TimescaleDB in a chroot)."""
    return os.geteuid() == 0


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """Whether ``url`` (our own localhost service) answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - our own localhost URL
            return 200 <= int(resp.status) < 300
    except (OSError, ValueError):
        return False


def wait_for(check: Callable[[], bool], what: str, timeout: float, interval: float = 0.2) -> None:
    """Poll ``check`` until it is true or raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s")


# Importing feast (which mlflow's plugin discovery can do) points prometheus_client at a temporary
# multiprocess directory through these variables and deletes it at exit; children that inherit
# them crash on their first metric. Our processes keep their metrics in memory.
_INHERITED_ONLY_BY_IMPORTERS = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a long-lived child: ours, minus what a library set for itself, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED_ONLY_BY_IMPORTERS}
    env.update(extra or {})
    return env
