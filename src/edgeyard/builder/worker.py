"""Child-process entry: convert one target, load the artifact in its runtime, run the held-out
inputs through it. `python -m edgeyard.builder.worker JOB.json` (written by `isolate.run_child`).

Writes `result.json` (last, atomically) and `outputs.npz`. The parent computes parity from the
outputs, so the metrics live in one place (`verify.py`).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from edgeyard._files import atomic_write

    atomic_write(path, json.dumps(data, default=str))


def run(job: dict[str, Any], state: dict[str, str]) -> dict[str, Any]:
    from edgeyard._hashing import sha256_file
    from edgeyard.backends.base import ConvertRequest
    from edgeyard.backends.registry import load_backend_ref
    from edgeyard.data import load_arrays, run_batched, save_arrays
    from edgeyard.model import SourceModel

    backend = load_backend_ref(job["backend"])
    source = SourceModel.from_dict(job["source"])
    out_path = Path(job["artifact_path"])
    workdir = Path(job["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    request = ConvertRequest(
        source=source,
        precision=job["precision"],
        options=job["options"],
        out_path=out_path,
        workdir=workdir,
        calibration=load_arrays(job["calibration"]) if job.get("calibration") else None,
    )
    state["stage"] = "conversion"
    result: dict[str, Any] = {"ok": False}
    t0 = time.perf_counter()
    converted = backend.convert(request)
    result["convert_seconds"] = time.perf_counter() - t0
    path = Path(converted.path)
    result.update(
        path=str(path), details=converted.details, size_bytes=_artifact_size(path),
        sha256=sha256_file(path) if path.exists() else None,
    )
    try:
        result["inspect"] = backend.inspect(path)
    except Exception as exc:
        result["inspect"] = {"error": f"{type(exc).__name__}: {exc}"}

    if job.get("analyze"):  # the recovery ladder's sensitivity analysis, nothing else
        state["stage"] = "sensitivity analysis"
        result.update(ok=True, verified=False, unverified_reason="analysis only",
                      sensitivity=backend.sensitivity(request))
        return result
    cannot = converted.runs_elsewhere or backend.cannot_run_here()
    if cannot:
        result.update(ok=True, verified=False, unverified_reason=cannot)
        return result
    state["stage"] = "verification"
    t1 = time.perf_counter()
    engine = backend.load(path, threads=int(job.get("threads", 1)), source=source)
    inputs = load_arrays(job["evaluation"])
    if len(engine.inputs) != len(inputs):
        raise ValueError(
            f"artifact has {len(engine.inputs)} inputs, the source model {len(inputs)}"
        )
    batch = engine.inputs[0].batch if engine.inputs else None
    outputs = run_batched(engine.predict, inputs, batch)
    engine.close()
    result["verify_seconds"] = time.perf_counter() - t1
    save_arrays(job["outputs_path"], outputs)
    result.update(ok=True, verified=True, engine_inputs=[s.to_dict() for s in engine.inputs])
    return result


def _artifact_size(path: Path) -> int:
    if path.is_dir():  # bundle formats (.mlpackage)
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def main(argv: list[str]) -> int:
    job_path = Path(argv[1])
    job = json.loads(job_path.read_text())
    result_path = job_path.with_name("result.json")
    state = {"stage": "set-up"}
    try:
        result = run(job, state)
    except BaseException as exc:
        traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _write_json(result_path, {"ok": False, "stage": state["stage"],
                                  "error": f"{state['stage']} failed: {type(exc).__name__}: {first}"})
        return 3
    _write_json(result_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
