"""A third-party backend and engine, installed with pip from a package in the test tree
(tests/plugins/edgeyard_ort_format), found through the `edgeyard.backends` and
`edgeyard.engines` entry points, building a verified artifact and serving it with `Runtime`.

The build and the serving run in a fresh interpreter whose path holds the installed plug-in,
as a user's build script would after `pip install edgeyard-ort-format`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "tests" / "plugins" / "edgeyard_ort_format"

SCRIPT = r'''
import json, sys
from pathlib import Path
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import edgeyard
from edgeyard.backends.registry import backend_names
from edgeyard.engines.registry import engine_formats
from edgeyard.runtime import Runtime
from profile_files import write_profile

work = Path(sys.argv[1])
rng = np.random.default_rng(0)
# a small classifier made here: x[1, 16] -> Gemm(16 -> 32) -> Relu -> Gemm(32 -> 4) -> Softmax
w1, w2 = rng.normal(size=(16, 32)).astype(np.float32), rng.normal(size=(32, 4)).astype(np.float32)
graph = helper.make_graph(
    [helper.make_node("Gemm", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
     helper.make_node("Gemm", ["r", "w2"], ["logits"]),
     helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
    "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
    [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 4])],
    [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.save(model, work / "tiny.onnx")
x = rng.normal(size=(64, 16)).astype(np.float32)
write_profile(work / "profiles", "plug", [("ortformat", "fp32"), ("onnx", "fp32")])
release = edgeyard.build(str(work / "tiny.onnx"), example_inputs=(x[:1],), profiles=["plug"],
                         profile_dirs=[work / "profiles"], evaluation=x[32:],
                         calibration=x[:32], out=work / "release", log=None)
a = release.artifacts["ortformat-fp32"]
rt = Runtime.from_release(work / "release", "plug", allow_unsigned=True)
got = np.concatenate([rt.predict(x[i:i + 1]) for i in range(32, 40)])
import onnxruntime as ort
source = ort.InferenceSession(str(work / "tiny.onnx"))
want = np.concatenate([source.run(None, {"x": x[i:i + 1]})[0] for i in range(32, 40)])
print(json.dumps({
    "backends": backend_names(), "engines": engine_formats(),
    "status": a["status"], "format": a["format"], "path": a["path"],
    "cosine": a["parity"]["outputs"]["probs"]["cosine_mean"],
    "status_rt": rt.status(),
    "max_error": float(np.abs(got - want).max()),
}))
'''


def test_a_plugin_backend_and_engine_build_and_serve(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    site = tmp_path / "site"
    source = tmp_path / "plugin-source"  # pip builds in the source tree: a copy keeps ours clean
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-3000:]
    assert list(site.glob("edgeyard_ort_format-*.dist-info/entry_points.txt"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True,
                         text=True, timeout=600, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert "ortformat" in got["backends"] and "ort" in got["engines"], got
    assert got["status"] == "ok" and got["format"] == "ort", got
    assert got["path"].endswith(".ort") and got["cosine"] > 0.9999, got
    assert got["max_error"] < 1e-5, got
    # served by the plug-in's engine, loaded through the registry on the device side too
    assert got["status_rt"]["served_by"] == {"ortformat-fp32": 8}, got["status_rt"]
    assert got["status_rt"]["engines"][0]["state"] == "healthy"
    # the artifact is ONNX Runtime's flatbuffer format (file identifier "ORTM"), not a copy
    head = (tmp_path / "release" / got["path"]).read_bytes()[:8]
    assert head[4:8] == b"ORTM", head
