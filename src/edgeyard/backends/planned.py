"""Backends whose contract is declared but whose conversion is not implemented yet.

They are real registry entries so profiles can name them and be validated; a build reports their
targets as SKIPPED with `unavailable()`'s reason instead of dropping them.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from ..errors import InternalError
from .base import Backend, ConvertRequest, ConvertResult, host_os


class _Planned(Backend):
    implemented = False

    def convert(self, request: ConvertRequest) -> ConvertResult:
        raise InternalError(f"{self.name} has no converter yet; the pipeline must skip it")


class CoremlBackend(_Planned):
    """Core ML (.mlpackage, ML Program) via coremltools; predicts on macOS only."""

    name = "coreml"
    artifact_suffix = ".mlpackage"
    source_formats = ("torch",)
    precisions = ("fp32", "fp16", "int8-weights")
    options: ClassVar[dict[str, Any]] = {"minimum_deployment_target": str, "palettize_bits": int}
    convert_modules: ClassVar[dict[str, tuple[str, ...]]] = {"torch": ("torch", "coremltools")}

    def cannot_run_here(self) -> str | None:
        if host_os() != "darwin":
            return "Core ML prediction exists only on macOS"
        return None


class TvmBackend(_Planned):
    """Apache TVM (Relax), compiled and tuned for the profile's target."""

    name = "tvm"
    artifact_suffix = ".so"
    source_formats = ("torch", "onnx")
    precisions = ("fp32", "fp16", "int8")
    options: ClassVar[dict[str, Any]] = {"target": (str, dict), "trials": int}
    convert_modules: ClassVar[dict[str, tuple[str, ...]]] = {
        "torch": ("torch", "tvm"),
        "onnx": ("onnx", "tvm"),
    }


class TensorrtBackend(_Planned):
    """TensorRT engines, built on the device from the ONNX artifact and a recipe."""

    name = "tensorrt"
    artifact_suffix = ".engine"
    source_formats = ("torch", "onnx")
    precisions = ("fp32", "fp16", "int8")
    options: ClassVar[dict[str, Any]] = {"workspace_mb": int}
    convert_modules: ClassVar[dict[str, tuple[str, ...]]] = {
        "torch": ("torch", "tensorrt"),
        "onnx": ("tensorrt",),
    }

    def cannot_run_here(self) -> str | None:
        if not os.path.exists("/dev/nvidia0"):
            return "TensorRT needs an NVIDIA GPU"
        return None
