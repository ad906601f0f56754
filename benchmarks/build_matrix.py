"""Every target edgeyard builds: build time, status (and why), size, accuracy and host latency.

Method
- Model: the digits CNN of examples/digits (scikit-learn's bundled digits, seed 0, 15 epochs).
- Targets: one generated profile with every backend at every precision it offers (TVM twice on
  this host: untuned, `trials = 0`, and tuned with `--tvm-trials` MetaSchedule trials; once
  cross-compiled for aarch64), then the shipped device profiles `iphone-15`, `raspberry-pi-5`
  and `jetson-orin-nano` built as far as this host allows. Each target's status says what was
  verified, what was not, and why.
- Build: `edgeyard.build`; build time = the target's conversion time in its child process
  (toolchain import excluded; TVM's includes tuning), verify time = loading + running 360
  held-out digits in the artifact's own runtime. TVM's tuning records go to a fresh database in
  a temporary directory (`EDGEYARD_TVM_CACHE`); the tuned TVM target is then built a second time
  with the same database (records reused, no tuning): both build times are reported.
- Latency: one sample (batch 1) per call, every verified artifact and eager PyTorch with 1 thread
  (`torch.set_num_threads(1)`, engine threads=1), in this one process. Warm-up: 200 calls and at
  least 0.5 s per engine. Then `--rounds` interleaved rounds (engine A, B, C, ... each run
  `--calls` calls per round, so machine drift hits all alike); per round the mean per-call time;
  reported: the median over rounds, p10-p90 of the rounds, and the ratio to eager PyTorch's
  median and to ONNX Runtime fp32's median.

    python benchmarks/build_matrix.py [--tvm-trials 256] [--rounds 15]

Writes benchmarks/results/build_matrix.json and .md.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "digits"))
import digits  # noqa: E402

import edgeyard  # noqa: E402
from edgeyard.backends import backend_names, get_backend  # noqa: E402

DEVICE_PROFILES = ["iphone-15", "raspberry-pi-5", "jetson-orin-nano"]


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


def _toml_value(v: object) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(v)


def matrix_profile(directory: Path, name: str, tvm_trials: int) -> None:
    """A profile listing every registered backend at every precision it offers."""
    targets: list[tuple[str, str, dict[str, object]]] = []
    for b in backend_names():
        for p in get_backend(b).precisions:
            if b == "tvm":
                continue
            targets.append((b, p, {}))
    tvm = get_backend("tvm")
    if "fp32" in tvm.precisions:
        targets += [("tvm", "fp32", {"trials": 0}), ("tvm", "fp32", {"trials": tvm_trials}),
                    ("tvm", "fp32", {"target": "aarch64", "trials": 0})]
    text = f'name = "{name}"\nrunner = "local"\n[hardware]\narch = "x86_64"\nos = "linux"\nthreads = 1\n'
    for b, p, opts in targets:
        text += f'[[targets]]\nbackend = "{b}"\nprecision = "{p}"\n'
        if opts:
            text += f"options = {_toml_value(opts)}\n"
    (directory / f"{name}.toml").write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tvm-trials", type=int, default=256, help="MetaSchedule trials, tuned TVM")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    data = digits.load()
    model = digits.train(digits.make_cnn(), data, epochs=15)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        os.environ["EDGEYARD_TVM_CACHE"] = str(tmp_path / "tvm-records")  # a fresh database
        (tmp_path / "profiles").mkdir()
        matrix_profile(tmp_path / "profiles", "all-targets", args.tvm_trials)
        common = dict(example_inputs=(data.x_eval[:1],), calibration=data.x_calib,
                      evaluation=(data.x_eval, data.y_eval), name="digits", version="bench",
                      profile_dirs=[tmp_path / "profiles"], timeout_s=3600)
        t0 = time.perf_counter()
        release = edgeyard.build(model, profiles=["all-targets", *DEVICE_PROFILES],
                                 out=tmp_path / "rel", **common)
        wall = time.perf_counter() - t0
        print(release.summary())
        tuned_key = next((k for k, a in release.artifacts.items() if a["backend"] == "tvm"
                          and a["options"].get("trials") == args.tvm_trials), None)
        rebuild = None
        if tuned_key is not None:  # the same model and target again: the records are reused
            (tmp_path / "profiles" / "tvm-again.toml").write_text(
                'name = "tvm-again"\nrunner = "local"\n[hardware]\narch = "x86_64"\nos = "linux"\n'
                f'[[targets]]\nbackend = "tvm"\nprecision = "fp32"\n'
                f'options = {{ trials = {args.tvm_trials} }}\n')
            again = edgeyard.build(model, profiles=["tvm-again"], out=tmp_path / "rel2", **common)
            rebuild = next(iter(again.artifacts.values()))
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
    ort = float(np.median(samples["onnx-fp32"])) if "onnx-fp32" in samples else None
    rows = []
    for key, a in [("pytorch eager", {}), *release.artifacts.items()]:
        s = samples.get(key)
        med = float(np.median(s)) if s else None
        details = a.get("details") or {}
        rows.append({
            "target": key,
            "backend": a.get("backend", "pytorch"),
            "precision": a.get("precision", "fp32"),
            "options": a.get("options", {}),
            "status": a.get("status", "ok"),
            "why": a.get("reason") or a.get("unverified_reason"),
            "size_bytes": a.get("size_bytes"),
            "build_s": a.get("build_seconds"),
            "verify_s": a.get("verify_seconds"),
            "tuning": details.get("tuning"),
            "accuracy": (a.get("parity") or {}).get("accuracy",
                                                   release.manifest["evaluation"]["source_accuracy"]
                                                   if not a else None),
            "latency_us_median": None if med is None else med * 1e6,
            "latency_us_p10": None if not s else float(np.percentile(s, 10)) * 1e6,
            "latency_us_p90": None if not s else float(np.percentile(s, 90)) * 1e6,
            "ratio_to_eager": None if med is None else med / eager,
            "ratio_to_ort": None if med is None or ort is None else med / ort,
            "rounds": s,
        })
    profiles = {p: [(e["target"], e["status"], "; ".join(e["reasons"]))
                    for e in release.chain(p)] for p in DEVICE_PROFILES}
    result = {
        "method": __doc__,
        "host": {"machine": platform.machine(), "python": platform.python_version(),
                 "processor": platform.processor(), "cpus": os.cpu_count()},
        "toolchain": release.manifest["toolchain"],
        "tvm_trials": args.tvm_trials,
        "build_wall_s": wall,
        "tvm_rebuild": None if rebuild is None else {
            "build_s": rebuild.get("build_seconds"), "tuning": rebuild["details"].get("tuning")},
        "profiles": profiles,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "build_matrix.json").write_text(json.dumps(result, indent=2, default=str))
    md = [
        f"Digits CNN, batch 1, 1 thread; {args.rounds} interleaved rounds x {args.calls} calls; "
        f"whole build {wall:.0f} s on {os.cpu_count()} cores.",
        "",
        "| target | status | size | build s | verify s | accuracy | latency µs (median) | p10-p90 "
        "| vs eager | vs ORT fp32 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for r in rows:
        size = "-" if r["size_bytes"] is None else f"{r['size_bytes'] / 1e3:.0f} kB"
        status = r["status"] + (f": {r['why']}" if r["why"] and r["status"] != "ok" else "")
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
        p1090 = ("-" if r["latency_us_p10"] is None
                 else f"{r['latency_us_p10']:.1f}-{r['latency_us_p90']:.1f}")
        md.append(
            f"| {r['target']} | {status} | {size} | {f(r['build_s'], '.1f')} | "
            f"{f(r['verify_s'], '.2f')} | {acc} | {f(r['latency_us_median'], '.1f')} | {p1090} | "
            f"{f(r['ratio_to_eager'], '.2f')} | {f(r['ratio_to_ort'], '.2f')} |")
    tvm_rows = [r for r in rows if r["backend"] == "tvm"]
    if tvm_rows:
        md += ["", "TVM tuning (MetaSchedule, records in a fresh database):", ""]
        for r in tvm_rows:
            md.append(f"- {r['target']} {json.dumps(r['options'])}: build {f(r['build_s'], '.1f')} s, "
                      f"tuning {json.dumps(r['tuning'])}")
        if rebuild is not None:
            md.append(f"- rebuild of the tuned target with the same records: build "
                      f"{f(rebuild.get('build_seconds'), '.1f')} s, tuning "
                      f"{json.dumps(rebuild['details'].get('tuning'))}")
    md += ["", "Device profiles, built as far as this host allows:", ""]
    for p, chain in profiles.items():
        md.append(f"- `{p}`: " + " -> ".join(
            f"{t} **{s}**" + (f" ({why})" if why else "") for t, s, why in chain))
    (out / "build_matrix.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
