"""TimescaleDB for the embedded stack: PostgreSQL 17 + timescaledb in a Debian trixie root.

Bookworm has no TimescaleDB package for its PostgreSQL 15, trixie packages
``postgresql-17-timescaledb`` (Apache edition). So, as root: ``debootstrap`` a minimal trixie
root once (``settings.timescale_root``, default ``/var/cache/hft-timescale/trixie``, shared by
every stack on the machine), install the two packages into it, and run ``initdb`` and
``postgres`` inside it with ``chroot``. Loopback is shared with the host, so the server listens
on ``settings.port("postgres")`` like the plain one. Each stack's data directory lives in its
own ``Settings.home`` (``pg-timescale/``) and is bind-mounted into the root while it runs.

The root's ``/proc`` and ``/dev`` mounts are shared by every stack using the root and stay
mounted; ``stop`` only unmounts the stack's own data directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hft.config import ConfigurationError
from hft.devstack.host import pid_alive, port_open, wait_for

if TYPE_CHECKING:
    from hft.devstack.service import Service

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("/var/cache/hft-timescale/trixie")
PACKAGES = ["postgresql-17", "postgresql-17-timescaledb"]
PG_BIN = "/usr/lib/postgresql/17/bin"
READY_MARK = ".hft-timescale-ready"
MIRROR = os.environ.get("HFT_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def root_dir(pg: Service) -> Path:
    """The trixie root for this stack (absolute)."""
    root = pg.s.timescale_root or DEFAULT_ROOT
    return root if root.is_absolute() else (Path.cwd() / root).resolve()


def _require_root() -> None:
    if os.geteuid() != 0:
        raise ConfigurationError(
            "HFT_TIMESCALE=1 needs root (debootstrap, chroot, mount); run as root, point "
            "HFT_POSTGRES_URL at an existing TimescaleDB, or leave HFT_TIMESCALE unset for plain PostgreSQL"
        )


def _mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


def _run(cmd: list[str], what: str, timeout: float = 900) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise ConfigurationError(f"{what} failed ({proc.returncode}): {' | '.join(tail)}")


def _mount_system(root: Path) -> None:
    """Mount /proc and /dev into the root (once; shared by every stack using it)."""
    if not _mounted(root / "proc"):
        _run(["mount", "-t", "proc", "proc", str(root / "proc")], "mount /proc")
    if not _mounted(root / "dev"):
        _run(["mount", "--rbind", "/dev", str(root / "dev")], "mount /dev")
        _run(["mount", "--make-rslave", str(root / "dev")], "make /dev a slave mount")


def ensure_root(root: Path, timeout: float = 900) -> None:
    """Build the trixie root with PostgreSQL 17 + TimescaleDB unless it is ready (~2-3 min, ~860 MB)."""
    _require_root()
    if (root / READY_MARK).exists():
        return
    if shutil.which("debootstrap") is None:
        raise ConfigurationError(
            "debootstrap not found: apt-get install debootstrap (needed for HFT_TIMESCALE=1)"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    lock_path = root.parent / f".{root.name}.lock"
    with open(lock_path, "w") as lock:
        # several test sessions may want the root at once: one builds, the others wait for it
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / READY_MARK).exists():
            return
        log.info("building TimescaleDB root at %s (debootstrap trixie, ~2-3 min)", root)
        if not (root / "usr" / "bin" / "apt-get").exists():
            if root.exists():
                shutil.rmtree(root)
            _run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=ca-certificates",
                    "trixie",
                    str(root),
                    MIRROR,
                ],
                "debootstrap trixie",
                timeout,
            )
        _mount_system(root)
        env_cmd = ["chroot", str(root), "env", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"]
        _run([*env_cmd, "apt-get", "update", "-q"], "apt-get update in the root", timeout)
        _run(
            [*env_cmd, "apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
            "apt-get install postgresql-17 postgresql-17-timescaledb in the root",
            timeout,
        )
        (root / READY_MARK).write_text(" ".join(PACKAGES) + "\n")


def _postgres_ids(root: Path) -> tuple[int, int]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        parts = line.split(":")
        if parts[0] == "postgres":
            return int(parts[2]), int(parts[3])
    raise ConfigurationError(f"no postgres user in {root}/etc/passwd: rebuild the root (delete {root})")


def _mount_point(pg: Service) -> str:
    """Where this stack's data directory appears inside the root (unique per state dir)."""
    digest = hashlib.sha1(str(pg.home).encode(), usedforsecurity=False).hexdigest()[:10]
    return f"/srv/hft/{digest}"


def data_dir(pg: Service) -> Path:
    """This stack's TimescaleDB data directory (bind-mounted into the root while it runs)."""
    return pg.home / "pg-timescale"


def start(pg: Service, timeout: float) -> None:
    """Start PostgreSQL 17 + TimescaleDB for this stack (build the root first if needed)."""
    _require_root()
    port = pg.s.port("postgres")
    if port_open(pg.host, port) and pg.healthy():
        return
    root = root_dir(pg)
    ensure_root(root)
    _mount_system(root)
    uid, gid = _postgres_ids(root)
    data = data_dir(pg)
    data.mkdir(parents=True, exist_ok=True)
    os.chown(data, uid, gid)
    data.chmod(0o700)
    inside = _mount_point(pg)
    mnt = root / inside.lstrip("/")
    mnt.mkdir(parents=True, exist_ok=True)
    if not _mounted(mnt):
        _run(["mount", "--bind", str(data), str(mnt)], "bind-mount the data directory")
    user = ["chroot", f"--userspec={uid}:{gid}", str(root)]
    if not (data / "PG_VERSION").exists():
        _run(
            [
                *user,
                f"{PG_BIN}/initdb",
                "-D",
                inside,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
            "initdb (TimescaleDB root)",
            timeout,
        )
    logf = pg.logfile("postgres")
    pg.spawn(
        "postgres",
        [
            *user,
            f"{PG_BIN}/postgres",
            "-D",
            inside,
            "-p",
            str(port),
            "-c",
            f"listen_addresses={pg.host}",
            "-c",
            "unix_socket_directories=",
            "-c",
            "shared_preload_libraries=timescaledb",
            "-c",
            "timescaledb.telemetry_level=off",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=256MB",
            "-c",
            "fsync=on",
            "-c",
            "synchronous_commit=on",
            "-c",
            "dynamic_shared_memory_type=mmap",
        ],
    )
    log.info("TimescaleDB starting on port %d (root %s, log %s)", port, root, logf)
    wait_for(pg.healthy, "TimescaleDB (PostgreSQL 17)", timeout)


def stop(pg: Service, timeout: float = 30) -> None:
    """Stop this stack's TimescaleDB server (fast shutdown) and unmount its data directory."""
    pf = pg.pidfile("postgres")
    if pf.exists():
        text = pf.read_text().strip()
        pid = int(text) if text.isdigit() else 0
        if pid:
            # SIGINT = fast shutdown (SIGTERM would wait for every client to leave)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.1)
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGQUIT)
                time.sleep(1)
        pf.unlink(missing_ok=True)
    if os.geteuid() == 0:
        mnt = root_dir(pg) / _mount_point(pg).lstrip("/")
        if _mounted(mnt):
            subprocess.run(["umount", str(mnt)], capture_output=True, check=False)
