"""Calibration coverage on the digits CNN: a calibration set that misses part of what the
evaluation data reaches is reported, tensor by tensor; a representative one is not."""

from __future__ import annotations

import pytest

from edgeyard.builder.coverage import coverage
from edgeyard.model import prepare


@pytest.fixture(scope="module")
def prepared(digits_data, digits_cnn, tmp_path_factory):
    return prepare(digits_cnn, (digits_data.x_eval[:1],), tmp_path_factory.mktemp("cov"))


def run(prepared, cal, ev):
    return coverage(prepared, (cal,), (ev,), prepared.predict((ev,)))


def test_representative_calibration_covers_the_inputs_and_outputs(prepared, digits_data):
    d = digits_data
    report = run(prepared, d.x_calib, d.x_eval)
    assert report["activations"].endswith("intermediate tensors checked")
    assert report["tensors_checked"] > 5  # input, output and the convs / linears between
    # inputs and outputs covered, up to a sliver: a few evaluation values of a trained net's
    # logits can lie just past the calibration's range (0.2% seen), where dimming leaves 5%+
    edges = [r for r in report["uncovered"] if r["tensor"].startswith(("input", "output"))]
    assert all(r["outside_share"] < 0.01 for r in edges), edges


def test_dim_calibration_is_reported_with_the_clipped_share(prepared, digits_data):
    d = digits_data
    report = run(prepared, d.x_calib * 0.5, d.x_eval)  # calibration never brighter than 0.5
    first = report["uncovered"][0]
    inp = next(r for r in report["uncovered"] if r["tensor"].startswith("input"))
    assert inp["calibration_range"][1] == pytest.approx(0.5)
    assert inp["evaluation_range"][1] == pytest.approx(1.0)
    assert inp["outside_share"] > 0.05 and not inp["covered"]
    assert first["outside_share"] >= inp["outside_share"]  # worst first
    assert report["uncovered_count"] >= 3  # the dimming propagates through the activations
    assert any("int8 clips them" in w and "input" in w for w in report["warnings"])
