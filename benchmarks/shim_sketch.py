"""The C telemetry library (mobile_shims/c) next to the Python one: sketch throughput and bytes
per window.

Method
- Build: benchmarks/shim_sketch.c and mobile_shims/c/src/*.c with this machine's `cc`
  (`-std=c99 -O2 -ffp-contract=off`), no sanitizers. Same process start for every figure.
- Values: 200,000 float64 values, normal(0, 1) and lognormal(0, 4) (seed 0; the lognormal ones
  force scale changes), written once and read by both sides.
- Sketch update throughput, values/s: C `ey_hist_update` on the whole array in one batch, and one
  value per call (the device path: one call, one latency); Python `ExpHistogram.update` on the
  numpy array in one batch, and one value per call on the first 20,000 values. One warm-up pass,
  then the median of `--repeats` (C, Python batch) or of 3 (Python per value).
- Window: 10,000 calls of a model with a float input [1, 16] and one output (signals
  input mean/std/min/max, output mean, and the latency; one engine) through
  `ey_window_observe` (per-call cost: median over repeats), encoded as OTLP/JSON; the same calls
  through the Python collector's per-call path (`Collector._add`) give the protobuf
  ResourceMetrics the Python collector spools. Bytes raw and gzip (level 9, as the collector
  uploads), and whether the C JSON parses to the very message Python builds.

    python benchmarks/shim_sketch.py [--repeats 15]

Writes benchmarks/results/shim_sketch.json and .md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
C_DIR = ROOT / "mobile_shims" / "c"
DIM, CALLS = 16, 10_000
RESOURCE = {"service.name": "edgeyard-device", "edgeyard.model": "bench",
            "edgeyard.release": "1.0"}
UPLOAD_ID = "0123456789abcdef0123456789abcdef"
SPEC = {"version": 1, "classes": None, "runtime": ["latency_ms", "engine", "fallback"],
        "sketch": {"max_size": 160, "max_scale": 20},
        "signals": [{"name": f"input.x.{k}", "kind": k, "input": 0}
                    for k in ("mean", "std", "min", "max")]
        + [{"name": "output.y.mean", "kind": "output_mean", "output": 0}]}


def build(tmp: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("needs a C compiler (cc or gcc)")
    exe = tmp / "shim_sketch"
    subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic",
                    "-ffp-contract=off", "-O2", f"-I{C_DIR / 'include'}",
                    str(ROOT / "benchmarks" / "shim_sketch.c"),
                    *map(str, sorted((C_DIR / "src").glob("*.c"))), "-lm", "-o", str(exe)],
                   check=True)
    return exe


def python_rates(values: np.ndarray, repeats: int) -> tuple[float, float]:
    from edgeyard.telemetry import ExpHistogram

    ExpHistogram().update(values)  # warm-up
    batch = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ExpHistogram().update(values)
        batch.append(values.size / (time.perf_counter() - t0))
    few = values[:20_000]
    single = []
    for _ in range(3):
        h = ExpHistogram()
        t0 = time.perf_counter()
        for x in few:
            h.update(x)
        single.append(few.size / (time.perf_counter() - t0))
    return statistics.median(batch), statistics.median(single)


def python_window(values: np.ndarray, tmp: Path) -> tuple[bytes, object]:
    """The C benchmark's window, through the Python collector's per-call path."""
    from edgeyard.telemetry import otlp
    from edgeyard.telemetry.collector import Collector

    col = Collector(SPEC, RESOURCE, None, tmp / "spool", max_overhead=None, start=False)
    start = 1_700_000_000_000_000_000
    col._window = w = col._window.__class__(SPEC, start)
    for i in range(CALLS):
        x = values[i * DIM:(i + 1) * DIM].reshape(1, DIM)
        y = values[i:i + 1].reshape(1, 1)
        col._add({"samples": [1], "inputs": [x], "outputs": [y],
                  "latency_s": [1e-3 * (1.0 + 0.01 * (i % 97))], "engines": ["onnx-fp32"],
                  "fallbacks": []}, 0, 1, 0, 1)
    w.end_ns = start + (CALLS - 1) * 1_000_000
    attrs = {**RESOURCE, "edgeyard.upload_id": UPLOAD_ID}
    return otlp.window_bytes(w, attrs), otlp.request([otlp.resource_metrics(w, attrs)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    from google.protobuf import json_format
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as svc

    rng = np.random.default_rng(0)
    data = {"normal": rng.normal(0, 1, 200_000), "lognormal": rng.lognormal(0, 4, 200_000)}
    result: dict[str, object] = {"machine": platform.platform(), "python": sys.version.split()[0],
                                 "numpy": np.__version__, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        exe = build(tmp)
        for name, values in data.items():
            path = tmp / f"{name}.f64"
            values.astype("<f8").tofile(path)
            r = subprocess.run([str(exe), str(path), str(args.repeats), str(tmp / "w.json")],
                               check=True, capture_output=True, text=True)
            c = json.loads(r.stdout)
            py_batch, py_single = python_rates(values, args.repeats)
            result[name] = {"c_batch_values_per_s": c["batch_values_per_s"],
                            "c_single_values_per_s": c["single_values_per_s"],
                            "python_batch_values_per_s": py_batch,
                            "python_single_values_per_s": py_single}
            if name == "normal":
                c_json = (tmp / "w.json").read_bytes()
                pb, request = python_window(values, tmp)
                same = json_format.Parse(c_json, svc.ExportMetricsServiceRequest()) == request
                result["window"] = {
                    "calls": CALLS, "signals": c["window_signals"],
                    "c_observe_us_per_call": c["observe_s_per_call"] * 1e6,
                    "c_json_bytes": len(c_json), "c_json_gzip_bytes": len(gzip.compress(c_json)),
                    "python_protobuf_bytes": len(pb),
                    "python_protobuf_gzip_bytes": len(gzip.compress(pb)),
                    "c_json_equals_python_message": same,
                    "sizeof_ey_window": c["sizeof_window"], "sizeof_ey_hist": c["sizeof_hist"]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "shim_sketch.json").write_text(json.dumps(result, indent=2) + "\n")
    w = result["window"]
    assert isinstance(w, dict)

    def m(x: float) -> str:
        return f"{x / 1e6:.1f} M" if x >= 1e6 else f"{x / 1e3:.0f} k"

    md = ["# C telemetry library (mobile_shims/c) vs Python", "",
          f"{result['machine']}, Python {result['python']}, numpy {result['numpy']}; medians of "
          f"{args.repeats} repeats after a warm-up (see the Method in benchmarks/shim_sketch.py); a "
          "shared 2-core machine: expect ~20% noise.",
          "", "| measure | C | Python |", "|---|---|---|"]
    for name in data:
        r = result[name]
        assert isinstance(r, dict)
        md.append(f"| sketch update, {name}, one batch of 200,000 (values/s) | "
                  f"{m(r['c_batch_values_per_s'])} | {m(r['python_batch_values_per_s'])} |")
        md.append(f"| sketch update, {name}, one value per call (values/s) | "
                  f"{m(r['c_single_values_per_s'])} | {m(r['python_single_values_per_s'])} |")
    md += [f"| window observe, per call ({w['signals']} signals, input [1, {DIM}]) | "
           f"{w['c_observe_us_per_call']:.2f} µs | |",
           f"| one window of {CALLS:,} calls: bytes (gzip) | {w['c_json_bytes']:,} "
           f"({w['c_json_gzip_bytes']:,}) OTLP/JSON | {w['python_protobuf_bytes']:,} "
           f"({w['python_protobuf_gzip_bytes']:,}) OTLP protobuf |",
           f"| C window parses to the message Python builds for the same calls | "
           f"{w['c_json_equals_python_message']} | |",
           f"| memory: sizeof(ey_window) / sizeof(ey_hist) | {w['sizeof_ey_window']:,} / "
           f"{w['sizeof_ey_hist']:,} bytes | |"]
    (out / "shim_sketch.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
