"""A window's exponential histograms packed into one bytes object (`server/packedparts.py`,
`_expmerge.c`), as spool records keep them: exact both ways, merged as their parts merge, read
without the compiled module too, and refused clearly when they are not a packed window."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeyard.server import packedparts, partsmerge
from edgeyard.telemetry.sketch import ExpHistogram

from .test_partsmerge import same, sketch_parts

EXAMPLES = int(os.environ.get("EDGEYARD_HYPOTHESIS_EXAMPLES", "300"))
native = pytest.mark.skipif(not packedparts.available(), reason=packedparts.describe())


def _window(rng, signals: int = 4, top: int = 9) -> list:
    """A window's parts: `signals` sketches of a few hundred values, counts up to about `top`."""
    out = []
    for _ in range(signals):
        h = ExpHistogram(160)
        h.update(rng.lognormal(0, 1, int(rng.integers(1, top * 20))) * rng.choice([-1, 1]))
        out.append(h.to_parts())
    return out


@native
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(sketch_parts(), max_size=6))
def test_unpack_gives_back_exactly_what_was_packed(parts):
    blob = packedparts.pack(parts)
    assert blob is not None
    for unpacked in (packedparts.unpack(blob), packedparts._unpack(blob)):
        assert len(unpacked) == len(parts)
        assert all(same(a, b) for a, b in zip(unpacked, parts, strict=True))


@native
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.lists(sketch_parts(), min_size=3, max_size=3), min_size=1, max_size=5))
def test_packed_windows_merge_as_their_parts_merge(windows):
    """Per signal, the merge of packed windows is `partsmerge.merge` of their parts: any
    sizes, scales (rescaled to fit), NaN, infinities, zeros and untrimmed counts."""
    blobs = [packedparts.pack(w) for w in windows]
    try:
        want = [partsmerge.merge(list(each)) for each in zip(*windows, strict=True)]
    except (ValueError, OverflowError) as exc:  # the sketch's own refusal: so is the packed one
        with pytest.raises(type(exc)):
            packedparts.merge(blobs)
        return
    got = packedparts.merge(blobs)
    assert len(got) == len(want)
    assert all(same(a, b) for a, b in zip(got, want, strict=True))


@native
@pytest.mark.parametrize("top", [9, 300, 70_000, 5_000_000_000])
def test_counts_are_kept_in_the_narrowest_width_that_holds_them(top):
    """Counts below 256 take a byte each (a device's window: most of a record's bytes were
    int64 counts), larger ones 2, 4 or 8 bytes, and every width reads back exactly."""
    h = ExpHistogram(160)
    h.update(np.random.default_rng(top).lognormal(0, 1, 200))
    t = h.to_parts()
    counts = np.frombuffer(t[5], "<i8").copy()
    counts[0] = top
    t = (*t[:5], counts.astype("<i8").tobytes(), *t[6:])
    blob = packedparts.pack([t])
    width = 1 if top < 256 else 2 if top < 65536 else 4 if top < 2**32 else 8
    assert len(blob) == 5 + 93 + width * (len(t[5]) + len(t[7])) // 8
    assert same(packedparts.unpack(blob)[0], t)
    assert same(packedparts._unpack(blob)[0], t)


@native
def test_a_window_of_the_collector_packs_to_a_fraction_of_its_parts():
    import marshal

    rng = np.random.default_rng(3)
    parts = _window(rng, 20)
    blob = packedparts.pack(parts)
    assert len(blob) * 3 < len(marshal.dumps(parts))


@native
@pytest.mark.parametrize("bad", [
    ("x", b"explicit"),  # an explicit-bucket histogram's
    "negative count",
    "float count",
    "bool size",
])
def test_what_pack_does_not_take_gives_none(bad):
    rng = np.random.default_rng(1)
    t = _window(rng, 1)[0]
    if bad == "negative count":
        counts = np.frombuffer(t[5], "<i8").copy()
        counts[-1] = -1
        t = (*t[:5], counts.tobytes(), *t[6:])
    elif bad == "float count":
        t = (*t[:9], float(t[9]), *t[10:])
    elif bad == "bool size":
        t = ("e", True, *t[2:])
    else:
        t = bad
    assert packedparts.pack([_window(rng, 1)[0], t]) is None


@pytest.mark.parametrize("cut", ["empty", "head", "part", "counts", "trailing", "version",
                                 "width"])
def test_bytes_that_are_not_a_packed_window_are_refused_clearly(cut, monkeypatch):
    """Cut short anywhere, a byte too many, another layout or width: ValueError, from the
    compiled reader and from the Python one."""
    rng = np.random.default_rng(2)
    parts = _window(rng, 2)
    blob = packedparts.pack(parts) if packedparts.available() else _pack_py(parts)
    bad = {"empty": b"", "head": blob[:3], "part": blob[:5 + 50], "counts": blob[:-1],
           "trailing": blob + b"\0", "version": b"\x07" + blob[1:],
           "width": blob[:5 + 12] + b"\x03" + blob[5 + 13:]}[cut]
    readers = [packedparts._unpack]
    if packedparts.available():
        readers.append(packedparts.unpack)
        readers.append(lambda b: packedparts.merge([blob, b]))
    for read in readers:
        with pytest.raises(ValueError):
            read(bad)


def _pack_py(parts: list) -> bytes:
    """`pack` in Python, for the test of a host without the compiled module: counts as u8."""
    out = [struct.pack("<BI", 1, len(parts))]
    for t in parts:
        (_, size, max_scale, scale, p_off, p, n_off, n, zero, count, total, lo, hi, missing,
         non_finite) = t
        out.append(struct.pack("<iiiBqIqIqqdddqq", size, max_scale, scale, 8, p_off, len(p) // 8,
                               n_off, len(n) // 8, zero, count, total, lo, hi, missing,
                               non_finite) + p + n)
    return b"".join(out)


def test_a_packed_window_is_read_without_the_compiled_module(monkeypatch):
    """A record packed by a worker with the compiled module, moved by a process without it
    (`EDGEYARD_NATIVE_MERGE=0`): read and merged by numpy, the same parts."""
    rng = np.random.default_rng(4)
    windows = [_window(rng, 3) for _ in range(4)]
    blobs = [packedparts.pack(w) if packedparts.available() else _pack_py(w) for w in windows]
    want = [partsmerge.merge(list(each)) for each in zip(*windows, strict=True)]
    monkeypatch.setattr(packedparts, "_expmerge", None)
    monkeypatch.setattr(partsmerge, "_expmerge", None)
    assert packedparts.pack(windows[0]) is None  # the record keeps parts (layout 1)
    assert all(same(a, b) for a, b in zip(packedparts.unpack(blobs[0]), windows[0], strict=True))
    got = packedparts.merge(blobs)
    assert all(same(a, b) for a, b in zip(got, want, strict=True))
