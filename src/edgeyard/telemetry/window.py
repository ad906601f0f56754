"""A window: the sketches of every signal and the exact counters over a span of calls.

The build's reference (over the held-out data) is a window too, stored as JSON in the release;
the device closes a window on time or on count and sends it as OTLP; the server merges windows.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from .projections import Projector
from .sketch import ExpHistogram

LATENCY = "latency_ms"
ENGINE_LATENCY = "latency_ms.by_engine"  # on the wire: one point per engine (attribute engine)


class Window:
    def __init__(self, spec: dict[str, Any], start_ns: int | None = None) -> None:
        self.spec = spec
        sk = spec.get("sketch", {})
        names = [s["name"] for s in spec["signals"]] + [LATENCY]
        self.sketches = {n: ExpHistogram(sk.get("max_size", 160), sk.get("max_scale", 20))
                         for n in names}
        c = spec.get("classes")
        self.classes = np.zeros(c["count"] if c else 0, dtype=np.int64)
        self.engines: Counter[str] = Counter()
        self.engine_latency: dict[str, ExpHistogram] = {}  # latency of the calls each answered
        self.fallbacks: Counter[tuple[str, str, str]] = Counter()
        self.dropped = 0
        self.calls = 0
        self.sampled = 0  # calls whose inputs and outputs are in the signal sketches
        self.start_ns = start_ns if start_ns is not None else time.time_ns()
        self.end_ns = self.start_ns

    def add_projected(self, values: dict[str, np.ndarray], classes: np.ndarray | None) -> None:
        for name, v in values.items():
            self.sketches[name].update(v)
        if classes is not None and self.classes.size:
            self.classes += np.bincount(np.clip(classes, 0, self.classes.size - 1),
                                        minlength=self.classes.size)

    def add_batch(self, projector: Projector, inputs: Sequence[np.ndarray],
                  outputs: Sequence[np.ndarray] | None) -> None:
        values, classes = projector.project(inputs, outputs)
        self.add_projected(values, classes)

    def merge(self, other: Window) -> Window:
        return Window.merge_all([self, other])

    @staticmethod
    def merge_all(windows: Sequence[Window]) -> Window:
        """One window of all of them (sketches merged per signal over the union of names)."""
        if not windows:
            raise ValueError("merge_all needs at least one window")
        out = Window(windows[0].spec, min(w.start_ns for w in windows))
        out.end_ns = max(w.end_ns for w in windows)
        out.sketches = _merge_maps([w.sketches for w in windows])
        out.engine_latency = _merge_maps([w.engine_latency for w in windows])
        out.classes = sum((w.classes for w in windows[1:]), windows[0].classes.copy())
        for w in windows:
            out.engines.update(w.engines)
            out.fallbacks.update(w.fallbacks)
            out.dropped += w.dropped
            out.calls += w.calls
            out.sampled += w.sampled
        return out

    # --- the reference file ---------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "count": max((h.count for h in self.sketches.values()), default=0),
            "signals": {k: base64.b64encode(h.serialize()).decode()
                        for k, h in self.sketches.items() if not h.is_empty()},
            "classes": self.classes.tolist(),
        }

    @classmethod
    def from_json(cls, spec: dict[str, Any], data: dict[str, Any]) -> Window:
        w = cls(spec, 0)
        for k, b in data.get("signals", {}).items():
            w.sketches[k] = ExpHistogram.deserialize(base64.b64decode(b))
        if data.get("classes"):
            w.classes = np.asarray(data["classes"], dtype=np.int64)
        return w


def _merge_maps(maps: Sequence[dict[str, ExpHistogram]]) -> dict[str, ExpHistogram]:
    names = dict.fromkeys(k for m in maps for k in m)
    return {k: ExpHistogram.merge_all([m[k] for m in maps if k in m]) for k in names}


def reference_window(spec: dict[str, Any], inputs: Sequence[np.ndarray],
                     outputs: Sequence[np.ndarray]) -> Window:
    """The build-time reference: the projections over the held-out data and source outputs."""
    w = Window(spec, 0)
    w.add_batch(Projector(spec), inputs, outputs)
    w.calls = w.sampled = int(np.asarray(inputs[0]).shape[0])
    return w


def dumps_reference(w: Window) -> str:
    return json.dumps(w.to_json())
