"""Every service of the stack and of the application listens on the loopback address only, as
``HFT_BIND_HOST`` (127.0.0.1) says, unless a user configures otherwise."""

from __future__ import annotations

import ipaddress
from typing import Any

import psutil
import pytest

from hft.config import PORT_OFFSETS, Settings
from tests.security.conftest import Running

pytestmark = [pytest.mark.integration, pytest.mark.security]


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)  # a JVM shows 127.0.0.1 as ::ffff:127.0.0.1
    return bool((mapped or addr).is_loopback)


def test_every_listening_port_of_the_stack_is_on_loopback(
    stack: Any, stack_settings: Settings, api: Running, dashboard: Running
) -> None:
    s = stack_settings
    ours = {s.port(name): name for name in PORT_OFFSETS}
    listening = [
        c
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port in ours
    ]
    seen = {ours[c.laddr.port] for c in listening}
    # and every other port those processes listen on (a JVM's JMX or RMI port, a worker's debug port)
    pids = {c.pid for c in listening if c.pid}
    listening += [
        c
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids and c.laddr.port not in ours
    ]
    # the services this suite started are among them, so an empty check cannot pass
    assert {"postgres", "redis", "kafka", "mlflow", "api", "dashboard"} <= seen, seen
    exposed = [
        (ours.get(c.laddr.port, c.laddr.port), c.laddr.ip, c.pid)
        for c in listening
        if not _loopback(c.laddr.ip)
    ]
    assert not exposed, f"listening beyond loopback: {exposed}"
