"""Fresh-process measurement: `python -m edgeyard.gating.bench.child JOB.json` prints one JSON line.

JOB: {"artifacts": [{"format", "artifact", "golden", "input_names", "output_names"}, ...],
"spec"}. Peak RSS is the process's: measure one artifact per process to compare memory.
Device-side code:
numpy, the artifact's runtime and the standard library only.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from typing import Any

import numpy as np

from ..._hashing import sha256_file
from ...engines.registry import load_engine
from .protocol import Measurement, MeasureSpec


def _rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux, bytes on macOS
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)


def _calls(golden: str, n_inputs: int, batch: int | None) -> list[list[np.ndarray]]:
    with np.load(golden) as z:
        ins = [z[f"input_{i}"] for i in range(n_inputs)]
    b = batch or 1
    n = ins[0].shape[0]
    calls = [[a[i : i + b] for a in ins] for i in range(0, n - b + 1, b)]
    if not calls:  # fewer golden samples than the batch: repeat them
        reps = -(-b // n)
        calls = [[np.concatenate([a] * reps)[:b] for a in ins]]
    return calls


def measure(job: dict[str, Any]) -> list[Measurement]:
    """Measure the job's artifacts in this process, their calls interleaved one by one.

    With two artifacts (candidate and baseline) every call of one is followed by a call of the
    other, so whatever the machine does (a slow spell, a frequency change) hits both alike."""
    spec = MeasureSpec.from_dict(job["spec"])
    items = job["artifacts"]
    shas, sizes, loads, engines, calls = [], [], [], [], []
    before = _rss_bytes()
    for it in items:
        path = it["artifact"]
        shas.append(sha256_file(path))
        sizes.append(os.path.getsize(path))
        t0 = time.perf_counter()
        engine = load_engine(it["format"], path, spec.threads, it.get("input_names"),
                             it.get("output_names"))
        loads.append(time.perf_counter() - t0)
        engines.append(engine)
        calls.append(_calls(it["golden"], len(engine.inputs), engine.inputs[0].batch))
    predicts = [e.predict for e in engines]
    k, t0 = 0, time.perf_counter()
    while k < spec.warmup_runs or time.perf_counter() - t0 < spec.warmup_seconds:
        for p, c in zip(predicts, calls, strict=True):
            p(c[k % len(c)])
        k += 1
    samples: list[list[int]] = [[] for _ in items]
    clock = time.perf_counter_ns
    start = clock()
    min_ns = int(spec.min_seconds * 1e9)
    n = 0
    while n < spec.max_runs and (n < spec.min_runs or clock() - start < min_ns):
        for p, c, s in zip(predicts, calls, samples, strict=True):
            x = c[n % len(c)]
            t = clock()
            p(x)
            s.append(clock() - t)
        n += 1
    for e in engines:
        e.close()
    peak = _rss_bytes()
    return [
        Measurement(sha256=sha, size_bytes=size, load_seconds=load, warmup_runs=k,
                    samples_ns=smp, peak_rss_bytes=peak, baseline_rss_bytes=before,
                    threads=spec.threads, host=platform.node())
        for sha, size, load, smp in zip(shas, sizes, loads, samples, strict=True)
    ]


def main(argv: list[str]) -> int:
    job = json.loads(open(argv[1]).read())
    try:
        ms = measure(job)
    except Exception as exc:
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps({"ok": True, "measurements": [m.to_dict() for m in ms]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
