"""Optional toolchains: load on first use, fail with the install command.

`require()` is the only place a heavy module is imported by name; it is called inside the
functions that need the module, never at import time of an edgeyard module.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from types import ModuleType

from .errors import MissingExtra

# module -> extra that installs it
EXTRA_OF: dict[str, str] = {
    "torch": "torch",
    "onnx": "onnx",
    "onnxscript": "onnx",
    "onnxruntime": "onnx",
    "tensorflow": "tflite",
    "ai_edge_litert": "tflite",
    "onnx2tf": "tflite",
    "tf_keras": "tflite",
    "keras": "tflite",
    "executorch": "executorch",
    "torchao": "executorch",
    "coremltools": "coreml",
    "tvm": "tvm",
    "tvm_ffi": "tvm",
    "xgboost": "tvm",
    "cloudpickle": "tvm",
    "scipy": "gate",
    "cryptography": "sign",
    "opentelemetry": "telemetry",
    "onnx_graphsurgeon": "tflite",
    "tf2onnx": "keras",
    "sng4onnx": "tflite",
    "jsonschema": "schema",
    "fastapi": "server",
    "uvicorn": "server",
    "jinja2": "server",
    "altair": "server",
    "vl_convert": "server",
    "sqlalchemy": "server",
    "alembic": "server",
    "psycopg": "postgres",
    "prometheus_client": "server",
    "typer": "cli",
    "rich": "cli",
    "click": "cli",
}

# modules whose install command is not `pip install 'edgeyard[extra]'`
INSTALL_HINT: dict[str, str] = {
    # tf_keras asks for the full `tensorflow` distribution, a second copy next to tensorflow-cpu
    "tf_keras": "pip install --no-deps 'tf_keras==2.21.0'",
    "tensorrt": "TensorRT comes with NVIDIA's JetPack or TensorRT installers (PyPI only has "
                "placeholders that download from NVIDIA's own index)",
}


def install_command(module: str) -> str:
    top = module.split(".")[0]
    return INSTALL_HINT.get(top) or f"pip install 'edgeyard[{EXTRA_OF.get(top, top)}]'"

# distribution names whose exact versions go into a release's toolchain lock
LOCKED_DISTRIBUTIONS = (
    "numpy",
    "torch",
    "torchao",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "tensorflow-cpu",
    "tensorflow",
    "tf-keras",
    "keras",
    "ai-edge-litert",
    "onnx2tf",
    "tf2onnx",
    "executorch",
    "coremltools",
    "apache-tvm",
    "apache-tvm-ffi",
    "tensorrt",
    "scikit-learn",
)


def require(module: str, *, extra: str | None = None, purpose: str = "") -> ModuleType:
    """Import `module`, or raise `MissingExtra` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if importlib.util.find_spec(top) is not None and top == (exc.name or "").split(".")[0]:
            raise  # the package is there but broken: show the real error
        raise MissingExtra(
            module, extra or EXTRA_OF.get(top, top), purpose,
            INSTALL_HINT.get(top) if extra is None else None,
        ) from exc


def missing(*modules: str) -> list[str]:
    """The modules among `modules` that are not installed (checked without importing them)."""
    out = []
    for m in modules:
        try:
            spec = importlib.util.find_spec(m)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            out.append(m)
    return out


def version_of(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def toolchain_lock(distributions: tuple[str, ...] = LOCKED_DISTRIBUTIONS) -> dict[str, str]:
    """Exact installed versions of the converters and runtimes (absent ones are left out)."""
    lock = {}
    for d in distributions:
        v = version_of(d)
        if v is not None:
            lock[d] = v
    return lock


def import_ref(ref: str) -> object:
    """The object a `module:qualname` reference names (the registries' and entry points' form)."""
    module, _, qualname = ref.partition(":")
    obj: object = importlib.import_module(module)
    for part in qualname.split(".") if qualname else ():
        obj = getattr(obj, part)
    return obj
