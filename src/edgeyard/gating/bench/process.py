"""Run one measurement in a fresh process with a pinned thread count (local runner and agent)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..._child import child_env, run_module
from ...errors import EdgeyardError
from .protocol import Measurement, MeasureSpec


class MeasureError(EdgeyardError):
    """The artifact could not be measured (it does not load or crashes on the device)."""


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
        with open(Path(tmp) / "out.txt", "w+") as out, open(Path(tmp) / "err.txt", "w+") as err:
            run = run_module("edgeyard.gating.bench.child", [str(job_path)], timeout_s=timeout_s,
                             env=child_env(spec.threads, TF_CPP_MIN_LOG_LEVEL="3"),
                             stdout=out, stderr=err)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read().strip()
        if run.timed_out:
            raise MeasureError(f"measurement timed out after {timeout_s:g} s")
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if run.returncode < 0:
        raise MeasureError(f"measuring process crashed with signal {-run.returncode}: "
                           f"{stderr[-500:]}")
    if not lines:
        raise MeasureError(f"measuring process exited {run.returncode} without a result: "
                           f"{stderr[-500:]}")
    result = json.loads(lines[-1])
    if not result.get("ok"):
        raise MeasureError(result.get("error", "unknown error"))
    return [Measurement.from_dict(m) for m in result["measurements"]]
