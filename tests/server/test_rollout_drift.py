"""The rollout's drift figure (`server.rollouts.drift_figure`) on a real database and real drift
checks: each release against its own build-time reference, and the two cohorts against each
other. Synthetic windows (`report_data.window`: generated, seeded)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from . import report_data
from .report_data import MODEL

pytest.importorskip("opentelemetry.proto", reason="uploads are OTLP: pip install "
                    "'edgeyard[server]'")

NOW = (time.time() // 3600) * 3600  # the step began an hour before (windows are not taken
# from the future)


def scene(tmp_path, new_reference_shift: float, new_field_shift: float, new_calls: int = 400):
    """1.0 stable, 1.1 rolled out to half of the fleet for an hour: 1.1's reference drawn with
    `new_reference_shift`, its cohort's windows with `new_field_shift` (1.0's: 0 for both)."""
    from edgeyard.rollout.plan import Plan
    from edgeyard.server import db, distribution, rollouts, store
    from edgeyard.server.watch import Watch

    engine = db.make_engine(f"sqlite:///{tmp_path / 'edgeyard.db'}")
    db.migrate(engine)
    rng = np.random.default_rng(0)
    for version, shift in (("1.0", 0.0), ("1.1", new_reference_shift)):
        manifest = report_data.manifest(version)
        store.register_release(engine, manifest,
                               report_data.window(rng, 0.0, 3000, shift).to_json())
        distribution.put_file(engine, MODEL, version, distribution.MANIFEST,
                              json.dumps(manifest).encode())
    distribution.set_stable(engine, MODEL, "1.0")
    st = rollouts.start(engine, MODEL, "1.1", Plan(steps=(50.0, 100.0), hold_s=600.0),
                        now=NOW - 3600)
    start = NOW - 3000
    for version, shift, calls in (("1.0", 0.0, 400), ("1.1", new_field_shift, new_calls)):
        if calls:
            report_data.ingest(engine, [(report_data.window(rng, start + 300 * i, calls, shift),
                                         "phone", f"{version}-{i}") for i in range(3)],
                               release=version)
    return Watch(engine), st


def figure(tmp_path, **kw):
    from edgeyard.server.rollouts import drift_figure

    watch, st = scene(tmp_path, **kw)
    try:
        got = drift_figure(watch, st, NOW)
        assert got is not None
        return got
    finally:
        watch.engine.dispose()


def test_a_new_release_whose_cohort_answers_as_the_old_one_is_not_worse(tmp_path):
    """1.1's own reference differs from what the field gives both cohorts: 1.1 "drifts" and
    1.0 does not, yet both cohorts answer alike. Before the cohort check, this was "worse":
    the way a healthy release was rolled back by chance when both sat near their thresholds."""
    got = figure(tmp_path, new_reference_shift=0.5, new_field_shift=0.0)
    assert got.note.startswith("new: drift, old: ok"), got.note
    assert got.note.endswith("the new cohort against the old one: ok"), got.note
    assert got.outcome == "not_worse"


def test_a_new_release_that_answers_differently_is_worse(tmp_path):
    got = figure(tmp_path, new_reference_shift=0.0, new_field_shift=0.5)
    assert got.note == "new: drift, old: ok; the new cohort against the old one: drift", got.note
    assert got.outcome == "worse"


def test_the_same_release_on_both_sides_is_not_worse(tmp_path):
    got = figure(tmp_path, new_reference_shift=0.0, new_field_shift=0.0)
    assert got.note == "new: ok, old: ok" and got.outcome == "not_worse", got.note


def test_a_cohort_without_data_leaves_the_figure_undecided(tmp_path):
    got = figure(tmp_path, new_reference_shift=0.0, new_field_shift=0.0, new_calls=0)
    assert got.note == "new: insufficient_data, old: ok" and got.outcome == "undecided", got.note
