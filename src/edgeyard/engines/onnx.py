"""ONNX Runtime engine (CPU execution provider)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._deps import require
from .base import Engine, TensorSpec

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def _spec(arg: object) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)  # type: ignore[attr-defined]
    kind = str(arg.type)  # type: ignore[attr-defined]
    return TensorSpec(arg.name, shape, _ORT_TYPES.get(kind, kind))  # type: ignore[attr-defined]


class OnnxEngine(Engine):
    format = "onnx"

    def _open(self) -> None:
        ort = require("onnxruntime", purpose="running .onnx artifacts")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(
            self.path, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.inputs = tuple(_spec(a) for a in self._session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self._session.get_outputs())
        self._names = [s.name for s in self.inputs]

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        feed = dict(zip(self._names, inputs, strict=True))
        return list(self._session.run(None, feed))

    def close(self) -> None:
        self._session = None
