"""Rollout plans, cohorts and the statistics that decide a step: pure code, generated data with
known truth."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgeyard.rollout.plan import (
    Plan,
    RolloutError,
    State,
    advance,
    cohort_bucket,
    command,
    in_cohort,
)
from edgeyard.rollout.stats import (
    NOT_WORSE,
    UNDECIDED,
    WORSE,
    combine,
    mean_difference,
    quantile_ratio,
    rate_ratio,
)


def test_cohorts_are_uniform_sticky_and_monotone():
    devices = [f"device-{i}" for i in range(20_000)]
    buckets = np.array([cohort_bucket("r1", d) for d in devices])
    counts = np.bincount(buckets, minlength=100)
    assert counts.min() > 140 and counts.max() < 260  # ~200 each
    steps = [1, 5, 25, 100]
    members = [{d for d in devices if in_cohort("r1", d, s)} for s in steps]
    for small, big in itertools.pairwise(members):
        assert small <= big  # a device in at 5% stays in at 25%
    assert abs(len(members[1]) / len(devices) - 0.05) < 0.01
    assert cohort_bucket("r1", "device-7") == cohort_bucket("r1", "device-7")
    other = np.array([cohort_bucket("r2", d) for d in devices[:2000]])
    assert np.mean(other == buckets[:2000]) < 0.05  # salted: another rollout, other canaries


def test_plans_are_validated():
    with pytest.raises(RolloutError, match="end at 100"):
        Plan(steps=(1, 5, 50))
    with pytest.raises(RolloutError, match="increase"):
        Plan(steps=(5, 1, 100))
    p = Plan(steps=(10, 100), hold_s=60, max_hold_s=600, check_s=60)
    assert p.alpha_per_look(4) == pytest.approx(0.01 / (4 * 10 * 2))
    assert Plan.from_dict(p.to_dict()) == p


def test_the_state_machine():
    st = State("r", "digits", "1.1", "1.0", Plan(steps=(5, 25, 100), hold_s=10, max_hold_s=100))
    assert advance(st, 5, NOT_WORSE) is None  # held 5 s of 10
    d = advance(st, 12, NOT_WORSE)
    assert d["action"] == "advance" and st.percent == 25 and st.step_started == 12
    assert advance(st, 20, NOT_WORSE) is None
    # the step before 100% decides: reaching the whole fleet completes the rollout
    assert advance(st, 30, NOT_WORSE)["action"] == "complete" and st.state == "completed"
    assert st.percent == 100 and st.serves("any-device") == "1.1"

    bad = State("r2", "digits", "1.2", "1.1", Plan(steps=(5, 100), hold_s=10))
    assert advance(bad, 1, WORSE)["action"] == "rollback"
    assert bad.state == "rolled_back" and bad.serves("any-device") == "1.1"
    with pytest.raises(RolloutError, match="cannot resume a rollout that is rolled_back"):
        command(bad, "resume", 2)

    slow = State("r3", "digits", "1.2", "1.1", Plan(steps=(5, 100), hold_s=10, max_hold_s=50))
    assert advance(slow, 60, UNDECIDED)["action"] == "pause"
    assert "inconclusive" in slow.reason
    command(slow, "resume", 70)
    assert slow.state == "running" and slow.step_started == 70
    command(slow, "promote", 71)
    assert slow.state == "completed" and [d["action"] for d in slow.decisions] == [
        "pause", "resume", "promote"]


def _cohorts(rng, devices_new, devices_old, calls, rate_old, rate_new, broken=0.02):
    """Per-device (events, calls) of two cohorts over a step. Devices differ: each has its own
    rate (gamma, as spread as its mean), and a share of them are broken phones that fail 20% of
    their calls; the cohort holds whichever devices the hash gave it."""
    out = []
    for n, rate in ((devices_new, rate_new), (devices_old, rate_old)):
        r = rate * rng.gamma(1.0, 1.0, n)
        r = np.where(rng.random(n) < broken, 0.2 * rate / 0.01, r)
        c = rng.poisson(calls, n)
        out += [rng.poisson(r * c), c]
    return out


def test_rate_test_false_halts_stay_within_alpha_and_catches_5x():
    rng = np.random.default_rng(0)
    alpha = 0.01
    # a 1% step of a 20,000-device fleet: 200 devices against 19,800, 50 calls each
    halts = sum(rate_ratio("fallbacks", *_cohorts(rng, 200, 19_800, 50, 0.01, 0.01),
                           margin=0.25, alpha=alpha).outcome == WORSE for _ in range(500))
    assert halts / 500 <= 0.02  # A/A: at most about alpha, broken phones and all
    caught = sum(rate_ratio("fallbacks", *_cohorts(rng, 200, 19_800, 50, 0.01, 0.05),
                            margin=0.25, alpha=alpha).outcome == WORSE for _ in range(100))
    assert caught >= 95
    z = np.zeros(100)
    clean = rate_ratio("fallbacks", z, np.full(100, 200), z, np.full(100, 200), 0.25, alpha)
    assert clean.outcome == NOT_WORSE  # no fallbacks on either side: not worse
    few = rate_ratio("fallbacks", [0], [50], [0], [50], 0.25, alpha)
    assert few.outcome == UNDECIDED and few.note == "too few calls"


def test_device_level_variance_keeps_a_few_broken_phones_from_halting():
    """Calls treated as independent would call a cohort that happens to hold 3 broken phones
    among 20 devices worse; the devices as units do not."""
    e_new, c_new = np.array([200, 190, 210] + [1] * 17), np.full(20, 1000)
    e_old, c_old = np.full(2000, 10), np.full(2000, 1000)
    v = rate_ratio("fallbacks", e_new, c_new, e_old, c_old, margin=0.25, alpha=0.001)
    assert v.estimate > 3 and v.outcome != WORSE, v


def bucket_log_ratios(rng, slowdown: float, buckets: int = 30, calls: int = 200):
    """Per bucket: log(p90 new / p90 old) of heavy-tailed latencies (lognormal, sigma 0.5)
    whose level moves from bucket to bucket (load), alike for both cohorts."""
    out = []
    for _ in range(buckets):
        level = rng.lognormal(0, 0.3)
        old = level * rng.lognormal(0, 0.5, calls * 9)
        new = level * slowdown * rng.lognormal(0, 0.5, calls)
        out.append(np.log(np.quantile(new, 0.9) / np.quantile(old, 0.9)))
    return np.array(out)


def test_p90_ratio_over_buckets():
    rng = np.random.default_rng(1)
    alpha = 1e-4
    same = [quantile_ratio("latency", bucket_log_ratios(rng, 1.0), 6000, 0.10, alpha).outcome
            for _ in range(50)]
    slower = [quantile_ratio("latency", bucket_log_ratios(rng, 1.3), 6000, 0.10, alpha).outcome
              for _ in range(50)]
    assert same.count(WORSE) == 0 and same.count(NOT_WORSE) >= 45, same
    assert slower.count(WORSE) >= 45 and slower.count(NOT_WORSE) == 0, slower
    v = quantile_ratio("latency", bucket_log_ratios(rng, 1.3), 6000, 0.10, alpha)
    assert v.estimate == pytest.approx(1.3, rel=0.08)
    few = quantile_ratio("latency", np.zeros(3), 6000, 0.10, alpha)
    assert few.outcome == UNDECIDED


def test_expected_accuracy_and_combining():
    worse = mean_difference("accuracy", 0.80, 0.02, 5000, 0.90, 0.02, 5000, 0.02, 0.001)
    fine = mean_difference("accuracy", 0.899, 0.02, 5000, 0.90, 0.02, 5000, 0.02, 0.001)
    assert worse.outcome == WORSE and fine.outcome == NOT_WORSE
    assert combine([fine, worse]) == WORSE
    assert combine([fine, fine]) == NOT_WORSE
    assert combine([fine, mean_difference("a", 0, 0, 1, 0, 0, 1, 0.02, 0.001)]) == UNDECIDED
    assert combine([]) == UNDECIDED
