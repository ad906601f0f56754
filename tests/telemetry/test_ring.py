"""The collector's ring buffer: order, wrap-around, calls without outputs, overflow."""

from __future__ import annotations

import numpy as np

from edgeyard.telemetry.ring import Ring


def make(cap=8):
    return Ring([((2,), "float32")], [((3,), "float32")], cap)


def test_order_wraparound_and_missing_outputs():
    r = make(8)
    for i in range(6):
        assert r.put([np.full((1, 2), i, np.float32)], [np.full((1, 3), i, np.float32)], "a",
                     0.001, ())
    first = r.take()
    assert first["inputs"][0][:, 0].tolist() == [0, 1, 2, 3, 4, 5]
    # the next writes wrap around the end of the buffer; one call has no outputs
    assert r.put([np.full((3, 2), 6, np.float32)], None, None, 0.002, (("a", "error", "x"),))
    assert r.put([np.full((2, 2), 7, np.float32)], [np.full((2, 3), 7, np.float32)], "b", 0.003,
                 ())
    b = r.take()
    assert b["inputs"][0][:, 0].tolist() == [6, 6, 6, 7, 7]
    assert b["has_outputs"].tolist() == [False, False, False, True, True]
    assert b["outputs"][0][3:, 0].tolist() == [7, 7]
    assert b["sizes"] == [3, 2] and b["engines"] == [None, "b"]
    assert b["fallbacks"] == [(("a", "error", "x"),), ()]
    assert r.take() is None


def test_full_ring_refuses_without_blocking():
    r = make(4)
    assert r.put([np.zeros((4, 2), np.float32)], [np.zeros((4, 3), np.float32)], "a", 0.0, ())
    assert not r.put([np.zeros((1, 2), np.float32)], [np.zeros((1, 3), np.float32)], "a", 0.0, ())
    assert r.take()["sizes"] == [4]


def test_fits_checks_per_sample_shapes():
    r = make()
    assert r.fits([np.zeros((5, 2))], [np.zeros((5, 3))])
    assert not r.fits([np.zeros((5, 3))], None)
    assert not r.fits([np.zeros((5, 2))], [np.zeros((5, 4))])
