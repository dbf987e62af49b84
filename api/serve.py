"""``python -m api.serve``: the model server as ``hft up`` runs it, uvicorn with ``api_workers`` workers.

The workers share nothing but Redis and the model registry: each loads the champion and polls
its alias, and the API's predict-ahead reads the closed bars in one consumer group, so each bar is
scored and announced by one worker. With more than one worker, prometheus_client runs in its
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` under ``HFT_HOME``, emptied at each start), so
``/metrics`` answers the same totals whichever worker a scrape reaches.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from hft.config import Settings, get_settings


def metrics_dir(settings: Settings) -> Path:
    return settings.home_dir / "api-metrics"


def command(settings: Settings) -> list[str]:
    """uvicorn's command line for these settings."""
    uvicorn = str(Path(sys.executable).with_name("uvicorn"))
    return [
        uvicorn,
        "api.app:create_app",
        "--factory",
        "--host",
        settings.bind_host,
        "--port",
        str(settings.port("api")),
        "--workers",
        str(settings.api_workers),
        "--no-access-log",
    ]


def environment(settings: Settings) -> dict[str, str]:
    """The workers' environment; a fresh multiprocess metrics directory when there are several."""
    # a variable a library set for itself (feast does) is not ours to hand on
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
    }
    if settings.api_workers > 1:
        directory = metrics_dir(settings)
        shutil.rmtree(directory, ignore_errors=True)  # the last run's workers' counts
        directory.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return env


def main() -> None:
    settings = get_settings()
    cmd = command(settings)
    os.execve(cmd[0], cmd, environment(settings))  # noqa: S606 - the supervisor tracks this pid


if __name__ == "__main__":
    main()
