from __future__ import annotations

import shutil

import pytest

import edgeyard
from profile_files import write_profile


@pytest.fixture(scope="session")
def signed_release(digits_data, digits_cnn, tmp_path_factory):
    """A real digits release with three engines, signed with a fresh Ed25519 key."""
    for m in ("onnxruntime", "ai_edge_litert", "executorch", "cryptography"):
        pytest.importorskip(m, reason=f"the runtime tests load {m}")
    from edgeyard.signing import generate_keys

    root = tmp_path_factory.mktemp("runtime")
    write_profile(root / "profiles", "phone",
                  [("tflite", "int8"), ("executorch", "fp32"), ("onnx", "fp32")],
                  budgets="max_latency_p90_ms = 5.0")
    priv, pub = generate_keys(root / "release.pem")
    _, other_pub = generate_keys(root / "other.pem")
    d = digits_data
    rel = edgeyard.build(
        digits_cnn, example_inputs=(d.x_eval[:1],), profiles=["phone"], calibration=d.x_calib,
        evaluation=(d.x_eval, d.y_eval), out=root / "digits", profile_dirs=[root / "profiles"],
        name="digits", version="1.0", sign_key=priv, log=None,
    )
    assert rel.ok, rel.summary()
    return {"path": rel.path, "public": pub, "other_public": other_pub, "data": d}


@pytest.fixture
def release_copy(signed_release, tmp_path):
    """A private copy of the signed release that a test may damage."""
    dest = tmp_path / "digits"
    shutil.copytree(signed_release["path"], dest)
    return dest
