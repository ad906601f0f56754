"""fp32 against int8, plain and after the recovery ladder, per backend; and the distilled student.

Method
- Models: the digits CNN of examples/digits (scikit-learn's bundled digits, seed 0, 15 epochs),
  and the same CNN with an outlier activation channel (`digits.with_outlier_channel`: the same
  function in float, one first-conv channel 300x the others) on which plain int8 breaks.
- Build: `edgeyard.build` with one profile listing `onnx`, `tflite` and `executorch` at fp32 and
  int8 (budgets: accuracy drop <= 2 points, top-1 agreement >= 0.97, the shipped defaults);
  calibration = the 360-sample calibration split, evaluation = the 360 held-out digits. The
  ladder runs where int8 breaks the budget; "int8 plain" figures come from the ladder's first
  rung (or the artifact itself when no ladder ran).
- Latency: batch 1, 1 thread, in this process; warm-up 200 calls and 0.5 s per engine, then
  `--rounds` interleaved rounds of `--calls` calls; the median of the per-round means. Ratios
  are int8 / fp32 of the same backend and model, measured in the same run.
- Distillation: `edgeyard.distill` of `digits.make_student()` (9,802 parameters) from the CNN
  (151,306), seed 0, on the training split (validation: the calibration split); both built to
  ONNX fp32 and timed as above. Accuracy on the 360 held-out digits.

    python benchmarks/quantization.py [--rounds 15]

Writes benchmarks/results/quantization.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "digits"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import digits  # noqa: E402
from build_matrix import timed_rounds  # noqa: E402

import edgeyard  # noqa: E402
from edgeyard.backends import get_backend  # noqa: E402

BACKENDS = ("onnx", "tflite", "executorch")


def write_profile(directory: Path, name: str, targets: list[tuple[str, str]]) -> None:
    text = (f'name = "{name}"\nrunner = "local"\n[hardware]\narch = "x86_64"\nos = "linux"\n'
            "threads = 1\n[budgets]\nmax_accuracy_drop = 0.02\nmin_agreement = 0.97\n")
    for b, p in targets:
        text += f'[[targets]]\nbackend = "{b}"\nprecision = "{p}"\n'
    (directory / f"{name}.toml").write_text(text)


def latencies(release, keys, x, rounds, calls) -> dict[str, float]:
    engines, fns = {}, {}
    for k in keys:
        a = release.artifacts[k]
        e = get_backend(a["backend"]).load(release.artifact_path(k), threads=1)
        engines[k] = e
        fns[k] = lambda v, e=e: e.predict([v])
    samples = timed_rounds(fns, x, rounds, calls)
    for e in engines.values():
        e.close()
    return {k: float(np.median(v)) * 1e6 for k, v in samples.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    data = digits.load()
    cnn = digits.train(digits.make_cnn(), data, epochs=15)
    models = {"digits CNN": cnn, "digits CNN, outlier channel": digits.with_outlier_channel(cnn, data)}
    rows, ladders = [], {}
    x = data.x_eval[:1]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "p").mkdir()
        write_profile(tmp_path / "p", "quant", [(b, p) for b in BACKENDS for p in ("fp32", "int8")])
        for label, model in models.items():
            rel = edgeyard.build(model, example_inputs=(x,), profiles=["quant"],
                                 calibration=data.x_calib, evaluation=(data.x_eval, data.y_eval),
                                 out=tmp_path / label.replace(" ", "_").replace(",", ""),
                                 profile_dirs=[tmp_path / "p"], name="digits")
            src_acc = rel.manifest["evaluation"]["source_accuracy"]
            lat = latencies(rel, [k for k, a in rel.artifacts.items() if a["status"] == "ok"], x,
                            args.rounds, args.calls)
            for b in BACKENDS:
                fp, q = rel.artifacts[f"{b}-fp32"], rel.artifacts[f"{b}-int8"]
                plain = (q.get("ladder") or [None])[0]
                ladders[f"{label} / {b}"] = q.get("ladder")
                fp_acc = fp["parity"]["accuracy"]
                row = {"model": label, "backend": b, "source_accuracy": src_acc,
                       "fp32_size": fp["size_bytes"], "fp32_latency_us": lat[f"{b}-fp32"],
                       "fp32_accuracy": fp_acc,
                       "int8_plain_size": plain["size_bytes"] if plain else q["size_bytes"],
                       "int8_plain_accuracy": plain["accuracy"] if plain
                       else q["parity"]["accuracy"],
                       "shipped": (q.get("shipped") or {}).get("rung", "plain int8"),
                       "int8_size": q["size_bytes"], "int8_accuracy": q["parity"]["accuracy"],
                       "int8_latency_us": lat[f"{b}-int8"]}
                rows.append(row)

        student, report = edgeyard.distill(cnn, digits.make_student(),
                                           (data.x_train, data.y_train),
                                           validation=(data.x_calib, data.y_calib), seed=0,
                                           progress=False)
        write_profile(tmp_path / "p", "fp32", [("onnx", "fp32")])
        pair = {}
        for label, model in (("teacher", cnn), ("student", student)):
            rel = edgeyard.build(model, example_inputs=(x,), profiles=["fp32"],
                                 evaluation=(data.x_eval, data.y_eval), out=tmp_path / label,
                                 profile_dirs=[tmp_path / "p"], name=label, log=None)
            pair[label] = (rel, latencies(rel, ["onnx-fp32"], x, args.rounds, args.calls))
    distilled = {label: {"params": report.teacher_params if label == "teacher"
                         else report.student_params,
                         "onnx_size": rel.artifacts["onnx-fp32"]["size_bytes"],
                         "accuracy": rel.artifacts["onnx-fp32"]["parity"]["accuracy"],
                         "onnx_latency_us": lat["onnx-fp32"]}
                 for label, (rel, lat) in pair.items()}
    result = {"method": __doc__, "cpus": os.cpu_count(), "rows": rows, "ladders": ladders,
              "distillation": {"report": report.to_dict(), "artifacts": distilled}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quantization.json").write_text(json.dumps(result, indent=2, default=str))
    md = ["Per backend, int8 against fp32 of the same model in the same run (batch 1, 1 thread; "
          f"{args.rounds} interleaved rounds x {args.calls} calls).", "",
          "| model | backend | fp32 acc | int8 plain acc (Δ) | ships | shipped acc (Δ) | "
          "size int8/fp32 | latency int8/fp32 |",
          "|---|---|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        fa = r["fp32_accuracy"]
        md.append(
            f"| {r['model']} | {r['backend']} | {100 * fa:.2f}% | "
            f"{100 * r['int8_plain_accuracy']:.2f}% ({100 * (r['int8_plain_accuracy'] - fa):+.1f}) | "
            f"{r['shipped']} | {100 * r['int8_accuracy']:.2f}% "
            f"({100 * (r['int8_accuracy'] - fa):+.1f}) | "
            f"{r['int8_size'] / r['fp32_size']:.2f} (plain {r['int8_plain_size'] / r['fp32_size']:.2f}) | "
            f"{r['int8_latency_us'] / r['fp32_latency_us']:.2f} |")
    md += ["", "Ladders (rung: accuracy, size):", ""]
    def rung(r: dict) -> str:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
        size = "-" if r["size_bytes"] is None else f"{r['size_bytes'] / 1e3:.0f} kB"
        return f"{r['rung']}: {acc}, {size}" + (" (ships)" if r["meets_budget"] else "")

    for k, ladder in ladders.items():
        if ladder:
            md.append(f"- {k}: " + "; ".join(rung(r) for r in ladder))
    md += ["", f"Distillation (seed {report.seed}, {report.epochs_run} epochs, best "
               f"{report.best_epoch}, {report.seconds:.1f} s):", "",
           "| model | params | ONNX fp32 size | held-out accuracy | ONNX Runtime latency µs |",
           "|---|---:|---:|---:|---:|"]
    for label, v in distilled.items():
        md.append(f"| {label} | {v['params']:,} | {v['onnx_size'] / 1e3:.0f} kB | "
                  f"{100 * v['accuracy']:.2f}% | {v['onnx_latency_us']:.1f} |")
    t, s = distilled["teacher"], distilled["student"]
    md.append(f"\nStudent / teacher: accuracy kept {100 * s['accuracy'] / t['accuracy']:.1f}%, "
              f"latency {s['onnx_latency_us'] / t['onnx_latency_us']:.2f}x.")
    (out / "quantization.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
