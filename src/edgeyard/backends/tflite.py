"""LiteRT (TFLite) backend, run with ai-edge-litert.

Conversion paths, tried in order until one converts (the artifact's `details.path` says which):

- torch models:
  1. `litert-torch`: the `torch.export` program straight to LiteRT, in its own environment
     (`edgeyard envs install litert-torch`; its pins break TVM next to it, see `edgeyard._envs`).
     Measured on a trained MiniLM sentence encoder (seq 128, 1 thread): dynamic int8 at cosine
     0.997 / 0.998 (min / mean) and 10.4 ms, the fastest int8 of every runtime tried.
  2. `onnx2tf`: torch -> ONNX (the onnx backend's exporter) -> onnx2tf (a SavedModel, NCHW inputs
     kept as the source has them) -> `TFLiteConverter`. `ReduceL2` (F.normalize) is rewritten to
     `Sqrt(ReduceSum(x*x))` first: onnx2tf 1.28 lowers it to a `tf.norm` call that TensorFlow
     2.21 rejects. onnx2tf moves the outputs' channels last too (a detector's [N, 1, H, W] map
     comes out [N, H, W, 1]); a transpose back to the source's layout is appended to the
     signature, so the artifact keeps the source's I/O contract (the route says so).
- ONNX models: the `onnx2tf` path.
- Keras models: the build's SavedModel -> `TFLiteConverter` (`tflite-converter`).

Precisions: fp32; fp16 (float16 weights; the TFLiteConverter paths); int8-weights (int8 weights,
float compute); int8, with two recipes the build chooses between (see `recipes`): `static`
(full integer: int8 activations calibrated on the build's data, float32 I/O kept) and `dynamic`
(int8 weights, activations quantized at run time: what transformers need).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from .. import _envs
from .._deps import missing, require
from ..errors import ConversionError
from .base import Backend, ConversionPath, ConvertRequest, ConvertResult, Recipe, first_path
from .onnx_graph import exporter, rewrite_reduce_l2, sanitize_node_names, static_onnx

_ONNX2TF = ("tensorflow", "onnx", "onnx2tf", "tf_keras", "onnx_graphsurgeon", "sng4onnx")
LITERT_ENV = "litert-torch"
PATHS = ("litert-torch", "onnx2tf", "tflite-converter")
RECIPES = (
    Recipe("static", "static", "full integer: int8 weights and activations, activations "
           "calibrated on the build's data (float32 I/O kept)", needs_calibration=True),
    Recipe("dynamic", "dynamic", "int8 weights, activations quantized at run time (dynamic "
           "range / per-token)"),
)


class TfliteBackend(Backend):
    name = "tflite"
    artifact_suffix = ".tflite"
    engine_format = "tflite"
    source_formats = ("keras", "torch", "onnx")
    precisions = ("fp32", "fp16", "int8-weights", "int8")
    options: ClassVar[dict[str, Any]] = {"opset": int, "path": str, "recipe": str}
    convert_modules: ClassVar[dict[str, tuple[str, ...]]] = {
        "keras": ("tensorflow",),
        "onnx": _ONNX2TF,
        "torch": ("torch",),  # and one of the paths: see unavailable()
    }
    runtime_modules = ("ai_edge_litert",)
    toolchain = ("tensorflow-cpu", "tensorflow", "keras", "tf-keras", "onnx2tf", "ai-edge-litert",
                 "torch", "onnx", "litert-torch")

    def recipes(self, precision: str) -> tuple[Recipe, ...]:
        return RECIPES if precision == "int8" else ()

    def unavailable(self, source_format: str) -> str | None:
        why = super().unavailable(source_format)
        if why or source_format != "torch":
            return why
        if _envs.env_python(LITERT_ENV) is None and missing(*_ONNX2TF, "onnxscript"):
            return (f"no torch -> LiteRT path here: {_envs.missing_reason(LITERT_ENV)}, or "
                    f"pip install 'edgeyard[tflite]' for the ONNX route")
        return None

    def convert(self, request: ConvertRequest) -> ConvertResult:
        details: dict[str, Any] = {}
        pinned = request.options.get("path")
        if pinned is not None and pinned not in PATHS:
            raise ConversionError(f"tflite path must be one of {', '.join(PATHS)} "
                                  f"(got {pinned!r})")
        src = request.source
        paths: list[ConversionPath] = []
        if src.format == "torch":
            paths.append(ConversionPath("litert-torch", lambda: self._litert(request),
                                        self._litert_unavailable(request)))
        if src.format in ("torch", "onnx"):
            paths.append(ConversionPath(
                "onnx2tf", lambda: self._tflite_converter(request, self._onnx2tf(request)),
                ", ".join(missing(*_ONNX2TF)) + " not installed: pip install 'edgeyard[tflite]'"
                if missing(*_ONNX2TF) else None))
        if src.format == "keras":
            paths.append(ConversionPath(
                "tflite-converter",
                lambda: self._tflite_converter(request, (src.path, "Keras SavedModel"))))
        if pinned is not None:
            paths = [p for p in paths if p.name == pinned]
            if not paths:
                raise ConversionError(f"tflite path {pinned!r} does not apply to "
                                      f"{src.format} models")
        first_path(paths, details)
        return ConvertResult(request.out_path, details)

    # --- litert-torch ---------------------------------------------------------------------

    @staticmethod
    def _litert_unavailable(request: ConvertRequest) -> str | None:
        if request.precision == "fp16":
            return "litert-torch has no fp16 recipe here (the TFLiteConverter paths have)"
        if request.precision == "int8" and _recipe(request) == "static":
            # measured: litert-torch's PT2E static int8 turned the digits CNN into noise (cosine
            # 0.40, agreement 12%) where TFLiteConverter's full-integer kept it (0.99993)
            return ("static int8 goes through TFLiteConverter's full-integer quantizer (litert-"
                    "torch's PT2E static lost a CNN: cosine 0.40 where TFLiteConverter kept "
                    "0.99993)")
        if _envs.env_python(LITERT_ENV) is None:
            return _envs.missing_reason(LITERT_ENV)
        return None

    def _litert(self, request: ConvertRequest) -> dict[str, Any]:
        py = _envs.env_python(LITERT_ENV)
        assert py is not None
        recipe = {"fp32": "fp32", "int8-weights": "weights"}.get(
            request.precision, _recipe(request))
        job: dict[str, Any] = {"program": os.fspath(request.source.path),
                               "out": os.fspath(request.out_path),
                               "input_names": [s.name for s in request.source.inputs],
                               "recipe": recipe, "workdir": os.fspath(request.workdir)}
        job_path = request.workdir / "litert_job.json"
        job_path.write_text(json.dumps(job))
        script = Path(__file__).with_name("_litert_torch_child.py")
        env = {**os.environ, "PYTHONPATH": ""}  # nothing of this environment leaks in
        r = subprocess.run([os.fspath(py), os.fspath(script), os.fspath(job_path)],
                           capture_output=True, text=True, env=env)
        print(r.stderr[-20000:], flush=True)  # into the target's log
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise ConversionError(f"the litert-torch converter exited {r.returncode} without a "
                                  f"result: {r.stderr.strip()[-400:]}")
        out = json.loads(lines[-1])
        if not out.get("ok"):
            raise ConversionError(f"litert-torch: {out.get('error')}")
        return {**out["details"], "recipe": recipe if request.precision == "int8" else None}

    # --- ONNX -> onnx2tf -> SavedModel ----------------------------------------------------

    def _onnx2tf(self, request: ConvertRequest) -> tuple[Path, str]:
        onnx = require("onnx", extra="onnx")
        src = request.source
        # static shapes, constants folded: onnx2tf stops on a dynamic dimension ("Dimension -1
        # must be >= 0")
        onnx_path = static_onnx(src, request.workdir / "model.onnx",
                                request.options.get("opset"))
        model = onnx.load(os.fspath(onnx_path))
        rewritten = rewrite_reduce_l2(model)
        route = f"{exporter(src)} -> onnx2tf" if src.format == "torch" else "onnx2tf"
        if rewritten:
            route += f" (ReduceL2 -> Sqrt(ReduceSum(x*x)) x{rewritten})"
        if renamed := sanitize_node_names(model):
            route += f" ({renamed} node names made valid TensorFlow scope names)"
        onnx_path = request.workdir / "model.rewritten.onnx"
        onnx.save(model, os.fspath(onnx_path))
        sm = request.workdir / "saved_model"
        onnx2tf = require("onnx2tf", extra="tflite", purpose="converting ONNX to TensorFlow")
        onnx2tf.convert(
            input_onnx_file_path=os.fspath(onnx_path),
            output_folder_path=os.fspath(sm),
            keep_shape_absolutely_input_names=[s.name for s in src.inputs],
            output_signaturedefs=True,
            non_verbose=True,
        )
        restored = _source_output_layout(sm, src, request.workdir / "saved_model.layout")
        if restored is not None:
            sm, fixed = restored
            route += f" (outputs transposed back to the source's layout: {fixed})"
        return sm, route

    def _tflite_converter(self, request: ConvertRequest, saved: tuple[Path, str]
                          ) -> dict[str, Any]:
        tf = require("tensorflow", extra="tflite", purpose="the TFLite converter")
        sm, route = saved
        conv = tf.lite.TFLiteConverter.from_saved_model(os.fspath(sm))
        details: dict[str, Any] = {"route": f"{route} -> SavedModel -> TFLiteConverter"}
        recipe = _recipe(request) if request.precision == "int8" else None
        if request.precision == "fp16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
            details["quantizer"] = "float16 weights"
        elif request.precision == "int8-weights" or recipe == "dynamic":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            details["quantizer"] = "dynamic range (int8 weights, activations quantized at run time)"
        elif recipe == "static":
            if request.calibration is None:
                raise ConversionError("the static int8 recipe needs calibration data")
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
        details["recipe"] = recipe
        request.out_path.write_bytes(conv.convert())
        return details

    def inspect(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        litert = require("ai_edge_litert.interpreter", extra="tflite")
        it = litert.Interpreter(model_path=os.fspath(path))
        ops = Counter(op["op_name"] for op in it._get_ops_details())
        tensor_types = Counter(
            getattr(d["dtype"], "__name__", str(d["dtype"])) for d in it.get_tensor_details()
        )
        return {"ops": dict(sorted(ops.items())), "tensor_dtypes": dict(sorted(tensor_types.items()))}


def _channels_last(rank: int) -> list[int]:
    """onnx2tf's NCHW -> NHWC permutation for a tensor of `rank` (channels moved last)."""
    return [0, *range(2, rank), 1]


def _source_output_layout(sm: Path, src: Any, dest: Path) -> tuple[Path, str] | None:
    """onnx2tf moves channels last in the outputs as well (a detector's [N, 1, H, W] map comes
    out [N, H, W, 1]); the source's contract is its own layout. Where an output's shape is the
    source's permuted channels-last, a SavedModel whose signature transposes it back is written
    to `dest`: (its path, what was changed); None where every output already has the source's
    shape. An output of another shape stops the conversion (nothing could compare it)."""
    tf = require("tensorflow", extra="tflite", purpose="the TFLite converter")
    loaded = tf.saved_model.load(os.fspath(sm))
    sig = loaded.signatures["serving_default"]
    outs = sig.structured_outputs
    if {o.name for o in src.outputs} == set(outs):
        pairs = [(o.name, tuple(o.shape)) for o in src.outputs]
    else:  # onnx2tf's own names (output_0, output_1, ...), in the ONNX outputs' order
        keys = sorted(outs, key=lambda k: (len(k), k))
        pairs = [(k, tuple(o.shape)) for k, o in zip(keys, src.outputs, strict=False)]
    perms: dict[str, list[int]] = {}
    for name, ref in pairs:
        got = tuple(int(d) if d is not None else -1 for d in outs[name].shape)
        if got == ref or len(ref) < 3:
            continue
        if got == tuple(ref[i] for i in _channels_last(len(ref))):
            perms[name] = [0, len(ref) - 1, *range(1, len(ref) - 1)]  # channels first again
        else:
            raise ConversionError(f"onnx2tf made output {name!r} {list(got)}, the source's is "
                                  f"{list(ref)}: not a layout permutation edgeyard can undo")
    if not perms:
        return None
    args = sig.structured_input_signature[1]
    names = list(args)
    specs = [tf.TensorSpec(args[n].shape, args[n].dtype, name=n) for n in names]

    @tf.function(input_signature=specs)  # type: ignore[misc]
    def serve(*xs: Any) -> dict[str, Any]:
        outs = sig(**dict(zip(names, xs, strict=True)))
        return {k: tf.transpose(v, perms[k]) if k in perms else v for k, v in outs.items()}

    module = tf.Module()
    module.source, module.serve = loaded, serve  # the variables travel with it
    tf.saved_model.save(module, os.fspath(dest), signatures={"serving_default": serve})
    return dest, ", ".join(f"{k} {perms[k]}" for k in sorted(perms))


def _recipe(request: ConvertRequest) -> str:
    """The int8 recipe: the target's pinned one, else `static` (the build's candidate search
    passes each candidate explicitly)."""
    recipe = str(request.options.get("recipe", "static"))
    if recipe not in {r.name for r in RECIPES}:
        raise ConversionError(f"tflite has no int8 recipe {recipe!r}; its recipes: "
                              f"{', '.join(r.name for r in RECIPES)}")
    return recipe
