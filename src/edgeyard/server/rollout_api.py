"""HTTP routes of releases served to devices and of rollouts (see `distribution.py`,
`rollouts.py`).

    PUT  /api/releases/{model}/{release}/files/{path}   upload one file of a registered release
    GET  /api/releases/{model}/{release}/files          what is stored and what is missing
    PUT  /api/stable/{model}                            {"release": V}: what devices serve
    GET  /api/stable/{model}
    POST /api/rollouts                                  start: {"model", "release", "steps", ...}
    GET  /api/rollouts[?model=]                         every rollout, newest last
    GET  /api/rollouts/{id}                             state, plan and every decision
    POST /api/rollouts/{id}/{pause|resume|promote|rollback}
    GET  /v1/assignment?model=&device=&profile=&release= what this device should serve (204: none)
    GET  /v1/releases/{model}/{release}/files/{path}    a file (ETag, If-None-Match, Range)

`/api/*` take the admin key, `/v1/*` an ingest key (of that app, when the key has one).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from ..rollout.plan import Plan, RolloutError
from . import distribution, rollouts, store


def add_routes(app: FastAPI, engine: Engine, admin: Any, device: Callable[..., str | None],
               read_body: Callable[..., Any], *, poll_s: float, max_file: int,
               loop: rollouts.RolloutLoop) -> None:
    Admin = Depends(admin)
    Device = Depends(device)  # a default, not Annotated: annotations here are strings that
    # FastAPI resolves in the module's globals, where this local is not

    def own(app_name: str | None, model: str) -> None:
        if app_name is not None and app_name != model:
            raise HTTPException(403, f"this ingest key is for {app_name!r}, not {model!r}")

    @app.put("/api/releases/{model}/{release}/files/{path:path}", dependencies=[Admin],
             summary="upload one file of a registered release")
    async def put_file(model: str, release: str, path: str, request: Request) -> dict[str, Any]:
        data = await read_body(request, max_file)
        try:
            return distribution.put_file(engine, model, release, path, data)
        except KeyError as exc:
            raise HTTPException(404, f"{exc.args[0]}: register it first") from None
        except distribution.FileRefused as exc:
            raise HTTPException(422, str(exc)) from None

    @app.get("/api/releases/{model}/{release}/files", dependencies=[Admin],
             summary="a release's stored and missing files")
    def release_files(model: str, release: str) -> dict[str, Any]:
        try:
            missing = distribution.missing_files(engine, model, release)
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None
        return {"stored": distribution.files(engine, model, release), "missing": missing}

    @app.put("/api/stable/{model}", dependencies=[Admin],
             summary="the release devices serve outside a rollout")
    def put_stable(model: str, payload: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        release = str(payload.get("release") or "")
        if store.release(engine, model, release) is None:
            raise HTTPException(404, f"release {model} {release!r} is not registered")
        try:
            distribution.servable(engine, model, release)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        st = rollouts.active(engine, model)
        if st is not None:
            raise HTTPException(409, f"{model} has a rollout in progress ({st.rollout_id}): "
                                "promote or roll it back instead")
        distribution.set_stable(engine, model, release)
        return {"model": model, "stable": release}

    @app.get("/api/stable/{model}", dependencies=[Admin], summary="the stable release")
    def get_stable(model: str) -> dict[str, Any]:
        return {"model": model, "stable": distribution.stable(engine, model)}

    @app.post("/api/rollouts", dependencies=[Admin], status_code=201, summary="start a rollout")
    def start(payload: Annotated[dict[str, Any], Body(description=(
            '{"model": M, "release": V, "steps": [1, 5, 25, 100], "hold_s": 3600, ...} '
            "(the fields of rollout.plan.Plan)"))]) -> dict[str, Any]:
        try:
            model, release = str(payload["model"]), str(payload["release"])
            plan = Plan.from_dict({k: v for k, v in payload.items()
                                   if k not in ("model", "release")})
        except (KeyError, TypeError, ValueError) as exc:
            raise HTTPException(422, f"not a rollout plan: {exc!s}") from None
        if store.release(engine, model, release) is None:
            raise HTTPException(404, f"release {model} {release} is not registered")
        try:
            st = rollouts.start(engine, model, release, plan)
        except RolloutError as exc:
            raise HTTPException(409, str(exc)) from None
        return rollouts.to_dict(st)

    @app.get("/api/rollouts", dependencies=[Admin], summary="rollouts")
    def list_rollouts(model: str | None = None) -> list[dict[str, Any]]:
        now = time.time()
        return [rollouts.to_dict(st, now) for rid in rollouts.list_ids(engine, model)
                if (st := rollouts.get(engine, rid)) is not None]

    @app.get("/api/rollouts/{rollout_id}", dependencies=[Admin], summary="one rollout")
    def get_rollout(rollout_id: str) -> dict[str, Any]:
        st = rollouts.get(engine, rollout_id)
        if st is None:
            raise HTTPException(404, f"no rollout {rollout_id}")
        return rollouts.to_dict(st)

    @app.post("/api/rollouts/{rollout_id}/{action}", dependencies=[Admin],
              summary="pause, resume, promote or roll back")
    def act(rollout_id: str, action: str) -> dict[str, Any]:
        try:
            st, d = rollouts.act(engine, rollout_id, action)
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None
        except RolloutError as exc:
            raise HTTPException(409, str(exc)) from None
        if action == "rollback":
            loop.notify(st, d)
        return rollouts.to_dict(st)

    @app.get("/v1/assignment", summary="the release this device should serve (ingest key)",
             responses={204: {"description": "nothing assigned"}})
    def assignment(model: str, device: str, profile: str | None = None,
                   release: str | None = None, app_name: str | None = Device) -> Response:
        own(app_name, model)
        got = rollouts.assignment(engine, model, device)
        sha = None if got is None else distribution.manifest_sha(engine, model, got[0])
        if got is None or sha is None:
            return Response(status_code=204, headers={"X-Poll-Seconds": f"{poll_s:g}"})
        return JSONResponse({"model": model, "release": got[0], "manifest_sha256": sha,
                             "rollout": got[1], "poll_s": poll_s})

    @app.get("/v1/releases/{model}/{release}/files/{path:path}",
             summary="a file of a release (ingest key): ETag, If-None-Match, Range",
             responses={206: {}, 304: {}, 416: {}})
    def download(model: str, release: str, path: str,
                 range_: Annotated[str | None, Header(alias="Range")] = None,
                 if_none_match: Annotated[str | None, Header()] = None,
                 app_name: str | None = Device) -> Response:
        own(app_name, model)
        f = distribution.read_file(engine, model, release, path)
        if f is None:
            raise HTTPException(404, f"{model} {release} has no file {path!r} on this server")
        etag = f'"{f.sha256}"'
        headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "no-cache"}
        if if_none_match is not None and etag in [t.strip() for t in if_none_match.split(",")]:
            return Response(status_code=304, headers=headers)
        r = distribution.parse_range(range_, f.size)
        if r == "unsatisfiable":
            return Response(status_code=416, headers={**headers,
                                                      "Content-Range": f"bytes */{f.size}"})
        if isinstance(r, tuple):
            first, last = r
            return Response(f.data[first:last + 1], status_code=206,
                            media_type="application/octet-stream",
                            headers={**headers, "Content-Range": f"bytes {first}-{last}/{f.size}"})
        return Response(f.data, media_type="application/octet-stream", headers=headers)
