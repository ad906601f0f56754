"""What the fallback runtime costs per call, over calling the engine directly.

Method
- Model: the digits CNN of examples/digits (scikit-learn's bundled digits, seed 0), built and
  signed for `linux-x86_64` (primary: ONNX Runtime int8) and `pixel-8` (primary: LiteRT int8).
- For each profile's primary artifact, in this one process, one thread: the engine loaded
  directly (`edgeyard.engines.load_engine`) and `Runtime.from_release(...)` (signature checked,
  self-test run, the same artifact serving). Warm-up 500 calls each. Then `--rounds`
  interleaved rounds: `--calls` direct calls, then `--calls` runtime calls (order alternating by
  round), one held-out digit per call. Per round the mean per-call time of each.
- Reported: the medians over rounds, the overhead (runtime - direct) in microseconds, and the
  ratio; the target is under 5% of the model's latency or 10 us, whichever is larger.

    python benchmarks/runtime_overhead.py [--rounds 30] [--calls 500]

Writes benchmarks/results/runtime_overhead.json and .md.
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
from edgeyard.engines import load_engine  # noqa: E402
from edgeyard.runtime import Runtime  # noqa: E402
from edgeyard.signing import generate_keys  # noqa: E402


def per_call(fn, xs, calls: int) -> float:
    t0 = time.perf_counter()
    for i in range(calls):
        fn(xs[i % len(xs)])
    return (time.perf_counter() - t0) / calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    data = digits.load()
    model = digits.train(digits.make_cnn(), data, epochs=15)
    xs = [data.x_eval[i : i + 1] for i in range(len(data.x_eval))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        priv, pub = generate_keys(Path(tmp) / "k.pem")
        rel = edgeyard.build(model, example_inputs=(xs[0],), profiles=["linux-x86_64", "pixel-8"],
                             calibration=data.x_calib, evaluation=(data.x_eval, data.y_eval),
                             out=Path(tmp) / "rel", sign_key=priv, log=None)
        for profile in ("linux-x86_64", "pixel-8"):
            primary = rel.chain(profile)[0]
            engine = load_engine(primary["format"], rel.path / primary["path"], 1)
            rt = Runtime.from_release(rel.path, profile, pub, threads=1)
            direct = lambda x, e=engine: e.predict([x])  # noqa: E731
            for fn in (direct, rt.predict):
                per_call(fn, xs, 500)
            d, r = [], []
            for k in range(args.rounds):
                pair = ((d, direct), (r, rt.predict)) if k % 2 == 0 else \
                    ((r, rt.predict), (d, direct))
                for sink, fn in pair:
                    sink.append(per_call(fn, xs, args.calls))
            assert rt.status()["served_by"] == {primary["target"]: rt.status()["engines"][0]["calls"]}
            md, mr = float(np.median(d)), float(np.median(r))
            paired = np.array(r) - np.array(d)
            rows.append({
                "profile": profile, "target": primary["target"],
                "direct_us": md * 1e6, "runtime_us": mr * 1e6,
                "overhead_us": (mr - md) * 1e6,
                "overhead_us_paired_median": float(np.median(paired)) * 1e6,
                "ratio": mr / md,
                "target_us": max(0.05 * md * 1e6, 10.0),
                "rounds_direct_us": [x * 1e6 for x in d], "rounds_runtime_us": [x * 1e6 for x in r],
            })
            engine.close()
            rt.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runtime_overhead.json").write_text(json.dumps({"method": __doc__, "rows": rows},
                                                          indent=2))
    md = ["| profile | engine | direct µs | Runtime.predict µs | overhead µs | ratio | target |",
          "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        ok = "met" if r["overhead_us_paired_median"] <= r["target_us"] else "missed"
        md.append(f"| {r['profile']} | {r['target']} | {r['direct_us']:.1f} | "
                  f"{r['runtime_us']:.1f} | {r['overhead_us_paired_median']:.1f} | "
                  f"{r['ratio']:.3f} | < {r['target_us']:.1f} µs: {ok} |")
    (out / "runtime_overhead.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
