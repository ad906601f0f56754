from __future__ import annotations

import numpy as np
import pytest

from edgeyard.builder.verify import budget_problems, compare, intrinsic_problems, selftest_tolerance
from edgeyard.data import as_arrays, check_arrays, collect, fingerprint, run_batched
from edgeyard.engines.base import TensorSpec
from edgeyard.errors import DataError
from edgeyard.profiles import Budgets

SPEC = (TensorSpec("x", (1, 1, 8, 8), "float32"),)


def test_collect_concatenates_batches_and_casts():
    batches = (np.ones((3, 1, 8, 8), dtype=np.float64) * i for i in range(4))
    (x,) = collect(batches, SPEC, "calibration")
    assert x.shape == (12, 1, 8, 8) and x.dtype == np.float32
    assert x[-1, 0, 0, 0] == 3


def test_collect_accepts_single_unbatched_samples():
    (x,) = collect([np.zeros((1, 8, 8))] * 5, SPEC, "calibration")
    assert x.shape == (5, 1, 8, 8)


def test_shape_mismatch_is_a_clear_data_error():
    with pytest.raises(DataError, match=r"per-sample shape \(8, 8\), the model expects \(1, 8, 8\)"):
        check_arrays((np.zeros((4, 8, 8)),), SPEC, "evaluation")
    with pytest.raises(DataError, match="the iterable yielded no batches"):
        collect(iter([]), SPEC, "calibration")
    with pytest.raises(DataError, match="has 1 input"):
        check_arrays((np.zeros((4, 1, 8, 8)), np.zeros((4, 3))), SPEC, "evaluation")


def test_inputs_by_name():
    arrays = as_arrays({"x": np.zeros((2, 1, 8, 8))}, SPEC)
    assert arrays[0].shape == (2, 1, 8, 8)
    with pytest.raises(DataError, match="lack"):
        as_arrays({"y": np.zeros(2)}, SPEC)


def test_run_batched_pads_the_last_chunk_and_drops_padding():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    seen = []

    def fn(arrays):
        seen.append(arrays[0].shape[0])
        return [arrays[0] * 2]

    (out,) = run_batched(fn, (x,), 4)
    assert seen == [4, 4, 4]
    np.testing.assert_array_equal(out, x * 2)


def test_fingerprint_depends_on_dtype_shape_and_bytes():
    a = np.zeros((2, 2), np.float32)
    assert fingerprint([a]) == fingerprint([a.copy()])
    assert fingerprint([a]) != fingerprint([a.astype(np.float64)])
    assert fingerprint([a]) != fingerprint([a.reshape(4)])


def test_compare_classification():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(100, 10)).astype(np.float32)
    labels = ref.argmax(1)
    noisy = ref + rng.normal(scale=1e-3, size=ref.shape).astype(np.float32)
    p = compare([ref], [noisy], labels)
    assert p.top1_agreement > 0.95 and p.accuracy == p.top1_agreement
    assert 0 < p.max_abs_error < 0.01 and p.finite
    flipped = -ref
    q = compare([ref], [flipped], labels)
    assert q.top1_agreement < 0.1 and q.accuracy < 0.1


def test_non_finite_and_wrong_shapes_are_intrinsic_failures():
    ref = np.zeros((4, 3), np.float32)
    bad = ref.copy()
    bad[0, 0] = np.nan
    p = compare([ref], [bad], None)
    assert not p.finite and "NaN" in intrinsic_problems(p)[0]
    assert p.to_dict()["max_abs_error"] is None
    q = compare([ref], [np.zeros((4, 2), np.float32)], None)
    assert "shape (4, 2)" in intrinsic_problems(q)[0]


def test_budgets():
    ref = np.eye(10, dtype=np.float32)
    labels = np.arange(10)
    produced = ref.copy()
    produced[:2] = np.roll(ref[:2], 1, axis=1)  # 2 of 10 wrong
    p = compare([ref], [produced], labels)
    problems = budget_problems(p, 30_000_000, 1.0, Budgets(max_size_mb=20))
    assert any("size 30.00 MB > budget 20 MB" in s for s in problems)
    assert any("top-1 agreement 0.800 < budget 0.970" in s for s in problems)
    assert any("accuracy drop 20.0 points > budget 2.0" in s for s in problems)
    assert budget_problems(compare([ref], [ref], labels), 1000, 1.0, Budgets()) == []


def test_selftest_tolerance_covers_the_build_error_with_margin():
    ref = [np.array([[1.0, 2.0]], np.float32)]
    assert selftest_tolerance(ref, [ref[0] + 0.1]) == pytest.approx(0.2, rel=1e-5)
    assert selftest_tolerance(ref, ref) > 0
