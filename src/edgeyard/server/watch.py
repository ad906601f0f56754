"""Drift checks over stored windows: by time window and by segment, over time, with alerts.

A check merges the aggregates of a release over [end - window, end) — all profiles, then each
profile (a segment) — and compares each merged window with the reference
(`edgeyard.drift.check`): the registered release's build-time reference, or, with a baseline
(`store.baseline_record`), the merged aggregates of an earlier period of the app's own data (for
apps that send plain OpenTelemetry metrics and have no release registered). Findings (a drifted
signal, a failed rule, a drop of the expected accuracy) are stored once per (release, profile,
signal, kind); a finding never seen before is posted to the webhook, once (retried on the next
check until the webhook answers 2xx).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import Engine

from ..drift import DriftPolicy
from ..drift import check as drift_check
from ..drift.explicit import ExplicitHistogram, Sketch, merge_any
from ..drift.stats import aligned
from ..errors import NotFound
from ..telemetry.window import ENGINE_LATENCY, LATENCY, Window
from . import store
from .metrics import ServiceMetrics

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class UnknownSignal(NotFound):
    """A signal name the release's reference does not have."""


def reference_of(rec: store.ReleaseRecord) -> dict[str, Any]:
    """What a check compared against, for its answer."""
    if rec.baseline is None:
        return {"kind": "release", "release": rec.release}
    start, end = rec.baseline
    return {"kind": "baseline", "start": start, "end": end, "seconds": end - start}


def parse_duration(text: str) -> float:
    """'90s', '15m', '1h', '7d' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"a duration is a positive number and a unit s, m, h or d "
                         f"(got {text!r}, e.g. '1h')")
    return float(m.group(1)) * _UNITS[m.group(2)]


def json_safe(x: Any) -> Any:
    """Plain JSON: NaN and +-Inf (which extreme but valid data can produce) become None."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def runtime_summary(w: Window) -> dict[str, Any]:
    """Calls by engine, fallbacks by engine/kind/reason, latency quantiles, drops, sampling."""
    lat = w.sketches.get(LATENCY)

    def q(p: float) -> float | None:
        return None if lat is None or lat.count == 0 else round(lat.quantile(p), 4)

    prefix = ENGINE_LATENCY + "{engine="
    by_engine = {}
    for name, h in sorted(w.sketches.items()):
        if name.startswith(prefix) and h.count:
            by_engine[name[len(prefix):-1]] = {
                "p50": round(h.quantile(0.5), 4), "p90": round(h.quantile(0.9), 4),
                "count": int(h.count)}
    return {
        "latency_ms_by_engine": by_engine,
        "calls": int(w.calls),
        "sampled": int(w.sampled),
        "dropped": int(w.dropped),
        "engines": dict(sorted(w.engines.items())),
        "fallbacks": [{"engine": e, "kind": k, "reason": r, "count": int(n)}
                      for (e, k, r), n in sorted(w.fallbacks.items(), key=lambda kv: -kv[1])],
        "latency_ms": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99),
                       "count": 0 if lat is None else int(lat.count)},
    }


def histogram(rec: store.ReleaseRecord, name: str, cur: Sketch | None) -> dict[str, Any]:
    """A signal's reference and production (`cur`) bucket masses on their common buckets (edges
    that are not finite, an explicit histogram's outer ones without a min or max, are None)."""
    ref: Sketch | None = rec.reference.sketches.get(name)
    if ref is None:
        known = ", ".join(sorted(rec.reference.sketches)) or "none"
        raise UnknownSignal(f"signal {name!r} is not in the reference (signals: {known})")
    kind = "explicit" if isinstance(ref, ExplicitHistogram) else "exponential"
    other = cur is not None and isinstance(cur, ExplicitHistogram) != (kind == "explicit")
    if cur is None or cur.count == 0 or other:
        return {"name": name, "kind": kind, "lower": [], "upper": [], "reference": [],
                "current": [], "n_current": 0, "n_reference": int(ref.count),
                **({"note": "production data of this signal is of another histogram kind"}
                   if other else {})}
    a = aligned(ref, cur)
    return json_safe({"name": name, "kind": kind, "lower": [float(x) for x in a.lower],
                      "upper": [float(x) for x in a.upper],
                      "reference": [float(x) for x in a.p], "current": [float(x) for x in a.q],
                      "n_reference": int(a.n_ref), "n_current": int(a.n_cur)})


class Watch:
    def __init__(self, engine: Engine, webhook: str | None = None,
                 metrics: ServiceMetrics | None = None, policy: DriftPolicy | None = None,
                 bucket_s: int = store.BUCKET_S) -> None:
        self.engine, self.bucket_s = engine, bucket_s
        self.webhook = webhook
        self.metrics = metrics
        self.policy = policy or DriftPolicy()
        # the timeline is an overview of many steps: the cheaper Gaussian null (slightly
        # anti-conservative for a small reference); verdicts come from `check`
        self.overview = dataclasses.replace(self.policy, null="gaussian")
        self._periodic: Periodic | None = None

    # --- checks -------------------------------------------------------------------------------

    def windows(self, rec: store.ReleaseRecord, start: float, end: float,
                profile: str | None = None) -> dict[str, Window]:
        """The merged production windows of [start, end): one per profile (segment), read once,
        and "all" merged from them (no second query), unless one `profile` is asked for."""
        if profile is not None:
            return {profile: store.window(self.engine, rec, start, end, profile)}
        per = {p: store.window(self.engine, rec, start, end, p)
               for p in store.segments(self.engine, rec.model, rec.release, start, end)}
        whole = store.merge_windows(list(per.values())) if per \
            else Window(rec.spec, int(start * 1e9))
        return {"all": whole, **per}

    def ready(self, kind: str, rec: store.ReleaseRecord, span_s: float, step_s: float = 0.0
              ) -> dict[str, Any] | None:
        """The leader's result (`precompute.py`) of a registered release's check or timeline
        over `span_s`, ending at the newest closed bucket (or the one before, while the leader
        computes the next); None when there is none that fresh."""
        from .precompute import get, newest_boundary, step_of

        if rec.baseline is not None or rec.release is None:
            return None
        return get(self.engine, rec.model, rec.release, kind, span_s, step_s,
                   not_before=newest_boundary(self.bucket_s) - step_of(self.bucket_s))

    def check(self, rec: store.ReleaseRecord, window_s: float, end: float | None = None,
              profile: str | None = None, alert: bool = False,
              windows: dict[str, Window] | None = None, ready: bool = False
              ) -> dict[str, Any]:
        """Drift check of [end - window, end): the whole fleet and each segment. `windows`: the
        result of `windows()` for that span, when the caller has it already (for its own
        plots: a precomputed result does not read them). `ready`: the
        caller asks about the present (`end` is now), so the precomputed result may answer
        when there is one (`ready()`; not for one `profile` or with `alert`)."""
        if ready and profile is None and not alert:
            hit = self.ready("check", rec, window_s)
            if hit is not None:
                return hit
        end = time.time() if end is None else end
        start = end - window_s
        wins = self.windows(rec, start, end, profile) if windows is None else windows
        segments: dict[str, Any] = {}
        for seg, w in wins.items():
            report = drift_check(rec.reference, w, self.policy, reference_accuracy=rec.accuracy)
            segments[seg] = {**report.to_dict(), "runtime": runtime_summary(w)}
            if self.metrics is not None:
                self.metrics.checked(report.verdict)
            if alert and report.findings:
                self._notify(store.record_findings(self.engine, rec.model, rec.release or "*",
                                                   seg, report.findings))
        overall = segments.get("all", segments.get(profile or "", None))
        return json_safe({
            "model": rec.model, "release": rec.release,
            "window": {"start": start, "end": end, "seconds": window_s},
            "reference": reference_of(rec),
            "devices": store.device_count(self.engine, rec.model, rec.release, start, end),
            "verdict": overall["verdict"] if overall else "insufficient_data",
            "overall": overall,
            "segments": {k: v for k, v in segments.items() if k != "all"},
        })

    def timeline(self, rec: store.ReleaseRecord, span_s: float, step_s: float,
                 end: float | None = None, ready: bool = False) -> dict[str, Any]:
        """Per step over [end - span, end): each signal's KS statistic and calibrated threshold
        (Gaussian null: an overview), the verdict, calls, fallbacks and latency quantiles (one
        query for the whole span). `ready`: as for `check`."""
        if ready:
            hit = self.ready("timeline", rec, span_s, step_s)
            if hit is not None:
                return hit
        end = time.time() if end is None else end
        start = end - span_s
        n_steps = max(1, min(500, int(np.ceil(span_s / step_s))))
        by_bucket = store.signals(self.engine, rec.model, rec.release, start, end,
                                  by_bucket=True)
        counts = store.counter_rows(self.engine, rec.model, rec.release, start, end,
                                    by_bucket=True)
        steps = []
        for i in range(n_steps):
            s0, s1 = start + i * step_s, min(end, start + (i + 1) * step_s)
            w = Window(rec.spec, int(s0 * 1e9))
            parts: dict[str, list[Sketch]] = {}
            for (b, name), h in by_bucket.items():
                if s0 <= b < s1 or (i == 0 and b < s0):
                    parts.setdefault(name, []).append(h)
            for name, hs in parts.items():
                w.sketches[name] = merge_any(hs)  # type: ignore[assignment]  # explicit too
            for (b, name, attrs), v in counts.items():
                if s0 <= b < s1 or (i == 0 and b < s0):
                    store.add_counter(w, rec.spec, name, attrs, v)
            report = drift_check(rec.reference, w, self.overview, reference_accuracy=rec.accuracy)
            d = report.to_dict()
            steps.append({
                "start": s0, "end": s1, "verdict": d["verdict"],
                "signals": {s["name"]: {k: s.get(k) for k in
                                        ("n", "ks", "threshold", "p_value", "verdict", "psi",
                                         "js")}
                            for s in d["signals"]},
                "expected_accuracy": (d.get("expected_accuracy") or {}).get("current"),
                "runtime": runtime_summary(w),
            })
        return json_safe({"model": rec.model, "release": rec.release,
                          "reference": reference_of(rec), "start": start, "end": end,
                          "step_s": step_s, "steps": steps})

    def signal(self, rec: store.ReleaseRecord, name: str, window_s: float,
               end: float | None = None) -> dict[str, Any]:
        """Reference and production bucket masses of one signal on their common buckets."""
        end = time.time() if end is None else end
        cur = store.signals(self.engine, rec.model, rec.release, end - window_s, end,
                            signal=name).get(name)
        return histogram(rec, name, cur)

    # --- alerts -------------------------------------------------------------------------------

    def _notify(self, new: list[dict[str, Any]]) -> None:
        if not new or not self.webhook:
            return
        lines = [f"{f['model']} {f['release']} [{f['profile']}] {f['kind']} {f['signal']}: "
                 f"{f['message']}" for f in new]
        ok = post_json(self.webhook, {"text": "edgeyard: new findings\n" + "\n".join(lines),
                                      "findings": new})
        if self.metrics is not None:
            self.metrics.alerted(ok)
        if ok:
            store.mark_notified(self.engine, new)
        else:  # told on the next check: forget them as new
            store.forget_unnotified(self.engine, new)

    # --- background ---------------------------------------------------------------------------

    def check_all(self, window_s: float) -> None:
        for r in store.releases(self.engine):
            rec = store.release(self.engine, r["model"], r["release"])
            if rec is not None:
                self.check(rec, window_s, alert=True)

    def start_background(self, every_s: float, window_s: float) -> None:
        def failed() -> None:
            if self.metrics is not None:
                self.metrics.checked("error")

        self._periodic = Periodic(lambda: self.check_all(window_s), every_s,
                                  "edgeyard-drift-checks", failed)

    def stop_background(self) -> None:
        if self._periodic is not None:
            self._periodic.stop()
            self._periodic = None


class Restartable:
    """A daemon thread running `_loop(stop)` until `stop()`; `start()` starts it again after a
    stop (an app's lifespan may run more than once)."""

    thread_name = "edgeyard-background"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(self._stop,),
                                        name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self, stop: threading.Event) -> None:
        raise NotImplementedError


class Periodic:
    """`fn` every `every_s` seconds in a daemon thread until `stop`; an exception in one run
    is handed to `on_error` and never stops the next run."""

    def __init__(self, fn: Callable[[], Any], every_s: float, name: str,
                 on_error: Callable[[], None] | None = None) -> None:
        self._stop = threading.Event()

        def loop() -> None:
            while not self._stop.wait(every_s):
                try:
                    fn()
                except Exception:
                    if on_error is not None:
                        on_error()

        self._thread = threading.Thread(target=loop, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def post_json(url: str, payload: dict[str, Any]) -> bool:
    """POST `payload` as JSON to a webhook (Slack-style `text` first); True on a 2xx."""
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False
