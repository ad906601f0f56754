"""The build station's acceptance on real data: the digits CNN for linux-x86_64 and pixel-8."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

import edgeyard

pytestmark = pytest.mark.slow

BACKENDS = ("onnx", "tflite", "executorch")


@pytest.fixture(scope="session")
def release(digits_data, digits_cnn, tmp_path_factory):
    for m in ("torch", "onnxruntime", "ai_edge_litert", "executorch"):
        pytest.importorskip(m, reason=f"the digits release builds with {m}")
    d = digits_data
    return edgeyard.build(
        digits_cnn,
        example_inputs=(d.x_eval[:1],),
        profiles=["linux-x86_64", "pixel-8"],
        calibration=(d.x_calib[i : i + 50] for i in range(0, len(d.x_calib), 50)),
        evaluation=(d.x_eval, d.y_eval),
        out=tmp_path_factory.mktemp("rel") / "digits-1.0",
        name="digits",
        version="1.0",
    )


def by_target(release):
    return {(a["backend"], a["precision"]): a for a in release.artifacts.values()}


def test_every_backend_has_verified_fp32_and_int8(release):
    arts = by_target(release)
    for backend in BACKENDS:
        for precision in ("fp32", "int8"):
            a = arts[(backend, precision)]
            assert a["status"] == "ok" and a["verified"], (backend, precision, a.get("reason"))
            assert a["parity"]["samples"] == 360
    assert release.ok, release.summary()
    assert all(e["status"] == "ok" for _, e in release.rows())


def test_int8_accuracy_and_size(release):
    src = release.manifest["evaluation"]["source_accuracy"]
    assert src > 0.9
    arts = by_target(release)
    for backend in BACKENDS:
        fp32, int8 = arts[(backend, "fp32")], arts[(backend, "int8")]
        assert src - int8["parity"]["accuracy"] <= 0.02, backend
        assert int8["size_bytes"] <= 0.35 * fp32["size_bytes"], backend
        assert fp32["parity"]["max_abs_error"] < 1e-4, backend


def test_manifest_validates_and_hashes_match(release):
    pytest.importorskip("jsonschema")
    release.validate()
    assert release.verify_files() == []
    m = release.manifest
    assert m["calibration"]["count"] == 359
    assert m["toolchain"]["torch"].startswith("2.13.0")
    for dist in ("onnxruntime", "executorch", "ai-edge-litert", "onnx2tf"):
        assert dist in m["toolchain"]
    ins, outs = release.golden()
    assert ins[0].shape == (8, 1, 8, 8) and outs[0].shape == (8, 10)
    # ExecuTorch records what fell back from the XNNPACK delegate
    et = by_target(release)[("executorch", "int8")]["details"]
    assert et["delegated_nodes"] > 0 and et["fallback_ops"] == []


def test_cli_inspect_and_tamper(release, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(release.path, copy)
    r = subprocess.run([sys.executable, "-m", "edgeyard.cli", "inspect", str(copy)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "every sha256 matches" in r.stdout and "pixel-8" in r.stdout
    art = next((copy / "artifacts").glob("*tflite-int8.tflite"))
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0xFF
    art.write_bytes(bytes(data))
    r = subprocess.run([sys.executable, "-m", "edgeyard.cli", "inspect", str(copy)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "tflite-int8: artifacts/digits-tflite-int8.tflite does not match its sha256" in r.stderr


def test_cli_build_from_config_on_a_torch_export(digits_data, digits_cnn, tmp_path):
    import numpy as np
    import torch

    d = digits_data
    torch.export.save(torch.export.export(digits_cnn, (torch.from_numpy(d.x_eval[:1]),)),
                      tmp_path / "model.pt2")
    np.savez(tmp_path / "eval.npz", x=d.x_eval[:100], y=d.y_eval[:100])
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "box.toml").write_text(
        'name = "box"\n[hardware]\narch = "x86_64"\nos = "linux"\n'
        '[[targets]]\nbackend = "onnx"\nprecision = "fp32"\n'
    )
    (tmp_path / "build.toml").write_text(
        '[model]\nname = "digits"\nversion = "1.0"\nsource = "model.pt2"\n'
        '[data]\nevaluation = "eval.npz"\n'
        '[build]\nprofiles = ["box"]\nout = "out"\nprofile_dirs = ["profiles"]\n'
    )
    r = subprocess.run([sys.executable, "-m", "edgeyard.cli", "build",
                        str(tmp_path / "build.toml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rel = edgeyard.load_release(tmp_path / "out")
    assert rel.chain("box")[0]["status"] == "ok"
    assert rel.manifest["evaluation"]["labels"] is True
    assert json.loads((tmp_path / "out" / "release.json").read_text())["model"]["name"] == "digits"
