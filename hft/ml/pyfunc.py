"""The ensemble as an MLflow PythonModel (imports mlflow at module level: import it lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from hft.ml.models import ARTIFACT_KEY, Ensemble, predict_frame


class EnsemblePythonModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """A frame of consecutive feature rows of one symbol → P(up) per row (NaN without a full window)."""

    def load_context(self, context: Any) -> None:
        """Load the ensemble natively from the logged artifact directory."""
        self._ensemble = Ensemble.load(Path(context.artifacts[ARTIFACT_KEY]))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Probability of an up move for each row."""
        return predict_frame(self._ensemble, model_input)
