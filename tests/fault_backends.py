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
