"""TensorRT: the ONNX model plus an engine recipe; the engine is built where TensorRT runs.

A TensorRT engine is specific to the GPU and to the TensorRT version that built it, so real
products (a Jetson with JetPack) build it on the device. This backend's artifact is therefore an
`.onnx` file carrying its recipe in the model's metadata (`edgeyard.tensorrt.recipe`, JSON):
precision, workspace, the optimization profile of every input (fixed build shapes: min = opt =
max), and for int8 an explicitly quantized model (symmetric QDQ calibrated on the build's
calibration data with ONNX Runtime's quantizer), which is how TensorRT 10 takes int8 instead of
an implicit calibrator. `edgeyard.engines.tensorrt` builds the engine from that file at first
load with the TensorRT Python API and caches it by (artifact sha256, TensorRT version, GPU).

Where `tensorrt` does not import (it is not installable from PyPI: the packages there are
placeholders that download from NVIDIA's index, and the lent GPU machines lack it too), the
target is SKIPPED with that reason: an engine nobody built is never called verified. Where it
imports and a GPU is present, the build's worker loads the artifact through the engine (which
builds it) and runs the full parity check. This path has not run in edgeyard's own CI.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, ClassVar

from .._deps import require
from ..engines.tensorrt import RECIPE_KEY, read_recipe
from ..errors import ConversionError
from .base import Backend, ConvertRequest, ConvertResult
from .onnx import OnnxBackend, quantize_static
from .onnx_graph import source_to_onnx

DEFAULT_WORKSPACE_MB = 1024


def recipe_for(request: ConvertRequest) -> dict[str, Any]:
    """The engine recipe of a request: everything the device needs besides the ONNX graph."""
    workspace = int(request.options.get("workspace_mb", DEFAULT_WORKSPACE_MB))
    if workspace <= 0:
        raise ConversionError(f"workspace_mb must be positive (got {workspace})")
    shapes = [list(a.shape) for a in request.source.example_inputs()]
    return {
        "version": 1,
        "precision": request.precision,
        # int8 comes as QDQ nodes in the graph; fp16 lets TensorRT run the rest in half
        "builder_flags": {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}[
            request.precision],
        "workspace_mb": workspace,
        "shape_profiles": [{"input": s.name, "min": shape, "opt": shape, "max": shape}
                           for s, shape in zip(request.source.inputs, shapes, strict=True)],
        "inputs": [s.to_dict() for s in request.source.inputs],
        "outputs": [s.to_dict() for s in request.source.outputs],
    }


def write_recipe(path: str | os.PathLike[str], recipe: dict[str, Any]) -> None:
    onnx = require("onnx", extra="onnx")
    model = onnx.load(os.fspath(path))
    kept = [p for p in model.metadata_props if p.key != RECIPE_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=RECIPE_KEY, value=json.dumps(recipe, sort_keys=True))
    onnx.save(model, os.fspath(path))


class TensorrtBackend(Backend):
    name = "tensorrt"
    artifact_suffix = ".onnx"
    engine_format = "tensorrt"
    source_formats = ("torch", "onnx", "keras")
    precisions = ("fp32", "fp16", "int8")
    options: ClassVar[dict[str, Any]] = {"workspace_mb": int, "opset": int}
    convert_modules: ClassVar[dict[str, tuple[str, ...]]] = {
        "torch": ("torch", "onnx", "onnxscript"),
        "onnx": ("onnx",),
        "keras": ("tensorflow", "tf2onnx", "onnx"),
    }
    # the engine is built (and the artifact verified) only where TensorRT imports
    runtime_modules = ("tensorrt",)
    toolchain = ("onnx", "onnxruntime", "tensorrt")

    def cannot_run_here(self) -> str | None:
        if not os.path.exists("/dev/nvidia0") and not os.path.exists("/dev/nvhost-ctrl-gpu"):
            return "TensorRT needs an NVIDIA GPU (no /dev/nvidia0 or Jetson GPU device here)"
        return None

    def convert(self, request: ConvertRequest) -> ConvertResult:
        recipe = recipe_for(request)
        fp32 = request.workdir / "model.fp32.onnx"
        source_to_onnx(request.source, fp32, request.options.get("opset"))
        details: dict[str, Any] = {"recipe": recipe}
        if request.precision == "int8":
            if request.calibration is None:
                raise ConversionError("int8 needs calibration data")
            quantize_static(request, fp32, request.out_path, details, symmetric=True)
        else:
            shutil.copyfile(fp32, request.out_path)
        write_recipe(request.out_path, recipe)
        return ConvertResult(request.out_path, details)

    def inspect(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        info = OnnxBackend().inspect(path)
        info["recipe"] = read_recipe(path)
        return info
