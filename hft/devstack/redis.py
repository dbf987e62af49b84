"""Redis: the online feature store, the closed-bar stream, Celery's broker. ``HFT_REDIS_URL`` names
an external server instead. The embedded one asks for ``HFT_REDIS_PASSWORD`` (generated into
``HFT_HOME/credentials.json`` when unset); the password travels in ``Settings.redis_dsn``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import redis

from hft.config import mask_url
from hft.devstack.host import find_binary, wait_for
from hft.devstack.service import PartStatus, Service


class Redis(Service):
    """redis-server, daemonized, bound to ``Settings.bind_host``."""

    name = "redis"
    start_timeout = 20.0

    @property
    def managed(self) -> bool:
        return not self.s.redis_url

    def healthy(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.s.redis_dsn, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def status(self) -> PartStatus:
        return PartStatus(self.name, mask_url(self.s.redis_dsn), self.healthy(), managed=self.managed)

    def start(self, timeout: float | None = None) -> None:
        if not self.managed or self.healthy():
            return
        binary = find_binary("redis-server", hint="install Redis (apt-get install redis-server)")
        subprocess.run([binary, str(self.write_config())], check=True, capture_output=True)
        wait_for(self.healthy, "Redis", timeout or self.start_timeout)

    def write_config(self) -> Path:
        """``redis.conf`` (mode 0600: it holds the password, which a command line would show to ``ps``)."""
        d = self.dir("redis")
        directives = {
            "port": str(self.s.port("redis")),
            "bind": self.host,
            "dir": str(d),
            "daemonize": "yes",
            "pidfile": str(self.pidfile(self.name)),
            "logfile": str(self.logfile(self.name)),
            # the Celery queue (order intents) and the closed-bar stream survive a restart
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": "",
            "protected-mode": "yes",
        }
        password = self.s.redis_password.get_secret_value()
        if password:
            directives["requirepass"] = password
        path = d / "redis.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(f"{k} {_quote(v)}\n" for k, v in directives.items())
        path.chmod(0o600)
        return path

    def stop(self) -> None:
        if self.managed:
            self.stop_pid(self.name)


def _quote(value: str) -> str:
    """A redis.conf argument: double-quoted, with backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
