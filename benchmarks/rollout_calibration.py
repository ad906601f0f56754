"""How often a rollout halts a release that is not worse (A/A), and how fast it halts one that is.

Method
- The decision code is the server's: `rollout.stats.verdicts` (every figure at the plan's
  per-look share of alpha), `combine`, and `rollout.plan.advance`, driven look by look. Only the
  fleet's telemetry is simulated here (numpy, seeded; no data set needed), in the shape the
  server reads it: per-device totals of calls, fallbacks and engine errors over the step, and
  per 5-minute bucket the p90 latency of each cohort.
- Fleet: `--devices` devices (20,000). Each device has its own fallback rate: 0.5% times a
  gamma(1, 1) factor (as spread as its mean), and 2% of devices are broken phones that fall back
  on 20% of their calls; half of the fallbacks are engine errors. Calls per device per bucket:
  Poisson(6). Latency per call: a device level (lognormal, sigma 0.3) times the bucket's load
  (lognormal, sigma 0.1, shared by both cohorts) times per-call noise (lognormal, sigma 0.4); a
  cohort's p90 in a bucket is taken over up to 3,000 of its calls.
- Cohorts: each device's bucket 0..99 is uniform (as the sha256 cohort hash), new release below
  the step's percentage.
- Plan: the shipped defaults: steps 1, 5, 25, 100 %, hold 1 h, max hold 6 h, a look every 5
  minutes (one per bucket), margins 25% on rates (floor 0.1% absolute), 10% on p90 latency,
  alpha 0.01 for the whole rollout.
- Scenarios: A/A (the new release is the old one: `--runs` rollouts), fallback rate x5 and p90
  latency +30% (`--bad-runs` each). Reported: the share of rollouts rolled back (for A/A: false
  halts, with the Clopper-Pearson 95% upper bound), completed, paused for want of evidence; for
  the bad ones the step and the hours at which they were rolled back.

    python benchmarks/rollout_calibration.py [--runs 300] [--bad-runs 60] [--devices 20000]

Writes benchmarks/results/rollout_calibration.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from edgeyard.rollout.plan import Plan, State, advance  # noqa: E402
from edgeyard.rollout.stats import Evidence, combine, verdicts  # noqa: E402

BUCKET_S = 300.0
MIN_BUCKET_CALLS = 20  # as the server (server/rollouts.py)


class Fleet:
    def __init__(self, rng: np.random.Generator, n: int) -> None:
        self.rng, self.n = rng, n
        self.rate = 0.005 * rng.gamma(1.0, 1.0, n)
        self.rate[rng.random(n) < 0.02] = 0.2
        self.level = rng.lognormal(0.0, 0.3, n)
        self.cohort = rng.integers(0, 100, n)

    def bucket(self, new: np.ndarray, fallback_x: float, slowdown: float
               ) -> tuple[np.ndarray, float | None, int]:
        """One bucket: per device (calls, fallbacks, errors), log p90 ratio new/old, new calls."""
        rng = self.rng
        calls = rng.poisson(6, self.n)
        rate = np.where(new, np.minimum(self.rate * fallback_x, 1.0), self.rate)
        fb = rng.binomial(calls, rate)
        err = rng.binomial(fb, 0.5)
        load = rng.lognormal(0.0, 0.1)
        p90 = []
        for side, slow in ((new, slowdown), (~new, 1.0)):
            c = calls[side]
            total = int(c.sum())
            if total < MIN_BUCKET_CALLS:
                return np.stack([calls, fb, err], 1), None, int(calls[new].sum())
            k = min(total, 3000)
            who = rng.choice(len(c), size=k, p=c / total)
            values = self.level[side][who] * load * slow * rng.lognormal(0.0, 0.4, k)
            p90.append(float(np.quantile(values, 0.9)))
        return np.stack([calls, fb, err], 1), float(np.log(p90[0] / p90[1])), \
            int(calls[new].sum())


def rollout(seed: int, devices: int, plan: Plan, fallback_x: float = 1.0,
            slowdown: float = 1.0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    fleet = Fleet(rng, devices)
    st = State(f"sim-{seed}", "m", "new", "old", plan)
    now = 0.0
    while st.state == "running":
        step = st.step
        new = fleet.cohort < plan.steps[step]
        totals = np.zeros((devices, 3))
        ratios: list[float] = []
        new_calls = 0
        while st.state == "running" and st.step == step:
            counts, ratio, nc = fleet.bucket(new, fallback_x, slowdown)
            totals += counts
            new_calls += nc
            if ratio is not None:
                ratios.append(ratio)
            now += BUCKET_S
            ev = Evidence(totals[new], totals[~new],
                          {"engine": (np.asarray(ratios), new_calls)})
            vs = verdicts(plan, ev)
            advance(st, now, combine(vs), [v.to_dict() for v in vs])
    last = st.decisions[-1]
    return {"state": st.state, "step_percent": plan.steps[last["step"]],
            "hours": round(now / 3600, 2),
            "worse": [f["figure"] for f in last["figures"] if f["outcome"] == "worse"],
            "undecided": [f["figure"] for f in last["figures"] if f["outcome"] == "undecided"]}


def clopper_pearson_upper(k: int, n: int, level: float = 0.95) -> float:
    from scipy.stats import beta

    return 1.0 if k == n else float(beta.ppf(level, k + 1, n - k))


def save(out: Path, name: str, res: dict[str, Any], md: str) -> None:
    """`out/<name>.json` and `.md`; the markdown printed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / f"{name}.md").write_text(md)
    print(md)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(runs)
    states = {s: sum(r["state"] == s for r in runs) for s in
              ("rolled_back", "completed", "paused")}
    halted = [r for r in runs if r["state"] == "rolled_back"]
    return {
        "runs": n, **{f"{s}_share": round(c / n, 4) for s, c in states.items()},
        "rolled_back": states["rolled_back"],
        "rolled_back_upper95": round(clopper_pearson_upper(states["rolled_back"], n), 4),
        "halt_step_percent": sorted({r["step_percent"] for r in halted}),
        "halt_hours_median": statistics.median([r["hours"] for r in halted]) if halted else None,
        "halt_hours_max": max((r["hours"] for r in halted), default=None),
        "halted_on": sorted({f for r in halted for f in r["worse"]}),
        "paused_at_step_percent": sorted({r["step_percent"] for r in runs
                                          if r["state"] == "paused"}),
        "paused_undecided": sorted({f for r in runs if r["state"] == "paused"
                                    for f in r["undecided"]}),
    }


def markdown(res: dict[str, Any]) -> str:
    rows = ["| scenario | runs | rolled back | completed | paused (inconclusive) | halted at "
            "step | hours to halt (median / max) | figures that halted |",
            "|---|---:|---:|---:|---:|---|---|---|"]
    for name, s in res["scenarios"].items():
        rb = f"{100 * s['rolled_back_share']:.1f}%"
        if name.startswith("A/A"):
            rb += f" (95% upper bound {100 * s['rolled_back_upper95']:.1f}%)"
        hours = "-" if s["halt_hours_median"] is None else \
            f"{s['halt_hours_median']:.1f} / {s['halt_hours_max']:.1f}"
        rows.append(f"| {name} | {s['runs']} | {rb} | {100 * s['completed_share']:.1f}% | "
                    f"{100 * s['paused_share']:.1f}% | "
                    f"{', '.join(f'{p:g}%' for p in s['halt_step_percent']) or '-'} | {hours} | "
                    f"{', '.join(s['halted_on']) or '-'} |")
    return "\n".join([
        "# Rollout calibration: false halts (A/A) and time to halt a worse release", "",
        f"{res['devices']} simulated devices, the shipped plan (steps 1, 5, 25, 100 %; hold 1 h; "
        "max hold 6 h; a look every 5 minutes; alpha 0.01 per rollout); the server's decision "
        "code. Method: see the docstring of benchmarks/rollout_calibration.py. "
        f"{res['seconds']:.0f} s.", "", *rows, ""])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--bad-runs", type=int, default=60)
    ap.add_argument("--devices", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    plan = Plan(steps=(1.0, 5.0, 25.0, 100.0), hold_s=3600, max_hold_s=6 * 3600,
                check_s=BUCKET_S)
    t0 = time.perf_counter()
    scenarios = {
        "A/A (the same release)": [rollout(s, args.devices, plan) for s in range(args.runs)],
        "fallback rate x5": [rollout(10_000 + s, args.devices, plan, fallback_x=5.0)
                             for s in range(args.bad_runs)],
        "p90 latency +30%": [rollout(20_000 + s, args.devices, plan, slowdown=1.3)
                             for s in range(args.bad_runs)],
    }
    res = {"devices": args.devices, "plan": plan.to_dict(),
           "seconds": time.perf_counter() - t0,
           "scenarios": {k: summarize(v) for k, v in scenarios.items()}}
    save(args.out, "rollout_calibration", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
