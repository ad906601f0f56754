"""How often does the gate cry wolf, and how often does it catch a real 10% slowdown?

Method
- Releases: the digits CNN of examples/digits (seed 0) as the baseline, and the same CNN with one
  extra 128x128 hidden layer (about 10% more latency for the int8 ONNX Runtime artifact, one
  thread; a real model change, not a sleep) as the slow candidate; both built for the
  `linux-x86_64` profile, whose primary target (onnx int8) the gate measures on `local`.
- A/A: the baseline gated against itself; A/B: the slow candidate against the baseline. The two
  kinds of decisions alternate, so that machine conditions hit both alike. Each decision is a
  full `edgeyard.gate()` with the default policy (one fresh process per round running both
  artifacts with their calls interleaved, load order alternating; paired 98% bootstrap CI +
  Wilcoxon signed-rank with a 1% false-fail budget split over p50, p90 and the 7 possible looks;
  5% p50 floor, 10% p90 floor; 6 rounds then +4 up to 30), except that the size tolerance is
  opened for A/B (the slow model is also bigger, which alone would fail it): the figures below
  are about latency.
- Reported: the false-fail rate of A/A (any failing finding) with a 95% Clopper-Pearson upper
  bound, the A/A inconclusive rate, the A/B detection rate (latency p50 or p90 FAIL), and the
  measurement time per decision.

    python benchmarks/gate_calibration.py [--aa 100] [--ab 40]

Writes benchmarks/results/gate_calibration.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "digits"))
import digits  # noqa: E402

import edgeyard  # noqa: E402
from edgeyard.gating import GatePolicy  # noqa: E402


def clopper_pearson_upper(k: int, n: int, conf: float = 0.95) -> float:
    from scipy.stats import beta

    return 1.0 if k == n else float(beta.ppf(conf, k + 1, n - k))


def clopper_pearson_lower(k: int, n: int, conf: float = 0.95) -> float:
    from scipy.stats import beta

    return 0.0 if k == 0 else float(beta.ppf(1 - conf, k, n - k + 1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aa", type=int, default=100)
    ap.add_argument("--ab", type=int, default=40)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()

    data = digits.load()
    with tempfile.TemporaryDirectory() as tmp:
        rels = {}
        for name, extra in (("base", 0), ("slow", 1)):
            model = digits.train(digits.make_cnn(extra_fc=extra), data, epochs=15)
            rels[name] = edgeyard.build(
                model, example_inputs=(data.x_eval[:1],), profiles=["linux-x86_64"],
                calibration=data.x_calib, evaluation=(data.x_eval, data.y_eval),
                out=Path(tmp) / name, name="digits", version=name, log=None,
            )
        # interleave: one A/B after every few A/A
        step = max(1, args.aa // max(1, args.ab))
        seq, a, b = [], 0, 0
        while a < args.aa or b < args.ab:
            for _ in range(step):
                if a < args.aa:
                    seq.append("aa")
                    a += 1
            if b < args.ab:
                seq.append("ab")
                b += 1
        records = []
        for i, kind in enumerate(seq):
            cand = rels["base"] if kind == "aa" else rels["slow"]
            policy = GatePolicy(seed=i, size_tolerance=0.05 if kind == "aa" else 10.0)
            t0 = time.perf_counter()
            report = edgeyard.gate(cand, rels["base"], profile="linux-x86_64", runner="local",
                                   policy=policy, log=None)
            took = time.perf_counter() - t0
            by_fig = {f.figure: f for f in report.findings}
            rec = {
                "kind": kind,
                "verdict": report.verdict,
                "rounds": report.rounds.get("linux-x86_64"),
                "seconds": took,
                "failing": sorted(f.figure for f in report.findings if f.verdict == "fail"),
                "p50_ratio": by_fig["latency_p50"].ratio,
                "p50_verdict": by_fig["latency_p50"].verdict,
                "p90_ratio": by_fig["latency_p90"].ratio,
                "p90_verdict": by_fig["latency_p90"].verdict,
            }
            records.append(rec)
            print(f"[{i + 1}/{len(seq)}] {kind} {rec['verdict']:<12} rounds {rec['rounds']:>2} "
                  f"p50 x{rec['p50_ratio']:.3f} {rec['p50_verdict']:<12} p90 x{rec['p90_ratio']:.3f} "
                  f"{rec['p90_verdict']:<12} {took:.1f} s", flush=True)
    aa = [r for r in records if r["kind"] == "aa"]
    ab = [r for r in records if r["kind"] == "ab"]
    ff = sum(r["verdict"] == "fail" for r in aa)
    inc = sum(r["verdict"] == "inconclusive" for r in aa)
    det = sum(r["p50_verdict"] == "fail" or r["p90_verdict"] == "fail" for r in ab)
    secs = np.array([r["seconds"] for r in records])
    summary = {
        "aa_decisions": len(aa),
        "false_fail": ff,
        "false_fail_rate": ff / max(1, len(aa)),
        "false_fail_rate_upper95": clopper_pearson_upper(ff, len(aa)),
        "aa_inconclusive_rate": inc / max(1, len(aa)),
        "ab_decisions": len(ab),
        "detected": det,
        "detection_rate": det / max(1, len(ab)),
        "detection_rate_lower95": clopper_pearson_lower(det, len(ab)),
        "ab_true_p50_ratio_median": float(np.median([r["p50_ratio"] for r in ab])) if ab else None,
        "seconds_per_decision_median": float(np.median(secs)),
        "seconds_per_decision_p90": float(np.percentile(secs, 90)),
        "aa_seconds_median": float(np.median([r["seconds"] for r in aa])) if aa else None,
        "ab_seconds_median": float(np.median([r["seconds"] for r in ab])) if ab else None,
        "rounds_median_aa": float(np.median([r["rounds"] for r in aa])) if aa else None,
        "rounds_median_ab": float(np.median([r["rounds"] for r in ab])) if ab else None,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gate_calibration.json").write_text(json.dumps(
        {"method": __doc__, "summary": summary, "decisions": records}, indent=2))
    s = summary
    md = [
        "| measure | value |",
        "|---|---|",
        f"| A/A decisions | {s['aa_decisions']} |",
        f"| A/A false fails | {s['false_fail']} ({100 * s['false_fail_rate']:.1f}%, 95% upper "
        f"bound {100 * s['false_fail_rate_upper95']:.1f}%) |",
        f"| A/A inconclusive | {100 * s['aa_inconclusive_rate']:.1f}% |",
        f"| A/B decisions (candidate x{s['ab_true_p50_ratio_median'] or 0:.3f} p50) | "
        f"{s['ab_decisions']} |",
        f"| A/B detected (latency FAIL) | {s['detected']} ({100 * s['detection_rate']:.1f}%, 95% "
        f"lower bound {100 * s['detection_rate_lower95']:.1f}%) |",
        f"| measurement time per decision, median (A/A, A/B) | {s['aa_seconds_median'] or 0:.1f} s, "
        f"{s['ab_seconds_median'] or 0:.1f} s |",
        f"| rounds per decision, median (A/A, A/B) | {s['rounds_median_aa']}, "
        f"{s['rounds_median_ab']} |",
    ]
    (out / "gate_calibration.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
