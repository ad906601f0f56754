from __future__ import annotations

import pytest

import edgeyard

HOST = """name = "host"
runner = "local"
[hardware]
arch = "x86_64"
os = "linux"
[[targets]]
backend = "onnx"
precision = "fp32"
"""


@pytest.fixture(scope="session")
def telemetry_release(digits_data, digits_cnn, tmp_path_factory):
    """A digits release (ONNX Runtime, one engine) with its build-time telemetry reference."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("opentelemetry.proto", reason="the collector speaks OTLP")
    root = tmp_path_factory.mktemp("telemetry")
    (root / "profiles").mkdir()
    (root / "profiles" / "host.toml").write_text(HOST)
    d = digits_data
    return edgeyard.build(digits_cnn, example_inputs=(d.x_eval[:1],), profiles=["host"],
                          evaluation=(d.x_eval, d.y_eval), out=root / "digits",
                          profile_dirs=[root / "profiles"], name="digits", version="1.0",
                          log=None)
