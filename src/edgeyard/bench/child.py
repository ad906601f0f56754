"""Fresh-process measurement: `python -m edgeyard.bench.child JOB.json` prints one JSON line.

JOB: {"format", "artifact", "golden", "spec", "input_names", "output_names"}. Device-side code:
numpy, the artifact's runtime and the standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import sys
import time
from typing import Any

import numpy as np

from ..engines.base import load_engine
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


def measure(job: dict[str, Any]) -> Measurement:
    spec = MeasureSpec.from_dict(job["spec"])
    path = job["artifact"]
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    before = _rss_bytes()
    t0 = time.perf_counter()
    engine = load_engine(job["format"], path, spec.threads, job.get("input_names"),
                         job.get("output_names"))
    load_s = time.perf_counter() - t0
    calls = _calls(job["golden"], len(engine.inputs), engine.inputs[0].batch)
    predict = engine.predict
    k, t0 = 0, time.perf_counter()
    while k < spec.warmup_runs or time.perf_counter() - t0 < spec.warmup_seconds:
        predict(calls[k % len(calls)])
        k += 1
    samples: list[int] = []
    clock = time.perf_counter_ns
    start = clock()
    min_ns = int(spec.min_seconds * 1e9)
    while len(samples) < spec.max_runs and (
        len(samples) < spec.min_runs or clock() - start < min_ns
    ):
        x = calls[len(samples) % len(calls)]
        t = clock()
        predict(x)
        samples.append(clock() - t)
    engine.close()
    return Measurement(
        sha256=sha, size_bytes=os.path.getsize(path), load_seconds=load_s, warmup_runs=k,
        samples_ns=samples, peak_rss_bytes=_rss_bytes(), baseline_rss_bytes=before,
        threads=spec.threads, host=platform.node(),
    )


def main(argv: list[str]) -> int:
    job = json.loads(open(argv[1]).read())
    try:
        m = measure(job)
    except Exception as exc:
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps({"ok": True, "measurement": m.to_dict()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
