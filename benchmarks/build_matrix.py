"""Build time per target and latency per artifact, next to the source model's eager latency.

Method
- Model: the digits CNN of examples/digits (scikit-learn's bundled digits, seed 0, 15 epochs).
- Build: `edgeyard.build` for the given profiles; build time = the target's conversion time in
  its child process (toolchain import excluded), verify time = loading + running 360 held-out
  digits in the artifact's own runtime.
- Latency: one sample (batch 1) per call, every engine and eager PyTorch with 1 thread
  (`torch.set_num_threads(1)`, engine threads=1), in this one process. Warm-up: 200 calls and at
  least 0.5 s per engine. Then `--rounds` interleaved rounds (engine A, B, C, ... each run
  `--calls` calls per round, so machine drift hits all alike); per round the mean per-call time;
  reported: the median over rounds, p10-p90 of the rounds, and the ratio to eager PyTorch's median.

    python benchmarks/build_matrix.py [--profiles linux-x86_64,pixel-8] [--rounds 15]

Writes benchmarks/results/build_matrix.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "digits"))
import digits  # noqa: E402

import edgeyard  # noqa: E402
from edgeyard.backends import get_backend  # noqa: E402


def timed_rounds(fns: dict[str, object], x: np.ndarray, rounds: int, calls: int) -> dict[str, list[float]]:
    for fn in fns.values():  # warm-up
        t0, n = time.perf_counter(), 0
        while n < 200 or time.perf_counter() - t0 < 0.5:
            fn(x)
            n += 1
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn(x)
            samples[name].append((time.perf_counter() - t0) / calls)
    return samples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", default="linux-x86_64,pixel-8")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    data = digits.load()
    model = digits.train(digits.make_cnn(), data, epochs=15)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        release = edgeyard.build(
            model, example_inputs=(data.x_eval[:1],), profiles=args.profiles.split(","),
            calibration=data.x_calib, evaluation=(data.x_eval, data.y_eval),
            out=Path(tmp) / "rel", name="digits", version="bench",
        )
        wall = time.perf_counter() - t0
        engines, fns = {}, {}
        with torch.no_grad():
            fns["pytorch eager"] = lambda x: model(torch.from_numpy(x))
            for key, a in release.artifacts.items():
                if a["status"] != "ok":
                    continue
                e = get_backend(a["backend"]).load(release.artifact_path(key), threads=1)
                engines[key] = e
                fns[key] = lambda x, e=e: e.predict([x])
            samples = timed_rounds(fns, data.x_eval[:1], args.rounds, args.calls)
        for e in engines.values():
            e.close()
    eager = float(np.median(samples["pytorch eager"]))
    rows = []
    for name, s in samples.items():
        a = release.artifacts.get(name, {})
        med = float(np.median(s))
        rows.append({
            "target": name,
            "backend": a.get("backend", "pytorch"),
            "precision": a.get("precision", "fp32"),
            "size_bytes": a.get("size_bytes"),
            "build_s": a.get("build_seconds"),
            "verify_s": a.get("verify_seconds"),
            "accuracy": (a.get("parity") or {}).get("accuracy",
                                                   release.manifest["evaluation"]["source_accuracy"]),
            "latency_us_median": med * 1e6,
            "latency_us_p10": float(np.percentile(s, 10)) * 1e6,
            "latency_us_p90": float(np.percentile(s, 90)) * 1e6,
            "ratio_to_eager": med / eager,
            "rounds": s,
        })
    result = {
        "method": __doc__,
        "host": {"machine": platform.machine(), "python": platform.python_version(),
                 "processor": platform.processor()},
        "toolchain": release.manifest["toolchain"],
        "profiles": args.profiles.split(","),
        "build_wall_s": wall,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "build_matrix.json").write_text(json.dumps(result, indent=2))
    md = [
        f"Digits CNN, batch 1, 1 thread; {args.rounds} interleaved rounds x {args.calls} calls; "
        f"whole build {wall:.0f} s.",
        "",
        "| target | size | build s | verify s | accuracy | latency µs (median) | p10-p90 | vs eager |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        size = "-" if r["size_bytes"] is None else f"{r['size_bytes'] / 1e3:.0f} kB"
        b = "-" if r["build_s"] is None else f"{r['build_s']:.1f}"
        v = "-" if r["verify_s"] is None else f"{r['verify_s']:.2f}"
        md.append(
            f"| {r['target']} | {size} | {b} | {v} | {100 * r['accuracy']:.2f}% | "
            f"{r['latency_us_median']:.1f} | {r['latency_us_p10']:.1f}-{r['latency_us_p90']:.1f} | "
            f"{r['ratio_to_eager']:.2f}x |"
        )
    (out / "build_matrix.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
