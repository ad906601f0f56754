"""The collector's call log: order, runs of shapes, failed calls, overflow, sampling."""

from __future__ import annotations

import numpy as np

from edgeyard.runtime import FallbackEvent
from edgeyard.telemetry.calllog import CallLog


def call(log, value, n=1, outputs=True, engine="a", fallbacks=()):
    x = np.full((n, 2), value, np.float32)
    o = [np.full((n, 3), value, np.float32)] if outputs else None
    log.record((x,), o, engine, 0.001 * value, fallbacks)


def test_order_runs_and_failed_calls():
    log = CallLog(100)
    for i in range(3):
        call(log, i)
    fb = (FallbackEvent("a", "error", "x"),)
    call(log, 3, n=2, outputs=False, engine=None, fallbacks=fb)
    call(log, 4, n=2)
    b1, b2, b3 = log.take()
    assert b1["inputs"][0][:, 0].tolist() == [0, 1, 2]
    assert b1["outputs"][0].shape == (3, 3)
    assert b2["inputs"][0][:, 0].tolist() == [3, 3] and b2["outputs"] == []
    assert (b2["latency_s"], b2["engines"], b2["fallbacks"], b2["samples"]) == \
        ([0.003], [None], [(0, fb)], [2])
    assert b3["outputs"][0][:, 0].tolist() == [4, 4]
    assert log.take() == []


def test_the_app_reusing_its_buffer_changes_nothing_recorded():
    log = CallLog(100)
    x = np.zeros((1, 2), np.float32)
    o = [np.zeros((1, 3), np.float32)]
    for i in range(4):
        x[:] = i
        log.record((x,), o, "a", 0.001, ())
    assert log.take()[0]["inputs"][0][:, 0].tolist() == [0, 1, 2, 3]


def test_several_inputs_and_outputs_and_dtypes():
    log = CallLog(100)
    a, b = np.arange(6, dtype=np.int64).reshape(3, 2), np.ones((3, 4), np.float16)
    log.record((a, b), [np.zeros((3,), np.float32), np.ones((3, 2), np.float64)], "e", 0.0, ())
    (batch,) = log.take()
    assert [x.dtype for x in batch["inputs"]] == [np.int64, np.float16]
    np.testing.assert_array_equal(batch["inputs"][0], a)
    assert [o.shape for o in batch["outputs"]] == [(3,), (3, 2)]


def test_full_log_counts_drops_without_blocking():
    log = CallLog(4)
    for i in range(6):
        call(log, i)
    assert log.dropped == 2
    assert len(log.take()[0]["samples"]) == 4


def test_sampling_keeps_every_call_and_samples_about_one_in_every():
    log = CallLog(1 << 20, seed=1)
    log.set_every(8)
    for i in range(16_000):
        call(log, i % 7)
    batches = log.take()
    samples = [n for b in batches for n in b["samples"]]
    assert len(samples) == 16_000  # every call's latency and engine is kept
    assert sum(len(b["latency_s"]) for b in batches) == 16_000
    sampled = sum(samples)
    assert 1_700 < sampled < 2_300  # ~16,000 / 8
    values = np.concatenate([b["inputs"][0][:, 0] for b in batches if b["inputs"]])
    # a pattern of period 7 is not aliased: every residue is sampled about equally often
    counts = np.bincount(values.astype(int), minlength=7)
    assert counts.min() > 0.7 * counts.mean()
