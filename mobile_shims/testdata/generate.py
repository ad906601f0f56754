"""Shared test vectors for the C library (mobile_shims/c), written by the Python implementation.

    python mobile_shims/testdata/generate.py [OUT_DIR]   (default: this folder)

Writes
- `vectors.txt`: what the C tests replay, one record per line, doubles as the 16 hex digits of
  their IEEE-754 bits (exact, NaN and -0.0 included):
    index <scale> <value> <index>                        map_to_index
    hist <name> <max_size> <max_scale>                   a new sketch
    update <n> <value>*n                                 one ExpHistogram.update batch
    merge <name> <a> <b>                                 name = a.merge(b)
    state <name> <scale> <reported_scale> <count> <zero_count> <missing> <non_finite> <sum>
          <min> <max> <pos offset> <pos len> <counts>* <neg offset> <neg len> <counts>*
    window <name> <start_ns> <n_engines> <engine>* <n_resource> (<key> <value>)* <classes>
           <class_output> <class_name> <max_size> <max_scale> <n_signals>
    sig <name> <kind> <tensor> <channel> <softmax> <dim> <direction value>*dim
    call <engine> <latency_s> <now_ns> <n_inputs> <n_outputs>, then one line per tensor:
    tensor <dtype> <ndim> <shape>* <value>*             (values as float64 bits)
    proj <signal> <exact 0|1> <batch> <value>*batch      the projection of the last call
    fallback <engine> <kind> <reason> <n>
    dropped <n>
    encode <upload_id> <file | ->                        the window's OTLP JSON must equal file
  A call's engine is an index into the window's engines, or -1 for a call no engine answered
  (every engine failed: the collector's engine None, recorded under the engine name "none").
- `window_b.otlp.json`: the expected OTLP/JSON of window `b`, in the canonical form the C
  encoder writes (fixed field order; doubles as the shortest of %.15g/%.16g/%.17g that reads
  back exactly); it parses to the very message `edgeyard.telemetry.otlp` builds.
- `window_c.otlp.json`: the same for window `c`, whose calls include some that every engine
  failed (engine None: inputs sampled, no outputs; or not sampled).

Windows are built with the Python collector's own per-call code (`Collector._add`), one call
at a time, as the C window adds them.
"""

from __future__ import annotations

import json
import math
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeyard.runtime.runtime import FallbackEvent
from edgeyard.telemetry import otlp
from edgeyard.telemetry.collector import Collector
from edgeyard.telemetry.projections import Projector, default_projections
from edgeyard.telemetry.sketch import ExpHistogram, map_to_index

HERE = Path(__file__).resolve().parent
# kinds whose C projection equals numpy's bit for bit on every machine. The others go through
# numpy's exp and log (its own SIMD code, chosen by processor: not libm), so they are compared
# within INEXACT_RTOL, here and in C.
EXACT_KINDS = {"mean", "std", "min", "max", "channel_mean", "length", "output_mean",
               "random_projection"}
# |python - c| <= INEXACT_RTOL * (1 + |python|) for the others: numpy's float64 exp and log are
# within 4 ulp of exact on every code path it ships, so a softmax over 10 classes and an entropy
# are within ~1e-14 of each other across machines; 1e-12 leaves a margin of 100
INEXACT_RTOL = 1e-12


def is_exact(signal: dict[str, Any]) -> bool:
    """A top-1 confidence without softmax is a max of the outputs: exact too."""
    return signal["kind"] in EXACT_KINDS or (signal["kind"] == "top1_confidence"
                                             and signal.get("activation") != "softmax")
DTYPES = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "uint8": "u8"}
RESOURCE = {
    "service.name": "edgeyard-device", "edgeyard.model": "tiny", "edgeyard.release": "1.0",
    "edgeyard.profile": "pixel-8", "edgeyard.artifact.sha256": "ab" * 32,
    "edgeyard.device_id": "0123456789abcdef0123456789abcdef",
}
UPLOAD_ID = "c0ffee00c0ffee00c0ffee00c0ffee00"


def hx(x: float) -> str:
    return f"{struct.unpack('<Q', struct.pack('<d', float(x)))[0]:016x}"


def hxs(values: Any) -> str:
    return " ".join(hx(v) for v in np.asarray(values, dtype=np.float64).ravel())


# --- sketches ----------------------------------------------------------------------------------

def state_line(name: str, h: ExpHistogram) -> str:
    pos, neg = h.positive.trimmed(), h.negative.trimmed()
    parts = [name, h.scale, h.reported_scale, h.count, h.zero_count, h.missing, h.non_finite,
             hx(h.sum), hx(h.min), hx(h.max), pos.offset, len(pos), *pos.counts.tolist(),
             neg.offset, len(neg), *neg.counts.tolist()]
    return "state " + " ".join(str(p) for p in parts)


def special_values() -> dict[str, np.ndarray]:
    tiny = 5e-324
    pows = [2.0 ** k for k in range(-1074, 1024, 53)] + [2.0 ** k for k in range(-8, 9)]
    subnormal = [tiny, 2 * tiny, 3 * tiny, 2.0 ** -1060, sys.float_info.min / 2,
                 np.nextafter(sys.float_info.min, 0.0), sys.float_info.min,
                 np.nextafter(sys.float_info.min, 1.0)]
    extremes = [sys.float_info.max, np.nextafter(2.0, 0.0), np.nextafter(2.0, 4.0),
                np.nextafter(1.0, 0.0), np.nextafter(1.0, 2.0)]
    # values at and around bucket boundaries 2^(i / 2^scale) for a few scales
    bounds = []
    for s in (1, 3, 8, 20):
        for i in (-37, -5, -1, 1, 3, 7, 2 ** s + 1, 5 * 2 ** s - 3):
            b = 2.0 ** (i / 2.0 ** s)
            bounds += [b, np.nextafter(b, 0.0), np.nextafter(b, np.inf)]
    groups = {"pows": pows, "subnormal": subnormal, "extremes": extremes, "bounds": bounds}
    return {k: np.array(v, dtype=np.float64) for k, v in groups.items()}


def geometric(start: float, ratio: float, n: int) -> np.ndarray:
    """start * ratio^k by repeated multiplication: the same bits on every machine (np.geomspace
    goes through numpy's SIMD log and power, whose last bits depend on the processor)."""
    out = [start]
    for _ in range(n - 1):
        out.append(out[-1] * ratio)
    return np.array(out, dtype=np.float64)


def sketch_vectors(lines: list[str]) -> None:
    rng = np.random.default_rng(20240611)
    groups = special_values()
    specials = np.concatenate(list(groups.values()))
    for scale in (-10, -4, -2, -1, 0, 1, 3, 8, 20):
        for v in np.concatenate([specials, rng.lognormal(0, 4, 8)]):
            lines.append(f"index {scale} {hx(v)} {int(map_to_index(np.array([v]), scale)[0])}")

    sketches: dict[str, ExpHistogram] = {}

    def case(name: str, batches: list[np.ndarray], max_size: int = 160, max_scale: int = 20
             ) -> None:
        h = ExpHistogram(max_size, max_scale)
        lines.append(f"hist {name} {max_size} {max_scale}")
        for b in batches:
            b = np.asarray(b, dtype=np.float64)
            h.update(b)
            lines.append(f"update {b.size} {hxs(b)}")
        lines.append(state_line(name, h))
        sketches[name] = h

    normal = rng.normal(0, 1, 400)
    case("normal", [normal[:3], normal[3:140], normal[140:]])
    case("lognormal", [rng.lognormal(0, 3, 9), rng.lognormal(0, 3, 700)])
    case("lognormal_small", [rng.lognormal(2, 1, 200)], max_size=8)
    case("powers", [groups["pows"], -groups["pows"]])
    case("powers_scale0", [specials], max_size=20, max_scale=0)
    case("powers_neg_scale", [np.concatenate([specials, -specials])], max_size=4, max_scale=-3)
    case("subnormals", [groups["subnormal"], groups["subnormal"] * 3], max_size=16)
    case("boundaries", [groups["bounds"], groups["bounds"][::-1]], max_size=32)
    case("zeros", [np.zeros(5), np.zeros(11)])
    case("zeros_negatives", [np.zeros(3), -rng.lognormal(0, 1, 20), np.zeros(2)])
    messy = rng.normal(5, 2, 300)
    messy[::7] = np.nan
    messy[3::11] = np.inf
    messy[5::13] = -np.inf
    messy[::17] = 0.0
    case("nan_inf", [messy[:6], messy[6:20], messy[20:]])
    case("only_invalid", [np.array([np.nan, np.inf, -np.inf])])
    case("ascending", [geometric(1e-3, 1.087, 250)], max_size=8)
    case("descending", [geometric(1e-3, 1.087, 250)[::-1]], max_size=8)
    case("one_by_one", [np.array([x]) for x in rng.lognormal(0, 5, 40)], max_size=12)
    case("empty", [])
    case("fine", [1 + rng.random(50) * 1e-4], max_size=160)

    for out, a, b in [("m1", "normal", "lognormal"), ("m2", "powers_scale0", "normal"),
                      ("m3", "zeros", "nan_inf"), ("m4", "lognormal_small", "normal"),
                      ("m5", "fine", "empty"), ("m6", "empty", "zeros"),
                      ("m7", "powers_neg_scale", "boundaries"), ("m8", "m1", "m4"),
                      ("m9", "ascending", "descending"), ("m10", "subnormals", "one_by_one")]:
        sketches[out] = sketches[a].merge(sketches[b])
        lines.append(f"merge {out} {a} {b}")
        lines.append(state_line(out, sketches[out]))
    # merge_all (what the server does) agrees with the pairwise merges above
    assert ExpHistogram.merge_all([sketches[k] for k in ("normal", "lognormal", "lognormal_small",
                                                          "normal")]) == sketches["m8"]


# --- windows -----------------------------------------------------------------------------------

IO_INPUTS = [{"name": "image", "shape": [-1, 3, 4, 4], "dtype": "float32"},
             {"name": "tokens", "shape": [-1, 5], "dtype": "int64"}]
IO_OUTPUTS = [{"name": "logits", "shape": [-1, 10], "dtype": "float32"},
              {"name": "aux", "shape": [-1, 2], "dtype": "float32"}]


def tensor_line(a: np.ndarray) -> str:
    return f"tensor {DTYPES[a.dtype.name]} {a.ndim} {' '.join(map(str, a.shape))} {hxs(a)}"


def spec_lines(name: str, spec: dict[str, Any], projector: Projector, start_ns: int,
               engines: list[str]) -> list[str]:
    c = spec.get("classes") or {}
    res = " ".join(f"{k} {v}" for k, v in RESOURCE.items())
    out = [f"window {name} {start_ns} {len(engines)} {' '.join(engines)} {len(RESOURCE)} {res} "
           f"{c.get('count', 0)} {c.get('output', 0)} {c.get('name', 'output.class')} "
           f"{spec['sketch']['max_size']} {spec['sketch']['max_scale']} {len(spec['signals'])}"]
    for s in spec["signals"]:
        direction = ""
        dim = 0
        if s["kind"] == "random_projection":
            dim = s["dim"]
            direction = hxs(projector.directions(s["name"]))
        tensor = s.get("input", s.get("output", 0))
        out.append(f"sig {s['name']} {s['kind']} {tensor} {s.get('channel', 0)} "
                   f"{int(s.get('activation') == 'softmax')} {dim} {direction}".rstrip())
    return out


def make_call(rng: np.random.Generator, batch: int, probs: bool) -> tuple[list, list]:
    image = rng.normal(0.5, 2.0, (batch, 3, 4, 4)).astype(np.float32)
    tokens = rng.integers(0, 3, (batch, 5)).astype(np.int64)
    logits = rng.normal(0, 3, (batch, 10))
    if probs:
        logits = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    aux = rng.normal(0, 1, (batch, 2)).astype(np.float32)
    return [image, tokens], [logits.astype(np.float32), aux]


def window_vectors(lines: list[str], out_dir: Path) -> Any:
    """Windows `a` (every projection kind: values checked per call) and `b` (exact kinds, with
    NaN, Inf, unsampled calls, fallbacks and drops: its OTLP JSON checked byte for byte);
    returns window b's request as `edgeyard.telemetry.otlp` builds it."""
    request = None
    rng = np.random.default_rng(7)
    engines = ["onnx-fp32", "cpu-ref"]
    full = default_projections(IO_INPUTS, IO_OUTPUTS, None, random_projections=2, seed=3)
    exact = json.loads(json.dumps(full))
    exact["signals"] = [s for s in exact["signals"]
                        if s["kind"] not in ("random_projection", "entropy")]
    for s in exact["signals"]:
        if s["kind"] == "top1_confidence":
            s["activation"] = "none"  # a max of the outputs: exact
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in (("a", full), ("b", exact)):
            col = Collector(spec, RESOURCE, None, Path(tmp) / name, max_overhead=None,
                            start=False)
            start_ns = 1_700_000_000_000_000_000
            col._window = w = col._window.__class__(spec, start_ns)
            projector = col.projector
            lines += spec_lines(name, spec, projector, start_ns, engines)
            for k in range(8 if name == "a" else 12):
                batch = int(rng.integers(1, 4))
                ins, outs = make_call(rng, batch, probs=name == "b")
                if name == "b" and k == 4:
                    ins[0][0, 1, 2, 3] = np.nan
                if name == "b" and k == 6:
                    ins[0][-1, 0, 0, 0] = np.inf
                sampled = not (name == "b" and k in (2, 9))
                engine = engines[int(k % 3 == 1)]
                latency_s = float(rng.lognormal(-5, 0.5))
                now_ns = start_ns + (k + 1) * 1_000_000
                fallbacks = [(0, (FallbackEvent("onnx-fp32", "error", "oom"),))] if k == 5 else []
                col._add({"samples": [batch if sampled else 0], "inputs": ins, "outputs": outs,
                          "latency_s": [latency_s], "engines": [engine],
                          "fallbacks": fallbacks}, 0, 1, 0, batch if sampled else 0)
                w.end_ns = now_ns
                lines.append(f"call {engines.index(engine)} {hx(latency_s)} {now_ns} "
                             f"{len(ins) if sampled else 0} {len(outs) if sampled else 0}")
                if sampled:
                    lines += [tensor_line(a) for a in ins + outs]
                    values, _ = projector.project(ins, outs)
                    for i, s in enumerate(spec["signals"]):
                        lines.append(f"proj {i} {int(is_exact(s))} {batch} "
                                     f"{hxs(values[s['name']])}")
                for _, events in fallbacks:
                    for f in events:
                        lines.append(f"fallback {f.engine} {f.kind} {f.reason} 1")
            w.fallbacks[("cpu-ref", "invalid_output", "nan")] += 2
            lines.append("fallback cpu-ref invalid_output nan 2")
            w.dropped += 3
            lines.append("dropped 3")
            if name == "b":
                request = otlp.request([otlp.resource_metrics(
                    w, {**RESOURCE, "edgeyard.upload_id": UPLOAD_ID})])
                text = canonical_json(request)
                (out_dir / "window_b.otlp.json").write_text(text + "\n")
                lines.append(f"encode {UPLOAD_ID} window_b.otlp.json")
            else:
                lines.append(f"encode {UPLOAD_ID} -")
        none_engine_vectors(lines, out_dir, exact, Path(tmp) / "c")
    return request


NONE_CALLS = 7  # window c: calls 2 and 5 were answered by no engine (every engine failed)


def none_engine_vectors(lines: list[str], out_dir: Path, exact: dict[str, Any],
                        spool: Path) -> Any:
    """Window `c`: a call no engine answered goes to the collector with engine None and no
    outputs; it is counted, its latency kept, under the engine name "none" (C: engine -1).
    Returns window c's request; writes window_c.otlp.json."""
    rng = np.random.default_rng(11)
    engines = ["onnx-fp32", "cpu-ref"]
    keep = {"input.image.mean", "input.image.max", "input.tokens.length", "output.confidence"}
    spec = {**exact, "signals": [s for s in exact["signals"] if s["name"] in keep]}
    col = Collector(spec, RESOURCE, None, spool, max_overhead=None, start=False)
    start_ns = 1_700_000_000_000_000_000
    col._window = w = col._window.__class__(spec, start_ns)
    projector = col.projector
    lines += spec_lines("c", spec, projector, start_ns, engines)
    failed = (FallbackEvent("onnx-fp32", "error", "oom"),
              FallbackEvent("cpu-ref", "invalid_output", "nan"))
    for k in range(NONE_CALLS):
        batch = int(rng.integers(1, 4))
        ins, outs = make_call(rng, batch, probs=True)
        none = k in (2, 5)
        sampled = k != 5
        if none:
            outs = []
        engine = None if none else engines[k % 2]
        latency_s = float(rng.lognormal(-5, 0.5))
        now_ns = start_ns + (k + 1) * 1_000_000
        fallbacks = [(0, failed)] if none else []
        col._add({"samples": [batch if sampled else 0], "inputs": ins, "outputs": outs,
                  "latency_s": [latency_s], "engines": [engine], "fallbacks": fallbacks},
                 0, 1, 0, batch if sampled else 0)
        w.end_ns = now_ns
        index = -1 if engine is None else engines.index(engine)
        lines.append(f"call {index} {hx(latency_s)} {now_ns} {len(ins) if sampled else 0} "
                     f"{len(outs) if sampled else 0}")
        if sampled:
            lines += [tensor_line(a) for a in ins + outs]
            values, _ = projector.project(ins, outs or None)
            for i, s in enumerate(spec["signals"]):
                if s["name"] in values:
                    lines.append(f"proj {i} {int(is_exact(s))} {batch} "
                                 f"{hxs(values[s['name']])}")
        for _, events in fallbacks:
            for f in events:
                lines.append(f"fallback {f.engine} {f.kind} {f.reason} 1")
    assert w.engines["none"] == 2 and w.engine_latency["none"].count == 2
    request = otlp.request([otlp.resource_metrics(
        w, {**RESOURCE, "edgeyard.upload_id": UPLOAD_ID})])
    (out_dir / "window_c.otlp.json").write_text(canonical_json(request) + "\n")
    lines.append(f"encode {UPLOAD_ID} window_c.otlp.json")
    return request


# --- the canonical OTLP JSON (what the C encoder writes) ---------------------------------------

def jdouble(x: float) -> str:
    if math.isnan(x):
        return '"NaN"'
    if math.isinf(x):
        return '"Infinity"' if x > 0 else '"-Infinity"'
    for p in (15, 16, 17):
        s = f"{x:.{p}g}"  # as C's "%.*g"
        if float(s) == x:
            return s
    raise AssertionError("unreachable")


def jstr(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def jattrs(kvs: Any) -> str:
    out = []
    for kv in kvs:
        kind = kv.value.WhichOneof("value")
        v = jstr(kv.value.string_value) if kind == "string_value" else f'"{kv.value.int_value}"'
        key = "stringValue" if kind == "string_value" else "intValue"
        out.append(f'{{"key":{jstr(kv.key)},"value":{{"{key}":{v}}}}}')
    return ",".join(out)


def jtimes(p: Any) -> str:
    return f'"startTimeUnixNano":"{p.start_time_unix_nano}","timeUnixNano":"{p.time_unix_nano}"'


def jbuckets(b: Any) -> str:
    counts = ",".join(f'"{c}"' for c in b.bucket_counts)
    return f'{{"offset":{b.offset},"bucketCounts":[{counts}]}}'


def canonical_json(req: Any) -> str:
    """The request as the C encoder writes it (see ey_window_encode_otlp_json)."""
    rm = req.resource_metrics[0]
    sm = rm.scope_metrics[0]
    metrics = []
    for m in sm.metrics:
        head = f'{{"name":{jstr(m.name)}' + (f',"unit":{jstr(m.unit)}' if m.unit else "")
        if m.WhichOneof("data") == "exponential_histogram":
            pts = []
            for p in m.exponential_histogram.data_points:
                s = (f'{{{jtimes(p)},"count":"{p.count}","sum":{jdouble(p.sum)},'
                     f'"scale":{p.scale},"zeroCount":"{p.zero_count}",'
                     f'"positive":{jbuckets(p.positive)},"negative":{jbuckets(p.negative)}')
                if p.HasField("min"):
                    s += f',"min":{jdouble(p.min)},"max":{jdouble(p.max)}'
                if len(p.attributes):
                    s += f',"attributes":[{jattrs(p.attributes)}]'
                pts.append(s + "}")
            metrics.append(f'{head},"exponentialHistogram":{{"dataPoints":[{",".join(pts)}],'
                           '"aggregationTemporality":1}}')
        else:
            pts = [f'{{{jtimes(p)},"asInt":"{p.as_int}","attributes":[{jattrs(p.attributes)}]}}'
                   for p in m.sum.data_points]
            metrics.append(f'{head},"sum":{{"dataPoints":[{",".join(pts)}],'
                           '"aggregationTemporality":1,"isMonotonic":true}}')
    return (f'{{"resourceMetrics":[{{"resource":{{"attributes":[{jattrs(rm.resource.attributes)}]}},'
            f'"scopeMetrics":[{{"scope":{{"name":{jstr(sm.scope.name)},'
            f'"version":{jstr(sm.scope.version)}}},"metrics":[{",".join(metrics)}]}}]}}]}}')


def generate(out_dir: Path) -> tuple[list[Path], Any]:
    """Write the vectors into out_dir; returns the files written and window b's request (the
    ExportMetricsServiceRequest message that window_b.otlp.json must parse to)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# edgeyard C test vectors, written by mobile_shims/testdata/generate.py: do not edit"]
    with np.errstate(all="ignore"):  # NaN, Inf and overflowing sums are part of the vectors
        sketch_vectors(lines)
        request = window_vectors(lines, out_dir)
    (out_dir / "vectors.txt").write_text("\n".join(lines) + "\n")
    return [out_dir / "vectors.txt", out_dir / "window_b.otlp.json",
            out_dir / "window_c.otlp.json"], request


if __name__ == "__main__":
    for f in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)[0]:
        print(f, f.stat().st_size, "bytes")
