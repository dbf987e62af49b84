"""The security suite's processes: the model server and the dashboard, started as the supervisor
starts them (``python -m api.serve``, ``python -m dashboard.app``) on the test stack, each with a
key or login the tests know, so a refusal can be told apart from a process that refuses everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from hft.config import Settings
from hft.devstack.host import child_env

API_KEY = "security-suite-key"


@dataclass(frozen=True)
class Running:
    url: str
    log: str


def _serve(module: str, url: str, health: str, env: dict[str, str], log_name: str) -> Iterator[Running]:
    port = int(url.rsplit(":", 1)[1])
    taken = [
        (c.pid, psutil.Process(c.pid).cmdline() if c.pid else "?")
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]
    if taken:  # an earlier fixture's server would answer in this one's place
        pytest.fail(f"port {port} for {module} is already taken by {taken}")
    log = os.path.join(os.environ["HFT_HOME"], "logs", log_name)
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(env),
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{module} exited {proc.returncode}: {Path(log).read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}{health}", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{module} never answered {health}: {Path(log).read_text()[-3000:]}")
        time.sleep(0.3)
    yield Running(url, log)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="package")
def api(stack: Any, stack_settings: Settings) -> Iterator[Running]:
    """The API with a known key and two workers (no champion needed: refusals come first)."""
    s = stack_settings
    env = {"HFT_API_KEY": API_KEY, "HFT_API_WORKERS": "2"}
    yield from _serve(
        "api.serve", f"http://{s.bind_host}:{s.port('api')}", "/health", env, "security-api.log"
    )


@pytest.fixture(scope="package")
def dashboard(stack: Any, stack_settings: Settings, api: Running) -> Iterator[Running]:
    """The dashboard, its kill switch wired to the API above with the API's key."""
    s = stack_settings
    env = {"HFT_API_KEY": API_KEY, "HFT_API_URL": api.url}
    url = f"http://{s.bind_host}:{s.port('dashboard')}"
    yield from _serve("dashboard.app", url, "/healthz", env, "security-dashboard.log")
