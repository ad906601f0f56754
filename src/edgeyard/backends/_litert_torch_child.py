"""Runs INSIDE the litert-torch environment (see `edgeyard._envs`), not in edgeyard's own: it
imports only torch, litert_torch, ai_edge_quantizer, numpy and the standard library.

    <litert env python> _litert_torch_child.py JOB.json

JOB: {"program": .pt2 (torch.export.save, same torch version), "out": .tflite path,
"input_names": [...], "recipe": "fp32" | "weights" | "dynamic", "workdir": scratch}.
Prints one JSON line: {"ok", "details"} or {"ok": false, "error"}.

Recipes (measured on a trained MiniLM sentence encoder, cosine against torch min / mean):
- fp32: litert_torch.convert, int64 inputs kept (enable_x64);
- weights: ai-edge-quantizer weight_only_wi8_afp32 (int8 weights dequantized at load);
- dynamic: ai-edge-quantizer dynamic_wi8_afp32: int8 weights, activations quantized per token at
  run time by XNNPACK (0.997 / 0.998, the fastest int8 of every runtime tried);
Static int8 is not made here: litert-torch's PT2E static turned the digits CNN into noise
(cosine 0.40) where TFLiteConverter's full-integer quantizer kept it (0.99993), so the backend
sends it through the TFLiteConverter path.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback


def _named(torch, module, names):
    class Named(torch.nn.Module):
        """Keyword inputs, so the LiteRT signature carries the source's input names."""

        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, **kw):
            return self.inner(*(kw[n] for n in names))

    return Named()


def convert(job):
    import litert_torch
    import torch

    ep = torch.export.load(job["program"])
    names = job["input_names"]
    args = tuple(torch.zeros(a.shape, dtype=a.dtype) for a in ep.example_inputs[0])
    kwargs = dict(zip(names, args, strict=True))
    recipe = job["recipe"]
    details = {"converter": f"litert-torch {getattr(litert_torch, '__version__', '')}".strip()}
    module = _named(torch, ep.module(), names)
    t0 = time.perf_counter()
    model = litert_torch.convert(module, (), kwargs, enable_x64=True)
    if recipe == "fp32":
        model.export(job["out"])
    else:
        from ai_edge_quantizer import quantizer as aeq
        from ai_edge_quantizer import recipe as recipes

        fp32 = os.path.join(job["workdir"], "litert.fp32.tflite")
        model.export(fp32)
        rec = {"weights": recipes.weight_only_wi8_afp32,
               "dynamic": recipes.dynamic_wi8_afp32}[recipe]()
        q = aeq.Quantizer(fp32)
        q.load_quantization_recipe(rec)
        q.quantize().export_model(job["out"], overwrite=True)
        details["quantizer"] = {
            "weights": "ai-edge-quantizer weight_only_wi8_afp32 (int8 weights, float compute)",
            "dynamic": "ai-edge-quantizer dynamic_wi8_afp32 (int8 weights, activations "
                       "quantized at run time)"}[recipe]
    details["convert_seconds"] = round(time.perf_counter() - t0, 2)
    return details


def main(argv):
    job = json.loads(open(argv[1]).read())
    try:
        details = convert(job)
    except BaseException as exc:
        traceback.print_exc()
        first = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else ""
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {first}"}), flush=True)
        return 1
    print(json.dumps({"ok": True, "details": details}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
