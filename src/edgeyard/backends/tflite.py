"""LiteRT (TFLite) backend, run with ai-edge-litert.

Keras models go through a SavedModel to `tf.lite.TFLiteConverter`. torch and ONNX models go
torch -> ONNX (the onnx backend's exporter) -> onnx2tf (SavedModel, NCHW inputs kept as the source
has them) -> `TFLiteConverter`. Why not litert-torch: it adds ~940 MB (jax, transformers) and pins
typing_extensions 4.12, which breaks `import tvm` in the same environment; the ONNX route reuses
the export the onnx target already verifies and quantizes with TensorFlow's own converter.

Precisions: fp32; fp16 (float16 weights); int8-weights (dynamic range); int8 (full integer with
the calibration data as representative dataset, float32 I/O kept so the interface matches the
source model).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from .._deps import require
from .base import Backend, ConvertRequest, ConvertResult
from .onnx import source_to_onnx

_ONNX2TF = ("tensorflow", "onnx", "onnx2tf", "tf_keras", "onnx_graphsurgeon", "sng4onnx")


class TfliteBackend(Backend):
    name = "tflite"
    artifact_suffix = ".tflite"
    engine_format = "tflite"
    source_formats = ("keras", "torch", "onnx")
    precisions = ("fp32", "fp16", "int8-weights", "int8")
    options: ClassVar[dict[str, Any]] = {"opset": int}
    convert_modules: ClassVar[dict[str, tuple[str, ...]]] = {
        "keras": ("tensorflow",),
        "onnx": _ONNX2TF,
        "torch": (*_ONNX2TF, "torch", "onnxscript"),
    }
    runtime_modules = ("ai_edge_litert",)
    toolchain = ("tensorflow-cpu", "tensorflow", "keras", "tf-keras", "onnx2tf", "ai-edge-litert",
                 "torch", "onnx")

    def _saved_model(self, request: ConvertRequest) -> tuple[Path, str]:
        sm = request.workdir / "saved_model"
        src = request.source
        if src.format == "keras":
            keras = require("keras", extra="tflite")
            keras.models.load_model(os.fspath(src.path)).export(os.fspath(sm))
            return sm, "keras export -> SavedModel"
        onnx_path = source_to_onnx(src, request.workdir / "model.onnx", request.options.get("opset"))
        onnx2tf = require("onnx2tf", extra="tflite", purpose="converting ONNX to TensorFlow")
        onnx2tf.convert(
            input_onnx_file_path=os.fspath(onnx_path),
            output_folder_path=os.fspath(sm),
            keep_shape_absolutely_input_names=[s.name for s in src.inputs],
            output_signaturedefs=True,
            non_verbose=True,
        )
        route = "torch.onnx.export -> onnx2tf" if src.format == "torch" else "onnx2tf"
        return sm, f"{route} -> SavedModel"

    def convert(self, request: ConvertRequest) -> ConvertResult:
        tf = require("tensorflow", extra="tflite", purpose="the TFLite converter")
        sm, route = self._saved_model(request)
        conv = tf.lite.TFLiteConverter.from_saved_model(os.fspath(sm))
        details: dict[str, Any] = {"route": f"{route} -> TFLiteConverter"}
        if request.precision == "fp16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
            details["quantizer"] = "float16 weights"
        elif request.precision == "int8-weights":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            details["quantizer"] = "dynamic range (int8 weights, float activations)"
        elif request.precision == "int8":
            assert request.calibration is not None
            cal = request.calibration
            batch = request.source.batch or 1
            n = cal[0].shape[0]

            def representative() -> Any:
                for i in range(0, n - batch + 1, batch):
                    yield [a[i : i + batch] for a in cal]

            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            details["quantizer"] = (
                "full integer (int8 activations and weights, float32 I/O), "
                f"{n} calibration samples"
            )
        request.out_path.write_bytes(conv.convert())
        return ConvertResult(request.out_path, details)

    def inspect(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        litert = require("ai_edge_litert.interpreter", extra="tflite")
        it = litert.Interpreter(model_path=os.fspath(path))
        ops = Counter(op["op_name"] for op in it._get_ops_details())
        tensor_types = Counter(
            getattr(d["dtype"], "__name__", str(d["dtype"])) for d in it.get_tensor_details()
        )
        return {"ops": dict(sorted(ops.items())), "tensor_dtypes": dict(sorted(tensor_types.items()))}
