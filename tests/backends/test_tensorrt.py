"""TensorRT: the artifact (ONNX + recipe) is made here; the engine only where TensorRT imports.

TensorRT is not installable on edgeyard's CI machines, so the tests marked `tensorrt` skip there
with that reason; they build, verify and reuse real engines the moment `tensorrt` imports on a
machine with an NVIDIA GPU.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import edgeyard
from edgeyard.backends import get_backend
from edgeyard.backends.base import ConvertRequest
from edgeyard.backends.tensorrt import read_recipe
from edgeyard.engines.tensorrt import engine_key
from edgeyard.model import prepare

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
needs_trt = pytest.mark.skipif(
    not HAVE_TRT, reason="tensorrt does not import here (not installable from PyPI: NVIDIA's "
                         "JetPack / TensorRT installers provide it)")


def test_engine_cache_key_separates_gpu_and_version():
    a = engine_key("ab" * 32, "10.3.0", "Orin sm_87")
    assert a == engine_key("ab" * 32, "10.3.0", "Orin sm_87")
    assert a != engine_key("ab" * 32, "10.4.0", "Orin sm_87")
    assert a != engine_key("ab" * 32, "10.3.0", "H100 sm_90")
    assert a != engine_key("cd" * 32, "10.3.0", "Orin sm_87")


@pytest.mark.skipif(HAVE_TRT, reason="tensorrt imports here: the skip path does not apply")
def test_skipped_with_the_reason_where_tensorrt_is_missing():
    reason = get_backend("tensorrt").unavailable("torch")
    assert reason.startswith("tensorrt not installed")
    assert "JetPack" in reason and "placeholders" in reason


@pytest.fixture(scope="module")
def digits_source(digits_data, digits_cnn, tmp_path_factory):
    pytest.importorskip("onnxscript")
    return prepare(digits_cnn, (digits_data.x_eval[:1],),
                   tmp_path_factory.mktemp("trt-source")).source


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_artifact_is_onnx_with_the_engine_recipe(digits_source, digits_data, tmp_path,
                                                 precision):
    # convert() itself needs only onnx (and onnxruntime's quantizer for int8): run it here
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "m.onnx"
    (tmp_path / "w").mkdir()
    calib = (digits_data.x_calib,) if precision == "int8" else None
    get_backend("tensorrt").convert(ConvertRequest(digits_source, precision, {"workspace_mb": 256},
                                                   out, tmp_path / "w", calib))
    recipe = read_recipe(out)
    assert recipe["precision"] == precision and recipe["workspace_mb"] == 256
    assert recipe["shape_profiles"] == [{"input": digits_source.inputs[0].name, "min": [1, 1, 8, 8],
                                         "opt": [1, 1, 8, 8], "max": [1, 1, 8, 8]}]
    model = onnx.load(out)
    ops = {n.op_type for n in model.graph.node}
    if precision == "int8":
        assert recipe["builder_flags"] == ["INT8", "FP16"]
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        # TensorRT takes symmetric int8 only: every zero point is 0
        zero_points = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer
                       if t.name.endswith("zero_point")]
        assert zero_points and all(not z.any() for z in zero_points)
    else:
        assert recipe["builder_flags"] == ["FP16"]
        assert "QuantizeLinear" not in ops


@pytest.mark.slow
def test_jetson_profile_skips_tensorrt_and_verifies_the_onnx_fallback(digits_data, digits_cnn,
                                                                      tmp_path):
    pytest.importorskip("onnxruntime")
    d = digits_data
    rel = edgeyard.build(digits_cnn, example_inputs=(d.x_eval[:1],), profiles=["jetson-orin-nano"],
                         evaluation=(d.x_eval, d.y_eval), out=tmp_path / "rel", log=None)
    trt, ort = rel.chain("jetson-orin-nano")
    if HAVE_TRT:
        assert trt["status"] in ("ok", "unverified")
    else:
        assert trt["status"] == "skipped"
        assert "tensorrt not installed" in trt["reasons"][0]
    assert ort["backend"] == "onnx" and ort["status"] == "ok"
    assert rel.ok


@pytest.mark.tensorrt
@needs_trt
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_builds_verifies_and_is_cached(digits_source, digits_data, tmp_path, monkeypatch,
                                              precision):
    backend = get_backend("tensorrt")
    if backend.cannot_run_here():
        pytest.skip(backend.cannot_run_here())
    monkeypatch.setenv("EDGEYARD_TRT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "m.onnx"
    (tmp_path / "w").mkdir()
    calib = (digits_data.x_calib,) if precision == "int8" else None
    backend.convert(ConvertRequest(digits_source, precision, {}, out, tmp_path / "w", calib))
    first = backend.load(out, source=digits_source)
    x = digits_data.x_eval[:1]
    y = first.predict([x])[0]
    assert first.built and y.shape == (1, 10) and np.isfinite(y).all()
    second = backend.load(out, source=digits_source)
    assert not second.built and second.cache_path == first.cache_path
    np.testing.assert_allclose(second.predict([x])[0], y, rtol=0, atol=1e-6)
