"""hft: the domain library of the crypto HFT MLOps system."""

import sys as _sys
import types as _types

# Importing feast points prometheus_client at a temporary multiprocess directory (through
# environment variables) that it later deletes; prometheus_client picks its value store once, at
# import. Importing it here, before anything can import feast, keeps every metric of our
# processes in memory, as their /metrics endpoints expect.
import prometheus_client.values  # noqa: F401


def _feast_without_torch() -> None:
    """Feast imports torch at its own import time when torch is installed (feast.torch_wrapper),
    only to offer tensors as an output format we never ask for. PyPI's torch is a CUDA build: that
    import costs ~1.5 s and ~400-700 MB PSS per process, in every process that touches Feast (the
    feature calculator, Airflow tasks, the API). Feast gets a torch_wrapper that says torch is
    absent; the code that needs torch (the LSTM, ``hft.ml.models``) imports it itself."""
    if "feast.torch_wrapper" in _sys.modules:
        return
    stub = _types.ModuleType("feast.torch_wrapper")
    stub.TORCH_AVAILABLE = False  # type: ignore[attr-defined]

    def get_torch() -> None:
        raise ImportError("hft keeps torch out of Feast (hft/__init__.py); import torch directly")

    stub.get_torch = get_torch  # type: ignore[attr-defined]
    _sys.modules["feast.torch_wrapper"] = stub


_feast_without_torch()
