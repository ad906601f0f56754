"""Drift statistics on sketches: KS accuracy against scipy, distance identities, the check's
false-alarm rate and power, its rules and the label-free accuracy estimate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgeyard.drift import (
    CALIBRATION_NOTE,
    DriftPolicy,
    aligned,
    check,
    chi2_classes,
    d1,
    holm,
    js,
    ks,
    ks_distance,
    linf,
    null_ks,
    psi,
    sketch_std,
)
from edgeyard.drift.check import reps_for
from edgeyard.telemetry.sketch import ExpHistogram
from edgeyard.telemetry.window import Window

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is the KS reference")


def sketch(values) -> ExpHistogram:
    return ExpHistogram().update(np.asarray(values, dtype=np.float64))


# --- KS on sketches vs the exact two-sample KS ----------------------------------------------

DISTRIBUTIONS = {
    "normal": lambda r, n, s: r.normal(s, 1.0, n),
    "lognormal_heavy_tail": lambda r, n, s: r.lognormal(s, 1.5, n),
    "mixture_negatives_zeros": lambda r, n, s: np.where(
        r.random(n) < 0.2, 0.0,
        np.where(r.random(n) < 0.5, r.normal(s - 2.0, 1.0, n), r.exponential(1.0 + s, n))),
    "uniform": lambda r, n, s: r.uniform(s, 1.0 + s, n),
    "discrete_ties": lambda r, n, s: r.poisson(3.0 + 3.0 * s, n).astype(np.float64),
    "exponential_shifted": lambda r, n, s: 5.0 + s + r.exponential(1.0, n),
}


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_ks_on_sketches_matches_the_exact_statistic_within_its_bound(name):
    draw = DISTRIBUTIONS[name]
    rng = np.random.default_rng(sorted(DISTRIBUTIONS).index(name))
    for n in (200, 500, 2000, 20000):
        for shift in (0.0, 0.1, 0.3):
            a, b = draw(rng, n, 0.0), draw(rng, n * 3 // 4, shift)
            k = ks(sketch(a), sketch(b))
            exact = scipy_stats.ks_2samp(a, b).statistic
            assert k.statistic - 1e-12 <= exact <= k.statistic + k.bound + 1e-12, (n, shift, k)
            # what is left is the values' movement inside one bucket (max_size 160 fixes the
            # bucket width): a few points' worth, ~sqrt(bucket mass / n), so larger at n = 200
            assert abs(k.statistic - exact) <= (0.02 if n >= 500 else 0.03), (n, shift, k, exact)
            assert k.bound <= max(np.max(aligned(sketch(a), sketch(b)).p),
                                  np.max(aligned(sketch(a), sketch(b)).q)) + 1e-12


def test_ks_at_different_scales_uses_the_coarser_one():
    fine, coarse = sketch(np.linspace(1.0, 1.1, 300)), sketch(np.geomspace(1e-3, 1e3, 300))
    assert fine.scale > coarse.scale
    a = aligned(fine, coarse)
    assert a.scale == coarse.scale
    assert a.p.sum() == pytest.approx(1.0) and a.q.sum() == pytest.approx(1.0)
    assert ks(fine, coarse).resolution == pytest.approx(2.0 ** (2.0 ** -coarse.scale) - 1)


def test_aligned_orders_negatives_zero_positives():
    a = aligned(sketch([-4.0, -1.0, 0.0, 0.0, 1.0, 3.0]), sketch([-2.0, 5.0]))
    assert np.all(np.diff(a.upper) > 0) and np.all(a.lower <= a.upper)
    assert a.exact.sum() == 1 and a.upper[a.exact][0] == 0.0
    assert a.p[a.exact][0] == pytest.approx(2 / 6)
    # every value lies in its bucket
    for v, i in ((-4.0, 0), (-2.0, 1), (-1.0, 2), (1.0, 4), (3.0, 5), (5.0, 6)):
        lo, hi = a.lower[i], a.upper[i]
        assert (lo <= v < hi) if v < 0 else (lo < v <= hi)


def test_ks_of_an_empty_sketch_is_nan():
    k = ks(sketch([1.0, 2.0]), ExpHistogram())
    assert math.isnan(k.statistic) and math.isnan(k.bound)


# --- distances on masses ----------------------------------------------------------------------


def test_distances_vanish_on_identical_sketches():
    h = sketch(np.random.default_rng(1).normal(0, 1, 500))
    a = aligned(h, h)
    for f in (psi, js, linf, d1, ks_distance):
        assert f(a.p, a.q) == pytest.approx(0.0, abs=1e-15)
    assert ks(h, h).statistic == 0.0


def test_distances_on_a_hand_made_case():
    p, q = np.array([0.5, 0.5, 0.0]), np.array([1.0, 0.0, 0.0])
    assert linf(p, q) == 0.5
    assert d1(p, q) == 0.5
    assert ks_distance(p, q) == 0.5
    m = np.array([0.75, 0.25])
    kl = lambda a: sum(x * math.log2(x / y) for x, y in zip(a, m, strict=True) if x > 0)  # noqa: E731
    assert js(p, q) == pytest.approx(0.5 * kl([0.5, 0.5]) + 0.5 * kl([1.0, 0.0]))
    assert js(p, q) == pytest.approx(0.311278, abs=1e-6)
    eps = 1e-4  # empty buckets floored at eps
    expected = (1.0 - 0.5) * math.log(1.0 / 0.5) + (eps - 0.5) * math.log(eps / 0.5)
    assert psi(p, q) == pytest.approx(expected)
    assert js([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)  # disjoint supports: 1 bit


def test_js_is_symmetric_and_bounded():
    rng = np.random.default_rng(2)
    for _ in range(50):
        p, q = rng.dirichlet(np.ones(20) * 0.3), rng.dirichlet(np.ones(20) * 0.3)
        assert js(p, q) == pytest.approx(js(q, p))
        assert 0.0 <= js(p, q) <= 1.0


def test_distances_broadcast_over_replicates():
    rng = np.random.default_rng(3)
    p, q = rng.dirichlet(np.ones(12)), rng.dirichlet(np.ones(12), size=7)
    for f in (psi, js, linf, d1, ks_distance):
        out = f(p, q)
        assert isinstance(out, np.ndarray) and out.shape == (7,)
        assert out == pytest.approx([f(p, row) for row in q])


def test_sketch_std_estimates_the_sample_std():
    v = np.random.default_rng(4).normal(10.0, 2.0, 5000)
    assert sketch_std(sketch(v)) == pytest.approx(np.std(v, ddof=1), rel=0.02)
    assert sketch_std(sketch(np.full(50, 0.5))) == 0.0


def test_chi2_classes():
    same = chi2_classes([120, 120, 120], [1000, 1010, 990])
    assert same.p_value > 0.1 and same.removed == () and same.dof == 2
    gone = chi2_classes([120, 120, 120, 0], [1500, 1500, 0, 0])
    assert gone.p_value < 1e-12 and gone.removed == (2,) and gone.dof == 2  # class 3 dropped
    assert chi2_classes([5, 5], [0, 0]).p_value == 1.0


def test_holm():
    adjusted, reject = holm([0.01, 0.04, 0.03, 0.005], alpha=0.05)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert reject.tolist() == [True, False, False, True]


# --- the check ----------------------------------------------------------------------------------

SPEC = {"signals": [{"name": "input.x.mean"}, {"name": "input.x.rp0"},
                    {"name": "output.confidence"}],
        "classes": {"count": 3, "name": "output.class"}}
PROBS = (0.5, 0.3, 0.2)
FAST = DriftPolicy(reps=500)  # raised to 1.2 k / alpha - 1 = 959 by the check itself


def window(rng, n, shift=0.0, probs=PROBS, chunk=None) -> Window:
    """A window of n samples: a normal input summary, a skewed projection, a confidence."""
    w = Window(SPEC, 0)
    for start in range(0, n, chunk or n):
        k = min(chunk or n, n - start)
        w.sketches["input.x.mean"].update(rng.normal(shift, 1.0, k))
        w.sketches["input.x.rp0"].update(rng.lognormal(0.0, 0.5, k))
        w.sketches["output.confidence"].update(rng.beta(8.0, 2.0, k))
        w.classes += np.bincount(rng.choice(3, k, p=probs), minlength=3)
    w.calls = w.sampled = n
    return w


def test_false_alarm_rate_on_clean_windows():
    alarms = windows = 0
    for r in range(5):  # several references: the rate must hold over references, not one
        rng = np.random.default_rng(100 + r)
        ref = window(rng, 360)
        for j in range(40):
            report = check(ref, window(rng, [300, 700, 1500, 3000, 5000][j % 5]), FAST)
            assert report.verdict in ("ok", "drift")
            windows += 1
            alarms += bool(report.drifted)
    assert windows >= 200
    assert alarms / windows <= 0.01


def test_a_mean_shift_is_flagged_on_its_signal_only():
    rng = np.random.default_rng(7)
    report = check(window(rng, 360), window(rng, 2000, shift=0.5), FAST)
    assert report.verdict == "drift"
    assert report.drifted == ["input.x.mean"]
    s = {r.name: r for r in report.signals}["input.x.mean"]
    assert s.ks > s.threshold and s.p_adjusted <= FAST.alpha
    assert [f["signal"] for f in report.findings if f["kind"] == "drift"] == ["input.x.mean"]


def test_a_removed_class_is_flagged_on_output_class():
    rng = np.random.default_rng(8)
    report = check(window(rng, 360), window(rng, 2000, probs=(0.6, 0.4, 0.0)), FAST)
    assert report.drifted == ["output.class"]
    assert report.classes is not None and report.classes.removed == (2,)
    assert report.classes.p_adjusted <= FAST.alpha


def test_a_large_window_does_not_alarm_on_a_trivial_shift():
    rng = np.random.default_rng(9)
    ref = window(rng, 360)
    big = window(rng, 1_000_000, shift=0.01, chunk=100_000)
    report = check(ref, big, FAST)
    assert report.drifted == [] and report.verdict == "ok"
    s = {r.name: r for r in report.signals}["input.x.mean"]
    assert s.n == 1_000_000 and s.m == 360 and s.ks < s.threshold


def rule_of(report, signal, name):
    s = {r.name: r for r in report.signals}[signal]
    return next(r for r in s.rules if r.name == name)


def test_range_rule():
    rng = np.random.default_rng(10)
    ref, cur = window(rng, 360), window(rng, 500)
    cur.sketches["output.confidence"].update([1.5] * 30)  # 6% beyond the reference's range
    report = check(ref, cur, FAST)
    assert rule_of(report, "output.confidence", "range").status == "fail"
    assert any(f["kind"] == "rule:range" and f["signal"] == "output.confidence"
               and f["message"].startswith("range:") for f in report.findings)
    # a million values reach beyond 360 reference points, but hardly any mass does: a pass
    big = window(rng, 1_000_000, chunk=100_000)
    assert big.sketches["input.x.mean"].max > ref.sketches["input.x.mean"].max
    assert rule_of(check(ref, big, FAST), "input.x.mean", "range").status == "pass"
    inside = window(rng, 500)
    inside.sketches["output.confidence"] = sketch([0.7, 0.8])  # within the reference range
    assert rule_of(check(ref, inside, FAST), "output.confidence", "range").status == "pass"


def test_mean_range_rule():
    rng = np.random.default_rng(11)
    ref = window(rng, 360)
    assert rule_of(check(ref, window(rng, 1000), FAST), "input.x.mean", "mean_range").status \
        == "pass"
    moved = check(ref, window(rng, 1000, shift=0.6), FAST)
    assert rule_of(moved, "input.x.mean", "mean_range").status == "fail"
    assert "estimated" in rule_of(moved, "input.x.mean", "mean_range").message


def test_invalid_share_rule():
    rng = np.random.default_rng(12)
    ref, cur = window(rng, 360), window(rng, 1000)
    cur.sketches["input.x.rp0"].update([np.nan] * 30 + [np.inf] * 5)
    report = check(ref, cur, FAST)
    assert rule_of(report, "input.x.rp0", "invalid_share").status == "fail"
    assert rule_of(report, "input.x.mean", "invalid_share").status == "pass"
    # rules are findings of their own kind, never a drift
    assert "input.x.rp0" not in report.drifted


def test_insufficient_data():
    rng = np.random.default_rng(13)
    report = check(window(rng, 360), window(rng, 50, shift=3.0), FAST)
    assert report.verdict == "insufficient_data" and report.drifted == []
    assert {s.verdict for s in report.signals} == {"insufficient_data"}
    assert rule_of(report, "input.x.mean", "enough_data").status == "fail"
    assert report.classes is not None and report.classes.verdict == "insufficient_data"


def test_a_signal_missing_from_the_window_is_insufficient_data():
    rng = np.random.default_rng(14)
    cur = window(rng, 1000)
    del cur.sketches["input.x.rp0"]
    report = check(window(rng, 360), cur, FAST)
    assert {s.name: s.verdict for s in report.signals}["input.x.rp0"] == "insufficient_data"
    assert report.family == 3  # two numeric signals and the class counts


def test_expected_accuracy():
    rng = np.random.default_rng(15)
    ref, cur = window(rng, 360), window(rng, 1000)
    report = check(ref, cur, FAST, reference_accuracy=0.78)
    acc = report.expected_accuracy
    assert acc is not None and "calibrated" in acc.note and acc.note == CALIBRATION_NOTE
    conf_ref, conf_cur = ref.sketches["output.confidence"], cur.sketches["output.confidence"]
    assert acc.reference == pytest.approx(conf_ref.sum / conf_ref.count)
    assert acc.current == pytest.approx(conf_cur.sum / conf_cur.count)
    assert acc.ci_low < acc.difference < acc.ci_high
    assert acc.reference_accuracy == 0.78
    assert acc.calibration_gap == pytest.approx(acc.reference - 0.78)


def test_report_is_plain_json():
    rng = np.random.default_rng(16)
    ref, cur = window(rng, 360), window(rng, 50)
    d = check(ref, cur, FAST).to_dict()
    text = json.dumps(d, allow_nan=False)  # NaN became None
    assert json.loads(text)["verdict"] == "insufficient_data"
    assert d["signals"][0]["p_value"] is None


def test_null_draws_are_cached_and_reps_raised_for_large_families():
    masses = np.array([0.2, 0.0, 0.5, 0.3])
    first = null_ks(masses, 360, 4870, reps=100)
    assert null_ks(masses, 360, 4910, reps=100) is first  # same n to 2 significant digits
    assert null_ks(masses, 360, 5100, reps=100) is not first
    assert np.all(np.diff(first) >= 0) and first.size == 100
    policy = DriftPolicy(reps=10)
    assert reps_for(policy, 12) == 2879 and 1 / (1 + reps_for(policy, 12)) <= policy.alpha / 12
    rng = np.random.default_rng(17)
    assert check(window(rng, 360), window(rng, 400), policy).reps == reps_for(policy, 4)


def test_policy_validates():
    with pytest.raises(ValueError, match="alpha"):
        DriftPolicy(alpha=1.5)
