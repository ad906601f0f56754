"""Core ML engine (`.mlpackage`), macOS only: coremltools' `MLModel.predict` on Core ML.

On other systems coremltools has no prediction library; loading raises a clear error and the
runtime's fallback chain moves on to the next engine.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence

import numpy as np

from .._deps import require
from ..errors import EdgeyardError
from .base import Engine, TensorSpec

# Core ML's multiArray data types (FeatureTypes.proto) -> numpy dtype names
ARRAY_DTYPES = {65568: "float32", 65552: "float16", 65600: "float64", 131104: "int32",
                131080: "int8"}


class CoremlEngine(Engine):
    format = "coreml"

    def _open(self) -> None:
        if platform.system() != "Darwin":
            raise EdgeyardError(f"Core ML prediction exists only on macOS; this host runs "
                                f"{platform.system()} ({self.path})")
        ct = require("coremltools", extra="coreml", purpose="running .mlpackage")
        # self.threads: Core ML schedules its own work; compute units pick CPU / GPU / Neural Engine
        self._model = ct.models.MLModel(self.path, compute_units=ct.ComputeUnit.ALL)
        desc = self._model.get_spec().description
        self.inputs = tuple(feature_spec(f) for f in desc.input)
        self.outputs = tuple(feature_spec(f) for f in desc.output)

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        feed = {s.name: np.ascontiguousarray(x, dtype=s.dtype)
                for s, x in zip(self.inputs, inputs, strict=True)}
        out = self._model.predict(feed)
        return [np.asarray(out[s.name]) for s in self.outputs]

    def close(self) -> None:
        self._model = None


def feature_spec(feature: object) -> TensorSpec:
    """A Core ML feature description (spec.description.input / output item) as a TensorSpec;
    an unknown array type is named `coreml:<code>` so a comparison with the source fails."""
    arr = feature.type.multiArrayType  # type: ignore[attr-defined]
    return TensorSpec(feature.name,  # type: ignore[attr-defined]
                      tuple(int(d) for d in arr.shape),
                      ARRAY_DTYPES.get(arr.dataType, f"coreml:{arr.dataType}"))
