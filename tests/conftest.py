"""Shared fixtures. Heavy toolchains are imported only inside the tests that need them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "digits"


@pytest.fixture(scope="session")
def digits_module():
    """The example's data/model module (scikit-learn's bundled digits, seeded splits)."""
    pytest.importorskip("sklearn", reason="scikit-learn provides the bundled digits data")
    sys.path.insert(0, str(EXAMPLES))
    import digits

    return digits


@pytest.fixture(scope="session")
def digits_data(digits_module):
    return digits_module.load()


@pytest.fixture(scope="session")
def digits_cnn(digits_module, digits_data):
    """The digits CNN, trained for a few epochs (seconds on two cores)."""
    pytest.importorskip("torch", reason="the digits CNN is a torch model")
    return digits_module.train(digits_module.make_cnn(), digits_data, epochs=8)


@pytest.fixture(scope="session")
def telemetry_release(digits_data, digits_cnn, tmp_path_factory):
    """A digits release (ONNX Runtime, one engine) with its build-time telemetry reference."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("opentelemetry.proto", reason="the collector speaks OTLP")
    import edgeyard
    from profile_files import write_profile

    root = tmp_path_factory.mktemp("telemetry")
    write_profile(root / "profiles", "host", [("onnx", "fp32")])
    d = digits_data
    return edgeyard.build(digits_cnn, example_inputs=(d.x_eval[:1],), profiles=["host"],
                          evaluation=(d.x_eval, d.y_eval), out=root / "digits",
                          profile_dirs=[root / "profiles"], name="digits", version="1.0",
                          log=None)
