"""Model sources: a torch module, an ONNX file, or a Keras model, turned into a file + I/O specs.

`prepare()` writes the source into the build's work directory in a form every converter child
process can read without the user's Python code (a `torch.export` program, an ONNX file, a
TensorFlow SavedModel for Keras), records input/output specs and a content hash, and keeps a
reference predictor (the source model itself) that verification compares every artifact against.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._deps import require
from .data import Arrays, as_arrays, run_batched
from .engines.base import TensorSpec
from .errors import ModelError

FORMATS = ("torch", "onnx", "keras")


@dataclass(frozen=True)
class SourceModel:
    """What a converter receives: a file of `format` and the model's I/O contract."""

    format: str
    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sha256: str

    @property
    def batch(self) -> int | None:
        return self.inputs[0].batch if self.inputs else None

    def example_inputs(self) -> Arrays:
        """Zero arrays of the input shapes (dynamic dimensions set to 1)."""
        return tuple(
            np.zeros([d if d >= 0 else 1 for d in s.shape], dtype=s.dtype) for s in self.inputs
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "path": str(self.path),
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SourceModel:
        return cls(
            d["format"],
            Path(d["path"]),
            tuple(TensorSpec.from_dict(s) for s in d["inputs"]),
            tuple(TensorSpec.from_dict(s) for s in d["outputs"]),
            d["sha256"],
        )


@dataclass
class PreparedModel:
    source: SourceModel
    _predict: Callable[[Arrays], Sequence[np.ndarray]]
    # what prepare() changed to capture the model (an attention implementation swapped for an
    # export-friendly one, a decomposition...): recorded in the manifest's model.changes
    changes: list[str] = field(default_factory=list)

    def predict(self, inputs: Arrays) -> list[np.ndarray]:
        """The source model's outputs on `inputs`, in chunks of the model's batch size."""
        return run_batched(self._predict, inputs, self.source.batch)


def detect_format(model: Any) -> str:
    """'torch', 'onnx' or 'keras' for a model object or file, without importing frameworks."""
    if isinstance(model, (str, os.PathLike)):
        if _is_saved_model(Path(model)):
            return "keras"
        suffix = Path(model).suffix.lower()
        formats = {".onnx": "onnx", ".pt2": "torch", ".keras": "keras"}
        if suffix not in formats:
            raise ModelError(
                f"cannot build from {os.fspath(model)!r}: expected a .onnx file, a .pt2 file "
                f"(torch.export.save), a .keras file or a SavedModel directory"
            )
        return formats[suffix]
    mods = [c.__module__ for c in type(model).__mro__]
    if any(m.startswith("torch") for m in mods):
        return "torch"
    if any(m.startswith(("keras", "tf_keras", "tensorflow")) for m in mods):
        return "keras"
    raise ModelError(
        f"cannot build from a {type(model).__module__}.{type(model).__name__}: expected a "
        f"torch.nn.Module, a torch.export.ExportedProgram, a Keras model or an .onnx path"
    )


def prepare(model: Any, example_inputs: Any, workdir: Path) -> PreparedModel:
    """Serialize `model` into `workdir` and return it with its reference predictor."""
    workdir.mkdir(parents=True, exist_ok=True)
    fmt = detect_format(model)
    if fmt == "onnx":
        return _prepare_onnx(Path(model), example_inputs, workdir)
    if fmt == "torch":
        return _prepare_torch(model, example_inputs, workdir)
    return _prepare_keras(model, example_inputs, workdir)


# --- torch -------------------------------------------------------------------------------------


def _torch_hash(ep: Any) -> str:
    h = hashlib.sha256(str(ep.graph_module.code).encode())
    for name, t in sorted(ep.state_dict.items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    for name, t in sorted(getattr(ep, "constants", {}).items()):
        if hasattr(t, "numpy"):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _prepare_torch(model: Any, example_inputs: Any, workdir: Path) -> PreparedModel:
    torch = require("torch", purpose="building from a PyTorch model")
    if isinstance(model, (str, os.PathLike)):
        try:
            ep = torch.export.load(os.fspath(model))
        except Exception as exc:
            raise ModelError(f"could not read {os.fspath(model)!r} as a torch.export program: "
                             f"{type(exc).__name__}: {exc}") from None
        eager = None
    elif isinstance(model, torch.export.ExportedProgram):
        ep, eager = model, None
    else:
        if example_inputs is None:
            raise ModelError("a torch model needs example_inputs=(x,) to fix its input shapes")
        model.eval()
        args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in as_arrays(example_inputs))
        try:
            ep = torch.export.export(model, args)
        except Exception as exc:
            raise ModelError(
                f"torch.export could not capture the model ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); data-dependent control flow "
                f"must be rewritten with torch.cond or removed before deployment"
            ) from None
        eager = model
    path = workdir / "source.pt2"
    torch.export.save(ep, os.fspath(path))
    names = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    fake_args = ep.example_inputs[0] if ep.example_inputs else None
    if fake_args is None:
        raise ModelError("the exported program carries no example inputs; re-export it with args")
    inputs = tuple(
        TensorSpec(n, tuple(a.shape), str(a.dtype).removeprefix("torch."))
        for n, a in zip(names, fake_args, strict=True)
    )
    fn = eager if eager is not None else ep.module()

    def predict(arrays: Arrays) -> list[np.ndarray]:
        with torch.no_grad():
            out = fn(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().cpu().numpy() for o in outs]

    example = tuple(np.zeros(s.shape, dtype=s.dtype) for s in inputs)
    outs = predict(example)
    outputs = _output_specs(outs)
    return PreparedModel(SourceModel("torch", path, inputs, outputs, _torch_hash(ep)), predict)


def _output_specs(outs: Sequence[np.ndarray]) -> tuple[TensorSpec, ...]:
    names = ["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]
    return tuple(TensorSpec(n, tuple(o.shape), o.dtype.name) for n, o in zip(names, outs, strict=True))


# --- onnx --------------------------------------------------------------------------------------

_ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 7: "int64", 6: "int32", 3: "int8",
                2: "uint8", 9: "bool"}


def _prepare_onnx(path: Path, example_inputs: Any, workdir: Path) -> PreparedModel:
    onnx = require("onnx", purpose="reading .onnx models")
    if not path.is_file():
        raise ModelError(f"ONNX model {str(path)!r} does not exist")
    try:
        proto = onnx.load(os.fspath(path))
        onnx.checker.check_model(proto)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{str(path)!r} is not a valid ONNX model ({type(exc).__name__}: {first}); "
            f"re-export it, and check the file was not truncated"
        ) from None
    dest = workdir / "source.onnx"
    onnx.save(proto, os.fspath(dest), save_as_external_data=False)
    init = {i.name for i in proto.graph.initializer}
    graph_inputs = [i for i in proto.graph.input if i.name not in init]
    given = as_arrays(example_inputs) if example_inputs is not None else None
    specs = []
    for k, inp in enumerate(graph_inputs):
        tt = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        if given is not None and k < len(given):
            dims = list(given[k].shape)
        dims = [d if d >= 0 else 1 for d in dims]  # artifacts get static shapes
        specs.append(TensorSpec(inp.name, tuple(dims), _ONNX_DTYPES.get(tt.elem_type, "float32")))
    ort = require("onnxruntime", purpose="running the source .onnx model")
    try:
        session = ort.InferenceSession(os.fspath(dest), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"ONNX Runtime cannot load {str(path)!r}: {exc}") from None
    names = [s.name for s in specs]

    def predict(arrays: Arrays) -> list[np.ndarray]:
        return list(session.run(None, dict(zip(names, arrays, strict=True))))

    example = tuple(np.zeros(s.shape, dtype=s.dtype) for s in specs)
    outs = predict(example)
    out_names = [o.name for o in session.get_outputs()]
    outputs = tuple(
        TensorSpec(n, tuple(o.shape), o.dtype.name) for n, o in zip(out_names, outs, strict=True)
    )
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    return PreparedModel(SourceModel("onnx", dest, tuple(specs), outputs, digest), predict)


# --- keras -------------------------------------------------------------------------------------


def _is_saved_model(path: Path) -> bool:
    return path.is_dir() and (path / "saved_model.pb").exists()


def _prepare_keras(model: Any, example_inputs: Any, workdir: Path) -> PreparedModel:
    """Any Keras model (functional, sequential, subclassed, custom layers) or a SavedModel
    directory, written as a SavedModel: the graph and weights without the user's Python classes,
    so the converter children (and other machines) can load it. A `.keras` file needs its classes
    to load, so it is read here, in the user's process, and exported."""
    tf = require("tensorflow", extra="tflite", purpose="building from a Keras model")
    dest = workdir / "source.savedmodel"
    shutil.rmtree(dest, ignore_errors=True)
    given = as_arrays(example_inputs) if example_inputs is not None else None
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if _is_saved_model(path):
            shutil.copytree(path, dest)
            model = None
        else:
            keras = require("keras", extra="tflite")
            try:
                model = keras.models.load_model(os.fspath(path))
            except Exception as exc:
                raise ModelError(
                    f"could not load Keras model {os.fspath(path)!r} ({type(exc).__name__}: "
                    f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}); a "
                    f"model with custom classes loads only where they are importable: pass the "
                    f"model object, or a SavedModel directory (model.export(dir))") from None
    if model is not None:
        _export_keras(tf, model, given, dest)
    loaded = tf.saved_model.load(os.fspath(dest))
    serve = getattr(loaded, "serve", None) or loaded.signatures["serving_default"]
    specs = _flat_specs(tf, serve)
    if not specs:
        raise ModelError("the Keras model's serving function takes no tensor inputs")
    if given is not None:
        if len(given) != len(specs):
            raise ModelError(f"example_inputs has {len(given)} array(s); the Keras model takes "
                             f"{len(specs)} input(s) ({', '.join(n for n, _ in specs)})")
        shapes = [tuple(a.shape) for a in given]
    else:
        shapes = [tuple(1 if d is None else d for d in spec.shape) for _, spec in specs]
    inputs = tuple(TensorSpec(n, shape, spec.dtype.as_numpy_dtype().dtype.name)
                   for (n, spec), shape in zip(specs, shapes, strict=True))
    fn = model

    def predict(arrays: Arrays) -> list[np.ndarray]:
        if fn is not None:
            out = fn(list(arrays) if len(arrays) > 1 else arrays[0], training=False)
        else:
            out = _call_serve(serve, arrays, len(specs))
        if isinstance(out, dict):
            out = [out[k] for k in sorted(out)]
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [np.asarray(o) for o in outs]

    example = tuple(np.zeros(s.shape, dtype=s.dtype) for s in inputs)
    outs = predict(example)
    # the names the SavedModel's serving signature gives its outputs (and every artifact too)
    outputs = tuple(TensorSpec(f"output_{i}", tuple(o.shape), o.dtype.name)
                    for i, o in enumerate(outs))
    return PreparedModel(SourceModel("keras", dest, inputs, outputs, _keras_hash(model, dest)),
                         predict)


def _export_keras(tf: Any, model: Any, given: Arrays | None, dest: Path) -> None:
    """model.export(dest); a subclassed model (no `inputs`) gets a signature from the examples."""
    try:
        declared = model.inputs
    except AttributeError:  # a subclassed keras.Model: its inputs are what it is called with
        declared = None
    signature = None
    if not declared:
        if given is None:
            raise ModelError(f"a subclassed Keras model ({type(model).__name__}) declares no "
                             f"inputs: pass example_inputs=(x,) to fix them")
        if not model.built:
            model(list(given) if len(given) > 1 else given[0], training=False)
        specs = [tf.TensorSpec((None, *a.shape[1:]), tf.as_dtype(a.dtype)) for a in given]
        signature = [specs] if len(specs) > 1 else specs
    try:
        model.export(os.fspath(dest), format="tf_saved_model", verbose=False,
                     input_signature=signature)
    except Exception as exc:
        raise ModelError(f"could not export the Keras model as a SavedModel "
                         f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]})"
                         ) from None


def _flat_specs(tf: Any, serve: Any) -> list[tuple[str, Any]]:
    fns = getattr(serve, "concrete_functions", None)
    concrete = fns[0] if fns else serve
    args, kwargs = concrete.structured_input_signature
    flat = tf.nest.flatten((args, kwargs))
    return [(s.name or f"input_{i}", s) for i, s in enumerate(flat)
            if isinstance(s, tf.TensorSpec)]


def _call_serve(serve: Any, arrays: Arrays, n: int) -> Any:
    fns = getattr(serve, "concrete_functions", None)
    args, _ = (fns[0] if fns else serve).structured_input_signature
    if len(args) == 1 and isinstance(args[0], (list, tuple)):  # one list argument
        return serve(list(arrays))
    return serve(*arrays)


def _keras_hash(model: Any, dest: Path) -> str:
    h = hashlib.sha256()
    if model is None:  # a SavedModel: its graph and variables, file by file
        for f in sorted(p for p in dest.rglob("*") if p.is_file()):
            h.update(f.relative_to(dest).as_posix().encode())
            h.update(f.read_bytes())
        return h.hexdigest()
    try:
        h.update(model.to_json().encode())
    except Exception:  # a subclassed model without get_config: its class and weights
        h.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()
