"""When the teacher does not fit: distill the user's student and build it instead.

`edgeyard.build(model, ..., student=make_small_model, train=(x, y))` first builds the model as
usual. A profile whose chain has no verified artifact within its size budget, or (for a profile
whose runner is `local`, i.e. this host is the production hardware) whose first verified
artifact's p90 latency on this host breaks `max_latency_p90_ms`, makes the build distill a fresh
`student()` from the model (`edgeyard.builder.distill`) on `train` (15% of it held out for early
stopping, seeded) and build the student for every profile instead. The release says so: its
manifest's `distillation` records why, the teacher's figures and the distillation report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..data import Arrays, take
from ..profiles import Profile

VALIDATION_SHARE = 0.15


def budget_breaks(manifest: dict[str, Any], profiles: list[Profile],
                  artifact_path: Callable[[str], Any], sample: Arrays) -> list[str]:
    """Profiles whose size (or, on this host, latency) budget the built model cannot meet."""
    out = []
    for p in profiles:
        chain = manifest["profiles"][p.name]["chain"]
        ok = [e for e in chain if e["status"] == "ok"]
        limit_mb = p.budgets.max_size_mb
        sized = [e for e in chain if e["status"] == "failed" and limit_mb is not None
                 and (manifest["artifacts"].get(e["target"], {}).get("size_bytes") or 0)
                 > limit_mb * 1e6]
        if not ok and sized:
            out.append(f"{p.name}: no artifact within its size budget "
                       f"({'; '.join(sized[0]['reasons'])})")
            continue
        limit = p.budgets.max_latency_p90_ms
        if ok and limit is not None and p.runner == "local":
            p90 = _host_p90_ms(manifest, ok[0]["target"], artifact_path, sample, p)
            if p90 > limit:
                out.append(f"{p.name}: {ok[0]['target']} p90 latency on this host "
                           f"{p90:.3f} ms > budget {limit:g} ms")
    return out


def _host_p90_ms(manifest: dict[str, Any], key: str, artifact_path: Callable[[str], Any],
                 sample: Arrays, profile: Profile, calls: int = 300) -> float:
    from ..engines.registry import load_engine

    a = manifest["artifacts"][key]
    engine = load_engine(a["format"], artifact_path(key), profile.hardware.threads or 1)
    try:
        x = list(take(sample, slice(0, 1)))
        for _ in range(30):
            engine.predict(x)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            engine.predict(x)
            times.append(time.perf_counter() - t0)
    finally:
        engine.close()
    return float(np.percentile(times, 90)) * 1e3


def teacher_module(model: Any) -> Any:
    """The teacher as a callable torch module (an exported program's module for .pt2)."""
    import torch

    if isinstance(model, torch.nn.Module):
        return model.eval()  # distill() runs it only under no_grad
    if isinstance(model, torch.export.ExportedProgram):
        return model.module()
    return torch.export.load(str(model)).module()


def split(train: Any, seed: int) -> tuple[Any, Any]:
    """(fit, validation): a seeded 85/15 split of `(x, y)` or `x`, in `distill()`'s forms."""
    from .distill import _split

    xs, y = _split(train)
    n = xs[0].shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    cut = n - max(1, round(n * VALIDATION_SHARE))
    parts = []
    for idx in (perm[:cut], perm[cut:]):
        px = tuple(a[idx] for a in xs)
        parts.append(px if y is None else (px, y[idx]))
    return parts[0], parts[1]


def teacher_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the teacher's release measured, kept in the student's manifest."""
    return {
        "source_sha256": manifest["model"]["source_sha256"],
        "source_accuracy": manifest["evaluation"]["source_accuracy"],
        "artifacts": {k: {"status": a["status"], "size_bytes": a["size_bytes"],
                          "accuracy": (a.get("parity") or {}).get("accuracy")}
                      for k, a in manifest["artifacts"].items()},
        "profiles": {p: [{"target": e["target"], "status": e["status"], "reasons": e["reasons"]}
                         for e in v["chain"]] for p, v in manifest["profiles"].items()},
    }
