"""Test-only backends registered through the public API: they crash, hang or raise for real.

They live in an importable module because the build re-creates a backend in a child process from
`module:qualname`.
"""

from __future__ import annotations

import os
import time
from typing import ClassVar

from edgeyard.backends import Backend, ConvertRequest, ConvertResult


class _Fault(Backend):
    artifact_suffix = ".bin"
    source_formats = ("torch", "onnx", "keras")
    precisions = ("fp32",)
    convert_modules: ClassVar[dict[str, tuple[str, ...]]] = {}


class AbortingBackend(_Fault):
    name = "test-abort"

    def convert(self, request: ConvertRequest) -> ConvertResult:
        print("about to abort like a converter hitting an assertion in C++", flush=True)
        os.abort()


class HangingBackend(_Fault):
    name = "test-hang"

    def convert(self, request: ConvertRequest) -> ConvertResult:
        time.sleep(600)
        raise AssertionError("unreachable")


class RaisingBackend(_Fault):
    name = "test-raise"

    def convert(self, request: ConvertRequest) -> ConvertResult:
        raise RuntimeError("Unsupported operator aten::frobnicate in node %42")


class MissingToolchainBackend(_Fault):
    name = "test-missing"
    convert_modules: ClassVar[dict[str, tuple[str, ...]]] = {
        "torch": ("edgeyard_no_such_toolchain",),
        "onnx": ("edgeyard_no_such_toolchain",),
    }

    def convert(self, request: ConvertRequest) -> ConvertResult:
        raise AssertionError("never called: the toolchain is missing")


class NanBackend(_Fault):
    """Writes a copy of an ONNX source whose runtime outputs are fine, but reports NaN: used to
    check that verification, not the converter's word, decides."""

    name = "test-nan"
    artifact_suffix = ".onnx"
    engine_format = "onnx"
    source_formats = ("onnx",)

    def convert(self, request: ConvertRequest) -> ConvertResult:
        import onnx
        from onnx import helper

        model = onnx.load(os.fspath(request.source.path))
        out = model.graph.output[0].name
        # out' = out * NaN: a broken artifact that converts "successfully"
        nan = helper.make_tensor("nan_const", onnx.TensorProto.FLOAT, [], [float("nan")])
        model.graph.initializer.append(nan)
        for node in model.graph.node:
            for i, o in enumerate(node.output):
                if o == out:
                    node.output[i] = "pre_nan"
        model.graph.node.append(helper.make_node("Mul", ["pre_nan", "nan_const"], [out]))
        onnx.save(model, os.fspath(request.out_path))
        return ConvertResult(request.out_path, {})


class PerturbedBackend(_Fault):
    """A real ONNX fp32 artifact whose weights are then perturbed in the file (relative Gaussian
    noise of `noise` on every float initializer): it loads and runs fine, its outputs are just
    wrong, by as much as the noise says. Only fidelity budgets can catch it."""

    name = "test-perturbed"
    artifact_suffix = ".onnx"
    engine_format = "onnx"
    source_formats = ("torch", "onnx")
    options: ClassVar[dict[str, type | tuple[type, ...]]] = {"noise": (int, float)}

    def convert(self, request: ConvertRequest) -> ConvertResult:
        import numpy as np
        import onnx
        from onnx import numpy_helper

        from edgeyard.backends.onnx_graph import source_to_onnx

        fp32 = source_to_onnx(request.source, request.workdir / "fp32.onnx")
        model = onnx.load(os.fspath(fp32))
        rng = np.random.default_rng(0)
        noise = float(request.options.get("noise", 0.5))
        for i, t in enumerate(model.graph.initializer):
            w = numpy_helper.to_array(t)
            if w.dtype == np.float32 and w.size > 1:
                w = w + noise * np.abs(w).mean() * rng.standard_normal(w.shape).astype(np.float32)
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(w, t.name))
        onnx.save(model, os.fspath(request.out_path))
        return ConvertResult(request.out_path, {"perturbed": noise})
