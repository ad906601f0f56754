"""The C library (mobile_shims/c) against the Python implementation: the shared vectors are what
the Python code writes today, and the C tests (ASan + UBSan) replay them bit for bit."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = ROOT / "mobile_shims" / "testdata"
C_DIR = ROOT / "mobile_shims" / "c"


def _generator():
    spec = importlib.util.spec_from_file_location("shim_vectors", TESTDATA / "generate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    pytest.importorskip("opentelemetry.proto", reason="the telemetry extra: pip install "
                        "'edgeyard[telemetry]'")
    out = tmp_path_factory.mktemp("vectors")
    files, request = _generator().generate(out)
    return files, request


def test_committed_vectors_are_what_python_writes_today(regenerated):
    files, _ = regenerated
    for f in files:
        committed = TESTDATA / f.name
        assert committed.exists(), f"{committed} is missing: run python {TESTDATA}/generate.py"
        assert committed.read_bytes() == f.read_bytes(), (
            f"{committed.name} is stale: the Python sketch, window or OTLP code changed; rerun "
            f"`python mobile_shims/testdata/generate.py` and `make -C mobile_shims/c test`")
    assert sum(f.stat().st_size for f in files) < 200_000


def test_expected_json_parses_to_the_python_request(regenerated):
    from google.protobuf import json_format
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as svc

    from edgeyard.server import decode

    _, request = regenerated
    body = (TESTDATA / "window_b.otlp.json").read_bytes()
    parsed = json_format.Parse(body.decode(), svc.ExportMetricsServiceRequest())
    assert parsed == request
    decoded = decode.read(body, "application/json", None, 1 << 20)
    assert decoded.rejected == 0, decoded.errors
    (up,) = decoded.uploads
    assert up.upload_id == "c0ffee00c0ffee00c0ffee00c0ffee00"
    assert up.sketches["input.image.mean"].missing == 1  # the NaN call's invalid_values point


def test_c_library_replays_every_vector():
    make = shutil.which("make")
    cc = shutil.which("gcc") or shutil.which("cc")
    if make is None or cc is None:
        pytest.skip("needs make and a C compiler (gcc) to build mobile_shims/c")
    r = subprocess.run([make, "-s", "-C", str(C_DIR), "test", f"CC={cc}"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert " 0 failures" in r.stdout
