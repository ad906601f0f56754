"""The collector's hot path: record a call in well under a microsecond or two, rebuild it later.

`CallLog.record` runs on the app's thread after every answer. It appends one tuple to a deque
(atomic under the GIL, so no lock): for every call its latency, engine and fallbacks, and for the
calls chosen by the sampler also the shapes, dtypes and the bytes of every input and output
(`ndarray.tobytes`: one memcpy, because the app may reuse its buffers). The background thread
(`CallLog.take`) pops everything and joins each run of equally shaped calls into contiguous
arrays with one `np.frombuffer` per tensor, ready to project in one vectorized batch.

Sampling. Counters and latency are exact for every call. The input and output signals are
sketched from a uniform random sample of calls: the gaps between sampled calls are drawn at
random (mean `every`) so that a periodic input pattern cannot alias with the sampler. `every` is 1
(every call) unless the collector raises it to keep its cost under its overhead budget on a very
fast model (see `Collector`); the window records how many calls were sampled.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

_GAPS = 1024  # random gaps cycled through (a power of two)


class CallLog:
    def __init__(self, max_calls: int, seed: int | None = None) -> None:
        self.max_calls = max_calls
        self.dropped = 0  # calls not recorded because the log was full
        self._q: deque[tuple[Any, ...]] = deque()
        self._rng = np.random.default_rng(seed)
        self._gaps = [1] * _GAPS
        self._gi = 0
        self._skip = 1
        self.every = 1.0
        self.timings: deque[float] = deque(maxlen=64)  # seconds of recent sampled records

    def set_every(self, every: float) -> None:
        """Sample one call in `every` on average (1: all). Called from the background thread."""
        every = max(1.0, float(every))
        if every == self.every:
            return
        if every == 1.0:
            gaps = [1] * _GAPS
        else:  # uniform on 1..2*every-1: mean `every`, never two calls apart by more than 2x
            hi = max(2, round(2 * every - 1))
            gaps = self._rng.integers(1, hi + 1, _GAPS).tolist()
        self._gaps, self.every = gaps, every

    def record(self, inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray] | None,
               engine: str | None, latency_s: float, fallbacks: tuple[Any, ...]) -> None:
        q = self._q
        if len(q) >= self.max_calls:
            self.dropped += 1
            return
        self._skip -= 1
        if self._skip > 0:
            q.append((latency_s, engine, fallbacks))
            return
        self._gi = gi = (self._gi + 1) & (_GAPS - 1)
        self._skip = self._gaps[gi]
        t0 = 0.0 if gi & 63 else time.perf_counter()  # time one sampled call in 64, in situ
        if len(inputs) == 1 and outputs is not None and len(outputs) == 1:  # the usual case
            x, o = inputs[0], outputs[0]
            q.append((latency_s, engine, fallbacks, 1, (x.shape, x.dtype, o.shape, o.dtype),
                      (x.tobytes(), o.tobytes())))
        else:
            tensors = list(inputs) + (list(outputs) if outputs is not None else [])
            q.append((latency_s, engine, fallbacks, len(inputs),
                      tuple([a for t in tensors for a in (t.shape, t.dtype)]),
                      tuple([t.tobytes() for t in tensors])))
        if t0:
            self.timings.append(time.perf_counter() - t0)

    def take(self) -> list[dict[str, Any]]:
        """Everything recorded since the last take, in call order, as batches: one per run of
        calls whose sampled tensors share per-sample shapes and dtypes (usually one). A batch
        has, per call, `latency_s`, `engines`, `samples` (0 for a call not sampled), the sparse
        `fallbacks` [(call index, events)], and `inputs` / `outputs` (arrays over the samples;
        no outputs for calls that got no answer)."""
        q = self._q
        items = [q.popleft() for _ in range(len(q))]
        batches: list[dict[str, Any]] = []
        start, key, full = 0, None, None
        for i, it in enumerate(items):
            if len(it) == 3 or it[4] == full:
                continue
            full = it[4]  # shapes with the batch size: compare per-sample shapes only on change
            k = (it[3], tuple([a[1:] if type(a) is tuple else a for a in full]))
            if key is not None and k != key:
                batches.append(_batch(items[start:i]))
                start = i
            key = k
        if items:
            batches.append(_batch(items[start:]))
        return batches


def _batch(run: list[tuple[Any, ...]]) -> dict[str, Any]:
    """One run: its sampled calls share the number, per-sample shapes and dtypes of their
    tensors (so they all have outputs, or none of them has: a failed call has none)."""
    sampled = [it for it in run if len(it) > 3]
    batch: dict[str, Any] = {
        "latency_s": [it[0] for it in run],
        "engines": [it[1] for it in run],
        "fallbacks": [(i, it[2]) for i, it in enumerate(run) if it[2]],
        "samples": [it[4][0][0] if len(it) > 3 else 0 for it in run],
        "inputs": [],
        "outputs": [],
    }
    if not sampled:
        return batch
    n_in, metas = sampled[0][3], sampled[0][4]

    def column(k: int) -> np.ndarray:
        shape, dtype = metas[2 * k], metas[2 * k + 1]
        flat = np.frombuffer(b"".join([it[5][k] for it in sampled]), dtype=dtype)
        return flat.reshape(-1, *shape[1:])

    batch["inputs"] = [column(k) for k in range(n_in)]
    batch["outputs"] = [column(k) for k in range(n_in, len(metas) // 2)]
    return batch
