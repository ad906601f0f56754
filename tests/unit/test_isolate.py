"""The child-process runner on real crashing, hanging and raising converters (no toolchain)."""

from __future__ import annotations

import pytest

from edgeyard.backends.registry import backend_ref
from edgeyard.builder.isolate import run_child
from fault_backends import AbortingBackend, HangingBackend, RaisingBackend


def job(tmp_path, backend):
    src = tmp_path / "source.onnx"
    src.write_bytes(b"")
    return {
        "backend": backend_ref(backend),
        "source": {"format": "onnx", "path": str(src), "sha256": "0" * 64,
                   "inputs": [{"name": "x", "shape": [1, 2], "dtype": "float32"}],
                   "outputs": [{"name": "y", "shape": [1, 2], "dtype": "float32"}]},
        "precision": "fp32",
        "options": {},
        "artifact_path": str(tmp_path / "out.bin"),
        "workdir": str(tmp_path / "scratch"),
        "calibration": None,
        "evaluation": str(tmp_path / "eval.npz"),
        "outputs_path": str(tmp_path / "outputs.npz"),
        "threads": 1,
    }


def test_abort_becomes_a_reason_with_the_log_tail(tmp_path):
    outcome = run_child(job(tmp_path, AbortingBackend()), tmp_path / "j", timeout_s=60)
    assert outcome.failure(60) == "converter process crashed with SIGABRT (signal 6)"
    assert "about to abort" in outcome.log_tail()


def test_hang_is_killed_at_the_timeout(tmp_path):
    outcome = run_child(job(tmp_path, HangingBackend()), tmp_path / "j", timeout_s=3)
    assert outcome.timed_out
    assert outcome.failure(3) == "timed out after 3 s (killed)"
    assert outcome.seconds < 30


def test_exception_is_reported_with_stage_and_message(tmp_path):
    outcome = run_child(job(tmp_path, RaisingBackend()), tmp_path / "j", timeout_s=60)
    reason = outcome.failure(60)
    assert reason == ("conversion failed: RuntimeError: Unsupported operator aten::frobnicate "
                      "in node %42")
    assert "Traceback" in outcome.log_tail()


@pytest.mark.parametrize("backend", [AbortingBackend(), RaisingBackend()])
def test_failed_child_leaves_no_result_claiming_success(tmp_path, backend):
    outcome = run_child(job(tmp_path, backend), tmp_path / "j", timeout_s=60)
    assert not (outcome.result or {}).get("ok", False)
