"""``POST /predict`` latency at 100, 500, 1,000 and 2,000 requests/s with wrk (one uvicorn worker),
then the highest rate one worker sustains with p99 <= 10 ms (steps up from 2,000 until it does not).

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
the parameters as ``cpu_pinning``). A symbol without a feature row online gets one first (the
project's backfill over the last 30 days of ``market.bars``, materialized to the online store); no
champion or no bars at all is one line saying what to run. ``HFT_BENCH_PROFILE_S`` > 0 samples the
server with py-spy during the 500 req/s run (top frames in the result).
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

RATES = (100, 500, 1000, 2000)
# the sustained-rate search: steps above the last fixed rate, until p99 > P99_LIMIT_MS or the
# server answers under 95 % of the offered rate
SEARCH_RATES = (3000, 4000, 5000, 6000, 8000)
P99_LIMIT_MS = 10.0
PROFILE_S = float(os.environ.get("HFT_BENCH_PROFILE_S", "0"))
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


def _ensure_features(settings: Settings, url: str, symbol: str) -> str | None:
    """Give ``symbol`` a feature row online when it has none (what the benchmark measures needs one)."""
    from datetime import timedelta

    from hft.features.backfill import backfill
    from hft.features.bars import interval_ns
    from hft.storage import db

    if httpx.post(f"{url}/predict", json={"symbol": symbol}, timeout=30).status_code != 404:
        return None
    with db.connect(settings) as conn:
        row = conn.execute(
            "SELECT max(open_time) FROM market.bars WHERE symbol = %s AND interval = %s",
            (symbol, settings.bar_interval),
        ).fetchone()
    last = row[0] if row else None
    if last is None:
        raise RuntimeError(
            f"no {settings.bar_interval} bars of {symbol} in market.bars: run `make demo` first (it loads them)"
        )
    step = timedelta(microseconds=interval_ns(settings.bar_interval) / 1000)
    n = backfill(settings, symbol, settings.bar_interval, last - timedelta(days=30), last + step)
    return f"the online store had no row of {symbol}: backfilled {n} feature rows (30 days of market.bars)"


def _measure(url: str, symbol: str, rate: int, seconds: int, pid: int) -> dict[str, Any]:
    cpu0 = _cpu_seconds(pid)
    res = _wrk(url, symbol, rate, seconds)
    # the server's own CPU per answer: a capacity figure that holds on a shared machine, where
    # queueing behind other processes dominates the wall-clock percentiles
    res["server_cpu_ms_per_request"] = round((_cpu_seconds(pid) - cpu0) * 1000 / max(res["requests"], 1), 3)
    return res


def _sustained(url: str, symbol: str, seconds: int, pid: int, fixed: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest offered rate answered in full (>= 95 %) with p99 <= P99_LIMIT_MS, and the steps."""

    def ok(r: dict[str, Any]) -> bool:
        return bool(r["p99_ms"] <= P99_LIMIT_MS and r["achieved_rps"] >= 0.95 * r["rate"] and not r["errors"])

    best = max((r["rate"] for r in fixed if ok(r)), default=0)
    steps = []
    if fixed and ok(fixed[-1]):
        for rate in SEARCH_RATES:
            r = _measure(url, symbol, rate, seconds, pid)
            steps.append(r)
            if not ok(r):
                break
            best = rate
    return {"max_rps_at_p99_le_10ms": best, "p99_limit_ms": P99_LIMIT_MS, "steps": steps}


def run(settings: Settings, quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start the API, warm it up, measure each rate; return (parameters, results)."""
    seconds = 5 if quick else 20
    symbol = settings.symbols[0]
    port = settings.port("api")
    url = f"http://{settings.bind_host}:{port}"
    log = settings.home_dir / "logs" / "bench-api.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = _start_api(settings, port, log)
    profile: dict[str, list[str]] | None = None
    try:
        try:
            _wait_ready(url, proc, timeout=180)
        except RuntimeError as exc:
            raise RuntimeError(
                f"{exc} (a champion model in MLflow is needed: run `make demo` first)"
            ) from exc
        setup = _ensure_features(settings, url, symbol)
        with httpx.Client(base_url=url) as c:
            for _ in range(200):  # warm-up: caches, connection setup
                c.post("/predict", json={"symbol": symbol}).raise_for_status()
            model = c.get("/model").json()
        runs = []
        for rate in RATES:
            spy = _profile(settings, proc.pid, seconds) if rate == 500 else None
            runs.append(_measure(url, symbol, rate, seconds, proc.pid))
            if spy is not None:
                profile = spy()
        sustained = _sustained(url, symbol, seconds, proc.pid, runs)
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
        "setup": setup,
    }
    return params, {"runs": runs, "sustained": sustained, "profile_top_frames": profile}


def _profile(settings: Settings, pid: int, seconds: int) -> Any:
    """py-spy on the server for the run that starts now (None when off or py-spy is missing);
    returns a function that waits for it and gives the top inclusive frames."""
    from bench.pipeline import top_frames

    beside = Path(sys.executable).with_name("py-spy")  # pip install py-spy into the venv
    binary = (
        os.environ.get("HFT_PY_SPY") or shutil.which("py-spy") or (str(beside) if beside.exists() else None)
    )
    if PROFILE_S <= 0 or not binary:
        return None
    out = settings.home_dir / "profiles" / "api-500.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [binary, "record", "--gil", "-r", "200", "-d", str(int(min(PROFILE_S, seconds))), "-f", "raw"]
    spy = subprocess.Popen(
        [*cmd, "-o", str(out), "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def result() -> dict[str, list[str]]:
        spy.wait(seconds + 60)
        return {"inclusive": top_frames(out, n=25), "self": self_frames(out, n=25)}

    return result


def self_frames(path: Path, n: int = 25) -> list[str]:
    """The functions the samples were in (the innermost frame of each stack, lines summed), most first."""
    from collections import Counter

    own: Counter[str] = Counter()
    if not path.exists():
        return []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit() and stack:
            leaf = stack.split(";")[-1]
            name, _, where = leaf.partition(" (")
            file = where.rstrip(")").split("site-packages/")[-1].rsplit(":", 1)[0]  # per function, not line
            own[f"{name} ({file})"] += int(count)
    total = sum(own.values())
    return [f"{100 * c / total:.1f}% {k}" for k, c in own.most_common(n)] if total else []
