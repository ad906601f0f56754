"""Demo-like data for the HTML report, with no model build: a registered release (a synthetic
telemetry reference) and a day of hourly production windows from two profiles, the last hours
of one drifted, with calls, fallbacks and latency; a second release rolled out and rolled back;
and an app without a registered release. Names carry characters that a link must encode and a
page must escape."""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np

MODEL = "a b/c?d&e<x>"
OTHER_APP = "shop & <co>/x?y"
SPEC: dict[str, Any] = {"signals": [{"name": n} for n in
                                    ("input.mean", "input.std", "output.confidence")],
                        "classes": {"name": "output.class", "count": 10}}
HOURS = 24
DRIFTED_HOURS = 6  # the last hours of profile "phone" drift
GAP_HOUR = 10  # an hour without uploads: the time series have a gap


def manifest(version: str) -> dict[str, Any]:
    return {"model": {"name": MODEL, "version": version},
            "telemetry": {"projections": SPEC}, "evaluation": {"accuracy": 0.97}}


def window(rng: np.random.Generator, start: float, n: int, shift: float = 0.0,
           fallbacks: int = 0) -> Any:
    """One collector window of `n` calls starting at `start` (inputs shifted by `shift`)."""
    from edgeyard.telemetry.sketch import ExpHistogram
    from edgeyard.telemetry.window import LATENCY, Window

    w = Window(SPEC, int(start * 1e9))
    w.end_ns = int((start + 3000) * 1e9)
    conf = np.clip(rng.beta(12 - 6 * shift, 1, n), 0.0, 1.0)
    w.add_projected({"input.mean": rng.normal(0.3 + shift, 0.05, n),
                     "input.std": rng.gamma(4.0, 0.05 * (1 + shift), n),
                     "output.confidence": conf}, rng.integers(0, 10 - int(5 * shift), n))
    lat = rng.lognormal(1.0 + shift, 0.3, n)
    w.sketches[LATENCY].update(lat)
    w.engine_latency["onnx"] = ExpHistogram().update(lat)
    w.calls = w.sampled = n
    w.engines["onnx"] = n - fallbacks
    if fallbacks:
        w.engines["tflite"] = fallbacks
        w.fallbacks[("onnx", "error", "<b>bad</b> output & more")] = fallbacks
    return w


def reference(rng: np.random.Generator) -> dict[str, Any]:
    return window(rng, 0.0, 3000).to_json()


def ingest(engine: Any, windows: list[tuple[Any, str, str]], release: str = "1.0") -> None:
    """Store (window, profile, device) uploads of `release` as the OTLP endpoint would."""
    from edgeyard.server import decode, store
    from edgeyard.telemetry import otlp

    rms = [otlp.resource_metrics(w, {"edgeyard.model": MODEL, "edgeyard.release": release,
                                     "edgeyard.profile": profile, "edgeyard.device_id": device,
                                     "edgeyard.upload_id": uuid.uuid4().hex})
           for w, profile, device in windows]
    store.ingest(engine, decode.decode(otlp.request(rms)).uploads)


def other_app(engine: Any, now: float) -> None:
    """An app that sends plain OpenTelemetry metrics (no release registered)."""
    from edgeyard.server import decode, store
    from edgeyard.telemetry import otlp

    w = window(np.random.default_rng(9), now - 7200, 50)
    rm = otlp.resource_metrics(w, {"service.name": OTHER_APP, "service.version": "2"})
    store.ingest(engine, decode.decode(otlp.request([rm])).uploads)


def rollout(engine: Any, now: float) -> None:
    """Release 1.1 rolled out in place of 1.0: one step advanced, then rolled back."""
    import json

    from edgeyard.rollout.plan import Plan, advance
    from edgeyard.server import distribution, rollouts, store

    store.register_release(engine, manifest("1.1"), reference(np.random.default_rng(2)))
    distribution.put_file(engine, MODEL, "1.1", distribution.MANIFEST,
                          json.dumps(manifest("1.1")).encode())
    distribution.set_stable(engine, MODEL, "1.0")
    st = rollouts.start(engine, MODEL, "1.1", Plan(steps=(5.0, 50.0, 100.0), hold_s=600.0),
                        now=now - 5400)
    for t, outcome, figures in (
            (now - 4000, "not_worse", [{"figure": "fallback rate", "outcome": "not_worse",
                                        "estimate": 1.02}]),
            (now - 1800, "worse", [{"figure": "p90 latency <onnx>", "outcome": "worse",
                                    "estimate": 1.4}])):
        d = advance(st, t, outcome, figures)
        assert d is not None
        rollouts.save(engine, st, d, t)


def populate(engine: Any, now: float | None = None) -> float:
    """Fill a migrated database with the whole scene; returns the `end` to render at."""
    from edgeyard.server import store

    now = time.time() if now is None else now
    rng = np.random.default_rng(0)
    store.register_release(engine, manifest("1.0"), reference(rng))
    windows = []
    for h in range(HOURS, 0, -1):
        if h == GAP_HOUR:
            continue
        start = now - h * 3600 + 300  # inside the hour's step (aggregates are filed per 300 s)
        drift = 0.5 if h <= DRIFTED_HOURS else 0.0
        windows.append((window(rng, start, 300, fallbacks=h % 5), "board", "dev-b"))
        windows.append((window(rng, start, 200, drift, fallbacks=3 if drift else 0),
                        "phone", "dev-p"))
    ingest(engine, windows)
    other_app(engine, now)
    rollout(engine, now)
    return now
