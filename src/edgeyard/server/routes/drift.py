"""What is stored and how it drifts (admin key).

    GET  /api/apps               every app that uploaded, registered or not
    GET  /api/signals            the series an app stores
    GET  /api/drift              drift check over a time window
    GET  /api/timeline           drift statistics per time step
    GET  /api/signal             reference vs production histogram of one signal
    GET  /api/findings           findings, newest first

Drift is checked against a registered release's build-time reference (`release=`), or against
the app's own data of an earlier period (`baseline=7d`: the 7 days before the checked window),
which is how apps that send plain OpenTelemetry metrics, with no release registered, are
checked.

Without `end=`, a check or timeline of a registered release over a span the leader keeps ready
(1 h and 24 h checks, the 24 h timeline by hour) is answered from `drift_results`, computed when
the newest bucket closed (`precompute.py`): it says so under `precomputed`; `fresh=true`
computes it now.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import Engine

from .. import store
from ..watch import UnknownSignal
from .deps import (
    Admin,
    Baseline,
    Duration,
    End,
    EngineDep,
    WatchDep,
    now_or,
    seconds,
    span_steps,
)

Fresh = Annotated[bool, Query(description="compute it now, even where the leader has the "
                                          "result of the newest closed bucket ready")]

router = APIRouter()


@router.get("/api/apps", dependencies=[Admin],
            summary="every app that uploaded, per release, registered or not")
def list_apps(engine: EngineDep) -> list[dict[str, Any]]:
    return store.apps(engine)


@router.get("/api/signals", dependencies=[Admin], summary="the series an app stores")
def list_signals(engine: EngineDep, model: str) -> list[dict[str, Any]]:
    return store.series_list(engine, model)


@router.get("/api/drift", dependencies=[Admin], summary="drift check over a time window")
def drift(engine: EngineDep, watch: WatchDep, model: str, release: str | None = None,
          window: Duration = "1h", profile: str | None = None, end: End = None,
          alert: bool = False, baseline: Baseline = None, fresh: Fresh = False
          ) -> dict[str, Any]:
    end_s, window_s = now_or(end), seconds(window)
    rec = _target(engine, model, release, baseline, end_s - window_s)
    return watch.check(rec, window_s, end=end_s, profile=profile, alert=alert,
                       ready=end is None and not fresh)


@router.get("/api/timeline", dependencies=[Admin], summary="drift statistics per time step")
def timeline(engine: EngineDep, watch: WatchDep, model: str, release: str | None = None,
             span: Duration = "24h", step: Duration = "1h", end: End = None,
             baseline: Baseline = None, fresh: Fresh = False) -> dict[str, Any]:
    span_s, step_s = span_steps(span, step)
    end_s = now_or(end)
    rec = _target(engine, model, release, baseline, end_s - span_s)
    return watch.timeline(rec, span_s, step_s, end=end_s, ready=end is None and not fresh)


@router.get("/api/signal", dependencies=[Admin], summary="one signal: reference vs production")
def signal(engine: EngineDep, watch: WatchDep, model: str, name: str,
           release: str | None = None, window: Duration = "1h", end: End = None,
           baseline: Baseline = None) -> dict[str, Any]:
    end_s, window_s = now_or(end), seconds(window)
    rec = _target(engine, model, release, baseline, end_s - window_s)
    try:
        return watch.signal(rec, name, window_s, end=end_s)
    except UnknownSignal as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/api/findings", dependencies=[Admin], summary="findings, newest first")
def list_findings(engine: EngineDep, model: str | None = None) -> list[dict[str, Any]]:
    return store.findings_of(engine, model)


def _target(engine: Engine, model: str, release: str | None, baseline: str | None,
            ref_end: float) -> store.ReleaseRecord:
    """The reference: a registered release's, or the app's own data before `ref_end`."""
    if baseline is not None:
        return store.baseline_record(engine, model, release, ref_end - seconds(baseline),
                                     ref_end)
    if release is None:
        raise HTTPException(422, "give release= (checked against its build-time "
                            "reference) or baseline= (against the app's own data of an "
                            "earlier period, e.g. baseline=7d)")
    rec = store.release(engine, model, release)
    if rec is None:
        known = ", ".join(f"{r['model']} {r['release']}" for r in store.releases(engine)) or "none"
        raise HTTPException(404, f"release {model} {release} is not registered (registered: "
                            f"{known}); run `edgeyard releases register <release dir>`, or "
                            "compare with the app's own earlier data: baseline=7d")
    return rec
