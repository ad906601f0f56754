from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgeyard.errors import ManifestError
from edgeyard.release import (
    load_release,
    sha256_file,
    validate_manifest,
    write_json_atomic,
)


def make_release(tmp_path):
    """A small but complete release on disk, written the way the pipeline writes one."""
    root = tmp_path / "rel"
    (root / "artifacts").mkdir(parents=True)
    art = root / "artifacts" / "m-onnx-fp32.onnx"
    art.write_bytes(b"not really onnx, but hashed like one")
    np.savez(root / "golden.npz", input_0=np.zeros((2, 3), np.float32),
             output_0=np.ones((2, 4), np.float32))
    parity = {"samples": 10, "max_abs_error": 1e-6, "mean_abs_error": 1e-7, "finite": True,
              "top1_agreement": 1.0, "accuracy": 0.9, "shape_errors": []}
    manifest = {
        "schema": "edgeyard.release",
        "schema_version": 1,
        "model": {"name": "m", "version": "1.0", "source_format": "onnx",
                  "source_sha256": "a" * 64,
                  "inputs": [{"name": "x", "shape": [1, 3], "dtype": "float32"}],
                  "outputs": [{"name": "y", "shape": [1, 4], "dtype": "float32"}]},
        "created": "2026-11-26T00:00:00+00:00",
        "edgeyard_version": "0.1.0",
        "host": {"os": "linux", "arch": "x86_64", "python": "3.11.7"},
        "toolchain": {"onnxruntime": "1.32.0"},
        "calibration": None,
        "evaluation": {"count": 10, "sha256": "b" * 64, "labels": True, "source_accuracy": 0.9},
        "golden": {"path": "golden.npz", "sha256": sha256_file(root / "golden.npz"), "count": 2,
                   "inputs": 1, "outputs": 1},
        "artifacts": {
            "onnx-fp32": {"backend": "onnx", "precision": "fp32", "options": {}, "format": "onnx",
                          "status": "ok", "reason": None, "verified": True,
                          "path": "artifacts/m-onnx-fp32.onnx", "sha256": sha256_file(art),
                          "size_bytes": art.stat().st_size, "parity": parity,
                          "selftest": {"atol": 1e-4}},
            "coreml-fp16": {"backend": "coreml", "precision": "fp16", "options": {},
                            "status": "skipped", "reason": "not implemented", "verified": False,
                            "path": None, "sha256": None, "size_bytes": None},
        },
        "profiles": {"p": {"description": "", "runner": "local", "hardware": {}, "budgets": {},
                           "chain": [
                               {"target": "onnx-fp32", "backend": "onnx", "precision": "fp32",
                                "status": "ok", "reasons": []},
                               {"target": "coreml-fp16", "backend": "coreml",
                                "precision": "fp16", "status": "skipped",
                                "reasons": ["not implemented"]}]}},
        "signature": None,
    }
    write_json_atomic(root / "release.json", manifest)
    return root


def test_release_round_trip_validates_and_hashes_match(tmp_path):
    pytest.importorskip("jsonschema")
    rel = load_release(make_release(tmp_path))
    rel.validate()
    assert rel.verify_files() == []
    assert rel.ok and rel.profiles == ["p"]
    assert [e["status"] for e in rel.chain("p")] == ["ok", "skipped"]
    ins, outs = rel.golden()
    assert ins[0].shape == (2, 3) and outs[0].shape == (2, 4)
    text = rel.summary()
    assert "onnx" in text and "SKIPPED: not implemented" in text and "90.00%" in text


def test_tampered_artifact_and_missing_file_are_found(tmp_path):
    root = make_release(tmp_path)
    (root / "artifacts" / "m-onnx-fp32.onnx").write_bytes(b"evil")
    (root / "golden.npz").unlink()
    problems = load_release(root).verify_files()
    assert any("does not match its sha256" in p for p in problems)
    assert any("golden.npz is missing" in p for p in problems)


def test_schema_rejects_bad_manifests(tmp_path):
    pytest.importorskip("jsonschema")
    manifest = json.loads((make_release(tmp_path) / "release.json").read_text())
    manifest["artifacts"]["onnx-fp32"]["status"] = "great"
    manifest["artifacts"]["onnx-fp32"]["path"] = "../../etc/passwd"
    manifest["model"]["source_sha256"] = "xyz"
    with pytest.raises(ManifestError) as exc:
        validate_manifest(manifest)
    text = str(exc.value)
    assert "artifacts/onnx-fp32/status" in text
    assert "artifacts/onnx-fp32/path" in text
    assert "model/source_sha256" in text


def test_load_release_errors(tmp_path):
    with pytest.raises(ManifestError, match="not a release"):
        load_release(tmp_path)
    (tmp_path / "release.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_release(tmp_path)
    (tmp_path / "release.json").write_text(json.dumps({"schema": "edgeyard.release",
                                                       "schema_version": 99}))
    with pytest.raises(ManifestError, match="upgrade edgeyard"):
        load_release(tmp_path)


def test_unknown_profile_in_release(tmp_path):
    rel = load_release(make_release(tmp_path))
    with pytest.raises(ManifestError, match="has no profile 'q'; it has p"):
        rel.chain("q")


def test_atomic_write_leaves_old_file_when_serialization_fails(tmp_path):
    path = tmp_path / "release.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": float("nan")})  # JSON cannot hold NaN
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["release.json"]


def test_bundle_hash_covers_names_and_bytes(tmp_path):
    b = tmp_path / "m.mlpackage"
    (b / "Data").mkdir(parents=True)
    (b / "Data" / "w.bin").write_bytes(b"123")
    h1 = sha256_file(b)
    shutil.move(b / "Data" / "w.bin", b / "Data" / "v.bin")
    assert sha256_file(b) != h1
