"""ExecuTorch engine (the `executorch.runtime` Python bindings; XNNPACK-delegated programs)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from .._deps import require
from .base import Engine, TensorSpec

# c10::ScalarType codes, as the bindings report them (older builds give the enum's name)
_ET_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16",
              6: "float32", 7: "float64", 11: "bool",
              "Byte": "uint8", "Char": "int8", "Short": "int16", "Int": "int32", "Long": "int64",
              "Half": "float16", "Float": "float32", "Double": "float64", "Bool": "bool"}


def _spec(i: int, prefix: str, meta: object) -> TensorSpec:
    raw = meta.dtype()  # type: ignore[attr-defined]
    key: int | str = raw if isinstance(raw, int) else str(raw).rsplit(".", 1)[-1]
    return TensorSpec(f"{prefix}_{i}", tuple(meta.sizes()), _ET_DTYPES.get(key, str(key)))  # type: ignore[attr-defined]


class ExecutorchEngine(Engine):
    format = "executorch"

    def _open(self) -> None:
        rt_mod = require("executorch.runtime", extra="executorch", purpose="running .pte")
        # the Python bindings take and return torch tensors
        self._torch = require("torch", extra="executorch", purpose="running .pte")
        _size_pool(self.threads)
        runtime = rt_mod.Runtime.get()
        self._program = runtime.load_program(self.path)
        self._method = self._program.load_method("forward")
        meta = self._method.metadata
        self.inputs = tuple(
            _spec(i, "input", meta.input_tensor_meta(i)) for i in range(meta.num_inputs())
        )
        self.outputs = tuple(
            _spec(i, "output", meta.output_tensor_meta(i)) for i in range(meta.num_outputs())
        )

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        t = self._torch
        args = [t.from_numpy(np.ascontiguousarray(x)) for x in inputs]
        with _running():
            out = self._method.execute(args)
        return [o.numpy().copy() for o in out]

    def close(self) -> None:
        self._method = None
        self._program = None


# XNNPACK's thread pool is one per process and `_unsafe_reset_threadpool` replaces it under any
# method that runs on it (a crash: a release swapped in while the old one still answers, or two
# runtimes in one app). The pool is resized only while no ExecuTorch call runs, under one lock.
_POOL_LOCK = threading.Lock()
_POOL: dict[str, int | None] = {"size": None, "running": 0}


def _size_pool(threads: int) -> None:
    with _POOL_LOCK:
        if _POOL["size"] == threads or _POOL["running"]:
            return  # the right size already, or in use: keep it as it is
        try:  # absent in some builds
            from executorch.extension.pybindings.portable_lib import (  # type: ignore[import-not-found]
                _unsafe_reset_threadpool,
            )

            _unsafe_reset_threadpool(threads)
            _POOL["size"] = threads
        except (ImportError, AttributeError, RuntimeError):
            pass


@contextlib.contextmanager
def _running() -> Iterator[None]:
    with _POOL_LOCK:
        _POOL["running"] = (_POOL["running"] or 0) + 1
    try:
        yield
    finally:
        with _POOL_LOCK:
            _POOL["running"] = (_POOL["running"] or 1) - 1
