"""``POST /predict`` latency at 100, 500 and 1,000 requests/s with wrk (one uvicorn worker).

The model server runs as the supervisor runs it (``uvicorn api.app:create_app --factory
--workers 1``) against the stack of the current settings: it needs a ``champion`` model in
MLflow and a feature row of the symbol in the online store (``make demo`` provides both; set
``HFT_MODEL_NAME`` for another registered model). wrk holds a fixed number of connections; a
Lua ``delay()`` paces each connection so the offered load is the target rate, and the
achieved rate is reported beside it. Latency percentiles are wrk's (per request, µs
resolution); ``errors`` counts socket errors, timeouts and non-2xx answers. Each run also
reports the server's CPU time per request (from /proc), and the parameters the machine's load
average: on a shared 2-core machine the wall-clock percentiles mostly measure waiting for a core.
``HFT_BENCH_API_PIN=0:1`` pins the server to core 0 and wrk to core 1 (``taskset``; recorded in
the parameters as ``cpu_pinning``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from hft.config import Settings

RATES = (100, 500, 1000)
CONNECTIONS = 8
# wrk threads: on this 2-core VM one thread measured worse (p99 at 500 req/s 5.0 ms vs 4.2 ms with
# two, 2026-12-02): the pacing thread then shares a core with the server; see docs/bench.md
WRK_THREADS = int(os.environ.get("HFT_BENCH_WRK_THREADS", "2"))
# "SERVER:LOAD" CPU lists, e.g. "0:1": the server on core 0, wrk on core 1 (taskset), so that the
# percentiles measure the server and not the two sharing a core; empty = the scheduler decides
PIN = os.environ.get("HFT_BENCH_API_PIN", "")


def _pinned(cmd: list[str], cpus: str) -> list[str]:
    if not cpus:
        return cmd
    taskset = shutil.which("taskset")
    if taskset is None:
        raise RuntimeError("HFT_BENCH_API_PIN needs taskset (util-linux)")
    return [taskset, "-c", cpus, *cmd]


def _pins() -> tuple[str, str]:
    if not PIN:
        return "", ""
    server, _, load = PIN.partition(":")
    return server, load


_LUA = """
wrk.method = "POST"
wrk.body = '{"symbol": "%(symbol)s"}'
wrk.headers["Content-Type"] = "application/json"
local interval_ms = %(interval_ms)f
function delay()
  return interval_ms
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "mean_us": %%f, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def _start_api(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    uvicorn = Path(sys.executable).with_name("uvicorn")
    with log.open("ab") as out:
        return subprocess.Popen(
            _pinned(
                [
                    str(uvicorn),
                    "api.app:create_app",
                    "--factory",
                    "--host",
                    settings.bind_host,
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                _pins()[0],
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "HFT_LOG_LEVEL": "WARNING"},
        )


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"api exited with {proc.returncode}")
        try:
            r = httpx.get(f"{url}/ready", timeout=2)
            if r.status_code == 200:
                return
            last = r.text
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise RuntimeError(f"api not ready after {timeout:.0f}s: {last}")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to report CPU cost per request."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(url: str, symbol: str, rate: int, seconds: int) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk not installed (apt-get install wrk; `make setup` does it as root)")
    # each connection waits this long between its requests: CONNECTIONS / rate, less the answer time
    interval_ms = max(CONNECTIONS * 1000.0 / rate - 0.5, 0.0)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_LUA % {"symbol": symbol, "interval_ms": interval_ms})
        script = fh.name
    try:
        out = subprocess.run(
            _pinned(
                [
                    wrk,
                    "-t",
                    str(WRK_THREADS),
                    "-c",
                    str(CONNECTIONS),
                    "-d",
                    f"{seconds}s",
                    "--latency",
                    "-s",
                    script,
                    f"{url}/predict",
                ],
                _pins()[1],
            ),
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(script)
    doc = json.loads(out.strip().splitlines()[-1])
    errors = doc["connect"] + doc["read"] + doc["write"] + doc["status"] + doc["timeout"]
    return {
        "rate": rate,
        "achieved_rps": round(doc["requests"] / (doc["duration_us"] / 1e6), 1),
        "requests": doc["requests"],
        "p50_ms": doc["p50_us"] / 1000,
        "p90_ms": doc["p90_us"] / 1000,
        "p99_ms": doc["p99_us"] / 1000,
        "max_ms": doc["max_us"] / 1000,
        "errors": errors,
    }


def run(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start the API, warm it up, measure each rate; return (parameters, results)."""
    seconds = 5 if quick else 20
    symbol = settings.symbols[0]
    port = settings.port("api")
    url = f"http://{settings.bind_host}:{port}"
    log = settings.home_dir / "logs" / "bench-api.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = _start_api(settings, port, log)
    try:
        _wait_ready(url, proc, timeout=180)
        with httpx.Client(base_url=url) as c:
            for _ in range(200):  # warm-up: caches, connection setup
                c.post("/predict", json={"symbol": symbol}).raise_for_status()
            model = c.get("/model").json()
        runs = []
        for rate in RATES:
            cpu0 = _cpu_seconds(proc.pid)
            res = _wrk(url, symbol, rate, seconds)
            # the server's own CPU per answer: a capacity figure that holds on a shared machine,
            # where queueing behind other processes dominates the wall-clock percentiles
            res["server_cpu_ms_per_request"] = round(
                (_cpu_seconds(proc.pid) - cpu0) * 1000 / max(res["requests"], 1), 3
            )
            runs.append(res)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    load = os.getloadavg()[0]
    params = {
        "load_average_1m_at_end": round(load, 2),
        "rates": list(RATES),
        "seconds_per_rate": seconds,
        "connections": CONNECTIONS,
        "wrk_threads": WRK_THREADS,
        "cpu_pinning": {"server": _pins()[0], "wrk": _pins()[1]} if PIN else None,
        "uvicorn_workers": 1,
        "symbol": symbol,
        "model": f"{model['name']}/{model['version']}",
        "sequence_length": model["sequence_length"],
    }
    return params, {"runs": runs}
