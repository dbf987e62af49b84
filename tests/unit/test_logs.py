"""Shared logging set-up: SIGUSR1 writes every thread's stack to the process's stderr."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

_CHILD = """
import threading, time
from hft.logs import setup_logging
setup_logging("INFO", "t")
def parked_in_the_fetch_thread():
    time.sleep(30)
threading.Thread(target=parked_in_the_fetch_thread, name="fetch", daemon=True).start()
print("ready", flush=True)
time.sleep(30)
"""


def test_sigusr1_dumps_every_thread_s_stack_and_the_process_goes_on() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        assert proc.poll() is None, "SIGUSR1 must not end the process"
    finally:
        proc.kill()
        _out, err = proc.communicate(timeout=10)
    assert "parked_in_the_fetch_thread" in err
    assert "Current thread 0x" in err  # and the main thread too
