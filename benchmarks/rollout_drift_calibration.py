"""The rollout drift figure's false "worse" rate (A/A) and how often it catches moved outputs.

Method
- The decision code is the server's: `server.rollouts.drift_outcome` (each release's merged
  window against its own build-time reference, and the cohorts against each other, by
  `edgeyard.drift.check` at the default policy: alpha 0.005 per check, 2,000+ bootstrap
  replicates). Only the windows are simulated (numpy, seeded; no data set needed).
- One classifier-like model: signals input.mean ~ N(0.3 + shift, 0.05), input.std ~
  gamma(4, 0.05), output.confidence ~ beta(12 - out, 1), 10 classes uniform. Its build-time
  reference: 360 points (the digits evaluation set's size), drawn once, with shift 0 and out 0.
- A look: a new cohort of 650 points and an old cohort of 3,000 (the 50-device test's sizes at
  its first step), both fed the same inputs' distribution (`shift`). A/A: both releases are the
  model above (one reference). The shifts near the threshold are where each release's own check
  is a coin toss; there "the new one drifts, the old one does not" comes up by chance.
- Bad releases: inputs unmoved, the new release's confidences moved (`out` 1, 2, 3: beta(11, 1),
  beta(10, 1), beta(9, 1) in place of beta(12, 1)).
- Reported per scenario: looks, how many found drift in each release against its reference, how
  many the first two checks alone would have called worse
  (the figure before the cohort check), and how many the figure calls worse, with the
  Clopper-Pearson 95% upper bound for A/A.

    python benchmarks/rollout_drift_calibration.py [--looks 300]

Writes benchmarks/results/rollout_drift_calibration.json and .md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rollout_calibration import clopper_pearson_upper, save  # noqa: E402

from edgeyard.drift import DriftPolicy  # noqa: E402
from edgeyard.server.rollouts import drift_outcome  # noqa: E402
from edgeyard.telemetry.window import Window  # noqa: E402

SPEC: dict[str, Any] = {"signals": [{"name": n} for n in
                                    ("input.mean", "input.std", "output.confidence")],
                        "classes": {"name": "output.class", "count": 10}}
REFERENCE, NEW, OLD = 360, 650, 3000
AA_SHIFTS = (0.0, 0.003, 0.006)
BAD_OUTS = (1.0, 2.0, 3.0)


def window(rng: np.random.Generator, n: int, shift: float = 0.0, out: float = 0.0) -> Window:
    w = Window(SPEC, 0)
    w.add_projected({"input.mean": rng.normal(0.3 + shift, 0.05, n),
                     "input.std": rng.gamma(4.0, 0.05, n),
                     "output.confidence": rng.beta(12.0 - out, 1.0, n)},
                    rng.integers(0, 10, n))
    return w


def scenario(rng: np.random.Generator, reference: Window, looks: int, shift: float,
             out: float, policy: DriftPolicy) -> dict[str, Any]:
    new_drifts = old_drifts = two_checks = worse = 0
    for _ in range(looks):
        new, old = window(rng, NEW, shift, out), window(rng, OLD, shift)
        outcome, detail = drift_outcome(reference, new, reference, old, policy)
        new_drifts += detail.startswith("new: drift")
        old_drifts += "old: drift" in detail
        two_checks += detail.startswith("new: drift, old: ok")
        worse += outcome == "worse"
    return {"shift": shift, "out": out, "looks": looks, "new_drifts": new_drifts,
            "old_drifts": old_drifts, "worse_by_two_checks": two_checks, "worse": worse}


def markdown(res: dict[str, Any]) -> str:
    lines = [f"Looks per scenario: {res['looks']}; reference {REFERENCE} points, new cohort "
             f"{NEW}, old cohort {OLD}; drift policy alpha {res['alpha']}. "
             f"{res['seconds']:.0f} s.", "",
             "| scenario | inputs moved | new outputs moved | new drifts | old drifts | worse by "
             "the first two checks alone | worse (the figure) | 95% upper bound |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["scenarios"]:
        kind = "A/A" if r["out"] == 0 else "bad"
        bound = f"{r['upper']:.3f}" if kind == "A/A" else ""
        lines.append(f"| {kind} | {r['shift']} | {r['out']} | {r['new_drifts']} | "
                     f"{r['old_drifts']} | {r['worse_by_two_checks']} | {r['worse']} | {bound} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--looks", type=int, default=300)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    policy = DriftPolicy()
    rng = np.random.default_rng(1)
    reference = window(rng, REFERENCE)
    t0 = time.perf_counter()
    rows = [scenario(rng, reference, args.looks, s, 0.0, policy) for s in AA_SHIFTS]
    for r in rows:
        r["upper"] = clopper_pearson_upper(r["worse"], r["looks"])
    rows += [scenario(rng, reference, args.looks, 0.0, o, policy) for o in BAD_OUTS]
    res = {"looks": args.looks, "alpha": policy.alpha, "scenarios": rows,
           "seconds": time.perf_counter() - t0}
    save(args.out, "rollout_drift_calibration", res, markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
