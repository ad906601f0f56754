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
        self._has_out = np.zeros(capacity, dtype=bool)
        # per call (not per sample): samples, latency in seconds, engine, fallback events
        self._sizes: list[int] = []
        self._latency: list[float] = []
        self._engine: list[str | None] = []
        self._fallbacks: list[tuple[Any, ...]] = []
        self._head = 0  # samples written
        self._tail = 0  # samples taken
        self._lock = threading.Lock()
        self.shapes_in = [shape for shape, _ in inputs]
        self.shapes_out = [shape for shape, _ in outputs]

    def fits(self, inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray] | None) -> bool:
        if len(inputs) != len(self._in) or any(x.shape[1:] != s for x, s in
                                                zip(inputs, self.shapes_in, strict=True)):
            return False
        if outputs is not None and (len(outputs) != len(self._out) or any(
                o.shape[1:] != s for o, s in zip(outputs, self.shapes_out, strict=True))):
            return False
        return True

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
            self._has_out[idx] = outputs is not None
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
            batch = {
                "inputs": [r[idx] for r in self._in],
                "outputs": [r[idx] for r in self._out],
                "has_outputs": self._has_out[idx],
                "sizes": self._sizes,
                "latency_s": self._latency,
                "engines": self._engine,
                "fallbacks": self._fallbacks,
            }
            self._sizes, self._latency, self._engine, self._fallbacks = [], [], [], []
            self._tail = self._head
        return batch
