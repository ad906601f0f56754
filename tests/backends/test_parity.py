"""Every backend x every shared case x every precision it offers: convert, load in the backend's
own runtime, compare with the source model. Skips name the missing toolchain."""

from __future__ import annotations

import numpy as np
import pytest

from edgeyard.backends import get_backend
from edgeyard.backends.base import ConvertRequest
from edgeyard.builder.verify import compare
from edgeyard.data import run_batched
from edgeyard.model import prepare

from .cases import CASE_PRECISIONS, TOLERANCE, build_cases

BACKENDS = ["onnx", "tflite", "executorch", "torchscript", "tvm", "coreml", "tensorrt"]
# options per backend: TVM untuned here (tuning changes schedules, not the math; the tuned
# artifact's parity is checked in test_tvm.py, on a small trial budget)
OPTIONS = {"tvm": {"trials": 0}}
# (backend, case, precision) -> why it is not run
SKIP: dict[tuple[str, str, str], str] = {}
PARAMS = [
    (b, c, p)
    for b in BACKENDS
    for c, precisions in CASE_PRECISIONS.items()
    for p in precisions
    if p in get_backend(b).precisions
]


@pytest.fixture(scope="session")
def cases(digits_data, digits_cnn):
    return build_cases(digits_data, digits_cnn)


@pytest.fixture(scope="session")
def prepared(cases, tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    return {
        name: prepare(c.model, c.example, root / name) for name, c in cases.items()
    }


@pytest.mark.slow
@pytest.mark.parametrize(("backend_name", "case_name", "precision"), PARAMS)
def test_parity(backend_name, case_name, precision, cases, prepared, tmp_path):
    backend = get_backend(backend_name)
    case = cases[case_name]
    if (backend_name, case_name, precision) in SKIP:
        pytest.skip(SKIP[backend_name, case_name, precision])
    src = prepared[case_name]
    reason = backend.unavailable(src.source.format) or backend.cannot_run_here()
    if reason:  # coreml off macOS, tensorrt without TensorRT and a GPU
        pytest.skip(reason)
    out = tmp_path / f"artifact{backend.artifact_suffix}"
    (tmp_path / "work").mkdir()
    result = backend.convert(ConvertRequest(src.source, precision, OPTIONS.get(backend_name, {}),
                                            out, tmp_path / "work",
                                            case.calibration))
    assert result.path.exists() and result.path.stat().st_size > 0
    engine = backend.load(result.path, source=src.source)
    try:
        assert [s.shape[1:] for s in engine.inputs] == [s.shape[1:] for s in src.source.inputs]
        produced = run_batched(engine.predict, case.inputs, engine.inputs[0].batch)
    finally:
        engine.close()
    expected = src.predict(case.inputs)
    parity = compare(expected, produced, case.labels)
    assert parity.shape_errors == ()
    assert parity.finite
    tol = TOLERANCE[precision]
    scale = max(float(np.abs(e).max()) for e in expected)
    if tol["rel_err"] is not None:
        assert parity.max_abs_error <= tol["rel_err"] * max(scale, 1.0), parity
    if parity.top1_agreement is not None:
        assert parity.top1_agreement >= tol["agreement"], parity
    info = backend.inspect(result.path)
    assert isinstance(info, dict) and info
