"""What the route modules share: the service's parts, API keys, capped bodies, durations.

`create_app` keeps the service's parts on `app.state`: `settings`, `engine`, `metrics`, `watch`,
`writer` (the group commit), `rollouts` (the rollout loop), `keys` (`KeyCache`), `limiter` (the
per-key upload rate, or None), `inflight` (the ingest semaphore) and `refusals` (the refusal
log). Routes take them as dependencies (`EngineDep`, `WatchDep`, ...), never from a closure.

Keys travel as `Authorization: Bearer <key>` (the report also takes the cookie that `POST
/login` sets). `Admin` lets admin keys through; `DeviceApp` takes any key and gives the app it is
for (None: any app). A missing or unknown key is 401, a key of the wrong kind or app 403.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Query, Request
from sqlalchemy import Engine

from .. import store
from ..errors import RefusalLog
from ..metrics import ServiceMetrics
from ..rollouts import RolloutLoop
from ..settings import Settings
from ..watch import Watch, parse_duration
from ..writer import GroupWriter


class KeyCache:
    """Known keys for `ttl_s` seconds, so that an upload does not query the key table every
    time (a key removed from the database stops working within `ttl_s`). Unknown keys are
    never cached: each is looked up, and only valid keys take memory."""

    def __init__(self, engine: Engine, ttl_s: float = 30.0) -> None:
        self.engine, self.ttl_s = engine, ttl_s
        self._known: dict[str, tuple[float, tuple[str, str | None]]] = {}

    def get(self, key: str) -> tuple[str, str | None] | None:
        hit = self._known.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def lookup(self, key: str) -> tuple[str, str | None] | None:
        found = store.lookup_key(self.engine, key)
        if found is not None:
            self._known[key] = (time.monotonic() + self.ttl_s, found)
        return found


# --- the service's parts (async: no thread-pool hop to read an attribute) ----------------------


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _engine(request: Request) -> Engine:
    return request.app.state.engine


async def _metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


async def _watch(request: Request) -> Watch:
    return request.app.state.watch


async def _writer(request: Request) -> GroupWriter:
    return request.app.state.writer


async def _rollouts(request: Request) -> RolloutLoop:
    return request.app.state.rollouts


async def _keys(request: Request) -> KeyCache:
    return request.app.state.keys


async def _refusals(request: Request) -> RefusalLog:
    return request.app.state.refusals


SettingsDep = Annotated[Settings, Depends(_settings)]
EngineDep = Annotated[Engine, Depends(_engine)]
MetricsDep = Annotated[ServiceMetrics, Depends(_metrics)]
WatchDep = Annotated[Watch, Depends(_watch)]
WriterDep = Annotated[GroupWriter, Depends(_writer)]
RolloutLoopDep = Annotated[RolloutLoop, Depends(_rollouts)]
KeysDep = Annotated[KeyCache, Depends(_keys)]
RefusalsDep = Annotated[RefusalLog, Depends(_refusals)]


# --- API keys ---------------------------------------------------------------------------------


def bearer(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, None without one."""
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def key_of(authorization: str | None, cookie: str | None = None) -> str:
    """The request's key: the bearer token, else the report's cookie, else 401."""
    key = bearer(authorization)
    if key is not None:
        return key
    if cookie:
        return cookie
    raise HTTPException(401, "an API key is required: Authorization: Bearer <key>",
                        headers={"WWW-Authenticate": "Bearer"})


def unknown_key() -> HTTPException:
    return HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})


def admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    keys: KeyCache = request.app.state.keys
    key = key_of(authorization, request.cookies.get("edgeyard_key"))
    found = keys.get(key) or keys.lookup(key)
    if found is None:
        raise unknown_key()
    if found[0] != "admin":
        raise HTTPException(403, "this is an ingest key: reading and registering need an "
                            "admin key")


def device(request: Request, authorization: Annotated[str | None, Header()] = None
           ) -> str | None:
    """A device's key (ingest, or admin): the app it is for, None for any app."""
    keys: KeyCache = request.app.state.keys
    found = keys.get(key := key_of(authorization)) or keys.lookup(key)
    if found is None:
        raise unknown_key()
    return found[1]


Admin = Depends(admin)
DeviceApp = Annotated[str | None, Depends(device)]


def own(app_name: str | None, model: str) -> None:
    """403 unless a device key for `app_name` (None: any app) may act for `model`."""
    if app_name is not None and app_name != model:
        raise HTTPException(403, f"this ingest key is for {app_name!r}, not {model!r}")


# --- bodies and query parameters --------------------------------------------------------------


async def read_capped(request: Request, limit: int) -> bytes:
    """The request's body; 413 as soon as it grows over `limit` bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body over the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


MAX_SECONDS = 400 * 86400.0
MAX_STEPS = 500  # of a timeline: one drift check each

DURATION = r"^\d+(\.\d+)?[smhd]$"
Duration = Annotated[str, Query(pattern=DURATION, description="a duration: 90s, 15m, 1h, 7d")]
Baseline = Annotated[str | None, Query(
    pattern=DURATION, description="compare with the app's own data of this period before the "
    "checked window (e.g. 7d) instead of a release's build-time reference")]
End = Annotated[float | None, Query(ge=0, le=4_102_444_800,
                                    description="end of the window, unix seconds (default now)")]


def seconds(text: str) -> float:
    """A duration query parameter in seconds; 422 when it cannot be read or is over 400 days."""
    try:
        s = parse_duration(text)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if s > MAX_SECONDS:
        raise HTTPException(422, f"{text!r} is longer than 400 days")
    return s


def span_steps(span: str, step: str) -> tuple[float, float]:
    """A timeline's span and step in seconds; 422 over `MAX_STEPS` steps."""
    span_s, step_s = seconds(span), seconds(step)
    if span_s / step_s > MAX_STEPS:
        raise HTTPException(422, f"{span} in steps of {step} is over {MAX_STEPS} steps")
    return span_s, step_s


def now_or(end: float | None) -> float:
    return time.time() if end is None else end
