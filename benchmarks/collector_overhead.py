"""What on-device telemetry costs: per call, per value, per byte.

Method
- Model: the digits CNN of examples/digits (scikit-learn's bundled digits, seed 0), released
  for `linux-x86_64`; the runtime serves its primary artifact (ONNX Runtime int8), one thread.
- Per-call cost: two runtimes in one process, one without and one with a `Collector` (windows
  of 10,000 calls to a disk spool; no endpoint, so no network in the measurement). Warm-up 1,000
  calls each; then `--rounds` interleaved rounds of `--calls` calls each (order alternating per
  round), one held-out digit per call. Reported: the app thread's median per-call latency with
  and without the collector (the difference is what `observe` costs the caller: the paired
  median over rounds of with - without), the engine's
  own latency (direct calls, same rounds) for the share, and the whole process's CPU time per
  call with and without (this includes the background thread that projects and sketches), and
  the sampling rate the collector settled on (it samples the input/output signals of one call in
  `every` only when copying each call would cost more than 5% of the model's latency).
- Sketch throughput: `ExpHistogram.update` on batches of 100,000 values (normal; lognormal with
  downscaling), median of 15 repeats, in values per second.
- Size: bytes of one closed window per signal, serialized as OTLP ResourceMetrics, and gzip.

    python benchmarks/collector_overhead.py [--rounds 60] [--calls 500]

Writes benchmarks/results/collector_overhead.json and .md.
"""

from __future__ import annotations

import argparse
import gzip
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
from edgeyard.telemetry import Collector, ExpHistogram  # noqa: E402


def run(fn, xs, calls):
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(calls):
        fn(xs[i % len(xs)])
    return (time.perf_counter() - t0) / calls, (time.process_time() - c0) / calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--every", type=float, default=None,
                    help="fix the sampling (one call in EVERY) instead of the adaptive default")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    data = digits.load()
    model = digits.train(digits.make_cnn(), data, epochs=15)
    xs = [data.x_eval[i : i + 1] for i in range(len(data.x_eval))]
    with tempfile.TemporaryDirectory() as tmp:
        rel = edgeyard.build(model, example_inputs=(xs[0],), profiles=["linux-x86_64"],
                             calibration=data.x_calib, evaluation=(data.x_eval, data.y_eval),
                             out=Path(tmp) / "rel", log=None)
        primary = rel.chain("linux-x86_64")[0]
        engine = load_engine(primary["format"], rel.path / primary["path"], 1)
        plain = Runtime.from_release(rel.path, "linux-x86_64", allow_unsigned=True, threads=1)
        col = Collector.from_release(rel.path, None, Path(tmp) / "spool", window_calls=10_000,
                                     window_s=3600,
                                     max_overhead=None if args.every else 0.05)
        if args.every:
            col._log.set_every(args.every)
        observed = Runtime.from_release(rel.path, "linux-x86_64", allow_unsigned=True, threads=1,
                                        collector=col)
        fns = {"engine": lambda x: engine.predict([x]), "runtime": plain.predict,
               "runtime+collector": observed.predict}
        for fn in fns.values():
            run(fn, xs, 1000)
        wall = {k: [] for k in fns}
        cpu = {k: [] for k in fns}
        for r in range(args.rounds):
            order = list(fns) if r % 2 == 0 else list(reversed(fns))
            for k in order:
                w, c = run(fns[k], xs, args.calls)
                wall[k].append(w)
                cpu[k].append(c)
        sampling = col.sampling
        col.flush()
        window_file = max(col.spool.pending(), key=lambda p: p.stat().st_size)
        window_bytes = window_file.read_bytes()
        n_signals = len(col.spec["signals"]) + 1
        col.close(flush=False)
    med = {k: float(np.median(v)) * 1e6 for k, v in wall.items()}
    cpu_med = {k: float(np.median(v)) * 1e6 for k, v in cpu.items()}
    paired = np.median(np.array(wall["runtime+collector"]) - np.array(wall["runtime"])) * 1e6
    rng = np.random.default_rng(0)
    thr = {}
    for name, v in (("normal", rng.normal(0, 1, 100_000)),
                    ("lognormal", rng.lognormal(0, 3, 100_000))):
        times = []
        for _ in range(15):
            h = ExpHistogram()
            t0 = time.perf_counter()
            h.update(v)
            times.append(time.perf_counter() - t0)
        thr[name] = v.size / float(np.median(times))
    result = {
        "method": __doc__,
        "per_call_us": med,
        "cpu_per_call_us": cpu_med,
        "observe_cost_us_paired_median": float(paired),
        "observe_share_of_model_latency": float(paired) / med["engine"],
        "sampling_one_call_in": sampling,
        "sketch_values_per_s": thr,
        "window_bytes": len(window_bytes),
        "window_bytes_gzip": len(gzip.compress(window_bytes)),
        "signals": n_signals,
        "bytes_per_signal": len(window_bytes) / n_signals,
        "bytes_per_signal_gzip": len(gzip.compress(window_bytes)) / n_signals,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "collector_overhead.json").write_text(json.dumps(result, indent=2))
    md = [
        "| measure | value |",
        "|---|---|",
        f"| model (engine direct), per call | {med['engine']:.1f} µs |",
        f"| Runtime.predict without / with collector | {med['runtime']:.1f} / "
        f"{med['runtime+collector']:.1f} µs |",
        f"| observe cost to the calling thread (paired median) | {paired:.2f} µs = "
        f"{100 * result['observe_share_of_model_latency']:.1f}% of the model's latency |",
        f"| input/output signals sampled from one call in | {sampling:g} (counters and latency: "
        f"every call) |",
        f"| process CPU per call without / with collector (incl. background thread) | "
        f"{cpu_med['runtime']:.1f} / {cpu_med['runtime+collector']:.1f} µs |",
        f"| sketch update throughput (normal / lognormal values) | {thr['normal'] / 1e6:.1f} / "
        f"{thr['lognormal'] / 1e6:.1f} M values/s |",
        f"| one window of 10,000 calls, {n_signals} signals (OTLP protobuf / gzip) | "
        f"{len(window_bytes):,} / {result['window_bytes_gzip']:,} bytes = "
        f"{result['bytes_per_signal']:.0f} / {result['bytes_per_signal_gzip']:.0f} bytes per signal |",
    ]
    (out / "collector_overhead.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
