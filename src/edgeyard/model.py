"""Model sources: a torch module, an ONNX file, or a Keras model, turned into a file + I/O specs.

`prepare()` writes the source into the build's work directory in a form every converter child
process can read without the user's Python code (a `torch.export` program, an ONNX file, a
`.keras` file), records input/output specs and a content hash, and keeps a reference predictor
(the source model itself) that verification compares every artifact against.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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

    def predict(self, inputs: Arrays) -> list[np.ndarray]:
        """The source model's outputs on `inputs`, in chunks of the model's batch size."""
        return run_batched(self._predict, inputs, self.source.batch)


def detect_format(model: Any) -> str:
    """'torch', 'onnx' or 'keras' for a model object or file, without importing frameworks."""
    if isinstance(model, (str, os.PathLike)):
        suffix = Path(model).suffix.lower()
        formats = {".onnx": "onnx", ".pt2": "torch", ".keras": "keras"}
        if suffix not in formats:
            raise ModelError(
                f"cannot build from {os.fspath(model)!r}: expected a .onnx file, a .pt2 file "
                f"(torch.export.save) or a .keras file"
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


def _prepare_keras(model: Any, example_inputs: Any, workdir: Path) -> PreparedModel:
    keras = require("keras", extra="tflite", purpose="building from a Keras model")
    dest = workdir / "source.keras"
    if isinstance(model, (str, os.PathLike)):
        try:
            model = keras.models.load_model(os.fspath(model))
        except Exception as exc:
            raise ModelError(f"could not load Keras model {os.fspath(model)!r}: {exc}") from None
    model.save(os.fspath(dest))
    if example_inputs is not None:
        ex = as_arrays(example_inputs)
    else:
        ex = tuple(
            np.zeros([d if d is not None else 1 for d in t.shape], dtype=str(t.dtype))
            for t in model.inputs
        )
    names = [getattr(t, "name", f"input_{i}").split(":")[0] for i, t in enumerate(model.inputs)]
    inputs = tuple(
        TensorSpec(n, tuple(a.shape), a.dtype.name) for n, a in zip(names, ex, strict=True)
    )

    def predict(arrays: Arrays) -> list[np.ndarray]:
        out = model(list(arrays) if len(arrays) > 1 else arrays[0], training=False)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [np.asarray(o) for o in outs]

    outputs = _output_specs(predict(ex))
    h = hashlib.sha256(model.to_json().encode())
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return PreparedModel(SourceModel("keras", dest, inputs, outputs, h.hexdigest()), predict)
