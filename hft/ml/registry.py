"""The MLflow side: the ensemble as one pyfunc model, registration with aliases, and serving loads.

The pyfunc wrapper exists for MLflow's signature, input example and registry. Serving does not
go through it: :func:`load_serving_model` downloads the registered version's artifacts and loads
the four models natively (compiled XGBoost and random-forest arrays, LightGBM's own booster,
the LSTM's state dict), which keeps one-row inference well under a millisecond.

mlflow, torch and :mod:`hft.ml.pyfunc` (which subclasses mlflow's model) are imported inside
functions: they cost seconds at start-up.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hft.config import ConfigurationError, Settings, TransientError, use_mlflow
from hft.ml.models import ARTIFACT_KEY, COMPONENTS, Ensemble, predict_frame

MODEL_NAME_IN_RUN = "ensemble"  # log_model(name=...)


@dataclass
class ServingModel:
    """What the API holds: the ensemble plus its registry identity."""

    name: str
    version: str
    feature_version: str
    feature_names: tuple[str, ...]
    sequence_length: int
    ensemble: Ensemble
    run_id: str = ""

    def predict_proba_window(self, window: np.ndarray) -> float:
        """P(up) for one decision; ``window`` is (sequence_length, n_features), last row = decision bar."""
        return self.ensemble.predict_window(window)

    def predict_proba_frame(self, df: pd.DataFrame) -> np.ndarray:
        """P(up) per row of a time-ordered feature frame of one symbol (NaN without a full window)."""
        return predict_frame(self.ensemble, df)


def _client(settings: Settings) -> Any:
    import mlflow
    from mlflow import MlflowClient

    uri = use_mlflow(settings)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def resolve(settings: Settings, uri: str) -> tuple[str, str, str]:
    """Turn ``models:/name@alias``, ``models:/name/version`` into (name, version, run_id)."""
    client = _client(settings)
    if not uri.startswith("models:/"):
        raise ValueError(f"not a registry URI: {uri}")
    ref = uri[len("models:/") :]
    if "@" in ref:
        name, alias = ref.split("@", 1)
        mv = client.get_model_version_by_alias(name, alias)
    else:
        name, version = ref.rsplit("/", 1)
        mv = client.get_model_version(name, version)
    return mv.name, str(mv.version), str(mv.run_id)


def load_ensemble(settings: Settings, uri: str) -> tuple[Ensemble, dict[str, str]]:
    """Download a model's artifacts (registry or ``runs:/`` URI) and load the ensemble natively."""
    import mlflow

    _client(settings)
    info: dict[str, str] = {"uri": uri}
    try:
        if uri.startswith("models:/"):
            info["name"], info["version"], info["run_id"] = resolve(settings, uri)
            source = f"models:/{info['name']}/{info['version']}"
        else:
            source = uri
        if "version" in info:
            # a registered version never changes: keep one local copy per version
            cache = settings.home_dir / "models" / info["name"] / info["version"]
            if (cache / ".complete").exists():
                return Ensemble.load(_ensemble_dir(cache, uri)), info
            dest = Path(tempfile.mkdtemp(prefix="hft-model-"))
            mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dest))
            cache.parent.mkdir(parents=True, exist_ok=True)
            if not cache.exists():
                shutil.move(str(dest), str(cache))
            (cache / ".complete").touch()
            local = cache
        else:
            dest = Path(tempfile.mkdtemp(prefix="hft-model-"))
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dest)))
    except Exception as exc:
        from mlflow.exceptions import MlflowException

        if isinstance(exc, MlflowException) and "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code):
            raise ConfigurationError(f"no model at {uri}: {exc.message}") from exc
        if isinstance(exc, (MlflowException, OSError)):
            raise TransientError(f"MLflow unavailable at {settings.mlflow_uri}: {exc}") from exc
        raise
    return Ensemble.load(_ensemble_dir(local, uri)), info


def _ensemble_dir(local: Path, uri: str) -> Path:
    found = sorted(local.rglob("ensemble.json"))
    if not found:
        raise ConfigurationError(f"{uri} holds no ensemble.json")
    return found[0].parent


def load_serving_model(settings: Settings, alias: str = "champion", name: str | None = None) -> ServingModel:
    """Load the model version that ``alias`` points to, natively, for serving.

    Raises :class:`ConfigurationError` when no version holds the alias (the API answers 503 until a
    champion exists) and :class:`TransientError` when MLflow cannot be reached.
    """
    import torch

    model_name = name or settings.model_name
    ens, info = load_ensemble(settings, f"models:/{model_name}@{alias}")
    # one-row inference: intra-op threads only add synchronisation cost
    torch.set_num_threads(1)
    return ServingModel(
        name=model_name,
        version=info["version"],
        feature_version=ens.feature_version,
        feature_names=ens.feature_names,
        sequence_length=ens.seq_len,
        ensemble=ens,
        run_id=info.get("run_id", ""),
    )


def log_ensemble(ens: Ensemble, example: pd.DataFrame, registered_name: str) -> Any:
    """Log the ensemble as one pyfunc model (signature, input example) in the active run and register it."""
    import mlflow
    from mlflow.models import infer_signature

    from hft.ml.pyfunc import EnsemblePythonModel

    with tempfile.TemporaryDirectory(prefix="hft-ens-") as tmp:
        path = Path(tmp) / ARTIFACT_KEY
        ens.save(path)
        output = predict_frame(ens, example)
        signature = infer_signature(example, output)
        versions = _library_versions()
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME_IN_RUN,
            python_model=EnsemblePythonModel(),
            artifacts={ARTIFACT_KEY: str(path)},
            signature=signature,
            input_example=example,
            registered_model_name=registered_name,
            pip_requirements=[f"{k}=={v}" for k, v in versions.items()],
            metadata={
                "feature_version": ens.feature_version,
                "sequence_length": ens.seq_len,
                "components": list(COMPONENTS),
            },
        )


def _library_versions() -> dict[str, str]:
    out = {}
    for pkg in ("hft-mlops", "xgboost-cpu", "lightgbm", "scikit-learn", "torch", "numpy", "pandas", "mlflow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def set_alias(settings: Settings, name: str, alias: str, version: str) -> None:
    """Point ``alias`` at ``version`` of model ``name``."""
    _client(settings).set_registered_model_alias(name, alias, version)


def version_tags(settings: Settings, name: str, version: str, tags: dict[str, Any]) -> None:
    """Set tags on a model version (JSON-encode non-strings)."""
    client = _client(settings)
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v if isinstance(v, str) else json.dumps(v))
