"""The torchscript target through the whole pipeline: build, verify, manifest, runtime."""

from __future__ import annotations

import numpy as np
import pytest

import edgeyard
from edgeyard.runtime import Runtime
from profile_files import write_profile

pytestmark = pytest.mark.slow


def test_lite_interpreter_release_builds_verifies_and_serves(digits_data, digits_cnn, tmp_path):
    pytest.importorskip("torch")
    write_profile(tmp_path / "profiles", "android-lite", [("torchscript", "fp32")])
    d = digits_data
    rel = edgeyard.build(digits_cnn, example_inputs=(d.x_eval[:1],), profiles=["android-lite"],
                         evaluation=(d.x_eval, d.y_eval), out=tmp_path / "rel",
                         profile_dirs=[tmp_path / "profiles"], log=None)
    (entry,) = rel.chain("android-lite")
    assert entry["status"] == "ok", rel.summary()
    assert entry["path"].endswith(".ptl")
    # what happened to optimize_for_mobile is recorded, whichever way it went on this torch
    details = entry.get("details") or {}
    assert str(details.get("optimize_for_mobile", "")).startswith(("applied", "not applied"))
    rt = Runtime.from_release(rel.path, "android-lite", allow_unsigned=True)
    y = rt.predict(d.x_eval[:1])
    assert y.shape == (1, 10) and np.isfinite(y).all()
    assert rt.status()["served_by"] == {"torchscript-fp32": 1}
