"""Run one target's conversion and verification in a child process.

Converters segfault, abort and hang. Each target runs in a fresh Python process (its own session,
so a timeout kills the whole process group), with its output in a log file; whatever happens, the
parent gets an outcome with a reason and the log's tail, and the other targets go on.
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._child import child_env, run_module

TAIL_LINES = 25


@dataclass
class ChildOutcome:
    returncode: int | None
    timed_out: bool
    seconds: float
    result: dict[str, Any] | None  # what the worker wrote, if it got that far
    log_path: Path

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def failure(self, timeout_s: float) -> str | None:
        """Why the child did not produce a result, or None when it did."""
        if self.timed_out:
            return f"timed out after {timeout_s:g} s (killed)"
        if self.returncode is not None and self.returncode < 0:
            sig = -self.returncode
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            return f"converter process crashed with {name} (signal {sig})"
        if self.result is None:
            return f"converter process exited with code {self.returncode} and wrote no result"
        if not self.result.get("ok", False):
            return str(self.result.get("error", "unknown error"))
        return None


def run_child(
    job: dict[str, Any], job_dir: Path, *, timeout_s: float, threads: int = 1,
    python: str = sys.executable,
) -> ChildOutcome:
    """Write `job` to `job_dir`, run `python -m edgeyard.builder.worker` on it, collect the result."""
    job_dir.mkdir(parents=True, exist_ok=True)
    job_path = job_dir / "job.json"
    result_path = job_dir / "result.json"
    log_path = job_dir / "log.txt"
    job_path.write_text(json.dumps(job))
    result_path.unlink(missing_ok=True)
    with open(log_path, "wb") as log:
        run = run_module("edgeyard.builder.worker", [str(job_path)], timeout_s=timeout_s,
                         env=child_env(threads), stdout=log, python=python)
    result = None
    if result_path.exists():
        try:
            result = json.loads(result_path.read_text())
        except json.JSONDecodeError:
            result = None
    return ChildOutcome(run.returncode, run.timed_out, run.seconds, result, log_path)
