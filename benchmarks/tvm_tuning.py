"""TVM latency per MetaSchedule trial budget, next to ONNX Runtime and LiteRT, measured together.

Method
- Model: the digits CNN of examples/digits (scikit-learn's bundled 8x8 digits, seed 0, 15
  epochs), exported once with torch.export; every artifact is converted from that one source by
  the edgeyard backend in this process (fp32): ONNX Runtime, LiteRT (skipped with the reason when
  its toolchain is missing or fails) and TVM once per trial budget.
- TVM: each budget tunes into its own fresh record database (no reuse between budgets); target
  `--target` (default: this CPU with "num-cores" 1, so candidates are measured with the one thread
  the latency below uses). Tuning seconds = MetaSchedule's tuning time inside the conversion;
  build seconds = the whole conversion. Then the same model, target and budget is converted again:
  "rebuild s" is that second conversion, which must reuse the records without tuning.
- Latency: one sample (batch 1) per call, every engine with 1 thread, in this one process.
  Warm-up: 200 calls and at least 0.5 s per engine. Then `--rounds` interleaved rounds (each engine
  runs `--calls` calls per round, so machine drift hits all alike); per round the mean per-call
  time; reported: the median over rounds, p10-p90 of the rounds, and ratios to untuned TVM and to
  ONNX Runtime.

    python benchmarks/tvm_tuning.py [--trials 0,64,256] [--out benchmarks/results/tvm_tuning.json]

Writes the JSON and prints (and writes next to it) a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "digits"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import digits  # noqa: E402
from build_matrix import timed_rounds  # noqa: E402

from edgeyard._deps import toolchain_lock  # noqa: E402
from edgeyard.backends import get_backend  # noqa: E402
from edgeyard.backends.base import ConvertRequest  # noqa: E402
from edgeyard.model import prepare  # noqa: E402


def convert(backend: str, src: Any, out: Path, options: dict[str, Any]) -> tuple[Path, dict[str, Any], float]:
    b = get_backend(backend)
    work = out.with_suffix(".work")
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    res = b.convert(ConvertRequest(src.source, "fp32", options, out, work))
    return Path(res.path), res.details, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", default="0,64,256", help="comma-separated MetaSchedule budgets")
    ap.add_argument("--target", default=None,
                    help='TVM target (short name or JSON); default: this CPU, "num-cores" 1')
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tvm_tuning.json"))
    args = ap.parse_args()
    budgets = [int(t) for t in args.trials.split(",") if t.strip()]

    import torch

    from edgeyard.backends.tvm import resolve_target

    torch.set_num_threads(1)
    target = (json.loads(args.target) if args.target and args.target.startswith("{")
              else args.target) or {**resolve_target("host"), "num-cores": 1}
    data = digits.load()
    model = digits.train(digits.make_cnn(), data, epochs=15)
    x1 = data.x_eval[:1]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        src = prepare(model, (x1,), tmp_path / "source")
        (expected,) = src.predict((data.x_eval,))
        builds: dict[str, tuple[Path, str]] = {}
        for name, backend, suffix in (("onnxruntime fp32", "onnx", ".onnx"),
                                      ("litert fp32", "tflite", ".tflite")):
            why = get_backend(backend).unavailable("torch")
            row: dict[str, Any] = {"name": name, "backend": backend}
            if why is None:
                try:
                    path, _, secs = convert(backend, src, tmp_path / f"{backend}{suffix}", {})
                    builds[name] = (path, backend)
                    row["build_s"] = secs
                except Exception as exc:  # a failed converter is a row, not the end of the run
                    why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            row["skipped"] = why
            rows.append(row)
            print(f"{name}: {'built' if why is None else 'skipped: ' + why}", flush=True)
        for trials in budgets:
            name = f"tvm trials={trials}"
            opts = {"target": target, "trials": trials, "tuning_db": str(tmp_path / f"db-{trials}")}
            path, details, secs = convert("tvm", src, tmp_path / f"tvm-{trials}.so", opts)
            _, again, rebuild = convert("tvm", src, tmp_path / f"tvm-{trials}-again.so", opts)
            builds[name] = (path, "tvm")
            rows.append({"name": name, "backend": "tvm", "trials": trials, "build_s": secs,
                         "tuning_s": details["tuning"]["seconds"], "rebuild_s": rebuild,
                         "rebuild_tuning": again["tuning"], "tuned_tasks": details["tuned_tasks"],
                         "tasks": details["tasks"], "target": details["target"]})
            print(f"{name}: built in {secs:.0f} s (tuning {details['tuning']['seconds']} s, "
                  f"{details['tuned_tasks']}/{details['tasks']} tasks tuned), rebuilt in "
                  f"{rebuild:.1f} s (reused: {again['tuning']['reused']})", flush=True)

        engines, fns = {}, {}
        for name, (path, backend) in builds.items():
            e = get_backend(backend).load(path, threads=1, source=src.source)
            (got,) = [np.concatenate(p) for p in zip(
                *(e.predict([data.x_eval[i:i + 1]]) for i in range(len(data.x_eval))),
                strict=True)]
            next(r for r in rows if r["name"] == name)["max_abs_err"] = float(
                np.abs(got - expected).max())
            engines[name] = e
            fns[name] = lambda x, e=e: e.predict([x])
        samples = timed_rounds(fns, x1, args.rounds, args.calls)
        for e in engines.values():
            e.close()

    med = {k: float(np.median(v)) for k, v in samples.items()}
    ort = med.get("onnxruntime fp32")
    untuned = med.get("tvm trials=0")
    for r in rows:
        s = samples.get(r["name"])
        if not s:
            continue
        m = med[r["name"]]
        r.update(latency_us_median=m * 1e6, latency_us_p10=float(np.percentile(s, 10)) * 1e6,
                 latency_us_p90=float(np.percentile(s, 90)) * 1e6,
                 speedup_vs_untuned=None if untuned is None else untuned / m,
                 ratio_to_ort=None if ort is None else m / ort, rounds=s)

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    md = [f"Digits CNN, batch 1, 1 thread; {args.rounds} interleaved rounds x {args.calls} calls; "
          f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}); TVM target "
          f"{json.dumps(target)}.", "",
          "| artifact | build s | tuning s | rebuild s (reused) | tuned tasks | latency µs "
          "(median) | p10-p90 | vs untuned TVM | vs ORT | max abs err |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("skipped"):
            md.append(f"| {r['name']} | skipped: {r['skipped']} |||||||||")
            continue
        reuse = (f"{r['rebuild_s']:.1f} ({'yes' if r['rebuild_tuning']['reused'] else 'no'})"
                 if "rebuild_s" in r else "-")
        tasks = f"{r['tuned_tasks']}/{r['tasks']}" if "tasks" in r else "-"
        md.append(
            f"| {r['name']} | {f(r.get('build_s'), '.1f')} | {f(r.get('tuning_s'), '.0f')} | "
            f"{reuse} | {tasks} | {f(r.get('latency_us_median'), '.1f')} | "
            f"{f(r.get('latency_us_p10'), '.0f')}-{f(r.get('latency_us_p90'), '.0f')} | "
            f"{f(r.get('speedup_vs_untuned'), '.1f')}x | {f(r.get('ratio_to_ort'), '.2f')}x | "
            f"{f(r.get('max_abs_err'), '.1e')} |")
    text = "\n".join(md)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"method": __doc__, "host": {
        "machine": platform.machine(), "python": platform.python_version(),
        "processor": platform.processor(), "cpus": os.cpu_count()},
        "toolchain": toolchain_lock(), "target": target, "budgets": budgets, "rows": rows},
        indent=2, default=str))
    out.with_suffix(".md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
