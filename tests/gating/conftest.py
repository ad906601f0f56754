from __future__ import annotations

import pytest

import edgeyard
from profile_files import write_profile


@pytest.fixture(scope="session")
def gate_releases(digits_module, digits_data, tmp_path_factory):
    """Real releases of the digits CNN for a one-target host profile: `base`, and `wide` (twice
    the channels: a real 2-3x latency and 2.2x size regression)."""
    pytest.importorskip("onnxruntime", reason="the gate tests measure ONNX Runtime artifacts")
    pytest.importorskip("scipy", reason="the gate's statistics use scipy")
    root = tmp_path_factory.mktemp("gate")
    profiles = write_profile(root / "profiles", "host", [("onnx", "fp32")],
                             budgets="max_latency_p90_ms = 50.0\nmax_peak_memory_mb = 4096")
    d = digits_data
    out = {"profiles": profiles}
    for name, kw in (("base", {}), ("wide", {"width": 64})):
        model = digits_module.train(digits_module.make_cnn(**kw), d, epochs=8)
        out[name] = edgeyard.build(
            model, example_inputs=(d.x_eval[:1],), profiles=["host"],
            evaluation=(d.x_eval, d.y_eval), out=root / name, profile_dirs=[profiles],
            name="digits", version=name, log=None,
        ).path
    return out
