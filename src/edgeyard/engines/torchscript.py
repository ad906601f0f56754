"""PyTorch Mobile lite-interpreter engine (`.ptl`, loaded with `_load_for_lite_interpreter`)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence

import numpy as np

from .._deps import require
from .base import Engine, TensorSpec

IO_FILE = "edgeyard_io.json"


class TorchscriptEngine(Engine):
    format = "torchscript"

    def _open(self) -> None:
        self._torch = require("torch", extra="torch", purpose="running .ptl")
        self._torch.set_num_threads(self.threads)
        from torch.jit.mobile import _load_for_lite_interpreter

        self._module = _load_for_lite_interpreter(self.path)
        with zipfile.ZipFile(self.path) as z:
            entry = next((n for n in z.namelist() if n.endswith("extra/" + IO_FILE)), None)
            io = json.loads(z.read(entry)) if entry else {"inputs": [], "outputs": []}
        # traced with the build's example inputs: shapes (batch included) are fixed
        self.inputs = tuple(TensorSpec.from_dict(d) for d in io["inputs"])
        self.outputs = tuple(TensorSpec.from_dict(d) for d in io["outputs"])

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        t = self._torch
        with t.no_grad():
            out = self._module(*[t.from_numpy(np.ascontiguousarray(x)) for x in inputs])
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().numpy().copy() for o in outs]

    def close(self) -> None:
        self._module = None
