"""The explicit table of backends, plus the `edgeyard.backends` entry-point group.

Built-in backends are listed by import path and imported on first lookup (their modules import
no toolchain at the top). Nothing is discovered by scanning subclasses.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading

from .._deps import import_ref
from ..errors import BackendNotFound, EdgeyardError
from ..profiles import Target
from .base import RECIPE_OPTIONS, Backend

ENTRY_POINT_GROUP = "edgeyard.backends"

BUILTIN: dict[str, str] = {
    "onnx": "edgeyard.backends.onnx:OnnxBackend",
    "tflite": "edgeyard.backends.tflite:TfliteBackend",
    "executorch": "edgeyard.backends.executorch:ExecutorchBackend",
    "coreml": "edgeyard.backends.coreml:CoremlBackend",
    "torchscript": "edgeyard.backends.torchscript:TorchscriptBackend",
    "tvm": "edgeyard.backends.tvm:TvmBackend",
    "tensorrt": "edgeyard.backends.tensorrt:TensorrtBackend",
}

_lock = threading.Lock()
_loaded: dict[str, Backend] = {}
_entry_points_scanned = False


def _instantiate(ref: str) -> Backend:
    obj = import_ref(ref)
    backend = obj() if isinstance(obj, type) else obj
    if not isinstance(backend, Backend):
        raise EdgeyardError(f"{ref} is not an edgeyard Backend (got {type(backend).__name__})")
    return backend


def _scan_entry_points() -> None:
    global _entry_points_scanned
    if _entry_points_scanned:
        return
    _entry_points_scanned = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in BUILTIN and ep.name not in _loaded:
            _loaded[ep.name] = _instantiate(ep.value)


def register_backend(backend: Backend, *, replace: bool = False) -> None:
    """Make `backend` available under `backend.name` (for profiles, builds and the runtime)."""
    if not isinstance(backend, Backend):
        raise TypeError(f"expected a Backend instance, got {type(backend).__name__}")
    with _lock:
        if not replace and (backend.name in _loaded or backend.name in BUILTIN):
            raise EdgeyardError(
                f"a backend named {backend.name!r} is already registered; pass replace=True "
                f"to override it"
            )
        _loaded[backend.name] = backend


def unregister_backend(name: str) -> None:
    with _lock:
        _loaded.pop(name, None)


def get_backend(name: str) -> Backend:
    with _lock:
        if name in _loaded:
            return _loaded[name]
        if name in BUILTIN:
            _loaded[name] = _instantiate(BUILTIN[name])
            return _loaded[name]
        _scan_entry_points()
        if name in _loaded:
            return _loaded[name]
    raise BackendNotFound(name, backend_names())


def backend_names() -> list[str]:
    with _lock:
        _scan_entry_points()
        return sorted(set(BUILTIN) | set(_loaded))


def backend_ref(backend: Backend) -> str:
    """`module:qualname` from which a child process re-creates `backend`."""
    cls = type(backend)
    return f"{cls.__module__}:{cls.__qualname__}"


def load_backend_ref(ref: str) -> Backend:
    return _instantiate(ref)


def check_target(target: Target) -> str | None:
    """What is wrong with `target` as a profile entry (unknown backend/precision/option), or None."""
    try:
        backend = get_backend(target.backend)
    except BackendNotFound as exc:
        return str(exc)
    if target.precision not in backend.precisions:
        return (
            f"backend {backend.name!r} does not offer precision {target.precision!r}; "
            f"it offers {', '.join(backend.precisions)}"
        )
    for key, value in target.options.items():
        if key in RECIPE_OPTIONS and backend.recipes(target.precision):
            continue  # checked below
        if key not in backend.options:
            known = ", ".join(backend.options) or "none"
            return f"backend {backend.name!r} has no option {key!r}; its options: {known}"
        types = backend.options[key]
        if not isinstance(value, types):
            want = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
            return f"option {key!r} of backend {backend.name!r} must be {want} (got {value!r})"
    if target.options.get("recipe_search", "first") not in ("first", "all"):
        return (f"option 'recipe_search' must be \"first\" or \"all\" (got "
                f"{target.options['recipe_search']!r})")
    names = [r.name for r in backend.recipes(target.precision)]
    offered = ", ".join(names) or "none (it has one way only)"
    asked = target.options.get("recipes", [])
    if "recipe" in target.options:
        asked = [target.options["recipe"]]
    if not isinstance(asked, list) or (not asked and "recipes" in target.options):
        return f"option 'recipes' must be a non-empty list of recipe names (got {asked!r})"
    for name in asked:
        if name not in names:
            return (f"backend {backend.name!r} has no {target.precision} recipe {name!r}; its "
                    f"{target.precision} recipes: {offered}")
    return None
