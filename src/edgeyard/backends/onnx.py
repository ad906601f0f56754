"""ONNX / ONNX Runtime backend.

torch -> `torch.onnx.export(dynamo=True)` (needs onnxscript); Keras -> tf2onnx from the build's
SavedModel; an ONNX source is copied as is (see `onnx_graph`).
Precisions: fp32; fp16 (ONNX Runtime's float16 converter, float32 I/O kept); int8-weights
(`quantize_dynamic`, per-tensor: ONNX Runtime's defaults); int8 with two recipes the build
chooses between: `static` (`quantize_static`, QDQ, per-channel weights, calibrated on the build's
data after `quant_pre_process`: the conv-net recipe) and `dynamic` (`quantize_dynamic` with
per-channel weights: measured on a trained MiniLM sentence encoder, cosine 0.986 / 0.993 min /
mean against 0.070 / 0.381 for static QDQ of every op).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._deps import require
from ..errors import ConversionError
from .base import Backend, ConvertRequest, ConvertResult, Recipe
from .onnx_graph import exporter, source_to_onnx

_CALIBRATE = ("minmax", "entropy", "percentile")
RECIPES = (
    Recipe("static", "static", "quantize_static QDQ: int8 weights (per-channel) and activations, "
           "calibrated on the build's data", needs_calibration=True),
    Recipe("dynamic", "dynamic", "quantize_dynamic: int8 weights (per-channel), activations "
           "quantized at run time"),
)
# op types ONNX Runtime's static quantizer quantizes whose error the sensitivity analysis ranks
_QUANTIZABLE = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Concat",
                "AveragePool", "GlobalAveragePool", "Softmax", "LSTM", "GRU")


MIN_QUANT_OPSET = 13


def upgraded_opset(fp32: Path, workdir: Path, details: dict[str, Any]) -> Path:
    """The model at opset 13 or later: ONNX Runtime's quantizer writes per-channel
    DequantizeLinear nodes (an `axis` attribute, opset 13), which an older model (PaddleOCR's
    exports are opset 11) then fails to load with ("Unrecognized attribute: axis")."""
    onnx = require("onnx")
    model = onnx.load(os.fspath(fp32))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset >= MIN_QUANT_OPSET:
        return fp32
    from onnx import version_converter

    up = version_converter.convert_version(model, 17)
    out = workdir / "model.opset17.onnx"
    onnx.save(up, os.fspath(out))
    details["opset_upgraded"] = f"{opset} -> 17 (per-channel quantization needs >= 13)"
    return out


def _dynamic(q: Any, fp32: Path, out: Path, workdir: Path, details: dict[str, Any],
             **kwargs: Any) -> None:
    """`quantize_dynamic` on the exported graph; where its weights are not initializers (held
    in Constant nodes, as in PaddleOCR's exports, which the quantizer refuses: "Expected ... to
    be an initializer"), on the pre-processed graph, where constant folding made them so."""
    if _weights_in_constant_nodes(fp32):
        pre = preprocessed(fp32, workdir, details)
        q.quantize_dynamic(os.fspath(pre), os.fspath(out), **kwargs)
        details["quantized_graph"] = "pre-processed (weights in Constant nodes)"
    else:
        q.quantize_dynamic(os.fspath(fp32), os.fspath(out), **kwargs)


def _weights_in_constant_nodes(path: Path) -> bool:
    """Whether a MatMul, Gemm or Conv of the graph takes its weight from a Constant node rather
    than an initializer."""
    onnx = require("onnx", extra="onnx")
    graph = onnx.load(os.fspath(path), load_external_data=False).graph
    constants = {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return any(len(n.input) > 1 and n.input[1] in constants for n in graph.node
               if n.op_type in ("MatMul", "Gemm", "Conv"))


def preprocessed(fp32: Path, workdir: Path, details: dict[str, Any]) -> Path:
    """ONNX Runtime's `quant_pre_process` (shape inference, graph optimization) before static
    quantization, reused when it is newer than `fp32`. Its symbolic shape inference fails on some
    graphs (`TypeError: object of type 'NoneType' has no len()` on the Expand of a transformer's
    attention mask): then without it (the shapes are static, ONNX's own inference suffices),
    then with no pre-processing at all; `details["pre_process"]` says which ran."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = workdir / "model.pre.onnx"
    if pre.exists() and pre.stat().st_mtime >= fp32.stat().st_mtime:
        return pre
    fp32 = upgraded_opset(fp32, workdir, details)
    errors = []
    for label, kwargs in (("quant_pre_process", {}),
                          ("quant_pre_process(skip_symbolic_shape=True)",
                           {"skip_symbolic_shape": True})):
        try:
            # its symbolic shape inference writes `sym_shape_infer_temp.onnx` into the current
            # directory: run it in the work directory, not the user's
            with contextlib.chdir(workdir):
                quant_pre_process(os.fspath(fp32.resolve()), os.fspath(pre.resolve()), **kwargs)
        except Exception as exc:
            errors.append(f"{label}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        details["pre_process"] = label
        if errors:
            details["pre_process_errors"] = errors
        return pre
    details["pre_process"] = "none (every pre-processing failed)"
    details["pre_process_errors"] = errors
    shutil.copyfile(fp32, pre)
    return pre


class _Reader:
    """ONNX Runtime calibration reader over the build's calibration arrays, one sample at a time
    in the model's batch size."""

    def __init__(self, names: list[str], arrays: tuple[np.ndarray, ...], batch: int) -> None:
        n = arrays[0].shape[0]
        self._feeds = iter(
            [
                {k: a[i : i + batch] for k, a in zip(names, arrays, strict=True)}
                for i in range(0, n - batch + 1, batch)
            ]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:  # pragma: no cover - ORT calls it only for some methods
        pass


class OnnxBackend(Backend):
    name = "onnx"
    artifact_suffix = ".onnx"
    engine_format = "onnx"
    source_formats = ("torch", "onnx", "keras")
    precisions = ("fp32", "fp16", "int8-weights", "int8")
    options: ClassVar[dict[str, Any]] = {
        "opset": int,
        "per_channel": bool,
        "calibrate_method": str,
        "nodes_to_exclude": list,
        "recipe": str,
    }
    convert_modules: ClassVar[dict[str, tuple[str, ...]]] = {
        "torch": ("torch", "onnx", "onnxscript"),
        "onnx": ("onnx",),
        "keras": ("tensorflow", "tf2onnx", "onnx"),
    }
    runtime_modules = ("onnxruntime",)
    toolchain = ("torch", "onnx", "onnxscript", "onnxruntime", "tf2onnx")
    recovery = ("mixed",)

    def recipes(self, precision: str) -> tuple[Recipe, ...]:
        return RECIPES if precision == "int8" else ()

    def convert(self, request: ConvertRequest) -> ConvertResult:
        opts = request.options
        fp32 = request.workdir / "model.fp32.onnx"
        source_to_onnx(request.source, fp32, opts.get("opset"))
        out = request.out_path
        details: dict[str, Any] = {"exporter": exporter(request.source)}
        if request.precision == "fp32":
            shutil.copyfile(fp32, out)
        elif request.precision == "fp16":
            onnx = require("onnx")
            from onnxruntime.transformers.float16 import convert_float_to_float16

            model = convert_float_to_float16(onnx.load(os.fspath(fp32)), keep_io_types=True)
            onnx.save(model, os.fspath(out))
            details["converter"] = "onnxruntime.transformers.float16 (keep_io_types)"
        elif request.precision == "int8-weights":
            q = require("onnxruntime.quantization", extra="onnx")
            _dynamic(q, fp32, out, request.workdir, details, weight_type=q.QuantType.QInt8)
            details["quantizer"] = "onnxruntime quantize_dynamic, int8 weights"
        else:
            recipe = str(opts.get("recipe", "static"))
            if recipe not in {r.name for r in RECIPES}:
                raise ConversionError(f"onnx has no int8 recipe {recipe!r}; its recipes: "
                                      f"{', '.join(r.name for r in RECIPES)}")
            details["recipe"] = recipe
            if recipe == "dynamic":
                q = require("onnxruntime.quantization", extra="onnx")
                per_channel = bool(opts.get("per_channel", True))
                _dynamic(q, fp32, out, request.workdir, details,
                         weight_type=q.QuantType.QInt8, per_channel=per_channel,
                         nodes_to_exclude=list(opts.get("nodes_to_exclude", [])))
                details["quantizer"] = (f"onnxruntime quantize_dynamic, int8 weights "
                                        f"({'per-channel' if per_channel else 'per-tensor'}), "
                                        f"activations quantized at run time")
            else:
                if request.calibration is None:
                    raise ConversionError("the static int8 recipe needs calibration data")
                quantize_static(request, fp32, out, details)
        return ConvertResult(out, details)

    def sensitivity(self, request: ConvertRequest, samples: int = 200,
                    budget_s: float = 180.0) -> list[dict[str, Any]]:
        """Per quantizable node, how much int8 costs when only that node is quantized.

        One `quantize_static` per node (`nodes_to_quantize=[node]`, the target's settings),
        each run on up to `samples` calibration samples next to the float model: the output's
        signal-to-quantization-noise ratio (dB; lower is worse) and top-1 agreement. Sorted worst
        first; node names are what `nodes_to_exclude` takes. A graph of hundreds of nodes (an
        OCR recognizer: 150 convolutions, ~7 s each) would take half an hour: the analysis
        stops after `budget_s` seconds, with the nodes measured so far, spread over the graph
        (every k-th node first, then the ones between)."""
        onnx = require("onnx")
        ort = require("onnxruntime", extra="onnx")
        assert request.calibration is not None
        fp32 = request.workdir / "model.fp32.onnx"
        if not fp32.exists():
            source_to_onnx(request.source, fp32, request.options.get("opset"))
        pre = preprocessed(fp32, request.workdir, {})
        nodes = [(n.name, n.op_type) for n in onnx.load(os.fspath(pre)).graph.node
                 if n.op_type in _QUANTIZABLE and n.name]
        cal = tuple(a[:samples] for a in request.calibration)
        names = [s.name for s in request.source.inputs]
        batch = request.source.batch or 1

        def run(path: Path) -> list[np.ndarray]:
            sess = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
            outs = [sess.run(None, dict(zip(names, (a[i:i + batch] for a in cal), strict=True)))
                    for i in range(0, cal[0].shape[0] - batch + 1, batch)]
            return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]

        reference = run(pre)
        rows = []
        deadline = time.monotonic() + budget_s
        k = max(1, len(nodes) // 16)
        order = [n for i in range(k) for n in nodes[i::k]]  # spread over the graph first
        for node, op in order:
            if time.monotonic() > deadline:
                break
            one = request.workdir / "sensitivity.onnx"
            sub = ConvertRequest(request.source, "int8",
                                 {**request.options, "nodes_to_quantize": [node]}, one,
                                 request.workdir, cal)
            quantize_static(sub, fp32, one, {})
            got = run(one)
            noise = sum(float(np.sum((g.astype(np.float64) - r) ** 2))
                        for g, r in zip(got, reference, strict=True))
            power = sum(float(np.sum(r.astype(np.float64) ** 2)) for r in reference)
            row: dict[str, Any] = {"node": node, "op": op,
                                   "sqnr_db": round(float(10 * np.log10(power / max(noise, 1e-30))), 2)}
            if reference[0].ndim == 2 and reference[0].shape[1] > 1:
                row["agreement"] = float(np.mean(got[0].argmax(1) == reference[0].argmax(1)))
            rows.append(row)
        rows.sort(key=lambda r: r["sqnr_db"])
        return rows

    def inspect(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        onnx = require("onnx")
        model = onnx.load(os.fspath(path))
        ops = Counter(n.op_type for n in model.graph.node)
        weights = Counter(
            onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name for t in model.graph.initializer
        )
        return {
            "ops": dict(sorted(ops.items())),
            "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
            "weight_dtypes": dict(sorted(weights.items())),
            "ir_version": model.ir_version,
        }


def quantize_static(request: ConvertRequest, fp32: Path, out: Path, details: dict[str, Any],
                    symmetric: bool = False) -> None:
    """int8 QDQ of `fp32` calibrated on the build's data, written to `out`; `symmetric`
    (zero points 0) for TensorRT. The public helper other ONNX-based backends share."""
    q = require("onnxruntime.quantization", extra="onnx")
    opts = request.options
    method = opts.get("calibrate_method", "minmax")
    if method not in _CALIBRATE:
        raise ValueError(f"calibrate_method must be one of {_CALIBRATE} (got {method!r})")
    assert request.calibration is not None
    pre = preprocessed(fp32, request.workdir, details)
    batch = request.source.batch or 1
    reader = _Reader([s.name for s in request.source.inputs], request.calibration, batch)
    per_channel = bool(opts.get("per_channel", True))
    exclude = list(opts.get("nodes_to_exclude", []))
    only = list(opts.get("nodes_to_quantize", []))  # the sensitivity analysis, one by one
    q.quantize_static(
        os.fspath(pre),
        os.fspath(out),
        reader,
        quant_format=q.QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=q.QuantType.QInt8,
        weight_type=q.QuantType.QInt8,
        calibrate_method={
            "minmax": q.CalibrationMethod.MinMax,
            "entropy": q.CalibrationMethod.Entropy,
            "percentile": q.CalibrationMethod.Percentile,
        }[method],
        nodes_to_exclude=exclude,
        nodes_to_quantize=only or None,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True}
        if symmetric else None,
    )
    details["quantizer"] = (
        f"onnxruntime quantize_static QDQ, int8 activations and weights, "
        f"{'per-channel' if per_channel else 'per-tensor'}, {method} calibration"
        + (", symmetric" if symmetric else "")
    )
    if exclude:
        details["float_nodes"] = exclude
