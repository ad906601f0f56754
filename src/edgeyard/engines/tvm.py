"""Apache TVM engine: a Relax VM shared library (`.so`) run with `relax.VirtualMachine` on CPU.

I/O specs (source model order, fixed shapes) come from the library's `edgeyard_io` function,
which `edgeyard.backends.tvm` compiles into it. Threads: TVM's runtime thread pool is
process-wide and sized from `TVM_NUM_THREADS` when it starts; the engine sets the variable and
calls `runtime.config_threadpool`. Measured (apache-tvm 0.27): in a fresh process `threads`
gives that many workers; a pool already started by an earlier engine was not grown by a later,
larger `threads`, so in one process the first TVM engine's count holds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from .._deps import require
from .base import Engine, TensorSpec, order_by_names

IO_FUNC = "edgeyard_io"


class TvmEngine(Engine):
    format = "tvm"

    def _open(self) -> None:
        os.environ["TVM_NUM_THREADS"] = str(self.threads)
        tvm = require("tvm", extra="tvm", purpose="running TVM .so artifacts")
        from tvm import relax

        # mode 1 ("big" cores: all of them on a homogeneous CPU), `threads` workers
        tvm.get_global_func("runtime.config_threadpool")(1, self.threads)
        self._tvm = tvm
        self._vm = relax.VirtualMachine(tvm.runtime.load_module(self.path), tvm.cpu())
        try:
            io = json.loads(str(self._vm[IO_FUNC]()))
        except Exception as exc:
            raise ValueError(f"{self.path} has no {IO_FUNC} function: not an edgeyard TVM "
                             f"artifact ({type(exc).__name__}: {exc})") from None
        inputs = [TensorSpec.from_dict(d) for d in io["inputs"]]
        self.inputs = tuple(s for _, s in order_by_names([(s.name, s) for s in inputs],
                                                         self.input_names))
        # the VM takes its arguments in the stored order; predict's follow `self.inputs`
        self._arg_order = [inputs.index(s) for s in self.inputs]
        self.outputs = tuple(TensorSpec.from_dict(d) for d in io["outputs"])
        self._main = self._vm["main"]

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(inputs) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} inputs, got {len(inputs)}")
        args: list[object] = [None] * len(inputs)
        for given, stored in enumerate(self._arg_order):
            args[stored] = self._tensor(np.ascontiguousarray(inputs[given],
                                                             dtype=self.inputs[given].dtype))
        out = self._main(*args)
        outs = [out] if isinstance(out, self._tvm.runtime.Tensor) else list(out)
        # zero-copy views: each keeps its VM tensor alive, so the VM cannot reuse that memory
        return [np.from_dlpack(o) for o in outs]

    def _tensor(self, a: np.ndarray) -> object:
        # the kernels assume 64-byte aligned buffers; an aligned array is passed without a copy
        # (tvm.runtime.tensor copies: 35 µs of a ~100 µs digits-CNN call on this machine)
        if a.ctypes.data % 64 == 0 and a.flags.writeable:
            return self._tvm.runtime.from_dlpack(a)
        return self._tvm.runtime.tensor(a)

    def close(self) -> None:
        self._main = None
        self._vm = None
