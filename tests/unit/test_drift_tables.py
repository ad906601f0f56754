"""`edgeyard.check_drift` on tables of values (arrays, dicts of columns, DataFrames), as an
Evidently user would call it: the same sketches and tests as on the device's windows.
Data: generated here (seeded normal and shifted-normal columns)."""

from __future__ import annotations

import numpy as np
import pytest

import edgeyard


def test_arrays_with_a_shifted_column_drift_and_a_clean_sample_does_not():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(3000, 3))
    same = rng.normal(size=(3000, 3))
    moved = same.copy()
    moved[:, 1] += 0.5
    ok = edgeyard.check_drift(ref, same)
    assert ok.verdict == "ok", ok.drifted
    bad = edgeyard.check_drift(ref, moved)
    assert bad.verdict == "drift" and bad.drifted == ["x1"]


def test_a_dataframe_and_a_dict_of_columns_give_the_same_report():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    ref = {"age": rng.normal(40, 10, 2000), "income": rng.lognormal(10, 1, 2000)}
    cur = {"age": rng.normal(45, 10, 2000), "income": rng.lognormal(10, 1, 2000)}
    from_dicts = edgeyard.check_drift(ref, cur)
    from_frames = edgeyard.check_drift(pd.DataFrame(ref), pd.DataFrame(cur))
    assert from_dicts.drifted == from_frames.drifted == ["age"]
    assert [s.name for s in from_frames.signals] == ["age", "income"]


def test_tables_with_other_columns_are_refused_with_their_names():
    with pytest.raises(ValueError, match=r"\['a', 'c'\].*\['a', 'b'\]"):
        edgeyard.check_drift({"a": [1.0, 2.0], "b": [1.0, 2.0]}, {"a": [1.0], "c": [2.0]})
