"""ONNX / ONNX Runtime backend.

torch -> `torch.onnx.export(dynamo=True)` (needs onnxscript); an ONNX source is copied as is.
Precisions: fp32; fp16 (ONNX Runtime's float16 converter, float32 I/O kept); int8-weights
(`quantize_dynamic`); int8 (`quantize_static`, QDQ format, per-channel weights, calibrated on the
build's calibration data after `quant_pre_process`).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._deps import require
from ..model import SourceModel
from .base import Backend, ConvertRequest, ConvertResult

_CALIBRATE = ("minmax", "entropy", "percentile")
# op types ONNX Runtime's static quantizer quantizes whose error the sensitivity analysis ranks
_QUANTIZABLE = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Concat",
                "AveragePool", "GlobalAveragePool", "Softmax", "LSTM", "GRU")


def export_torch(source: SourceModel, dest: Path, opset: int | None = None) -> Path:
    """Export a torch.export program (`source.path`, .pt2) to a self-contained .onnx file."""
    torch = require("torch", purpose="exporting PyTorch models to ONNX")
    require("onnxscript", extra="onnx", purpose="torch.onnx.export(dynamo=True)")
    ep = torch.export.load(os.fspath(source.path))
    args = tuple(torch.from_numpy(a) for a in source.example_inputs())
    kwargs: dict[str, Any] = {}
    if opset is not None:
        kwargs["opset_version"] = opset
    torch.onnx.export(
        ep,
        args,
        os.fspath(dest),
        dynamo=True,
        external_data=False,
        input_names=[s.name for s in source.inputs],
        output_names=[s.name for s in source.outputs],
        **kwargs,
    )
    return dest


def source_to_onnx(source: SourceModel, dest: Path, opset: int | None = None) -> Path:
    """An fp32 .onnx file for any source format this module can reach."""
    if source.format == "onnx":
        shutil.copyfile(source.path, dest)
        return dest
    if source.format == "torch":
        return export_torch(source, dest, opset)
    raise ValueError(f"no ONNX export from {source.format} models")


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
    source_formats = ("torch", "onnx")
    precisions = ("fp32", "fp16", "int8-weights", "int8")
    options: ClassVar[dict[str, Any]] = {
        "opset": int,
        "per_channel": bool,
        "calibrate_method": str,
        "nodes_to_exclude": list,
    }
    convert_modules: ClassVar[dict[str, tuple[str, ...]]] = {
        "torch": ("torch", "onnx", "onnxscript"),
        "onnx": ("onnx",),
    }
    runtime_modules = ("onnxruntime",)
    toolchain = ("torch", "onnx", "onnxscript", "onnxruntime")
    recovery = ("mixed",)

    def convert(self, request: ConvertRequest) -> ConvertResult:
        opts = request.options
        fp32 = request.workdir / "model.fp32.onnx"
        source_to_onnx(request.source, fp32, opts.get("opset"))
        out = request.out_path
        details: dict[str, Any] = {"exporter": "torch.onnx.export(dynamo=True)"
                                   if request.source.format == "torch" else "copied"}
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
            q.quantize_dynamic(os.fspath(fp32), os.fspath(out), weight_type=q.QuantType.QInt8)
            details["quantizer"] = "onnxruntime quantize_dynamic, int8 weights"
        else:
            self._quantize_static(request, fp32, out, details)
        return ConvertResult(out, details)

    def _quantize_static(
        self, request: ConvertRequest, fp32: Path, out: Path, details: dict[str, Any],
        symmetric: bool = False,
    ) -> None:
        """int8 QDQ calibrated on the build's data; `symmetric` (zero points 0) for TensorRT."""
        q = require("onnxruntime.quantization", extra="onnx")
        from onnxruntime.quantization.shape_inference import quant_pre_process

        opts = request.options
        method = opts.get("calibrate_method", "minmax")
        if method not in _CALIBRATE:
            raise ValueError(f"calibrate_method must be one of {_CALIBRATE} (got {method!r})")
        assert request.calibration is not None
        pre = request.workdir / "model.pre.onnx"
        if not pre.exists() or pre.stat().st_mtime < fp32.stat().st_mtime:
            quant_pre_process(os.fspath(fp32), os.fspath(pre))
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

    def sensitivity(self, request: ConvertRequest, samples: int = 200) -> list[dict[str, Any]]:
        """Per quantizable node, how much int8 costs when only that node is quantized.

        One `quantize_static` per node (`nodes_to_quantize=[node]`, the target's settings),
        each run on up to `samples` calibration samples next to the float model: the output's
        signal-to-quantization-noise ratio (dB; lower is worse) and top-1 agreement. Sorted worst
        first; node names are what `nodes_to_exclude` takes."""
        onnx = require("onnx")
        ort = require("onnxruntime", extra="onnx")
        assert request.calibration is not None
        fp32 = request.workdir / "model.fp32.onnx"
        if not fp32.exists():
            source_to_onnx(request.source, fp32, request.options.get("opset"))
        pre = request.workdir / "model.pre.onnx"
        if not pre.exists():
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(os.fspath(fp32), os.fspath(pre))
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
        for node, op in nodes:
            one = request.workdir / "sensitivity.onnx"
            sub = ConvertRequest(request.source, "int8",
                                 {**request.options, "nodes_to_quantize": [node]}, one,
                                 request.workdir, cal)
            self._quantize_static(sub, fp32, one, {})
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
