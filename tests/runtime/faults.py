"""Engine wrappers that inject faults for real inside a real engine's call (tests only)."""

from __future__ import annotations

import threading
import time

import numpy as np

from edgeyard.engines.base import Engine


class FaultyEngine(Engine):
    """Wraps a loaded engine. `mode`: None, "nan", "raise", "slow", "offset"; or random faults
    with probabilities `p_raise` / `p_nan` from a seeded generator. Counts what it injected."""

    def __init__(self, inner: Engine, mode: str | None = None, sleep_s: float = 0.0,
                 p_raise: float = 0.0, p_nan: float = 0.0, seed: int = 0,
                 active_after: int = 0) -> None:
        self.inner = inner
        self.format = inner.format
        self.inputs, self.outputs = inner.inputs, inner.outputs
        self.mode, self.sleep_s = mode, sleep_s
        self.p_raise, self.p_nan = p_raise, p_nan
        self.rng = np.random.default_rng(seed)
        self.active_after = active_after  # calls that pass through first (the self-test)
        self.calls = 0
        self.injected = {"raise": 0, "nan": 0}
        self._lock = threading.Lock()

    def _open(self):  # wraps an engine that is loaded already
        raise AssertionError("not called: FaultyEngine.__init__ does not open a file")

    def predict(self, inputs):
        with self._lock:
            self.calls += 1
            active = self.calls > self.active_after
            r = self.rng.random()
        out = self.inner.predict(inputs)
        if not active:
            return out
        mode = self.mode
        if mode is None and r < self.p_raise:
            mode = "raise"
        elif mode is None and r < self.p_raise + self.p_nan:
            mode = "nan"
        if mode == "raise":
            with self._lock:
                self.injected["raise"] += 1
            raise RuntimeError("injected: delegate lost its context")
        if mode == "nan":
            with self._lock:
                self.injected["nan"] += 1
            out = [o.copy() for o in out]
            out[0][..., 0] = np.nan
        if mode == "offset":
            out = [o + 1.0 for o in out]
        if mode == "slow":
            time.sleep(self.sleep_s)
        return out

    def close(self):
        self.inner.close()
