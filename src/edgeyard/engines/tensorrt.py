"""TensorRT engine: builds the engine from an edgeyard TensorRT artifact on first load, caches it.

The artifact is an ONNX file carrying its recipe (see `edgeyard.backends.tensorrt`). The engine
is built with the TensorRT Python API (ONNX parser, builder flags and workspace from the recipe,
an optimization profile for dynamic inputs) and cached in `$EDGEYARD_TRT_CACHE` (default
`~/.cache/edgeyard/tensorrt`) under a key of (artifact sha256, TensorRT version, GPU name and
compute capability), because an engine is valid only for the GPU and TensorRT version that built
it. Device buffers are torch CUDA tensors (JetPack ships a CUDA torch).

This module has not run in edgeyard's CI: TensorRT is not installable there. Its tests
(`tests/backends/test_tensorrt.py`, marker `tensorrt`) run wherever `tensorrt` imports.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from .._files import atomic_write
from .._hashing import sha256_file
from ..errors import EdgeyardError
from .base import Engine, TensorSpec, order_by_names

RECIPE_KEY = "edgeyard.tensorrt.recipe"  # the ONNX metadata entry holding the engine recipe


def read_recipe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The engine recipe an edgeyard TensorRT artifact carries (written by the build)."""
    onnx = require("onnx", extra="onnx")
    model = onnx.load(os.fspath(path), load_external_data=False)
    for p in model.metadata_props:
        if p.key == RECIPE_KEY:
            recipe: dict[str, Any] = json.loads(p.value)
            return recipe
    raise EdgeyardError(f"{path} carries no TensorRT recipe ({RECIPE_KEY} metadata)")


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEYARD_TRT_CACHE",
                               Path.home() / ".cache" / "edgeyard" / "tensorrt"))


def engine_key(artifact_sha256: str, trt_version: str, gpu: str) -> str:
    """The cache key of a built engine: the same ONNX + recipe, TensorRT version and GPU."""
    return hashlib.sha256(f"{artifact_sha256}\0{trt_version}\0{gpu}".encode()).hexdigest()[:32]


def build_engine(trt: Any, path: str, recipe: dict[str, Any]) -> bytes:
    """Serialized engine for the ONNX file at `path`, built as `recipe` says."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(path):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeyardError(f"TensorRT's ONNX parser rejected {path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(recipe["workspace_mb"]) << 20)
    for flag in recipe["builder_flags"]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    dynamic = any(-1 in tuple(network.get_input(i).shape) for i in range(network.num_inputs))
    if dynamic:
        profile = builder.create_optimization_profile()
        for p in recipe["shape_profiles"]:
            profile.set_shape(p["input"], p["min"], p["opt"], p["max"])
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgeyardError(f"TensorRT could not build an engine from {path} "
                            f"(precision {recipe['precision']}); see TensorRT's log above")
    return bytes(serialized)


class TensorrtEngine(Engine):
    format = "tensorrt"

    def _open(self) -> None:
        trt = require("tensorrt", purpose="building and running TensorRT engines")
        self._torch = torch = require("torch", extra="torch", purpose="CUDA buffers")
        if not torch.cuda.is_available():
            raise EdgeyardError("TensorRT needs a CUDA GPU; torch sees none")
        recipe = read_recipe(self.path)
        gpu = (f"{torch.cuda.get_device_name(0)} sm_"
               f"{''.join(map(str, torch.cuda.get_device_capability(0)))}")
        key = engine_key(sha256_file(self.path), trt.__version__, gpu)
        cached = cache_dir() / f"{key}.engine"
        self.built = not cached.exists()  # True when this load built (not reused) the engine
        if self.built:
            data = build_engine(trt, self.path, recipe)
            atomic_write(cached, data)
        self.cache_path = cached
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(cached.read_bytes())
        if self._engine is None:
            raise EdgeyardError(f"TensorRT could not deserialize the cached engine {cached}")
        self._context = self._engine.create_execution_context()
        ins: list[tuple[str, TensorSpec]] = []
        outs: list[tuple[str, TensorSpec]] = []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            spec = TensorSpec(name, tuple(self._engine.get_tensor_shape(name)),
                              np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))).name)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (ins if is_input else outs).append((name, spec))
        self.inputs = tuple(s for _, s in order_by_names(ins, self.input_names))
        self.outputs = tuple(s for _, s in order_by_names(outs, self.output_names))

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        keep = []
        for spec, x in zip(self.inputs, inputs, strict=True):
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=spec.dtype)).cuda()
            self._context.set_input_shape(spec.name, tuple(t.shape))
            self._context.set_tensor_address(spec.name, t.data_ptr())
            keep.append(t)
        outs = []
        for spec in self.outputs:
            shape = tuple(self._context.get_tensor_shape(spec.name))
            t = torch.empty(shape, dtype=getattr(torch, spec.dtype), device="cuda")
            self._context.set_tensor_address(spec.name, t.data_ptr())
            outs.append(t)
        stream = torch.cuda.current_stream()
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise EdgeyardError("TensorRT execution failed")
        stream.synchronize()
        return [t.cpu().numpy() for t in outs]

    def close(self) -> None:
        self._context = self._engine = self._runtime = None
