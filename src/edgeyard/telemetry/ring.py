"""A preallocated ring of per-sample inputs, outputs and call metadata.

The collector's hot path writes one call into it (a lock, a few numpy row assignments) and the
background thread takes everything written so far as contiguous arrays, ready to project in one
vectorized batch: no per-call allocation and no concatenation of thousands of tiny arrays.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np


class Ring:
    def __init__(self, inputs: Sequence[tuple[tuple[int, ...], str]],
                 outputs: Sequence[tuple[tuple[int, ...], str]], capacity: int) -> None:
        """`inputs` / `outputs`: (per-sample shape, dtype) of each model input / output."""
        self.capacity = capacity
        self._in = [np.empty((capacity, *shape), dtype) for shape, dtype in inputs]
        self._out = [np.empty((capacity, *shape), dtype) for shape, dtype in outputs]
        self._no_out: list[tuple[int, int]] = []  # sample ranges written without outputs
        # per call (not per sample): samples, latency in seconds, engine, fallback events
        self._sizes: list[int] = []
        self._latency: list[float] = []
        self._engine: list[str | None] = []
        self._fallbacks: list[tuple[Any, ...]] = []
        self._head = 0  # samples written
        self._tail = 0  # samples taken
        self._lock = threading.Lock()
        self.shapes_in = [tuple(shape) for shape, _ in inputs]
        self.shapes_out = [tuple(shape) for shape, _ in outputs]

    def fits(self, inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray] | None) -> bool:
        """Whether a call's per-sample shapes are the ring's (checked on the hot path)."""
        if [x.shape[1:] for x in inputs] != self.shapes_in:
            return False
        return outputs is None or [o.shape[1:] for o in outputs] == self.shapes_out

    def put(self, inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray] | None,
            engine: str | None, latency_s: float, fallbacks: tuple[Any, ...]) -> bool:
        """Copy one call in; False (nothing written) when the ring is full."""
        b = inputs[0].shape[0]
        with self._lock:
            if self._head - self._tail + b > self.capacity:
                return False
            i = self._head % self.capacity
            if i + b > self.capacity:  # wraps around: rare, keep it simple
                idx: Any = np.arange(i, i + b) % self.capacity
            else:
                idx = slice(i, i + b)
            for ring, x in zip(self._in, inputs, strict=True):
                ring[idx] = x
            if outputs is not None:
                for ring, o in zip(self._out, outputs, strict=True):
                    ring[idx] = o
            else:  # a call that got no answer: rare, so only these rows are marked
                self._no_out.append((self._head, self._head + b))
            self._sizes.append(b)
            self._latency.append(latency_s)
            self._engine.append(engine)
            self._fallbacks.append(fallbacks)
            self._head += b
        return True

    def take(self) -> dict[str, Any] | None:
        """Everything written since the last take, as arrays (None when empty)."""
        with self._lock:
            n = self._head - self._tail
            if n == 0:
                return None
            idx = np.arange(self._tail, self._head) % self.capacity
            has = np.ones(n, dtype=bool)
            for lo, hi in self._no_out:
                has[lo - self._tail : hi - self._tail] = False
            self._no_out = []
            batch = {
                "inputs": [r[idx] for r in self._in],
                "outputs": [r[idx] for r in self._out],
                "has_outputs": has,
                "sizes": self._sizes,
                "latency_s": self._latency,
                "engines": self._engine,
                "fallbacks": self._fallbacks,
            }
            self._sizes, self._latency, self._engine, self._fallbacks = [], [], [], []
            self._tail = self._head
        return batch
