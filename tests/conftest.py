"""Shared fixtures. The embedded stack for integration tests comes from the project's own stack code.

Test runs use their own state directory and ports (``HFT_TEST_HOME``, ``HFT_TEST_PORT_BASE``), so
they never touch a running demo; parallel sessions pick different port bases.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hft.config import REPO_ROOT, Settings, use_mlflow

TEST_HOME = Path(os.environ.get("HFT_TEST_HOME", REPO_ROOT / ".hft-test"))
TEST_PORT_BASE = int(os.environ.get("HFT_TEST_PORT_BASE", "25400"))
DATA_DIR = Path(os.environ.get("HFT_DATA_DIR", REPO_ROOT.parent / "shared" / "data" / "binance"))


def _test_env() -> dict[str, str]:
    return {"HFT_HOME": str(TEST_HOME), "HFT_PORT_BASE": str(TEST_PORT_BASE), "HFT_DATA_DIR": str(DATA_DIR)}


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real Binance data (never copied into the project)."""
    if not DATA_DIR.exists():
        pytest.fail(f"shared data missing at {DATA_DIR} (set HFT_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    """Settings pointing at the test stack; the environment of subprocesses points there too."""
    old = {k: os.environ.get(k) for k in _test_env()}
    os.environ.update(_test_env())
    from hft.config import get_settings

    get_settings.cache_clear()
    settings = Settings(home=TEST_HOME, port_base=TEST_PORT_BASE, data_dir=DATA_DIR)
    # MLflow asks for a login: the tests' own MLflow clients send the test stack's
    old |= {k: os.environ.get(k) for k in settings.mlflow_client_env()}
    use_mlflow(settings)
    yield settings
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def stack(stack_settings: Settings) -> Iterator[object]:
    """The embedded stack (PostgreSQL, Redis, broker, MLflow, Prometheus when installed), up for the session."""
    from hft.devstack.stack import Stack
    from hft.devstack.supervisor import Supervisor

    st = Stack(stack_settings)
    st.up()
    yield st
    if os.environ.get("HFT_TEST_KEEP_STACK") != "1":
        Supervisor(stack_settings).stop()
        st.down()
