"""Releases: their manifests and references (drift), and their files (served to devices; see
`distribution.py`).

    POST /api/releases                                   register a manifest and reference (admin)
    GET  /api/releases                                   registered releases (admin)
    PUT  /api/releases/{model}/{release}/files/{path}   upload one file of a registered release
    GET  /api/releases/{model}/{release}/files          what is stored and what is missing
    GET  /v1/releases/{model}/{release}/files/{path}    a file (ingest key): ETag, If-None-Match,
                                                         Range
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, HTTPException, Request, Response

from .. import distribution, store
from .deps import Admin, DeviceApp, EngineDep, SettingsDep, own, read_capped

router = APIRouter()


@router.post("/api/releases", dependencies=[Admin], summary="register a release")
def register(engine: EngineDep, payload: Annotated[dict[str, Any], Body(
        description='{"manifest": <release.json>, "reference": <telemetry/reference.json>}')]
             ) -> dict[str, str]:
    try:
        model, version = store.register_release(engine, payload["manifest"],
                                                payload["reference"])
    except (KeyError, TypeError, ValueError) as exc:  # the payload's shape: what it lacks
        raise HTTPException(422, f"not a release: {exc!s}") from None
    return {"model": model, "release": version}


@router.get("/api/releases", dependencies=[Admin], summary="registered releases")
def list_releases(engine: EngineDep) -> list[dict[str, Any]]:
    return store.releases(engine)


@router.put("/api/releases/{model}/{release}/files/{path:path}", dependencies=[Admin],
            summary="upload one file of a registered release")
async def put_file(engine: EngineDep, settings: SettingsDep, model: str, release: str, path: str,
                   request: Request) -> dict[str, Any]:
    data = await read_capped(request, settings.max_release_file)
    try:
        return distribution.put_file(engine, model, release, path, data)
    except distribution.ReleaseNotRegistered as exc:
        raise HTTPException(404, f"{exc}: register it first") from None
    except distribution.FileRefused as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/api/releases/{model}/{release}/files", dependencies=[Admin],
            summary="a release's stored and missing files")
def release_files(engine: EngineDep, model: str, release: str) -> dict[str, Any]:
    try:
        missing = distribution.missing_files(engine, model, release)
    except distribution.ReleaseNotRegistered as exc:
        raise HTTPException(404, str(exc)) from None
    return {"stored": distribution.files(engine, model, release), "missing": missing}


@router.get("/v1/releases/{model}/{release}/files/{path:path}",
            summary="a file of a release (ingest key): ETag, If-None-Match, Range",
            responses={206: {}, 304: {}, 416: {}})
def download(engine: EngineDep, app_name: DeviceApp, model: str, release: str, path: str,
             range_: Annotated[str | None, Header(alias="Range")] = None,
             if_none_match: Annotated[str | None, Header()] = None) -> Response:
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
