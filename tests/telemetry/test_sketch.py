"""The exponential histogram: bucket-for-bucket equal to opentelemetry-sdk, properties, bytes."""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeyard.telemetry.sketch import ExpHistogram, SketchFormatError, map_to_index

DATA = Path(__file__).with_name("data")


def state(d):
    return (d["scale"], d["count"], d["zero_count"],
            (d["positive"]["offset"], list(d["positive"]["bucket_counts"])),
            (d["negative"]["offset"], list(d["negative"]["bucket_counts"])))


def sdk_state(ref):
    return (ref["scale"], ref["count"], ref["zero_count"], ref["positive"], ref["negative"])


def cases():
    rng = np.random.default_rng(0)
    powers = [2.0 ** k for k in range(-1074, 1024, 37)]
    return {
        "lognormal": rng.lognormal(0, 2, 2000),
        "normal_with_negatives": rng.normal(0, 1, 2000),
        "heavy_tailed": rng.standard_cauchy(1000),
        "powers_of_two": np.array(powers + [-p for p in powers[::3]]),
        "near_powers_of_two": np.array([np.nextafter(2.0 ** k, d) for k in range(-40, 40)
                                        for d in (0.0, np.inf)]),
        "subnormals": np.array([5e-324, 1e-320, 1e-310, sys.float_info.min, -1e-315, 1.0]),
        "zeros_and_values": np.concatenate([np.zeros(50), rng.uniform(-3, 3, 50)]),
        "only_zeros": np.zeros(7),
        "narrow": rng.uniform(1.0, 1.000001, 500),
        "extremes": np.array([sys.float_info.max, 1e300, 1e-300, -sys.float_info.max]),
        "digits_like": rng.integers(0, 17, 3000) / 16.0,
    }


@pytest.mark.parametrize("max_size", [160, 20, 4])
@pytest.mark.parametrize("name", list(cases()))
def test_bucket_indices_equal_opentelemetry_sdk(name, max_size):
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is the reference")
    from .otel_reference import sdk_histogram

    values = cases()[name]
    mine = ExpHistogram(max_size=max_size).update(values)
    assert state(mine.to_dict()) == sdk_state(sdk_histogram(values, max_size=max_size))


def test_indices_at_every_scale_equal_the_sdk_mapping():
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.exponent_mapping import (
        ExponentMapping,
    )
    from opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.logarithm_mapping import (
        LogarithmMapping,
    )

    rng = np.random.default_rng(1)
    values = np.concatenate([np.exp(rng.uniform(-700, 700, 20000)), cases()["subnormals"][:4],
                             np.array([2.0 ** k for k in range(-1074, 1024)])])
    for scale in (-10, -3, -1, 0, 1, 3, 8, 20):
        mapping = LogarithmMapping(scale) if scale > 0 else ExponentMapping(scale)
        want = np.array([mapping.map_to_index(float(v)) for v in values])
        np.testing.assert_array_equal(map_to_index(values, scale), want, err_msg=f"scale {scale}")


def test_batching_does_not_change_the_result():
    v = cases()["heavy_tailed"]
    one = ExpHistogram().update(v)
    many = ExpHistogram()
    for chunk in np.array_split(v, 37):
        many.update(chunk)
    assert one.to_dict() | {"sum": 0} == many.to_dict() | {"sum": 0}
    assert math.isclose(one.sum, many.sum, rel_tol=1e-9)


def test_missing_and_non_finite_are_counted_apart():
    h = ExpHistogram().update([1.0, np.nan, np.inf, -np.inf, 2.0])
    assert (h.count, h.missing, h.non_finite) == (2, 1, 2)
    assert (h.min, h.max, h.sum) == (1.0, 2.0, 3.0)


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
arrays = st.lists(finite, min_size=0, max_size=60)


def comparable(h):
    d = h.to_dict()
    d.pop("sum")
    return d


@settings(max_examples=150, deadline=None)
@given(arrays, arrays, arrays, st.sampled_from([4, 20, 160]))
def test_merge_is_associative_and_commutative(a, b, c, max_size):
    ha, hb, hc = (ExpHistogram(max_size).update(x) for x in (a, b, c))
    left = ha.merge(hb).merge(hc)
    right = ha.merge(hb.merge(hc))
    assert comparable(left) == comparable(right)
    assert comparable(ha.merge(hb)) == comparable(hb.merge(ha))
    assert math.isclose(left.sum, right.sum, rel_tol=1e-9, abs_tol=1e-6)


@settings(max_examples=150, deadline=None)
@given(st.lists(arrays, min_size=1, max_size=6), st.sampled_from([4, 20, 160]))
def test_merge_all_equals_pairwise_merges(parts, max_size):
    hs = [ExpHistogram(max_size).update(x) for x in parts]
    pairwise = functools.reduce(lambda x, y: x.merge(y), hs)
    together = ExpHistogram.merge_all(hs)
    assert comparable(together) == comparable(pairwise)
    assert math.isclose(together.sum, pairwise.sum, rel_tol=1e-9, abs_tol=1e-6)
    assert all(comparable(h) == comparable(ExpHistogram(max_size).update(x))
               for h, x in zip(hs, parts, strict=True))  # the inputs are left alone


@settings(max_examples=150, deadline=None)
@given(arrays, arrays)
def test_merge_equals_one_sketch_of_all_values(a, b):
    merged = ExpHistogram().update(a).merge(ExpHistogram().update(b))
    direct = ExpHistogram().update(a + b)
    assert comparable(merged) == comparable(direct)


@settings(max_examples=150, deadline=None)
@given(arrays, st.sampled_from([2, 20, 160]))
def test_bytes_round_trip_exactly(values, max_size):
    h = ExpHistogram(max_size).update([*values, np.nan, np.inf])
    back = ExpHistogram.deserialize(h.serialize())
    assert back == h and back.sum == h.sum and back.missing == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=1e-6, max_value=1e6), min_size=1, max_size=400),
       st.floats(min_value=0.0, max_value=1.0))
def test_quantile_within_the_stated_relative_error(values, q):
    h = ExpHistogram().update(values)
    exact = float(np.quantile(values, q, method="inverted_cdf"))
    assert abs(h.quantile(q) - exact) <= h.relative_error * exact * (1 + 1e-9)


def test_header_is_checked():
    data = ExpHistogram().update([1.0, 2.0]).serialize()
    with pytest.raises(SketchFormatError, match="bad magic"):
        ExpHistogram.deserialize(b"XXXX" + data[4:])
    with pytest.raises(SketchFormatError, match="serial version mismatch: expected 1, got 9"):
        ExpHistogram.deserialize(data[:4] + bytes([9]) + data[5:])
    corrupt = bytearray(data)
    corrupt[-10] ^= 1
    with pytest.raises(SketchFormatError, match="checksum"):
        ExpHistogram.deserialize(bytes(corrupt))


def test_saved_v1_file_still_loads():
    """A sketch written by format version 1 (tests/telemetry/data/exphist_v1.bin) must load."""
    h = ExpHistogram.deserialize((DATA / "exphist_v1.bin").read_bytes())
    expected = ExpHistogram().update(np.concatenate([np.arange(-50, 51) / 7.0, [np.nan]]))
    assert h == expected


def test_sketches_as_plain_parts_round_trip_and_merge_like_merge_all():
    """The server's pending windows: `to_parts` / `from_parts` round-trip exactly, and
    `merge_parts` (counts joined as bytes) equals `merge_all` of the sketches."""
    rng = np.random.default_rng(7)
    hs = [ExpHistogram(max_size=s).update(rng.normal(m, w, n)) for s, m, w, n in
          ((160, 0, 1, 500), (160, 5, 0.01, 300), (40, -3, 100, 200), (160, 0, 1e-6, 50))]
    hs.append(ExpHistogram().update([0.0, np.nan, np.inf, 2.0]))
    hs.append(ExpHistogram())
    for h in hs:
        assert ExpHistogram.from_parts(h.to_parts()) == h
    assert ExpHistogram.merge_parts([h.to_parts() for h in hs]) == ExpHistogram.merge_all(hs)
    assert ExpHistogram.merge_parts([hs[0].to_parts()]) == ExpHistogram.merge_all(hs[:1])


def test_exp_parts_carry_a_sketch_unbuilt_and_take_folded_invalid_counts():
    """`ExpParts` (a decoded point on its way to `pending`): the totals a merge checks, parts
    that build the same sketch, and missing / non_finite counts added after decoding."""
    from edgeyard.telemetry.sketch import ExpParts

    h = ExpHistogram().update(np.random.default_rng(3).lognormal(0, 1, 400))
    p = ExpParts(h.to_parts())
    assert (p.count, p.sum, p.missing, p.non_finite) == (h.count, h.sum, 0, 0)
    assert p.to_parts() is p.t and p.build() == h and not p.is_empty()
    p.missing, p.non_finite = 3, 2
    h.missing, h.non_finite = 3, 2
    assert p.build() == h and p.to_parts()[13:] == (3, 2)
    assert ExpHistogram.merge_parts([p.to_parts(), h.to_parts()]) == h.merge(h)
    assert ExpParts(ExpHistogram().to_parts()).is_empty()
