"""Small helpers every embedded service shares: find a binary, is a process alive, is a port open."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Iterable
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
