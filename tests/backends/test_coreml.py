"""Core ML: converted on this host, validated structurally, honestly unverified off macOS.

Prediction exists only on macOS, so on Linux these tests check what can be checked: the saved
`.mlpackage` re-reads, its I/O matches the source, each precision leaves its mark in the op
census (int8 and palettized weights are `constexpr_*` ops), and a build marks the target
UNVERIFIED with the reason while the rest of the chain verifies.
"""

from __future__ import annotations

import dataclasses
import platform

import numpy as np
import pytest

import edgeyard
from edgeyard.backends import get_backend
from edgeyard.backends.base import ConvertRequest
from edgeyard.backends.coreml import validate
from edgeyard.model import prepare
from edgeyard.runtime import Runtime

from .cases import build_cases

pytestmark = pytest.mark.slow
OFF_MAC = platform.system() != "Darwin"


@pytest.fixture(scope="module")
def sources(digits_data, digits_cnn, tmp_path_factory):
    backend = get_backend("coreml")
    if backend.unavailable("torch"):
        pytest.skip(backend.unavailable("torch"))
    root = tmp_path_factory.mktemp("coreml-sources")
    return {name: prepare(c.model, c.example, root / name).source
            for name, c in build_cases(digits_data, digits_cnn).items()}


def convert(source, precision, tmp_path, **options):
    out = tmp_path / f"{precision}.mlpackage"
    (tmp_path / "work").mkdir(parents=True, exist_ok=True)
    return get_backend("coreml").convert(
        ConvertRequest(source, precision, options, out, tmp_path / "work"))


@pytest.mark.parametrize(("precision", "options", "marker"), [
    ("fp32", {}, None),
    ("fp16", {}, None),
    ("int8-weights", {}, "constexpr_affine_dequantize"),
    ("fp16", {"palettize_bits": 4}, "constexpr_lut_to_dense"),
])
def test_each_precision_converts_and_validates(sources, tmp_path, precision, options, marker):
    src = sources["digits_cnn"]
    result = convert(src, precision, tmp_path, **options)
    assert result.details["structural_validation"] == "passed"
    assert result.details["frontend"].startswith("torch.export")
    info = get_backend("coreml").inspect(result.path)
    assert [s["name"] for s in info["inputs"]] == [s.name for s in src.inputs]
    assert info["inputs"][0]["shape"] == [1, 1, 8, 8]
    assert info["outputs"][0]["dtype"] == "float32"  # float32 I/O even at fp16 compute
    assert info["ops"].get("conv", 0) >= 1
    if marker:
        assert info["ops"].get(marker, 0) >= 2  # every conv / linear weight compressed
    else:
        assert info["compressed_weight_ops"] == 0


def test_weights_shrink_with_precision(sources, tmp_path):
    def weights_bytes(precision, **options):
        path = convert(sources["digits_cnn"], precision, tmp_path / precision
                       / str(options.get("palettize_bits", "")), **options).path
        return (path / "Data/com.apple.CoreML/weights/weight.bin").stat().st_size

    fp32, fp16 = weights_bytes("fp32"), weights_bytes("fp16")
    int8, pal4 = weights_bytes("int8-weights"), weights_bytes("fp16", palettize_bits=4)
    assert fp16 < 0.6 * fp32
    assert int8 < 0.7 * fp16
    assert pal4 < int8


def test_io_names_order_kept_for_two_inputs_and_outputs(sources, tmp_path):
    src = sources["two_in_two_out"]
    info = get_backend("coreml").inspect(convert(src, "fp32", tmp_path).path)
    assert [s["name"] for s in info["inputs"]] == ["zeta", "alpha"]
    assert [s["name"] for s in info["outputs"]] == [s.name for s in src.outputs]


def test_validation_catches_a_mismatch(sources, tmp_path):
    src = sources["digits_cnn"]
    path = convert(src, "fp32", tmp_path).path
    example = src.example_inputs()
    assert validate(path, src, example) == []
    renamed = dataclasses.replace(src, inputs=(dataclasses.replace(src.inputs[0], name="img"),))
    assert any("input names" in p for p in validate(path, renamed, example))
    wider = dataclasses.replace(src, outputs=(dataclasses.replace(src.outputs[0], shape=(-1, 11)),))
    assert any("shape" in p for p in validate(path, wider, example))
    assert "does not load" in validate(tmp_path / "nothing.mlpackage", src, example)[0]


def test_bad_options_are_named(sources, tmp_path):
    with pytest.raises(edgeyard.EdgeyardError, match="iOS17"):
        convert(sources["digits_cnn"], "fp16", tmp_path, minimum_deployment_target="iOS99")
    with pytest.raises(edgeyard.EdgeyardError, match=r"palettize_bits must be one of"):
        convert(sources["digits_cnn"], "fp16", tmp_path, palettize_bits=5)


@pytest.mark.skipif(not OFF_MAC, reason="on macOS the target verifies fully")
def test_iphone_profile_builds_coreml_unverified_and_the_chain_falls_back(
        digits_data, digits_cnn, tmp_path):
    d = digits_data
    rel = edgeyard.build(digits_cnn, example_inputs=(d.x_eval[:1],), profiles=["iphone-15"],
                         evaluation=(d.x_eval, d.y_eval), out=tmp_path / "rel", log=None)
    chain = {e["backend"]: e for e in rel.chain("iphone-15")}
    assert chain["coreml"]["status"] == "unverified"
    assert "only on macOS" in chain["coreml"]["reasons"][0]
    art = rel.manifest["artifacts"][chain["coreml"]["target"]]
    assert art["details"]["structural_validation"] == "passed"
    assert art["inspect"]["ops"]["conv"] >= 1 and art["size_bytes"] > 0
    assert chain["executorch"]["status"] == "ok" and chain["tflite"]["status"] == "ok"
    assert rel.ok and rel.verify_files() == []  # the bundle directory is hashed too
    assert "UNVERIFIED" in rel.summary()
    # a Linux device cannot load Core ML: the runtime says why and serves from the next engine
    rt = Runtime.from_release(rel.path, "iphone-15", allow_unsigned=True)
    y = rt.predict(d.x_eval[:1])
    assert y.shape == (1, 10) and np.isfinite(y).all()
    status = rt.status()
    assert status["served_by"] == {"executorch-fp32": 1}
    assert "only on macOS" in str(status)

