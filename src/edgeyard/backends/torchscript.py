"""TorchScript for the PyTorch Mobile lite interpreter: torch.export program -> trace -> .ptl.

The exported program's module is traced with the build's example inputs (fixed shapes, like
the other on-device targets), `optimize_for_mobile` is tried, and the module is saved for the
lite interpreter with the model's I/O specs inside the archive (`extra/edgeyard_io.json`), so
the engine knows names, shapes and dtypes without the source model.

Measured on torch 2.13.0 (the CPU wheel): `torch.jit.trace` works but warns that TorchScript is
deprecated; `optimize_for_mobile` raises "Mobile optimization only available with XNNPACK ...
Please build with USE_XNNPACK=1", so the unoptimized module is saved and the release records
why (`details["optimize_for_mobile"]`). Dynamic int8 (`quantize_dynamic`) needs `nn.Linear`
modules, which a torch.export program no longer has (its layers are aten calls): fp32 only.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from typing import Any, ClassVar

from .._deps import require
from .base import Backend, ConvertRequest, ConvertResult

IO_FILE = "edgeyard_io.json"


class TorchscriptBackend(Backend):
    name = "torchscript"
    artifact_suffix = ".ptl"
    engine_format = "torchscript"
    source_formats = ("torch",)
    precisions = ("fp32",)
    convert_modules: ClassVar[dict[str, tuple[str, ...]]] = {"torch": ("torch",)}
    runtime_modules = ("torch",)
    toolchain = ("torch",)

    def convert(self, request: ConvertRequest) -> ConvertResult:
        torch = require("torch", extra="torch")
        ep = torch.export.load(os.fspath(request.source.path))
        args = tuple(torch.from_numpy(a) for a in request.source.example_inputs())
        details: dict[str, Any] = {"method": "torch.jit.trace of the torch.export program"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer warnings
            traced = torch.jit.trace(ep.module(), args)
            traced.eval()
            try:
                from torch.utils.mobile_optimizer import optimize_for_mobile

                traced = optimize_for_mobile(traced)
                details["optimize_for_mobile"] = "applied"
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()[0][:300]
                details["optimize_for_mobile"] = f"not applied: {first}"
            # the traced shapes are the example's: fixed, batch included
            io = {"inputs": [{**s.to_dict(), "shape": list(a.shape)}
                             for s, a in zip(request.source.inputs, args, strict=True)],
                  "outputs": [s.to_dict() for s in request.source.outputs]}
            traced._save_for_lite_interpreter(os.fspath(request.out_path),
                                              _extra_files={IO_FILE: json.dumps(io)})
        return ConvertResult(request.out_path, details)

    def inspect(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            io: dict[str, Any] = next(
                (json.loads(z.read(n)) for n in names if n.endswith("extra/" + IO_FILE)), {})
        return {**io, "archive_entries": len(names),
                "bytecode": any(n.endswith("bytecode.pkl") for n in names)}
