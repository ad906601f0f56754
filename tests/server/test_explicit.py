"""Explicit-bucket histograms (`drift/explicit.py`): merges exact on common bounds,
commutative and associative; bytes round-trip and the saved version-1 bytes still load; the KS
statistic on common bounds brackets the exact one within its bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeyard.drift import ExplicitHistogram, deserialize_any, ks, merge_any

DATA = Path(__file__).parent / "data"
ALL_BOUNDS = [-10.0, -1.0, 0.0, 1.0, 2.5, 5.0, 10.0, 100.0]


def hist(values, bounds) -> ExplicitHistogram:
    v = np.asarray(values, dtype=np.float64)
    b = np.asarray(sorted(set(bounds)), dtype=np.float64)
    h = ExplicitHistogram(b, np.bincount(np.searchsorted(b, v, side="left"),
                                         minlength=b.size + 1))
    h.sum = float(v.sum()) if v.size else 0.0
    if v.size:
        h.min, h.max = float(v.min()), float(v.max())
    return h


def same(x: ExplicitHistogram, y: ExplicitHistogram) -> bool:
    return (x.bounds.tolist(), x.counts.tolist(), x.count, x.min, x.max) == \
        (y.bounds.tolist(), y.counts.tolist(), y.count, y.min, y.max) and \
        x.sum == pytest.approx(y.sum, abs=1e-6)


values = st.lists(st.floats(-50, 200), max_size=60)
bounds = st.lists(st.sampled_from(ALL_BOUNDS), max_size=8)


@settings(max_examples=150, deadline=None)
@given(a=values, b=values, c=values, ba=bounds, bb=bounds, bc=bounds)
def test_merge_is_exact_commutative_and_associative(a, b, c, ba, bb, bc):
    ha, hb, hc = hist(a, ba), hist(b, bb), hist(c, bc)
    ab_c = ha.merge(hb).merge(hc)
    for other in (ha.merge(hb.merge(hc)), hc.merge(ha).merge(hb),
                  ExplicitHistogram.merge_all([hb, hc, ha])):
        assert same(other, ab_c)  # the sums up to the order of float additions
    common = sorted(set(ba) & set(bb) & set(bc))
    whole = hist(a + b + c, common)  # one histogram of all the values on the common bounds
    assert ab_c.bounds.tolist() == common
    assert ab_c.counts.tolist() == whole.counts.tolist() and ab_c.count == whole.count
    assert (ab_c.min, ab_c.max) == (whole.min, whole.max)
    assert ab_c.sum == pytest.approx(whole.sum, abs=1e-6)
    assert deserialize_any(ab_c.serialize()) == ab_c
    assert same(merge_any([ha, hb]), ha.merge(hb))


def test_saved_version_1_bytes_still_load():
    h = hist([0.5, 3.0, 3.0, 42.0, -7.0], [0.0, 1.0, 5.0, 100.0])
    saved = (DATA / "explicit-histogram-v1.bin").read_bytes()
    assert ExplicitHistogram.deserialize(saved) == h
    assert h.serialize() == saved
    from edgeyard.telemetry.sketch import SketchFormatError

    with pytest.raises(SketchFormatError, match="checksum"):
        ExplicitHistogram.deserialize(saved[:-1] + bytes([saved[-1] ^ 1]))


@settings(max_examples=60, deadline=None)
@given(a=st.lists(st.floats(-20, 120), min_size=1, max_size=200),
       b=st.lists(st.floats(-20, 120), min_size=1, max_size=200), bb=bounds)
def test_ks_on_common_bounds_brackets_the_exact_statistic(a, b, bb):
    ref, cur = hist(a, ALL_BOUNDS), hist(b, bb)
    res = ks(ref, cur)
    x = np.sort(np.concatenate([a, b]))  # the exact two-sample KS statistic of the values
    fa = np.searchsorted(np.sort(a), x, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), x, side="right") / len(b)
    exact = float(np.max(np.abs(fa - fb)))
    assert res.statistic - 1e-12 <= exact <= res.statistic + res.bound + 1e-12
    assert np.isnan(res.resolution)


def test_a_mixed_signal_keeps_the_kind_holding_more_values():
    from edgeyard.telemetry import ExpHistogram

    e = ExpHistogram().update([1.0, 2.0, 3.0])
    x = hist([1.0, 2.0], [0.0, 5.0])
    assert isinstance(merge_any([e, x]), ExpHistogram)
    assert isinstance(merge_any([e, x, hist([4.0, 4.0], [0.0, 5.0])]), ExplicitHistogram)
