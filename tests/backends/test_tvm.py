"""The TVM backend: MetaSchedule records really applied and reused, cross-compiling, targets."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest

from edgeyard.backends.base import ConvertRequest
from edgeyard.backends.tvm import CROSS_CXX_ENV, TvmBackend, resolve_target, tuning_dir
from edgeyard.errors import ConversionError
from edgeyard.model import prepare

BACKEND = TvmBackend()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(BACKEND.unavailable("torch")),
                       reason=str(BACKEND.unavailable("torch"))),
]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEYARD_TVM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEYARD_TVM_TRIALS", raising=False)


@pytest.fixture(scope="module")
def cnn(digits_data, digits_cnn, tmp_path_factory):
    return prepare(digits_cnn, (digits_data.x_eval[:1],), tmp_path_factory.mktemp("cnn"))


def _convert(src, tmp_path, name, **options):
    work = tmp_path / f"work-{name}"
    work.mkdir()
    return BACKEND.convert(ConvertRequest(src.source, "fp32", options, tmp_path / f"{name}.so",
                                          work))


def _outputs(path, src, inputs):
    engine = BACKEND.load(path, source=src.source)
    try:
        assert [s.shape for s in engine.inputs] == [s.shape for s in src.source.inputs]
        batch = engine.inputs[0].shape[0]
        n = len(inputs[0])
        chunks = [engine.predict([x[i:i + batch] for x in inputs]) for i in range(0, n, batch)]
    finally:
        engine.close()
    return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]


def test_tuned_records_are_applied_then_reused(cnn, digits_data, tmp_path):
    db = tmp_path / "db"
    first = _convert(cnn, tmp_path, "first", trials=6, tuning_db=str(db))
    d = first.details
    assert d["tuning"]["reused"] is False and d["tuning"]["trials"] == 6
    assert d["tuning"]["seconds"] > 0
    assert d["records_applied"] is True
    assert 0 < d["tuned_tasks"] <= d["tasks"]
    meta = json.loads((db / "meta.json").read_text())
    assert meta["model_sha256"] == cnn.source.sha256 and meta["trials"] == 6
    assert not list(tmp_path.glob(".db.tuning-*"))  # the temporary tuning dir was renamed

    second = _convert(cnn, tmp_path, "second", trials=6, tuning_db=str(db))
    assert second.details["tuning"] == {"reused": True, "trials": 6, "seconds": 0,
                                        "db": str(db)}
    assert second.details["tuned_tasks"] == d["tuned_tasks"]
    # fewer trials than recorded: still reused
    assert _convert(cnn, tmp_path, "third", trials=2,
                    tuning_db=str(db)).details["tuning"]["reused"] is True

    x = digits_data.x_eval[:64]
    (expected,) = cnn.predict((x,))
    (produced,) = _outputs(second.path, cnn, (x,))
    np.testing.assert_allclose(produced, expected, rtol=1e-4, atol=1e-4)
    info = BACKEND.inspect(second.path)
    assert info["inputs"] == [s.to_dict() for s in cnn.source.inputs]
    assert info["target"] == d["target"]


def test_an_interrupted_tuning_is_not_reused(cnn, tmp_path):
    db = tuning_dir(cnn.source.sha256, "{}", None)
    db.mkdir(parents=True)
    (db / "database_workload.json").write_text("")  # records but no meta.json: incomplete
    from edgeyard.backends.tvm import _read_meta

    assert _read_meta(db) is None


def test_untuned_two_inputs_two_outputs_keep_the_source_order(tmp_path):
    torch = pytest.importorskip("torch")
    from .cases import _two_io

    rng = np.random.default_rng(0)
    z, a = rng.normal(size=(5, 12)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    src = prepare(_two_io(torch), (z[:1], a[:1]), tmp_path / "src")
    res = _convert(src, tmp_path, "two", trials=0)
    assert res.details["tuning"] == {"reused": False, "trials": 0, "seconds": 0}
    assert res.details["records_applied"] is False
    for got, want in zip(_outputs(res.path, src, (z, a)), src.predict((z, a)), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_onnx_source(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(size=(6, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    path = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = rng.normal(size=(4, 6)).astype(np.float32)
    src = prepare(path, (x[:1],), tmp_path / "src")
    res = _convert(src, tmp_path, "mm", trials=0)
    np.testing.assert_allclose(_outputs(res.path, src, (x,))[0], src.predict((x,))[0],
                               rtol=1e-5, atol=1e-5)


def test_cross_compiling_for_aarch64(cnn, tmp_path, monkeypatch):
    monkeypatch.delenv(CROSS_CXX_ENV, raising=False)
    # the system's cross g++, else zig's clang from the ziglang wheel (the tvm extra's)
    linker = (shutil.which("aarch64-linux-gnu-g++") or shutil.which("aarch64-linux-gnu-gcc")
              or importlib.util.find_spec("ziglang"))
    if linker is None:
        with pytest.raises(ConversionError, match="g\\+\\+-aarch64-linux-gnu"):
            _convert(cnn, tmp_path, "arm", target="aarch64")
        return
    res = _convert(cnn, tmp_path, "arm", target="aarch64")
    elf = res.path.read_bytes()
    assert elf[:4] == b"\x7fELF" and int.from_bytes(elf[18:20], "little") == 183  # EM_AARCH64
    assert "aarch64" in res.runs_elsewhere
    assert BACKEND.inspect(res.path)["target"]["mtriple"] == "aarch64-linux-gnu"


def test_cross_linker_gets_aarch64_code(cnn, tmp_path, monkeypatch):
    """With a stand-in linker (copies its first object file): LLVM emitted AArch64 code."""
    fake = tmp_path / "fake-cxx"
    fake.write_text('#!/bin/sh\nout=""; obj=""\nwhile [ $# -gt 0 ]; do\n  case "$1" in\n'
                    '    -o) out="$2"; shift;;\n    *.o) [ -z "$obj" ] && obj="$1";;\n  esac\n'
                    '  shift\ndone\ncp "$obj" "$out"\n')
    fake.chmod(0o755)
    monkeypatch.setenv(CROSS_CXX_ENV, str(fake))
    res = _convert(cnn, tmp_path, "arm", target="aarch64")
    elf = res.path.read_bytes()
    assert elf[:4] == b"\x7fELF" and int.from_bytes(elf[18:20], "little") == 183  # EM_AARCH64
    assert res.runs_elsewhere.startswith("built for aarch64")
    assert res.details["tuning"]["trials"] == 0 and "skipped" in res.details["tuning"]
    assert res.details["target"]["mtriple"] == "aarch64-linux-gnu"
    # tuning needs the device: asked for, it is not faked; the reason says what to do
    res = _convert(cnn, tmp_path, "arm-tuned", target="aarch64", trials=8)
    assert res.details["tuning"]["trials"] == 0
    assert "tune on an aarch64 machine and pass its records as tuning_db" in res.runs_elsewhere


def test_targets_short_names_json_and_errors(cnn, tmp_path):
    host = resolve_target("host")
    assert host["kind"] == "llvm" and host["mcpu"] and host["num-cores"] >= 1
    assert resolve_target(None) == host
    assert resolve_target("aarch64")["mtriple"] == "aarch64-linux-gnu"
    assert resolve_target("x86_64")["num-cores"] == 4
    arm = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"], "num-cores": 4}
    assert resolve_target(arm) == arm
    assert resolve_target({"kind": "llvm"})["num-cores"] >= 1  # this host: its core count
    with pytest.raises(ConversionError, match="JSON target dict"):
        resolve_target("llvm -mtriple=aarch64-linux-gnu")
    with pytest.raises(ConversionError, match="kind must be 'llvm'"):
        resolve_target({"kind": "cuda"})
    with pytest.raises(ConversionError, match="num-cores"):
        resolve_target({"kind": "llvm", "mtriple": "riscv64-linux-gnu"})
    with pytest.raises(ConversionError, match="Unknown config option 'mcpuu'"):
        _convert(cnn, tmp_path, "bad", target={"kind": "llvm", "mcpuu": "x"})
    # the JSON form builds (untuned: quick) and is recorded canonically
    res = _convert(cnn, tmp_path, "json", target={"kind": "llvm", "num-cores": 1}, trials=0)
    assert res.details["target"]["num-cores"] == 1
    with pytest.raises(ConversionError, match="trials must be >= 0"):
        _convert(cnn, tmp_path, "neg", trials=-1)
