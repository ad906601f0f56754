"""Calibration and evaluation data: normalize, validate against the model's inputs, fingerprint."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .engines.base import TensorSpec
from .errors import DataError

Arrays = tuple[np.ndarray, ...]


def to_numpy(x: Any) -> np.ndarray:
    """A numpy array from an array, a torch tensor, a TF tensor, or a nested list."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        return x.detach().cpu().numpy()
    if hasattr(x, "numpy"):
        return np.asarray(x.numpy())
    return np.asarray(x)


def as_arrays(x: Any, specs: Sequence[TensorSpec] | None = None) -> Arrays:
    """One array per model input from an array, a tuple/list of arrays, or a dict by input name."""
    if isinstance(x, dict):
        if specs is None:
            return tuple(to_numpy(v) for v in x.values())
        missing = [s.name for s in specs if s.name not in x]
        if missing:
            raise DataError(
                f"inputs given by name lack {missing}; the model's inputs are "
                f"{[s.name for s in specs]} (got {list(x)})"
            )
        return tuple(to_numpy(x[s.name]) for s in specs)
    if isinstance(x, (tuple, list)) and x and not np.isscalar(x[0]) and not isinstance(x[0], list):
        return tuple(to_numpy(v) for v in x)
    return (to_numpy(x),)


def check_arrays(arrays: Arrays, specs: Sequence[TensorSpec], what: str) -> Arrays:
    """Check count and per-sample shapes against the model's inputs; cast to their dtypes."""
    if len(arrays) != len(specs):
        raise DataError(
            f"{what}: the model has {len(specs)} input(s) {[s.name for s in specs]}, "
            f"got {len(arrays)} array(s)"
        )
    n = {a.shape[0] if a.ndim else 0 for a in arrays}
    if len(n) != 1:
        raise DataError(f"{what}: inputs have different sample counts {sorted(n)}")
    out = []
    for a, s in zip(arrays, specs, strict=True):
        want = s.shape[1:]
        got = a.shape[1:]
        if len(want) != len(got) or any(w >= 0 and w != g for w, g in zip(want, got, strict=True)):
            raise DataError(
                f"{what}: input {s.name!r} has per-sample shape {tuple(got)}, the model expects "
                f"{tuple(want)} (arrays are [samples, *shape])"
            )
        try:
            out.append(np.ascontiguousarray(a.astype(s.dtype, copy=False)))
        except (TypeError, ValueError) as exc:
            raise DataError(f"{what}: input {s.name!r} cannot be cast to {s.dtype}: {exc}") from None
    return tuple(out)


def collect(batches: Any, specs: Sequence[TensorSpec], what: str) -> Arrays:
    """Concatenate an iterable of batches (or one array set) into one array per input.

    One array set: an array, a dict by input name, or, for a model with several inputs, a
    tuple/list of one array per input (each [samples, *shape]); anything else iterable is read
    as batches, each one of those forms."""
    if isinstance(batches, (np.ndarray, dict)) or hasattr(batches, "detach"):
        return check_arrays(as_arrays(batches, specs), specs, what)
    if (len(specs) > 1 and isinstance(batches, (tuple, list)) and len(batches) == len(specs)
            and all(hasattr(b, "shape") and len(b.shape) == len(s.shape)
                    for b, s in zip(batches, specs, strict=True))):
        return check_arrays(as_arrays(batches, specs), specs, what)
    parts: list[Arrays] = []
    for i, b in enumerate(batches):
        arrays = as_arrays(b, specs)
        try:
            parts.append(check_arrays(arrays, specs, f"{what} batch {i}"))
        except DataError:
            if len(specs) == 1 and len(arrays) == 1 and arrays[0].ndim == len(specs[0].shape) - 1:
                # one unbatched sample: add the batch axis
                parts.append(check_arrays((arrays[0][None],), specs, f"{what} batch {i}"))
            else:
                raise
    if not parts:
        raise DataError(f"{what}: the iterable yielded no batches")
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(len(specs)))


def save_arrays(path: str | os.PathLike[str], arrays: Sequence[np.ndarray], prefix: str = "a") -> None:
    """Arrays in order as an .npz (`a0`, `a1`, ...), read back by `load_arrays`."""
    np.savez(path, **{f"{prefix}{i}": a for i, a in enumerate(arrays)})  # type: ignore[arg-type]


def load_arrays(path: str | os.PathLike[str], prefix: str = "a") -> Arrays:
    z = read_npz(path)
    n = sum(1 for k in z if k.startswith(prefix) and k[len(prefix):].isdigit())
    return tuple(z[f"{prefix}{i}"] for i in range(n))


_NPZ_LOCK = threading.Lock()


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of an .npz file, read under one lock per process. numpy parses each
    member's header with `ast.literal_eval`, and CPython 3.11 can fail two threads that build
    syntax trees at once with "SystemError: AST constructor recursion depth mismatch"
    (python/cpython#106905). A device's runtimes load their releases' golden data in threads
    of their own: one of 50 device threads refused a release for it in the fleet test
    (tests/server/test_rollouts.py)."""
    with _NPZ_LOCK, np.load(path) as z:
        return {k: z[k] for k in z.files}


def count(arrays: Arrays) -> int:
    return int(arrays[0].shape[0])


def fingerprint(arrays: Iterable[np.ndarray]) -> str:
    """sha256 over dtype, shape and bytes of each array, in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def take(arrays: Arrays, idx: slice | np.ndarray) -> Arrays:
    return tuple(a[idx] for a in arrays)


def run_batched(
    fn: Callable[[Arrays], Sequence[np.ndarray]], arrays: Arrays, batch: int | None
) -> list[np.ndarray]:
    """Run `fn` over the samples in chunks of `batch` (None: all at once).

    A fixed-batch artifact gets its exact batch size: the last chunk is padded by repeating its
    last sample and the padded rows are dropped from the outputs.
    """
    n = count(arrays)
    if batch is None or batch <= 0:
        return [np.asarray(o) for o in fn(arrays)]
    chunks: list[list[np.ndarray]] = []
    for start in range(0, n, batch):
        part = take(arrays, slice(start, start + batch))
        real = part[0].shape[0]
        if real < batch:
            pad = batch - real
            part = tuple(np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) for a in part)
        outs = fn(part)
        chunks.append([np.asarray(o)[:real] for o in outs])
    return [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]
