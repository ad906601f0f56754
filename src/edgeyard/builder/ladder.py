"""The recovery ladder: what a build tries when a quantized artifact breaks its accuracy budget.

A quantized target (`int8`, `int8-weights`) whose verified artifact breaks `max_accuracy_drop`,
`min_agreement`, a fidelity budget (`min_cosine`, `min_sqnr_db`, per output) or the task
metric's budget (the strictest of the profiles that list it) is not just failed: the build
measures which layers int8 hurts (the backend's `sensitivity()`, when it has one) and climbs:

1. mixed precision: the most sensitive layers kept in float, one more per rung (ONNX Runtime's
   `nodes_to_exclude`);
2. quantization-aware fine-tuning, distilled from the float model on the calibration data
   (ExecuTorch's PT2E QAT path, `qat_epochs`);
3. the next precision up that the backend offers: int8 -> int8-weights -> fp16 -> fp32.

Each rung is a full conversion and verification in its own child process, recorded with its
figures; the first rung that meets the budget ships in the target's place (the manifest says
which), and when none does the plain artifact stays and fails its profiles as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..backends.base import RECIPE_OPTIONS
from ..profiles import FIDELITY_KEYS, Budgets

QUANTIZED = ("int8", "int8-weights")
PRECISION_ORDER = ("int8", "int8-weights", "fp16", "fp32")
# mixed-precision rungs: at most this many layers kept in float, only layers whose int8 output
# alone falls below this signal-to-noise ratio (dB)
MAX_FLOAT_LAYERS = 3
SENSITIVE_DB = 30.0
QAT_EPOCHS = 4


@dataclass(frozen=True)
class Rung:
    name: str
    precision: str
    options: dict[str, Any] = field(default_factory=dict)


def strictest(budgets: list[Budgets]) -> Budgets:
    """The accuracy and fidelity budget every listed profile accepts."""
    def most(key: str, values: list[Any]) -> Any:
        vals = [v for v in values if v is not None]
        return max(vals) if vals else None

    outputs: dict[str, dict[str, float]] = {}
    for name in {n for b in budgets for n in b.outputs}:
        per = [b.for_output(name) for b in budgets]
        outputs[name] = {k: v for k in FIDELITY_KEYS
                         if (v := most(k, [getattr(o, k) for o in per])) is not None}
    return Budgets(max_accuracy_drop=min(b.max_accuracy_drop for b in budgets),
                   min_agreement=max(b.min_agreement for b in budgets),
                   min_cosine=most("min_cosine", [b.min_cosine for b in budgets]),
                   min_cosine_p1=most("min_cosine_p1", [b.min_cosine_p1 for b in budgets]),
                   min_sqnr_db=most("min_sqnr_db", [b.min_sqnr_db for b in budgets]),
                   outputs=outputs)


def precision_rungs(precision: str, offered: tuple[str, ...],
                    options: dict[str, Any]) -> list[Rung]:
    """The precisions above `precision` that the backend offers, in order."""
    above = PRECISION_ORDER[PRECISION_ORDER.index(precision) + 1:]
    # int8-only options (calibration, excluded nodes) mean nothing at float precisions
    keep = {k: v for k, v in options.items()
            if k not in ("nodes_to_exclude", "calibrate_method", "per_channel", "qat_epochs",
                         *RECIPE_OPTIONS)}
    return [Rung(f"precision {p}", p, keep) for p in above if p in offered]


def mixed_rungs(options: dict[str, Any], sensitivity: list[dict[str, Any]]) -> list[Rung]:
    """Keep the 1, 2, ... most sensitive layers in float (cumulative)."""
    worst = [r["node"] for r in sensitivity if r.get("sqnr_db", 0.0) < SENSITIVE_DB]
    already = list(options.get("nodes_to_exclude", []))
    out = []
    for k in range(1, min(MAX_FLOAT_LAYERS, len(worst)) + 1):
        nodes = already + worst[:k]
        out.append(Rung(f"mixed precision: {k} layer{'s' if k > 1 else ''} in float "
                        f"({', '.join(worst[:k])})", "int8",
                        {**options, "nodes_to_exclude": nodes}))
    return out


def figures(record: dict[str, Any]) -> dict[str, Any]:
    """What the ladder keeps of one attempt."""
    parity = record.get("parity") or {}
    return {"size_bytes": record.get("size_bytes"),
            "build_seconds": record.get("build_seconds"),
            "accuracy": parity.get("accuracy"),
            "top1_agreement": parity.get("top1_agreement"),
            "cosine_mean": _lowest(parity, "cosine_mean"),
            "sqnr_db": _lowest(parity, "sqnr_db"),
            "max_abs_error": parity.get("max_abs_error")}


def _lowest(parity: dict[str, Any], key: str) -> float | None:
    vals = [o.get(key) for o in (parity.get("outputs") or {}).values()]
    return None if not vals or None in vals else min(vals)


def plan(recovery: tuple[str, ...], offered: tuple[str, ...], precision: str,
         options: dict[str, Any], sensitivity: list[dict[str, Any]] | None) -> list[Rung]:
    """Every rung above a plain quantized target, in the order they are tried."""
    rungs: list[Rung] = []
    if "mixed" in recovery and precision == "int8" and sensitivity:
        rungs += mixed_rungs(options, sensitivity)
    if "qat" in recovery and precision == "int8":
        rungs.append(Rung(f"quantization-aware fine-tuning ({QAT_EPOCHS} epochs, distilled "
                          f"from the float model)", "int8", {**options, "qat_epochs": QAT_EPOCHS}))
    return rungs + precision_rungs(precision, offered, options)
