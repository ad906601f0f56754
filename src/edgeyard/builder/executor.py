"""Where each target's converter child runs: on this host (`LocalExecutor`, the default) or on a
Ray cluster (`RayExecutor`).

Either way the child is the same `python -m edgeyard.builder.worker job.json` of `isolate`, in
its own process group, with the same timeout and log file; only the host changes. A Ray task
shares no file system with the build: it receives the job's input files as bytes (the source
model, calibration.npz, evaluation.npz), runs the child in a temporary directory on its node
with the job's paths rewritten there, and sends back result.json, the log, the artifact and
outputs.npz, which are written where a local child would have written them. So the pipeline
gets the same `ChildOutcome` from both. A Ray task that fails (its node died, its worker
crashed, the task raised) is a failed outcome for that one job, with the reason in its log.

    build(..., executor=None)                   # or "local": child processes on this host
    build(..., executor="ray://head:10001")     # Ray Client: this process drives a remote cluster
    build(..., executor="ray")                  # the running local cluster: ray.init("auto")
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from .._deps import require, toolchain_lock
from ..errors import EdgeyardError
from .isolate import ChildOutcome, run_child

_Tree = list[tuple[str, bytes]]  # a file or a directory: (path relative to its parent, bytes)
_INPUTS = ("source", "calibration", "evaluation")  # the job's input files, by slot


class Executor(ABC):
    """Runs one job's converter child somewhere and returns what a local child would have left
    in `job_dir` and at the job's artifact and outputs paths."""

    name: str  # what the build log calls it

    @abstractmethod
    def plan(self, jobs: int | None) -> tuple[int, int]:
        """(jobs run at once, threads of each child) for the build's `jobs` (None: the
        executor's default)."""

    @abstractmethod
    def run_child(self, job: dict[str, Any], job_dir: Path, *, timeout_s: float,
                  threads: int) -> ChildOutcome: ...

    def where(self, outcome: ChildOutcome) -> str | None:
        """Where `outcome`'s child ran, for the build log; None on this host."""
        return None

    def cancel(self) -> None:
        """Stop the jobs in flight (the build is interrupted); each `run_child` then returns."""

    def close(self) -> None:
        """Release what the executor holds (a cluster connection it opened)."""


class LocalExecutor(Executor):
    """A child process on this host per job; the host's cores shared by the parallel jobs."""

    name = "local"

    def plan(self, jobs: int | None) -> tuple[int, int]:
        n = max(1, jobs or 1)
        return n, max(1, (os.cpu_count() or 1) // n)

    def run_child(self, job: dict[str, Any], job_dir: Path, *, timeout_s: float,
                  threads: int) -> ChildOutcome:
        return run_child(job, job_dir, timeout_s=timeout_s, threads=threads)


@dataclass
class RemoteOutcome(ChildOutcome):
    """A child's outcome from another machine: which node ran it, and what differs there."""

    node: str = "?"
    warnings: list[str] = field(default_factory=list)


class RayExecutor(Executor):
    """Each job is one Ray task (`num_cpus` = its child's threads) that runs the worker child on
    whichever node Ray picks.

    Every node needs this edgeyard and the converters' extras (and `edgeyard envs` environments)
    installed, as on the build host: a node whose versions differ from this process's toolchain
    lock (which the manifest records) is reported in the build log. By default as many jobs run
    at once as the cluster has CPUs, one thread each; with `jobs=N`, N at a time, with the
    cluster's CPUs shared among them (at most the largest node's, so that every task fits).
    """

    def __init__(self, address: str) -> None:
        self._ray = require("ray", extra="ray", purpose="running a build on a Ray cluster")
        self.address = address
        self.name = "ray://auto" if address == "auto" else address
        self._owned = not self._ray.is_initialized()
        if self._owned:
            # Ray Client passes any keyword on to the cluster's ray.init: none for it
            quiet = {} if address.startswith("ray://") else {"logging_level": "WARNING",
                                                              "log_to_driver": False}
            try:
                self._connect(address, quiet)
            except Exception as exc:  # ConnectionError, a bad address, a version mismatch
                raise EdgeyardError(
                    f"cannot connect to the Ray cluster at {self.name} ({type(exc).__name__}: "
                    f"{_first_line(exc)}): start one (`ray start --head`), or pass "
                    f"executor='ray://HOST:PORT' (its Ray Client port, 10001 by default)"
                ) from None
        cpus = [n["Resources"].get("CPU", 0.0) for n in self._ray.nodes() if n.get("Alive")]
        self._total_cpus = int(sum(cpus))
        self._node_cpus = int(max(cpus, default=0))
        if self._node_cpus < 1:
            self.close()
            raise EdgeyardError(f"the Ray cluster at {self.name} has no node with a CPU to "
                                f"run converters on")
        self._task = self._ray.remote(max_retries=0)(_run_on_node)
        self._lock = threading.Lock()
        self._puts: dict[tuple[Any, ...], Any] = {}  # input file (path, sizes, mtimes) -> ref
        self._in_flight: set[Any] = set()
        self._lock_here = {"edgeyard": __version__, **toolchain_lock()}

    def _connect(self, address: str, kwargs: dict[str, Any], attempts: int = 5) -> None:
        # Ray Client's per-connection server dies at start-up now and then (a gRPC fork race
        # in its proxy, ray-project/ray#63202: "Initialization failure from server", empty
        # logs; here 1 connection in 4 when clusters come and go): another try connects. On a
        # loaded host three tries in a row failed (a CI run with two test streams beside the
        # cluster), so the tries are spaced 1, 2, 3, 4 s apart
        for attempt in range(1, attempts + 1):
            try:
                self._ray.init(address=address, **kwargs)
                return
            except ConnectionAbortedError:
                self._ray.shutdown()
                if attempt == attempts:
                    raise
                time.sleep(attempt)

    def plan(self, jobs: int | None) -> tuple[int, int]:
        n = max(1, jobs or self._total_cpus)
        return n, max(1, min(self._node_cpus, self._total_cpus // n))

    def run_child(self, job: dict[str, Any], job_dir: Path, *, timeout_s: float,
                  threads: int) -> ChildOutcome:
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / "job.json").write_text(json.dumps(job))
        (job_dir / "result.json").unlink(missing_ok=True)
        ref = None
        try:
            slots = [s for s in _INPUTS if _input_path(job, s) is not None]
            refs = [self._put(_input_path(job, s)) for s in slots]  # type: ignore[arg-type]
            ref = self._task.options(num_cpus=threads).remote(job, timeout_s, threads, slots,
                                                              *refs)
            with self._lock:
                self._in_flight.add(ref)
            reply = self._ray.get(ref)
        except Exception as exc:  # the task failed, not the converter: this job only
            return self._failed(job_dir, exc)
        except BaseException:  # interrupted: the task kills its child (KeyboardInterrupt there)
            if ref is not None:
                self._ray.cancel(ref)
            raise
        finally:
            with self._lock:
                self._in_flight.discard(ref)
        return self._unpack(reply, job, job_dir)

    def where(self, outcome: ChildOutcome) -> str | None:
        if not isinstance(outcome, RemoteOutcome):
            return None
        return "; ".join([f"Ray node {outcome.node} of {self.name}", *outcome.warnings])

    def cancel(self) -> None:
        with self._lock:
            refs = list(self._in_flight)
        for ref in refs:
            try:
                self._ray.cancel(ref)
            except Exception:  # finished or gone meanwhile
                pass

    def close(self) -> None:
        self.cancel()
        self._puts.clear()
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()

    def _put(self, path: Path) -> Any:
        """`path`'s bytes in the object store, once per build (and again when they change: the
        distilled student's build rewrites the source under the same name)."""
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        key = (str(path), *((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
        with self._lock:
            ref = self._puts.get(key)
        if ref is None:
            ref = self._ray.put(_read_tree(path))
            with self._lock:
                self._puts = {k: v for k, v in self._puts.items() if k[0] != key[0]}
                self._puts[key] = ref
        return ref

    def _unpack(self, reply: dict[str, Any], job: dict[str, Any], job_dir: Path) -> ChildOutcome:
        """The node's files written where a local child would have written them, its paths in
        the result mapped back to this host's."""
        log_path = job_dir / "log.txt"
        header = f"edgeyard: ran on Ray node {reply['node']} in {reply['root']}\n"
        log_path.write_bytes(header.encode() + reply["log"])
        result = reply["result"]
        if result is not None:
            text = json.dumps(result)
            for theirs, ours in reply["paths"]:
                text = text.replace(json.dumps(theirs)[1:-1], json.dumps(ours)[1:-1])
            result = json.loads(text)
            (job_dir / "result.json").write_text(json.dumps(result))
        artifact = Path(job["artifact_path"])
        _remove(artifact)
        if reply["artifact"] is not None:
            _write_tree(artifact.parent, reply["artifact"])
        if reply["outputs"] is not None:
            Path(job["outputs_path"]).parent.mkdir(parents=True, exist_ok=True)
            Path(job["outputs_path"]).write_bytes(reply["outputs"])
        differ = sorted(f"{d} {v} (this host {self._lock_here[d]})"
                        for d, v in reply["toolchain"].items()
                        if d in self._lock_here and v != self._lock_here[d])
        warnings = ([f"warning: its versions differ from this build's toolchain lock: "
                     f"{', '.join(differ)}"] if differ else [])
        return RemoteOutcome(reply["returncode"], reply["timed_out"], reply["seconds"], result,
                             log_path, node=reply["node"], warnings=warnings)

    def _failed(self, job_dir: Path, exc: Exception) -> ChildOutcome:
        """A failed outcome for a job whose Ray task did not return."""
        reason = f"the Ray task failed ({type(exc).__name__}: {_first_line(exc)})"
        log_path = job_dir / "log.txt"
        log_path.write_text(f"edgeyard: {reason}\n"
                            + "".join(traceback.format_exception(exc)))
        return ChildOutcome(None, False, 0.0, {"ok": False, "stage": "ray", "error": reason},
                            log_path)


def resolve(executor: str | Executor | None) -> Executor:
    """The executor `build(executor=...)` names: None or "local", "ray" or "ray://auto" (the
    running local cluster), "ray://HOST:PORT" (a cluster's Ray Client server), or an
    `Executor`."""
    if isinstance(executor, Executor):
        return executor
    if executor is None or executor == "local":
        return LocalExecutor()
    if executor in ("ray", "ray://auto"):
        return RayExecutor("auto")
    if isinstance(executor, str) and executor.startswith("ray://") and ":" in executor[6:]:
        return RayExecutor(executor)
    raise EdgeyardError(f"executor must be 'local', 'ray', 'ray://auto' or 'ray://HOST:PORT' "
                        f"(got {executor!r})")


@contextmanager
def opened(executor: str | Executor | None) -> Iterator[Executor]:
    """`resolve(executor)`, closed on the way out when it was made here from a name."""
    ex = resolve(executor)
    try:
        yield ex
    finally:
        if ex is not executor:
            ex.close()


# --- on the Ray node ---------------------------------------------------------------------------


def _run_on_node(job: dict[str, Any], timeout_s: float, threads: int, slots: list[str],
                 *trees: _Tree) -> dict[str, Any]:
    """The Ray task: the job's input files written to a temporary directory, the worker child
    run there (`isolate.run_child`), its files read back. Interrupted (`ray.cancel`), the child
    is killed with its process group by `run_child`."""
    import ray

    root = Path(tempfile.mkdtemp(prefix="edgeyard-ray-"))
    try:
        local = dict(job)
        paths: list[tuple[str, str]] = []  # (on this node, on the build host)

        def move(theirs: str, ours: Path) -> str:
            paths.append((str(ours), theirs))
            return str(ours)

        for slot, tree in zip(slots, trees, strict=True):
            _write_tree(root / "inputs" / slot, tree)
            theirs = job["source"]["path"] if slot == "source" else job[slot]
            here = move(theirs, root / "inputs" / slot / Path(theirs).name)
            if slot == "source":
                local["source"] = {**job["source"], "path": here}
            else:
                local[slot] = here
        job_dir = root / "job"
        artifact = root / "artifacts" / Path(job["artifact_path"]).name
        artifact.parent.mkdir(parents=True)
        local["artifact_path"] = move(job["artifact_path"], artifact)
        local["outputs_path"] = move(job["outputs_path"], job_dir / "outputs.npz")
        local["workdir"] = move(job["workdir"], job_dir / "scratch")
        outcome = run_child(local, job_dir, timeout_s=timeout_s, threads=threads)
        outputs = job_dir / "outputs.npz"
        return {
            "returncode": outcome.returncode, "timed_out": outcome.timed_out,
            "seconds": outcome.seconds, "result": outcome.result,
            "log": outcome.log_path.read_bytes() if outcome.log_path.exists() else b"",
            "artifact": _read_tree(artifact) if artifact.exists() else None,
            "outputs": outputs.read_bytes() if outputs.exists() else None,
            "paths": paths, "root": str(root), "node": f"{ray.util.get_node_ip_address()} "
                    f"[{ray.get_runtime_context().get_node_id()[:8]}]",
            "toolchain": {"edgeyard": __version__, **toolchain_lock()},
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- files as bytes ----------------------------------------------------------------------------


def _input_path(job: dict[str, Any], slot: str) -> Path | None:
    value = job["source"]["path"] if slot == "source" else job.get(slot)
    return Path(value) if value else None


def _read_tree(path: Path) -> _Tree:
    """A file, or a directory's files (bundle formats: a SavedModel, an .mlpackage)."""
    if path.is_file():
        return [(path.name, path.read_bytes())]
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return [(p.relative_to(path.parent).as_posix(), p.read_bytes()) for p in files]


def _write_tree(directory: Path, tree: _Tree) -> None:
    for rel, data in tree:
        dest = directory / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
