"""Redis: the online feature store, the closed-bar stream, Celery's broker. ``HFT_REDIS_URL`` names
an external server instead."""

from __future__ import annotations

import subprocess

import redis

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
        return PartStatus(self.name, self.s.redis_dsn, self.healthy(), managed=self.managed)

    def start(self, timeout: float | None = None) -> None:
        if not self.managed or self.healthy():
            return
        binary = find_binary("redis-server", hint="install Redis (apt-get install redis-server)")
        args = {
            "port": str(self.s.port("redis")),
            "bind": self.host,
            "dir": str(self.dir("redis")),
            "daemonize": "yes",
            "pidfile": str(self.pidfile(self.name)),
            "logfile": str(self.logfile(self.name)),
            "save": "",
            "appendonly": "no",
            "protected-mode": "yes",
        }
        subprocess.run(
            [binary, *(a for k, v in args.items() for a in (f"--{k}", v))], check=True, capture_output=True
        )
        wait_for(self.healthy, "Redis", timeout or self.start_timeout)

    def stop(self) -> None:
        if self.managed:
            self.stop_pid(self.name)
