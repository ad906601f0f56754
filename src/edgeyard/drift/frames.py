"""Tables of values (numpy arrays, dicts of columns, pandas DataFrames) as drift windows, so
that `edgeyard.drift.check` compares two samples of data the way it compares a device's window
with the build's reference: one exponential sketch per column, the same tests.

Duck-typed: a DataFrame is anything with `columns` and `to_numpy()` (pandas is not imported).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..telemetry.window import Window

Table = Any  # np.ndarray (1-D or 2-D), Mapping[str, array-like] or a DataFrame


def columns_of(data: Table, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """name -> float64 values, one per column of `data` (`names` for an array's columns)."""
    if isinstance(data, Mapping):
        cols = {str(k): np.asarray(v, dtype=np.float64).ravel() for k, v in data.items()}
    elif hasattr(data, "columns") and hasattr(data, "to_numpy"):
        cols = {str(c): np.asarray(data[c].to_numpy(), dtype=np.float64).ravel()
                for c in data.columns}
    else:
        a = np.asarray(data, dtype=np.float64)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise ValueError(f"drift on arrays takes one value per row or a 2-D table "
                             f"(rows x columns); got shape {a.shape}")
        names = names or ([f"x{i}" for i in range(a.shape[1])] if a.shape[1] > 1 else ["value"])
        if len(names) != a.shape[1]:
            raise ValueError(f"{len(names)} column names for {a.shape[1]} columns")
        cols = {n: a[:, i] for i, n in enumerate(names)}
    if not cols:
        raise ValueError("the table has no columns")
    return cols


def window_of(data: Table, names: list[str] | None = None) -> Window:
    """A window holding one sketch per column of `data`."""
    cols = columns_of(data, names)
    w = Window({"signals": [{"name": n, "kind": "column"} for n in cols]})
    w.add_projected(cols, None)
    rows = max(len(v) for v in cols.values())
    w.calls = w.sampled = rows
    return w


def windows_of(reference: Table, current: Table) -> tuple[Window, Window]:
    """Both tables as windows over the same columns (the reference's); a column the current
    table lacks, or one it has in addition, is an error that names them."""
    ref = columns_of(reference)
    cur = columns_of(current, list(ref) if not isinstance(current, Mapping)
                     and not hasattr(current, "columns") else None)
    if set(cur) != set(ref):
        raise ValueError(f"the current data's columns {sorted(cur)} are not the reference's "
                         f"{sorted(ref)}")
    return window_of(ref), window_of({n: cur[n] for n in ref})
