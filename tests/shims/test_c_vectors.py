"""The C library (mobile_shims/c) against the Python implementation: the shared vectors are what
the Python code writes today, and the C tests (ASan + UBSan) replay them bit for bit, except the
projections that go through numpy's exp and log (marked inexact in the file), compared within
the generator's INEXACT_RTOL: numpy picks its exp/log code by processor, so their last bits
depend on the machine that writes the file."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
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


def _double(h: str) -> float:
    return struct.unpack("<d", struct.pack("<Q", int(h, 16)))[0]


def _same_line(committed: str, today: str, rtol: float) -> bool:
    """Equal text, or two inexact `proj` lines whose values agree within rtol."""
    if committed == today:
        return True
    a, b = committed.split(), today.split()
    if a[:1] != ["proj"] or a[:4] != b[:4] or len(a) != len(b) or a[2] != "0":
        return False
    for x, y in zip(map(_double, a[4:]), map(_double, b[4:]), strict=True):
        if not (math.isnan(x) and math.isnan(y)) and abs(x - y) > rtol * (1 + abs(x)):
            return False
    return True


def test_committed_vectors_are_what_python_writes_today(regenerated):
    files, _ = regenerated
    rtol = _generator().INEXACT_RTOL
    stale = ("is stale: the Python sketch, window or OTLP code changed; rerun "
             "`python mobile_shims/testdata/generate.py` and `make -C mobile_shims/c test`")
    for f in files:
        committed = TESTDATA / f.name
        assert committed.exists(), f"{committed} is missing: run python {TESTDATA}/generate.py"
        old, new = committed.read_text().splitlines(), f.read_text().splitlines()
        assert len(old) == len(new), f"{committed.name} {stale}"
        for k, (a, b) in enumerate(zip(old, new, strict=True)):
            assert _same_line(a, b, rtol), f"{committed.name} line {k + 1} {stale}:\n{a}\n{b}"
    assert sum(f.stat().st_size for f in files) < 250_000


def test_inexact_lines_are_only_exp_and_log_projections(regenerated):
    """Everything bit-exact stays compared bit for bit: only softmax/entropy lines are inexact."""
    files, _ = regenerated
    sigs: list[tuple[str, str]] = []
    for line in files[0].read_text().splitlines():
        parts = line.split()
        if parts[0] == "window":
            sigs = []
        elif parts[0] == "sig":
            sigs.append((parts[2], parts[5]))
        elif parts[0] == "proj":
            kind, softmax = sigs[int(parts[1])]
            inexact = kind == "entropy" or (kind == "top1_confidence" and softmax == "1")
            assert parts[2] == ("0" if inexact else "1"), line[:80]


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


def test_a_call_no_engine_answered_is_counted_under_none():
    """Window c: calls whose engines all failed reach the collector with engine None; Python
    records them under the engine name "none" (calls and latency by engine), and C, given
    engine -1, must write the same bytes (the vector replay compares window_c.otlp.json)."""
    from edgeyard.server import decode

    body = (TESTDATA / "window_c.otlp.json").read_bytes()
    metrics = json.loads(body)["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
    by_name = {m["name"]: m for m in metrics}

    def engines(metric: str) -> dict[str, dict]:
        data = by_name[metric].get("sum") or by_name[metric]["exponentialHistogram"]
        return {p["attributes"][0]["value"]["stringValue"]: p for p in data["dataPoints"]}

    calls = engines("edgeyard.calls")
    assert calls["none"]["asInt"] == "2"
    assert list(calls) == sorted(calls)
    assert engines("edgeyard.latency_ms.by_engine")["none"]["count"] == "2"
    assert by_name["edgeyard.latency_ms"]["exponentialHistogram"]["dataPoints"][0]["count"] \
        == str(_generator().NONE_CALLS)
    decoded = decode.read(body, "application/json", None, 1 << 20)
    assert decoded.rejected == 0, decoded.errors
    vectors = (TESTDATA / "vectors.txt").read_text()
    assert "\ncall -1 " in vectors  # C replays those calls with engine -1


def test_c_library_replays_every_vector():
    make = shutil.which("make")
    cc = shutil.which("gcc") or shutil.which("cc")
    if make is None or cc is None:
        pytest.skip("needs make and a C compiler (gcc) to build mobile_shims/c")
    r = subprocess.run([make, "-s", "-C", str(C_DIR), "test", f"CC={cc}"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert " 0 failures" in r.stdout
    assert "0 guard checks failed" in r.stdout  # tests/test_guards.c: bad tensors and names


def test_c_library_replays_every_vector_on_aarch64_under_qemu():
    """The same vectors and guard tests cross-compiled for 64-bit ARM and run under QEMU user
    mode (`make test-aarch64`): NaN is compared as NaN (ARM gives NaN another sign bit)."""
    make = shutil.which("make")
    missing = [t for t in ("aarch64-linux-gnu-gcc", "qemu-aarch64") if shutil.which(t) is None]
    if not Path("/usr/aarch64-linux-gnu/include/stdio.h").exists():
        missing.append("the arm64 C library headers")
    if make is None or missing:
        pytest.skip(f"needs {', '.join(missing) or 'make'}: apt-get install -y "
                    "--no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross "
                    "qemu-user (.ci/run does)")
    r = subprocess.run([make, "-s", "-C", str(C_DIR), "test-aarch64"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert " 0 failures" in r.stdout
    assert "0 guard checks failed" in r.stdout


def _other_processor_env(coretype: str) -> dict[str, str]:
    """This host made to compute like another processor: OpenBLAS forced to `coretype`, numpy's
    SIMD code paths beyond its baseline switched off (NPY_DISABLE_CPU_FEATURES)."""
    from numpy._core import _multiarray_umath as mu

    dispatched = [f for f in mu.__cpu_dispatch__ if mu.__cpu_features__.get(f)]
    return {**os.environ, "OPENBLAS_CORETYPE": coretype,
            "NPY_DISABLE_CPU_FEATURES": " ".join(dispatched)}


@pytest.mark.parametrize("coretype", ["Prescott", "Sandybridge"])
def test_vectors_do_not_depend_on_the_processor(tmp_path, coretype, regenerated):
    """What another CPU writes agrees with the committed vectors: bit for bit where exact."""
    env = _other_processor_env(coretype)
    r = subprocess.run([sys.executable, str(TESTDATA / "generate.py"), str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    probe = subprocess.run([sys.executable, "-c", "import numpy, threadpoolctl; "
                            "print(threadpoolctl.threadpool_info()[0]['architecture'])"],
                           env=env, capture_output=True, text=True, timeout=60)
    if probe.returncode == 0:  # the kernel really was switched (OpenBLAS names Prescott "Katmai")
        assert probe.stdout.strip().lower() in (coretype.lower(), "katmai"), probe.stdout
    rtol = _generator().INEXACT_RTOL
    for f in regenerated[0]:
        old = (TESTDATA / f.name).read_text().splitlines()
        new = (tmp_path / f.name).read_text().splitlines()
        assert len(old) == len(new)
        for k, (a, b) in enumerate(zip(old, new, strict=True)):
            assert _same_line(a, b, rtol), f"{f.name} line {k + 1} differs on {coretype}"


def test_cmake_builds_the_library_and_runs_the_tests_with_ctest(tmp_path):
    """mobile_shims/c/CMakeLists.txt: the static library edgeyard_c (what an NDK build adds with
    add_subdirectory) and the vector and guard tests under CTest, warnings as errors."""
    cmake, ctest = shutil.which("cmake"), shutil.which("ctest")
    if cmake is None or ctest is None or shutil.which("gcc") is None:
        pytest.skip("needs cmake (3.10+), ctest and gcc to build mobile_shims/c with CMake")
    build = tmp_path / "build"
    for cmd in ([cmake, "-S", str(C_DIR), "-B", str(build), "-DEDGEYARD_C_WERROR=ON",
                 "-DCMAKE_C_COMPILER=gcc"],
                [cmake, "--build", str(build)],
                [ctest, "--output-on-failure"]):
        r = subprocess.run(cmd, cwd=build if cmd[0] == ctest else None, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, f"{cmd}:\n{r.stdout[-4000:]}{r.stderr[-4000:]}"
    assert "100% tests passed, 0 tests failed out of 2" in r.stdout
    assert (build / "libedgeyard_c.a").exists()


def test_fuzzer_runs_without_a_finding():
    """`make fuzz` (tests/fuzz_window.c under ASan + UBSan; libFuzzer when CC is clang, the
    seeded driver tests/fuzz_driver.c with gcc) for a bounded time: no crash, no sanitizer
    report, no failed invariant."""
    make = shutil.which("make")
    cc = shutil.which("gcc") or shutil.which("cc")
    if make is None or cc is None:
        pytest.skip("needs make and a C compiler (gcc) to build mobile_shims/c")
    seconds = int(os.environ.get("EDGEYARD_FUZZ_SECONDS", "8"))
    if seconds <= 0:
        pytest.skip("EDGEYARD_FUZZ_SECONDS=0: the fuzzer is not run (make test-other-cpu: it "
                    "ran in make test)")
    r = subprocess.run([make, "-s", "-C", str(C_DIR), "fuzz", f"CC={cc}",
                        f"FUZZ_SECONDS={seconds}"], capture_output=True, text=True,
                       timeout=seconds + 300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    m = re.search(r"fuzz_window: (\d+) runs .* no finding", out) or \
        re.search(r"Done (\d+) runs in", out)  # libFuzzer's last line
    assert m is not None, out[-3000:]
    runs = int(m.group(1))
    print(f"fuzz_window: {runs} runs in {seconds} s, no finding")
    assert runs >= 1000, out[-3000:]
