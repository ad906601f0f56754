"""The release each device serves: the stable release per app, rollouts (see `rollouts.py`)
and a device's assignment.

    PUT  /api/stable/{model}                            {"release": V}: what devices serve
    GET  /api/stable/{model}
    POST /api/rollouts                                  start: {"model", "release", "steps", ...}
    GET  /api/rollouts[?model=]                         every rollout, newest last
    GET  /api/rollouts/{id}                             state, plan and every decision
    POST /api/rollouts/{id}/{pause|resume|promote|rollback}
    GET  /v1/assignment?model=&device=&profile=&release= what this device should serve (204: none)

`/api/*` take the admin key, `/v1/*` an ingest key (of that app, when the key has one).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Response
from fastapi.responses import JSONResponse

from ...rollout.plan import Plan, RolloutError
from .. import distribution, rollouts, store
from .deps import Admin, DeviceApp, EngineDep, RolloutLoopDep, SettingsDep, own

router = APIRouter()


@router.put("/api/stable/{model}", dependencies=[Admin],
            summary="the release devices serve outside a rollout")
def put_stable(engine: EngineDep, model: str, payload: Annotated[dict[str, Any], Body()]
               ) -> dict[str, Any]:
    release = str(payload.get("release") or "")
    if store.release(engine, model, release) is None:
        raise HTTPException(404, f"release {model} {release!r} is not registered")
    try:
        distribution.servable(engine, model, release)
    except distribution.NotServable as exc:
        raise HTTPException(409, str(exc)) from None
    st = rollouts.active(engine, model)
    if st is not None:
        raise HTTPException(409, f"{model} has a rollout in progress ({st.rollout_id}): "
                            "promote or roll it back instead")
    distribution.set_stable(engine, model, release)
    return {"model": model, "stable": release}


@router.get("/api/stable/{model}", dependencies=[Admin], summary="the stable release")
def get_stable(engine: EngineDep, model: str) -> dict[str, Any]:
    return {"model": model, "stable": distribution.stable(engine, model)}


@router.post("/api/rollouts", dependencies=[Admin], status_code=201, summary="start a rollout")
def start(engine: EngineDep, payload: Annotated[dict[str, Any], Body(description=(
        '{"model": M, "release": V, "steps": [1, 5, 25, 100], "hold_s": 3600, ...} '
        "(the fields of rollout.plan.Plan)"))]) -> dict[str, Any]:
    try:
        model, release = str(payload["model"]), str(payload["release"])
        plan = Plan.from_dict({k: v for k, v in payload.items()
                               if k not in ("model", "release")})
    except (KeyError, TypeError, ValueError) as exc:  # the payload's shape: what it lacks
        raise HTTPException(422, f"not a rollout plan: {exc!s}") from None
    if store.release(engine, model, release) is None:
        raise HTTPException(404, f"release {model} {release} is not registered")
    try:
        st = rollouts.start(engine, model, release, plan)
    except RolloutError as exc:
        raise HTTPException(409, str(exc)) from None
    return rollouts.to_dict(st)


@router.get("/api/rollouts", dependencies=[Admin], summary="rollouts")
def list_rollouts(engine: EngineDep, model: str | None = None) -> list[dict[str, Any]]:
    now = time.time()
    return [rollouts.to_dict(st, now) for rid in rollouts.list_ids(engine, model)
            if (st := rollouts.get(engine, rid)) is not None]


@router.get("/api/rollouts/{rollout_id}", dependencies=[Admin], summary="one rollout")
def get_rollout(engine: EngineDep, rollout_id: str) -> dict[str, Any]:
    st = rollouts.get(engine, rollout_id)
    if st is None:
        raise HTTPException(404, f"no rollout {rollout_id}")
    return rollouts.to_dict(st)


@router.post("/api/rollouts/{rollout_id}/{action}", dependencies=[Admin],
             summary="pause, resume, promote or roll back")
def act(engine: EngineDep, loop: RolloutLoopDep, rollout_id: str, action: str
        ) -> dict[str, Any]:
    try:
        st, d = rollouts.act(engine, rollout_id, action)
    except rollouts.RolloutNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except RolloutError as exc:
        raise HTTPException(409, str(exc)) from None
    if action == "rollback":
        loop.notify(st, d)
    return rollouts.to_dict(st)


@router.get("/v1/assignment", summary="the release this device should serve (ingest key)",
            responses={204: {"description": "nothing assigned"}})
def assignment(engine: EngineDep, settings: SettingsDep, app_name: DeviceApp, model: str,
               device: str, profile: str | None = None, release: str | None = None
               ) -> Response:
    own(app_name, model)
    poll_s = settings.poll_s
    got = rollouts.assignment(engine, model, device)
    sha = None if got is None else distribution.manifest_sha(engine, model, got[0])
    if got is None or sha is None:
        return Response(status_code=204, headers={"X-Poll-Seconds": f"{poll_s:g}"})
    return JSONResponse({"model": model, "release": got[0], "manifest_sha256": sha,
                         "rollout": got[1], "poll_s": poll_s})
