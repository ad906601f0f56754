"""Run one measurement in a fresh process with a pinned thread count (local runner and agent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import EdgeyardError
from .protocol import Measurement, MeasureSpec


class MeasureError(EdgeyardError):
    """The artifact could not be measured (it does not load or crashes on the device)."""


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "TF_NUM_INTRAOP_THREADS"):
        env[var] = str(threads)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def measure_in_process(
    items: Sequence[dict[str, Any]],
    spec: MeasureSpec,
    timeout_s: float = 300.0,
    workdir: str | os.PathLike[str] | None = None,
) -> list[Measurement]:
    """Measure `items` (each: format, artifact, golden, input_names, output_names) in one fresh
    process, their calls interleaved; one `Measurement` per item, in order."""
    job = {"artifacts": [{**it, "artifact": os.fspath(it["artifact"]),
                          "golden": os.fspath(it["golden"])} for it in items],
           "spec": spec.to_dict()}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        job_path = Path(tmp) / "job.json"
        job_path.write_text(json.dumps(job))
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "edgeyard.gating.bench.child", str(job_path)],
                capture_output=True, text=True, timeout=timeout_s, env=thread_env(spec.threads),
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise MeasureError(f"measurement timed out after {timeout_s:g} s") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode < 0:
        raise MeasureError(f"measuring process crashed with signal {-proc.returncode}: "
                           f"{proc.stderr.strip()[-500:]}")
    if not lines:
        raise MeasureError(f"measuring process exited {proc.returncode} without a result: "
                           f"{proc.stderr.strip()[-500:]}")
    result = json.loads(lines[-1])
    if not result.get("ok"):
        raise MeasureError(result.get("error", "unknown error"))
    return [Measurement.from_dict(m) for m in result["measurements"]]
