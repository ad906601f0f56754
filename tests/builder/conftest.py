from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def tiny_onnx(path: Path, seed: int = 0) -> Path:
    """A two-layer MLP written with onnx.helper: x[1,16] -> Gemm -> Relu -> Gemm -> y[1,10]."""
    onnx = pytest.importorskip("onnx", reason="the onnx extra builds the test model")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(16, 32)).astype(np.float32)
    w2 = rng.normal(size=(32, 10)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["hr"]),
            helper.make_node("Gemm", ["hr", "w2"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny_model(tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra runs the test model")
    return tiny_onnx(tmp_path / "tiny.onnx")


@pytest.fixture
def tiny_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 16)).astype(np.float32)
    return x, None
