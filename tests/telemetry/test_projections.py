"""Projections and the build-time reference, on the real digits release."""

from __future__ import annotations

import numpy as np
import pytest

from edgeyard.telemetry import ExpHistogram, Projector
from edgeyard.telemetry.window import reference_window


def test_release_carries_projections_and_reference(telemetry_release, digits_data):
    tel = telemetry_release.manifest["telemetry"]
    names = [s["name"] for s in tel["projections"]["signals"]]
    assert {"input.input.mean", "input.input.std", "input.input.rp0", "output.confidence",
            "output.entropy"} <= set(names)
    assert tel["projections"]["signals"][-1]["activation"] == "softmax"  # logits detected
    ref = telemetry_release.reference()
    assert ref.sketches["input.input.mean"].count == len(digits_data.x_eval)
    assert ref.classes.sum() == len(digits_data.x_eval)
    assert telemetry_release.verify_files() == []


def test_device_and_build_compute_the_same_values(telemetry_release, digits_data):
    spec = telemetry_release.manifest["telemetry"]["projections"]
    d = digits_data
    from edgeyard.engines import load_engine

    rel = telemetry_release
    entry = rel.chain("host")[0]
    engine = load_engine("onnx", rel.path / entry["path"])
    outs = np.concatenate([engine.predict([d.x_eval[i : i + 1]])[0] for i in range(len(d.x_eval))])
    device = reference_window(spec, (d.x_eval,), [outs])
    ref = rel.reference()
    for name in ("input.input.mean", "input.input.rp2"):  # inputs: bit-identical sketches
        assert device.sketches[name] == ref.sketches[name]
    assert device.classes.tolist() == ref.classes.tolist()


def test_quantiles_within_error_on_digits_projections(telemetry_release, digits_data):
    spec = telemetry_release.manifest["telemetry"]["projections"]
    d = digits_data
    values, _ = Projector(spec).project((d.x_eval,), None)
    for name, v in values.items():
        h = ExpHistogram().update(v)
        for q in (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99):
            exact = float(np.quantile(v, q, method="inverted_cdf"))
            assert abs(h.quantile(q) - exact) <= h.relative_error * abs(exact) + 1e-12, (name, q)


@pytest.mark.parametrize("dist", ["pareto", "cauchy", "lognormal"])
def test_quantiles_within_error_on_heavy_tails(dist):
    rng = np.random.default_rng(5)
    v = {"pareto": rng.pareto(1.1, 50_000), "cauchy": rng.standard_cauchy(50_000),
         "lognormal": rng.lognormal(0, 4, 50_000)}[dist]
    h = ExpHistogram().update(v)
    assert h.scale < 20  # it had to downscale to hold the range in 160 buckets
    for q in np.linspace(0.001, 0.999, 41):
        exact = float(np.quantile(v, q, method="inverted_cdf"))
        assert abs(h.quantile(q) - exact) <= h.relative_error * abs(exact) + 1e-12
