"""The gate's statistics on generated data with known truth."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy")

from edgeyard.gating.stats import decide, mcnemar_worse, ratio_test


def rounds(n, slowdown, noise, drift, seed):
    """Per-round values: a shared machine drift per round (slow spells), independent noise."""
    rng = np.random.default_rng(seed)
    machine = np.where(rng.random(n) < 0.3, 1.4, 1.0) if drift else np.ones(n)
    base = 30.0 * machine * np.exp(rng.normal(0, noise, n))
    cand = 30.0 * slowdown * machine * np.exp(rng.normal(0, noise, n))
    return base, cand


def test_identical_pass_and_clear_regression_fails():
    rng = np.random.default_rng(0)
    b, c = rounds(10, 1.0, 0.01, False, 1)
    t = ratio_test(b, c, 0.05, rng)
    assert abs(t.ratio - 1) < 0.02 and decide(t, 0.05, 0.05) == "pass"
    b, c = rounds(10, 1.2, 0.01, False, 2)
    t = ratio_test(b, c, 0.05, rng)
    assert t.ci_low > 1.1 and decide(t, 0.05, 0.05) == "fail"


def test_small_real_regression_below_the_floor_passes():
    b, c = rounds(20, 1.02, 0.005, False, 3)
    t = ratio_test(b, c, 0.05, np.random.default_rng(0))
    assert t.ci_low > 1.0  # statistically real...
    assert decide(t, 0.05, 0.05) == "pass"  # ...but practically irrelevant


def test_pairing_cancels_machine_drift_that_unpaired_tests_cannot():
    b, c = rounds(9, 1.10, 0.01, True, 4)
    t = ratio_test(b, c, 0.05, np.random.default_rng(0))
    assert decide(t, 0.05, 0.05) == "fail"
    assert t.p_value < 0.01
    assert t.p_mann_whitney > t.p_value  # the same rounds unpaired carry far less evidence


def test_too_few_rounds_cannot_fail():
    b, c = rounds(2, 3.0, 0.01, False, 5)
    t = ratio_test(b, c, 0.05, np.random.default_rng(0))
    assert t.p_value >= 0.25
    assert decide(t, 0.05, 0.05) == "ambiguous"


def test_false_fail_rate_on_generated_aa_is_low():
    rng = np.random.default_rng(7)
    fails = sum(
        decide(ratio_test(*rounds(12, 1.0, 0.05, True, s), 0.05, rng), 0.05, 0.05) == "fail"
        for s in range(300)
    )
    assert fails <= 3


def test_mcnemar():
    base = np.array([True] * 90 + [False] * 10)
    same = mcnemar_worse(base, base.copy())
    assert same.p_value == 1.0
    worse = base.copy()
    worse[:15] = False  # 15 samples only the baseline gets right
    t = mcnemar_worse(base, worse)
    assert t.only_baseline_right == 15 and t.only_candidate_right == 0
    assert t.p_value < 0.001
    assert t.candidate_accuracy == pytest.approx(0.75)
