"""Core ML: torch.export program -> ML Program `.mlpackage` (coremltools), checked structurally.

Conversion runs on any OS: the exported program (decomposed to core aten ops) goes through
`coremltools.convert` as an ML Program with the source's input and output names, fixed shapes
(the build's example inputs, batch included) and float32 I/O whatever the compute precision.
When the torch.export path fails (an op coremltools' exporter frontend lacks), the module is
traced to TorchScript and converted through coremltools' older TorchScript frontend; the release
records which path was taken (`details["frontend"]`).

Precisions: `fp32` and `fp16` set the compute precision; `int8-weights` is fp16 compute with
weights stored as int8 (per-channel symmetric, `linear_quantize_weights`). The option
`palettize_bits` (1, 2, 3, 4, 6 or 8) palettizes the weights with k-means on top of any
precision; `minimum_deployment_target` ("iOS17", "macOS14", ...) defaults to iOS17.

Prediction exists only on macOS (coremltools' Linux wheel has no `libcoremlpython`). Everywhere
the artifact is re-read from disk and validated structurally: the spec loads, input and output
names, shapes and dtypes match the source model, and the op census is recorded; a mismatch fails
the target. On Linux the target is then marked unverified with that reason; on macOS the worker
loads it with `edgeyard.engines.coreml` and runs the full parity check.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._deps import require
from ..engines.base import TensorSpec
from ..engines.coreml import feature_spec
from ..errors import ConversionError
from ..model import SourceModel
from .base import Backend, ConvertRequest, ConvertResult, host_os

PALETTE_BITS = (1, 2, 3, 4, 6, 8)
DEFAULT_TARGET = "iOS17"


class CoremlBackend(Backend):
    name = "coreml"
    artifact_suffix = ".mlpackage"
    engine_format = "coreml"
    source_formats = ("torch",)
    precisions = ("fp32", "fp16", "int8-weights")
    options: ClassVar[dict[str, Any]] = {"minimum_deployment_target": str, "palettize_bits": int}
    convert_modules: ClassVar[dict[str, tuple[str, ...]]] = {"torch": ("torch", "coremltools")}
    runtime_modules = ("coremltools",)
    toolchain = ("torch", "coremltools")

    def cannot_run_here(self) -> str | None:
        if host_os() != "darwin":
            return (f"Core ML prediction exists only on macOS (this host: {host_os()}); "
                    f"the artifact passed structural validation only")
        return None

    def convert(self, request: ConvertRequest) -> ConvertResult:
        ct = require("coremltools", extra="coreml")
        target = _deployment_target(ct, request.options.get("minimum_deployment_target"))
        bits = request.options.get("palettize_bits")
        if bits is not None and bits not in PALETTE_BITS:
            raise ConversionError(f"palettize_bits must be one of {PALETTE_BITS} (got {bits})")
        src = request.source
        example = src.example_inputs()
        # Core ML has no 64-bit integer tensors: int64 inputs (token ids) are taken as int32,
        # which the engine casts to
        inputs = [ct.TensorType(name=s.name, shape=a.shape,
                                dtype=np.int32 if a.dtype == np.int64 else a.dtype.type)
                  for s, a in zip(src.inputs, example, strict=True)]
        outputs = [ct.TensorType(name=s.name, dtype=np.dtype(s.dtype).type) for s in src.outputs]
        precision = ct.precision.FLOAT32 if request.precision == "fp32" else ct.precision.FLOAT16
        kwargs = dict(inputs=inputs, outputs=outputs, convert_to="mlprogram",
                      compute_precision=precision, minimum_deployment_target=target)
        details: dict[str, Any] = {"minimum_deployment_target": target.name,
                                   "compute_precision": "fp32" if request.precision == "fp32"
                                   else "fp16"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mlmodel = _convert(ct, src, example, kwargs, details)
            if request.precision == "int8-weights":
                cto = require("coremltools.optimize.coreml", extra="coreml")
                config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
                    mode="linear_symmetric", dtype="int8", granularity="per_channel",
                    weight_threshold=0))
                mlmodel = cto.linear_quantize_weights(mlmodel, config)
                details["weights"] = "int8, per-channel symmetric"
            if bits is not None:
                cto = require("coremltools.optimize.coreml", extra="coreml")
                config = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(
                    mode="kmeans", nbits=bits, weight_threshold=0))
                mlmodel = cto.palettize_weights(mlmodel, config)
                details["palettized_bits"] = bits
            mlmodel.save(os.fspath(request.out_path))
        problems = validate(request.out_path, src, example)
        if problems:
            raise ConversionError("the .mlpackage does not match the source model: "
                                  + "; ".join(problems))
        details["structural_validation"] = "passed"
        if any(s.dtype == "int64" for s in src.inputs):
            details["int64_inputs"] = "taken as int32 (Core ML has no 64-bit integer tensors)"
        return ConvertResult(request.out_path, details)

    def inspect(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        spec = _load_spec(path)
        ops = Counter(op.type for f in spec.mlProgram.functions.values()
                      for b in f.block_specializations.values() for op in b.operations)
        return {"spec_version": spec.specificationVersion,
                "inputs": [s.to_dict() for s in _specs(spec.description.input)],
                "outputs": [s.to_dict() for s in _specs(spec.description.output)],
                "ops": dict(sorted(ops.items())),
                "compressed_weight_ops": sum(n for op, n in ops.items()
                                             if op.startswith("constexpr_"))}


def validate(path: str | os.PathLike[str], source: SourceModel,
             example: tuple[Any, ...]) -> list[str]:
    """What differs between the saved `.mlpackage` and the source model's I/O ([] when none)."""
    try:
        spec = _load_spec(path)
    except Exception as exc:
        return [f"the saved spec does not load: {type(exc).__name__}: {exc}"]
    problems = []
    if spec.WhichOneof("Type") != "mlProgram":
        problems.append(f"expected an ML Program, got {spec.WhichOneof('Type')}")
    want_in = [TensorSpec(s.name, tuple(a.shape), s.dtype)
               for s, a in zip(source.inputs, example, strict=True)]
    for kind, want, got in (("input", want_in, _specs(spec.description.input)),
                            ("output", list(source.outputs), _specs(spec.description.output))):
        if len(got) != len(want):
            problems.append(f"{kind} names {[s.name for s in got]} != source "
                            f"{[s.name for s in want]}")
            continue
        # the engine feeds and reads by position; a name coremltools had to change (a reserved
        # word: `state` becomes `state_workaround`) is fine, any other difference is not
        renamed = [(g.name, w.name) for g, w in zip(got, want, strict=True) if g.name != w.name]
        if any(not g.startswith(w) for g, w in renamed):
            problems.append(f"{kind} names {[s.name for s in got]} != source "
                            f"{[s.name for s in want]}")
            continue
        for g, w in zip(got, want, strict=True):
            if g.dtype != w.dtype and (g.dtype, w.dtype) != ("int32", "int64"):
                problems.append(f"{kind} {w.name}: dtype {g.dtype} != source {w.dtype}")
            # a dimension the source leaves dynamic (-1) is fixed in the artifact
            if len(g.shape) != len(w.shape) or any(
                    wd >= 0 and gd != wd for gd, wd in zip(g.shape, w.shape, strict=True)):
                problems.append(f"{kind} {w.name}: shape {list(g.shape)} != source "
                                f"{list(w.shape)}")
    return problems


def _deployment_target(ct: Any, name: str | None) -> Any:
    members = ct.target.__members__
    name = name or DEFAULT_TARGET
    if name not in members:
        raise ConversionError(f"unknown minimum_deployment_target {name!r}; coremltools "
                              f"{ct.__version__} knows {', '.join(members)}")
    return members[name]


def _convert(ct: Any, src: SourceModel, example: tuple[Any, ...], kwargs: dict[str, Any],
             details: dict[str, Any]) -> Any:
    torch = require("torch", extra="torch")
    ep = torch.export.load(os.fspath(src.path))
    try:
        # coremltools refuses inputs whose recorded dim order is not the identity, which
        # numpy strides on size-1 dimensions can produce (a (1, 1, 8, 8) slice): re-export
        # with freshly allocated, canonically strided examples
        fresh = tuple(torch.empty(a.shape, dtype=torch.from_numpy(a).dtype).copy_(
            torch.from_numpy(a)) for a in example)
        ep = torch.export.export(ep.module(), fresh)
    except Exception as exc:
        details["torch_export_error"] = _first_line(exc)
    else:
        # the core-ATen decomposition table first: transformers' mask code leaves ops such as
        # new_ones and __and__ that coremltools 9 has no converter for, and the table rewrites
        # them into ones it has; then the program as exported (decompositions({})).
        for label, table in (("core ATen decompositions", None), ("no decompositions", {})):
            try:
                decomposed = ep.run_decompositions() if table is None else \
                    ep.run_decompositions(table)
                mlmodel = ct.convert(decomposed, **kwargs)
            except Exception as exc:
                details.setdefault("torch_export_errors", {})[label] = _first_line(exc)
                continue
            details["frontend"] = f"torch.export ({label})"
            return mlmodel
    # an op the exporter frontend lacks either way: try TorchScript
    traced = torch.jit.trace(ep.module(), tuple(torch.from_numpy(a) for a in example))
    mlmodel = ct.convert(traced, **kwargs)
    details["frontend"] = "torchscript (torch.export conversion failed)"
    return mlmodel


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"


def _load_spec(path: str | os.PathLike[str]) -> Any:
    ct = require("coremltools", extra="coreml")
    # skip_model_load: the spec and weights are read, Core ML's compiler (macOS) is not needed
    model = ct.models.MLModel(os.fspath(Path(path)), skip_model_load=True)
    return model.get_spec()


def _specs(features: Any) -> list[TensorSpec]:
    return [feature_spec(f) for f in features]
