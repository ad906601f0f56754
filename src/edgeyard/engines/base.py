from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (-1 for a dynamic dimension) and numpy dtype name of one model input/output."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> TensorSpec:
        return cls(str(d["name"]), tuple(int(x) for x in d["shape"]), str(d["dtype"]))  # type: ignore[union-attr]

    @property
    def batch(self) -> int | None:
        """The fixed batch size (first dimension), or None when it is dynamic or absent."""
        if not self.shape or self.shape[0] < 0:
            return None
        return self.shape[0]


class Engine(ABC):
    """One loaded artifact. `predict` takes and returns arrays in the model's input/output order."""

    format: str = ""

    def __init__(self, path: str | os.PathLike[str], threads: int = 1) -> None:
        self.path = os.fspath(path)
        self.threads = threads
        self.inputs: tuple[TensorSpec, ...] = ()
        self.outputs: tuple[TensorSpec, ...] = ()

    @abstractmethod
    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]: ...

    def close(self) -> None:
        """Release the runtime's resources; the engine is unusable afterwards."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# artifact format -> "module:class"; each module imports its runtime only when an engine is built
ENGINES: dict[str, str] = {
    "onnx": "edgeyard.engines.onnx:OnnxEngine",
    "tflite": "edgeyard.engines.tflite:TfliteEngine",
    "executorch": "edgeyard.engines.executorch:ExecutorchEngine",
}


def load_engine(format: str, path: str | os.PathLike[str], threads: int = 1) -> Engine:
    """Load an artifact of `format` ('onnx', 'tflite', 'executorch', ...) with its runtime."""
    try:
        ref = ENGINES[format]
    except KeyError:
        raise KeyError(
            f"no engine for artifact format {format!r}; available: {', '.join(ENGINES)}"
        ) from None
    module, _, cls = ref.partition(":")
    engine_cls = getattr(importlib.import_module(module), cls)
    engine: Engine = engine_cls(path, threads=threads)
    return engine


def numpy_dtype_name(dtype: object) -> str:
    return np.dtype(dtype).name  # type: ignore[call-overload]
