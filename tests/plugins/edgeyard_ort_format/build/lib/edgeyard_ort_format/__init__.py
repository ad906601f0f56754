"""ONNX Runtime's ORT format for edgeyard: the model optimized once at build time and saved as
a flatbuffer that ONNX Runtime Mobile loads without parsing or optimizing the ONNX graph again.

A plug-in as a third party writes one: a `Backend` (build side) and an `Engine` (device side),
published under the `edgeyard.backends` and `edgeyard.engines` entry-point groups. It uses only
edgeyard's public contract (`edgeyard.backends.base`, `edgeyard.engines.base`) and onnxruntime.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from edgeyard.backends.base import Backend, ConvertRequest, ConvertResult
from edgeyard.engines.base import Engine, TensorSpec


class OrtFormatBackend(Backend):
    name = "ortformat"
    artifact_suffix = ".ort"
    engine_format = "ort"
    source_formats = ("onnx",)
    precisions = ("fp32",)
    convert_modules: ClassVar[dict[str, tuple[str, ...]]] = {"onnx": ("onnxruntime",)}
    runtime_modules = ("onnxruntime",)
    toolchain = ("onnxruntime",)

    def convert(self, request: ConvertRequest) -> ConvertResult:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = os.fspath(request.out_path)
        opts.add_session_config_entry("session.save_model_format", "ORT")
        ort.InferenceSession(os.fspath(request.source.path), opts,
                             providers=["CPUExecutionProvider"])
        return ConvertResult(request.out_path, {"format": "ORT (flatbuffer)",
                                                "optimization": "basic"})


class OrtFormatEngine(Engine):
    format = "ort"

    def _open(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        self._session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        self.inputs = tuple(_spec(a) for a in self._session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self._session.get_outputs())

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        feed = {s.name: np.asarray(x) for s, x in zip(self.inputs, inputs, strict=True)}
        return list(self._session.run(None, feed))


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
    dtype = {"tensor(float)": "float32", "tensor(int64)": "int64"}.get(arg.type, "float32")
    return TensorSpec(arg.name, shape, dtype)
