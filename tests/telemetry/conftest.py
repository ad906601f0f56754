from __future__ import annotations

import pytest

import edgeyard
from profile_files import write_profile


@pytest.fixture(scope="session")
def telemetry_release(digits_data, digits_cnn, tmp_path_factory):
    """A digits release (ONNX Runtime, one engine) with its build-time telemetry reference."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("opentelemetry.proto", reason="the collector speaks OTLP")
    root = tmp_path_factory.mktemp("telemetry")
    write_profile(root / "profiles", "host", [("onnx", "fp32")])
    d = digits_data
    return edgeyard.build(digits_cnn, example_inputs=(d.x_eval[:1],), profiles=["host"],
                          evaluation=(d.x_eval, d.y_eval), out=root / "digits",
                          profile_dirs=[root / "profiles"], name="digits", version="1.0",
                          log=None)
