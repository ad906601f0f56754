"""Builds on a Ray cluster: a real head and a second node (separate raylets, on this host), the
digits CNN built through Ray Client and locally, and the two releases compared.

The cluster lives in its own temporary directory and process groups (`ray start --block` in a
new session each), and is stopped by killing those groups: never `ray stop`, which stops every
Ray of this user on the host.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

import edgeyard
from edgeyard.backends import Backend, ConvertRequest, ConvertResult, register_backend, unregister_backend
from edgeyard.errors import EdgeyardError, MissingExtra
from fault_backends import HangingBackend
from profile_files import write_profile

HERE = Path(__file__).resolve().parent
RAY = Path(sys.executable).parent / "ray"


class KillsItsRayWorkerBackend(Backend):
    """Its child SIGKILLs its parent: on Ray, the worker process running the job's task (a node
    losing a worker, as when the OOM killer picks it)."""

    name = "test-kill-ray-worker"
    artifact_suffix = ".bin"
    source_formats = ("torch", "onnx", "keras")
    precisions = ("fp32",)
    convert_modules: ClassVar[dict[str, tuple[str, ...]]] = {}

    def convert(self, request: ConvertRequest) -> ConvertResult:
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(3)  # in its own session, it then exits on its own
        raise AssertionError("the task should be gone")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = path.read_text(errors="replace") if path.exists() else ""
        if text in log:
            return log
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"`ray start` did not print {text!r}:\n{log[-3000:]}")


@contextlib.contextmanager
def ray_cluster(nodes: int = 2, cpus: int = 1) -> Iterator[tuple[str, str]]:
    """A Ray cluster of `nodes` nodes (each its own raylet, `cpus` CPUs) on this host; yields
    its Ray Client address (ray://127.0.0.1:PORT) and its GCS address (HOST:PORT, for a driver
    on the cluster). Everything it started is killed on exit."""
    # short: Ray's unix sockets live under it (a socket path is at most 107 bytes)
    root = Path(tempfile.mkdtemp(prefix="eyr-", dir="/tmp"))
    # the nodes' workers import the test backends (fault_backends, this module) by name
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(HERE.parent), str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "RAY_USAGE_STATS_ENABLED": "0"}
    common = [f"--num-cpus={cpus}", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
              "--object-store-memory=100000000", "--block"]
    client_port = _free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], name: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = root / f"{name}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen([str(RAY), "start", *args, *common], stdout=f,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
        procs.append(proc)
        return proc, log

    try:
        head, log = start(["--head", "--port=0", f"--temp-dir={root}",
                           f"--ray-client-server-port={client_port}",
                           "--include-dashboard=false"], "head")
        text = _wait_for(log, "Ray runtime started", head, 120)
        gcs = text.split("ray start --address='", 1)[1].split("'", 1)[0]
        for i in range(1, nodes):
            proc, log = start([f"--address={gcs}"], f"node{i}")
            _wait_for(log, "Ray runtime started", proc, 120)
        yield f"ray://127.0.0.1:{client_port}", gcs
    finally:
        for proc in procs:  # the whole session of each `ray start`: raylet, gcs, workers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # what SIGTERM left (Ray's daemons linger)
            proc.wait()
        subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray", reason="the ray extra runs builds on a Ray cluster")
    with ray_cluster() as addresses:
        yield addresses


def _build(model, data, tmp_path, name, log=None, **kw):
    x = data.x_eval[:1]
    return edgeyard.build(
        model, example_inputs=(x,), profiles=["host"], profile_dirs=[tmp_path / "profiles"],
        calibration=data.x_calib, evaluation=(data.x_eval, data.y_eval),
        out=tmp_path / name, name="digits", version="1.0", log=log, **kw)


def test_a_ray_build_makes_the_local_build_s_release(cluster, tmp_path, digits_cnn, digits_data):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert", reason="the tflite extra runs the .tflite artifact")
    # static int8 pinned: a `local` profile times several candidates on this host and ships the
    # fastest, a choice that two builds may make differently
    write_profile(tmp_path / "profiles", "host", [
        ("onnx", "fp32"), ("onnx", "int8", {"recipe": "static"}), ("tflite", "fp32")])
    logs: list[str] = []
    local = _build(digits_cnn, digits_data, tmp_path, "local", jobs=2)  # 1 thread each, as on Ray
    # through Ray Client: this process shares no files with the nodes' tasks
    remote = _build(digits_cnn, digits_data, tmp_path, "ray", executor=cluster[0],
                    log=logs.append)
    assert local.ok and remote.ok
    a, b = local.manifest["artifacts"], remote.manifest["artifacts"]
    assert sorted(a) == sorted(b) == sorted(["onnx-fp32", "tflite-fp32", next(
        k for k in a if k.startswith("onnx-int8"))])
    for key in a:
        assert b[key]["status"] == a[key]["status"] == "ok", key
        assert b[key]["parity"] == a[key]["parity"], key  # same bytes, same runtime, same threads
        assert b[key]["size_bytes"] == a[key]["size_bytes"], key
        # every converter here is deterministic for a given source, thread count and version:
        # torch.onnx.export, ORT quantize_static, onnx2tf / litert-torch (docs/ray-builds.md)
        assert b[key]["sha256"] == a[key]["sha256"], key
        assert (remote.path / b[key]["path"]).is_file()
        assert "ran on Ray node" in (remote.path / b[key]["log"]).read_text()
    assert any("on ray://127.0.0.1" in m and "2 at a time, 1 thread(s) each" in m for m in logs)
    ran = [m for m in logs if ": ran on Ray node " in m]
    assert len(ran) == 3, logs


def test_a_failed_ray_task_fails_only_its_target(cluster, tmp_path, tiny_model, tiny_data,
                                                 monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", cluster[1])  # executor="ray": this host's cluster
    faults = [KillsItsRayWorkerBackend(), HangingBackend()]
    for f in faults:
        register_backend(f, replace=True)
    try:
        write_profile(tmp_path / "profiles", "faulty", [
            ("onnx", "fp32"), ("test-kill-ray-worker", "fp32"), ("test-hang", "fp32")])
        release = edgeyard.build(tiny_model, profiles=["faulty"], evaluation=tiny_data,
                                 out=tmp_path / "rel", profile_dirs=[tmp_path / "profiles"],
                                 timeout_s=8, executor="ray", log=None)
    finally:
        for f in faults:
            unregister_backend(f.name)
    chain = {e["backend"]: e for e in release.chain("faulty")}
    assert chain["onnx"]["status"] == "ok", (chain["onnx"]["reason"], chain["onnx"].get("log_tail"))
    killed = chain["test-kill-ray-worker"]
    assert killed["status"] == "failed"
    assert killed["reason"].startswith("the Ray task failed (")
    assert "WorkerCrashedError" in killed["reason"] or "died" in killed["reason"]
    assert chain["test-hang"]["reason"] == "timed out after 8 s (killed)"  # on the node


def test_an_executor_is_named_or_its_extra_named(tmp_path, tiny_model, tiny_data, monkeypatch):
    write_profile(tmp_path / "profiles", "host", [("onnx", "fp32")])
    kw = dict(profiles=["host"], evaluation=tiny_data, profile_dirs=[tmp_path / "profiles"],
              log=None)
    with pytest.raises(EdgeyardError, match="executor must be 'local', 'ray'"):
        edgeyard.build(tiny_model, out=tmp_path / "a", executor="spark://x", **kw)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the ray extra were not installed
    with pytest.raises(MissingExtra, match=r"pip install 'edgeyard\[ray\]'"):
        edgeyard.build(tiny_model, out=tmp_path / "b", executor="ray://head:10001", **kw)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
