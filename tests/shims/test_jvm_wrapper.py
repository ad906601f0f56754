"""The Android wrapper (mobile_shims/android) on the plain JVM: javac + JUnit 4 against a release
written and signed by the Python code.

The release is made by hand (no model is built): three engine artifacts plus a skipped one, a
golden.npz, non-ASCII and control characters in strings and Python-repr floats. It is signed
twice: the current way (release.json.sig over the file's bytes: the Java side parses nothing to
check it) and the old way (deprecated: a `signature` field over canonical JSON, which the Java
side has to rebuild byte for byte). The Java tests stand in for LiteRT and
ExecuTorch with fake engines computing the same y = x @ W as the ONNX artifact.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeyard._hashing import sha256_file
from edgeyard.release import write_json_atomic

ANDROID = Path(__file__).resolve().parents[2] / "mobile_shims" / "android"
SIGNATURE_VECTORS = ANDROID.parent / "testdata" / "signatures"
# the model of the hand-made release: y = x @ W (the Java fakes hard-code the same W)
W = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
JUNIT_JARS = ("junit4.jar", "hamcrest-core.jar")
JUNIT_HINT = "apt-get install -y --no-install-recommends junit4 (or set EDGEYARD_JUNIT_CP)"
# C1 only and the serial GC: javac and a short JUnit run start about twice as fast
FAST_JVM = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found: the Android wrapper tests need a JDK 17+ "
                    f"(apt-get install -y openjdk-17-jdk-headless)")
    return path


def _junit_classpath() -> str:
    env = os.environ.get("EDGEYARD_JUNIT_CP")
    if env:
        return env
    jars = [Path("/usr/share/java") / j for j in JUNIT_JARS]
    missing = [str(j) for j in jars if not j.is_file()]
    if missing:
        pytest.skip(f"JUnit 4 not found ({', '.join(missing)}): {JUNIT_HINT}")
    return os.pathsep.join(map(str, jars))


def _onnx_bytes() -> bytes:
    """A real ONNX model for y = x @ W when onnx is installed (the Python runtime then serves
    it); otherwise placeholder bytes, which the JVM tests never parse."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return b"placeholder: onnx is not installed"
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(W, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def write_release(root: Path) -> dict:
    """A small complete release on disk, written the way the pipeline writes one (unsigned)."""
    arts = root / "artifacts"
    arts.mkdir(parents=True)
    files = {
        "tflite-int8": ("artifacts/m-tflite-int8.tflite", b"TFL3 stand-in: the Java fake ignores it"),
        "executorch-fp32": ("artifacts/m-executorch-fp32.pte", b"PTE stand-in"),
        "onnx-fp32": ("artifacts/m-onnx-fp32.onnx", _onnx_bytes()),
    }
    for rel, data in files.values():
        (root / rel).write_bytes(data)
    x = np.random.default_rng(7).standard_normal((4, 3)).astype(np.float32)
    np.savez(root / "golden.npz", input_0=x, output_0=x @ W)
    parity = {"samples": 10, "max_abs_error": 1e-06, "mean_abs_error": 1.5e-07, "finite": True,
              "top1_agreement": 1.0, "accuracy": 0.9, "shape_errors": []}

    def artifact(tid: str, fmt: str, precision: str, atol: float) -> dict:
        rel, _ = files[tid]
        return {"backend": tid.split("-")[0], "precision": precision, "options": {},
                "format": fmt, "status": "ok", "reason": None, "verified": True, "path": rel,
                "sha256": sha256_file(root / rel), "size_bytes": (root / rel).stat().st_size,
                "parity": parity, "selftest": {"atol": atol},
                "build_seconds": 12.345678901234567}

    def link(tid: str, status: str = "ok", reasons: tuple[str, ...] = ()) -> dict:
        backend, precision = tid.split("-", 1)
        return {"target": tid, "backend": backend, "precision": precision, "status": status,
                "reasons": list(reasons)}

    skipped = "no Core ML on linux:\n\tcoremltools \u00abmissing\u00bb \x1f"
    manifest = {
        "schema": "edgeyard.release",
        "schema_version": 1,
        "model": {"name": "m\u00fc", "version": "1.0", "source_format": "onnx",
                  "source_sha256": "a" * 64,
                  "inputs": [{"name": "x", "shape": [1, 3], "dtype": "float32"}],
                  "outputs": [{"name": "y", "shape": [1, 2], "dtype": "float32"}]},
        "created": "2026-11-26T00:00:00+00:00",
        "edgeyard_version": "0.1.0",
        "host": {"os": "linux", "arch": "x86_64", "python": "3.11.7"},
        "toolchain": {"onnxruntime": "1.32.0"},
        "calibration": None,
        "evaluation": {"count": 10, "sha256": "b" * 64, "labels": True, "source_accuracy": 0.9},
        "golden": {"path": "golden.npz", "sha256": sha256_file(root / "golden.npz"), "count": 4,
                   "inputs": 1, "outputs": 1},
        "artifacts": {
            "tflite-int8": artifact("tflite-int8", "tflite", "int8", 1e-05),
            "executorch-fp32": artifact("executorch-fp32", "executorch", "fp32", 0.0001),
            "onnx-fp32": artifact("onnx-fp32", "onnx", "fp32", 0.0001),
            "coreml-fp16": {"backend": "coreml", "precision": "fp16", "options": {},
                            "status": "skipped", "reason": skipped, "verified": False,
                            "path": None, "sha256": None, "size_bytes": None},
        },
        "profiles": {
            "phone": {"description": "T\u00e9l\u00e9phone \u2014 2 c\u0153urs \U0001f4f1",
                      "runner": "local", "hardware": {"threads": 2},
                      "budgets": {"max_latency_p90_ms": 5.0},
                      "chain": [link("tflite-int8"), link("executorch-fp32"), link("onnx-fp32"),
                                link("coreml-fp16", "skipped", (skipped,))]},
            "desk": {"description": "", "runner": "local", "hardware": {}, "budgets": {},
                     "chain": [link("onnx-fp32")]},
        },
        "signature": None,
    }
    write_json_atomic(root / "release.json", manifest)
    return manifest


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    """The release signed with a fresh key (release.json.sig), the same release signed the old
    way (deprecated: `signature` inside release.json), another key, and the bytes Python signed
    in the old format."""
    pytest.importorskip("cryptography", reason="signing the test release needs `cryptography`")
    from edgeyard.signing import (
        artifact_statement,
        generate_keys,
        load_private_key,
        manifest_body,
        sign_manifest,
        sign_release,
    )

    base = tmp_path_factory.mktemp("jvm")
    root = base / "release"
    write_release(root)
    priv, pub = generate_keys(base / "keys" / "release.pem")
    _, other = generate_keys(base / "keys" / "other.pem")
    legacy = base / "legacy"
    shutil.copytree(root, legacy)
    sign_release(root, priv)
    assert "signature" not in json.loads((root / "release.json").read_text())
    manifest = sign_manifest(json.loads((legacy / "release.json").read_text()),
                             load_private_key(priv))
    write_json_atomic(legacy / "release.json", manifest)
    expected = base / "expected"
    expected.mkdir()
    (expected / "manifest_body.bin").write_bytes(manifest_body(manifest))
    for tid in manifest["signature"]["artifacts"]:
        (expected / f"statement_{tid}.bin").write_bytes(artifact_statement(manifest, tid))
    return {"root": root, "legacy": legacy, "public": pub, "other": other, "expected": expected,
            "base": base}


def _compile(out: Path, classpath: str) -> None:
    """javac the wrapper (src/main/java only: src/android needs the Android SDK) and tests."""
    javac = _tool("javac")
    sources = sorted(str(p) for d in ("src/main/java", "src/test/java")
                     for p in (ANDROID / d).rglob("*.java"))
    assert not any("/src/android/" in s for s in sources)
    proc = subprocess.run([javac, *(f"-J{o}" for o in FAST_JVM), "-Xlint:all", "-Werror", "-encoding", "UTF-8", "-d", str(out),
                           "-cp", classpath, *sources],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"javac failed:\n{proc.stdout}\n{proc.stderr}"


def test_jvm_wrapper_junit(signed, tmp_path):
    java = _tool("java")
    junit = _junit_classpath()
    classes = tmp_path / "classes"
    _compile(classes, junit)
    tests = sorted(p.stem for p in (ANDROID / "src/test/java/dev/edgeyard/mobile").glob("*Test.java"))
    assert tests, "no JUnit test classes found"
    props = {"edgeyard.release": signed["root"], "edgeyard.legacyRelease": signed["legacy"],
             "edgeyard.signatureVectors": SIGNATURE_VECTORS, "edgeyard.publicKey": signed["public"],
             "edgeyard.otherPublicKey": signed["other"], "edgeyard.expected": signed["expected"],
             "edgeyard.scratch": tmp_path / "scratch"}
    cmd = [java, *FAST_JVM, *(f"-D{k}={v}" for k, v in props.items()),
           "-cp", os.pathsep.join([str(classes), junit]), "org.junit.runner.JUnitCore",
           *(f"dev.edgeyard.mobile.{t}" for t in tests)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"JUnit failed:\n{proc.stdout[-8000:]}\n{proc.stderr[-4000:]}"
    assert "OK (" in proc.stdout, proc.stdout


def test_python_accepts_the_release_the_jvm_tests_read(signed):
    """The hand-made release is a real one: it validates, its files hash, its signature holds,
    and the Python runtime serves it (profile "desk": its ONNX engine; "phone" would load
    LiteRT and ExecuTorch just to reject the stand-in files, seconds of imports)."""
    pytest.importorskip("jsonschema")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from edgeyard.release import load_release
    from edgeyard.runtime.runtime import Runtime
    from edgeyard.signing import verify_release

    rel = load_release(signed["root"])
    rel.validate()
    assert rel.verify_files() == []
    assert verify_release(signed["root"], signed["public"]).manifest_ok
    with pytest.warns(DeprecationWarning, match="edgeyard sign"):
        old = verify_release(signed["legacy"], signed["public"])
    assert old.manifest_ok and old.deprecated and len(old.artifact_ok) == 3
    assert [e["target"] for e in rel.chain("phone")] == ["tflite-int8", "executorch-fp32",
                                                          "onnx-fp32", "coreml-fp16"]
    with Runtime.from_release(signed["root"], "desk", signed["public"]) as rt:
        x = np.array([[1, 2, 3]], np.float32)
        np.testing.assert_allclose(rt.predict(x), x @ W)
        assert rt.healthy_engines() == ["onnx-fp32"]
