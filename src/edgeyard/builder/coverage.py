"""Calibration coverage: does the calibration data reach what the evaluation data reaches?

An int8 quantizer fixes each tensor's range from the calibration data; values the device later
sees beyond that range are clipped to the int8 limits. This compares, on the source model, the
range each input, output and (for torch sources) each intermediate activation reaches on the
calibration data with the evaluation data's, and reports every tensor where more than
`SHARE` of the evaluation values fall outside the calibrated range or the range is exceeded by
more than `MARGIN` of its width. Torch activations come from running the `torch.export` graph
node by node (`torch.fx.Interpreter`) on up to `MAX_SAMPLES` samples of each set.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..data import Arrays
from ..model import PreparedModel

SHARE = 0.001  # of the evaluation values outside the calibrated range
MARGIN = 0.10  # of the calibrated range's width, beyond either end
MAX_SAMPLES = 300
TOP = 10


def _range_report(name: str, cal: np.ndarray, ev: np.ndarray) -> dict[str, Any]:
    lo, hi = float(cal.min()), float(cal.max())
    e_lo, e_hi = float(ev.min()), float(ev.max())
    width = max(hi - lo, 1e-12)
    outside = float(np.mean((ev < lo) | (ev > hi)))
    beyond = max(lo - e_lo, e_hi - hi, 0.0) / width
    return {"tensor": name, "calibration_range": [lo, hi], "evaluation_range": [e_lo, e_hi],
            "outside_share": round(outside, 6), "beyond_range": round(beyond, 4),
            "covered": outside <= SHARE and beyond <= MARGIN}


def _torch_activations(path: str, inputs: Arrays, n: int, step: int) -> dict[str, list[np.ndarray]]:
    """Every floating-point intermediate tensor of the exported graph, flattened, per batch of
    `step` samples (the program's fixed batch size) over the first `n` samples."""
    import torch
    from torch.fx import Interpreter

    gm = torch.export.load(path).module()
    seen: dict[str, list[np.ndarray]] = {}

    class Recorder(Interpreter):
        def run_node(self, node: Any) -> Any:
            out = super().run_node(node)
            if node.op == "call_function" and isinstance(out, torch.Tensor) \
                    and out.is_floating_point():
                seen.setdefault(node.name, []).append(out.detach().reshape(-1).numpy().copy())
            return out

    rec = Recorder(gm)
    with torch.no_grad():
        for i in range(0, min(inputs[0].shape[0], n) - step + 1, step):
            rec.run(*(torch.from_numpy(np.ascontiguousarray(a[i:i + step])) for a in inputs))
    return seen


def coverage(prepared: PreparedModel, calibration: Arrays, evaluation: Arrays,
             eval_outputs: list[np.ndarray]) -> dict[str, Any]:
    """What the calibration data leaves uncovered; `warnings` lists it in words."""
    src = prepared.source
    rows = [_range_report(f"input {s.name}", c, e)
            for s, c, e in zip(src.inputs, calibration, evaluation, strict=True)]
    cal_out = prepared.predict(calibration)
    rows += [_range_report(f"output {s.name}", c, e)
             for s, c, e in zip(src.outputs, cal_out, eval_outputs, strict=True)]
    checked = len(rows)
    activations = "not checked: only torch sources expose their intermediate tensors here"
    if src.format == "torch":
        try:
            step = src.batch or 1
            cal_act = _torch_activations(os.fspath(src.path), calibration, MAX_SAMPLES, step)
            ev_act = _torch_activations(os.fspath(src.path), evaluation, MAX_SAMPLES, step)
            for node in cal_act:
                if node in ev_act:
                    rows.append(_range_report(f"activation {node}",
                                              np.concatenate(cal_act[node]),
                                              np.concatenate(ev_act[node])))
            activations = f"{len(rows) - checked} intermediate tensors checked"
        except Exception as exc:  # an exotic graph must not stop the build
            activations = f"not checked: {type(exc).__name__}: {exc}"
    uncovered = sorted((r for r in rows if not r["covered"]),
                       key=lambda r: (-r["outside_share"], -r["beyond_range"]))
    warnings = [
        f"{r['tensor']}: {100 * r['outside_share']:.2f}% of the evaluation values lie outside "
        f"the calibrated range [{r['calibration_range'][0]:.4g}, "
        f"{r['calibration_range'][1]:.4g}] (evaluation reaches "
        f"[{r['evaluation_range'][0]:.4g}, {r['evaluation_range'][1]:.4g}]): int8 clips them"
        for r in uncovered[:TOP]]
    return {"tensors_checked": len(rows), "activations": activations,
            "uncovered": uncovered[:TOP], "uncovered_count": len(uncovered),
            "warnings": warnings}
