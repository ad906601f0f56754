"""Running edgeyard's own Python modules in child processes: the build's per-target worker and
the gate's measuring process.

A child runs in its own session, so that a timeout, Ctrl-C or any error in the parent kills its
whole process group (a converter and whatever it started), never leaving an orphan; it imports
what the parent can (the parent's `sys.path`) and runs the thread count it is given.
Standard library only: the measuring process also runs on devices.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "TF_NUM_INTRAOP_THREADS")


def child_env(threads: int, **extra: str) -> dict[str, str]:
    """This process's environment for a child: `sys.path` on PYTHONPATH (tests and plug-ins
    register backends from modules the child must import too), every math library pinned to
    `threads`, TensorFlow's start-up chatter off, unbuffered output; `extra` on top."""
    env = dict(os.environ)
    paths = [p for p in sys.path if p]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    for var in THREAD_VARS:
        env[var] = str(threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass(frozen=True)
class ChildRun:
    returncode: int  # negative: killed by that signal
    timed_out: bool
    seconds: float


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the child's whole process group, then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_module(module: str, args: Sequence[str], *, timeout_s: float, env: dict[str, str],
               stdout: IO[Any], stderr: IO[Any] | int = subprocess.STDOUT,
               python: str = sys.executable) -> ChildRun:
    """`python -m module args...` in its own session, output to `stdout` / `stderr`; killed with
    its group after `timeout_s`, and on any exception here (Ctrl-C, SIGTERM turned into an
    exception, an error), which is then re-raised."""
    start = time.perf_counter()
    proc: subprocess.Popen[Any] | None = None
    timed_out = False
    try:  # from the start: an interrupt right after the child started must still reach it
        proc = subprocess.Popen([python, "-m", module, *args], stdout=stdout, stderr=stderr,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        assert proc is not None
        kill_group(proc)
    except BaseException:
        if proc is not None:
            kill_group(proc)  # in its own session, the child would outlive us
        raise
    return ChildRun(proc.returncode, timed_out, time.perf_counter() - start)
