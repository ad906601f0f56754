"""The table of engines (artifact format -> the class that runs it), plus the `edgeyard.engines`
entry-point group.

One lookup serves the build (which verifies every artifact with its engine) and the device
(the fallback runtime): a format that loads at build time loads the same way on the device.
Built-in engines are listed by import path and imported on first use (each module imports its
runtime only when an engine is built). A third-party package adds one with an entry point:

    [project.entry-points."edgeyard.engines"]
    myformat = "my_package.engine:MyEngine"

or in process with `register_engine("myformat", MyEngine)`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
from collections.abc import Sequence

from .._deps import import_ref
from ..errors import EdgeyardError
from .base import Engine

ENTRY_POINT_GROUP = "edgeyard.engines"

# artifact format -> "module:class"
BUILTIN: dict[str, str] = {
    "onnx": "edgeyard.engines.onnx:OnnxEngine",
    "tflite": "edgeyard.engines.tflite:TfliteEngine",
    "executorch": "edgeyard.engines.executorch:ExecutorchEngine",
    "torchscript": "edgeyard.engines.torchscript:TorchscriptEngine",
    "coreml": "edgeyard.engines.coreml:CoremlEngine",
    "tvm": "edgeyard.engines.tvm:TvmEngine",
    "tensorrt": "edgeyard.engines.tensorrt:TensorrtEngine",
}

_lock = threading.Lock()
_registered: dict[str, type[Engine] | str] = {}
_scanned = False


class EngineNotFound(EdgeyardError, KeyError):
    def __init__(self, fmt: str, available: list[str]) -> None:
        super().__init__(f"no engine for artifact format {fmt!r}; available: "
                         f"{', '.join(available)} (a package adds one with an "
                         f"{ENTRY_POINT_GROUP!r} entry point)")
        self.format = fmt

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register_engine(fmt: str, engine: type[Engine] | str, *, replace: bool = False) -> None:
    """Run artifacts of `fmt` with `engine` (an Engine subclass, or "module:Class")."""
    if isinstance(engine, type) and not issubclass(engine, Engine):
        raise TypeError(f"expected an edgeyard Engine subclass, got {engine.__name__}")
    with _lock:
        if not replace and (fmt in _registered or fmt in BUILTIN):
            raise EdgeyardError(f"an engine for format {fmt!r} is already registered; pass "
                                f"replace=True to override it")
        _registered[fmt] = engine


def unregister_engine(fmt: str) -> None:
    with _lock:
        _registered.pop(fmt, None)


def _scan_entry_points() -> None:
    global _scanned
    if _scanned:
        return
    _scanned = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in BUILTIN:
            _registered.setdefault(ep.name, ep.value)


def engine_formats() -> list[str]:
    with _lock:
        _scan_entry_points()
        return sorted(set(BUILTIN) | set(_registered))


def engine_class(fmt: str) -> type[Engine]:
    """The Engine subclass that runs artifacts of `fmt`."""
    with _lock:
        ref = _registered.get(fmt) or BUILTIN.get(fmt)
        if ref is None:
            _scan_entry_points()
            ref = _registered.get(fmt)
    if ref is None:
        raise EngineNotFound(fmt, engine_formats())
    if isinstance(ref, type):
        return ref
    obj = import_ref(ref)
    if not (isinstance(obj, type) and issubclass(obj, Engine)):
        raise EdgeyardError(f"{ref} (engine for {fmt!r}) is not an edgeyard Engine subclass")
    return obj


def load_engine(
    format: str,
    path: str | os.PathLike[str],
    threads: int = 1,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
) -> Engine:
    """Load an artifact of `format` ('onnx', 'tflite', 'executorch', ...) with its runtime.

    `input_names` / `output_names` give the source model's I/O order; `predict` then takes and
    returns arrays in that order whatever order the format stores."""
    return engine_class(format)(path, threads=threads, input_names=input_names,
                                output_names=output_names)
