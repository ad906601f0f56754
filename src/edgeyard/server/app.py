"""The ingestion and drift service (FastAPI): OTLP/HTTP in, JSON / HTML / Prometheus out.

    POST /v1/metrics             OTLP/HTTP metrics (ingest key)
    POST /api/releases           register a release's manifest and reference (admin key)
    GET  /api/releases           registered releases (admin key)
    GET  /api/drift              drift check of a release over a time window (admin key)
    GET  /api/timeline           drift statistics per time step (admin key)
    GET  /api/signal             reference vs production histogram of one signal (admin key)
    GET  /api/findings           findings, newest first (admin key)
    GET  /                       the HTML report (admin key, or the cookie `/login` sets)
    GET  /metrics                Prometheus metrics of the service itself (no key)
    GET  /healthz                liveness (no key)

Keys travel as `Authorization: Bearer <key>`. Ingest keys (devices) may only upload, and only
for their app when they have one; admin keys register releases and read. A missing or unknown
key gets 401; a key of the wrong kind or app gets 403.

OTLP answers as the specification says: 200 with `partial_success` (rejected data points and a
message) when some points were refused, 400 for a body that cannot be read, 413 over the size
limit, 415 for another content type, 503 with `Retry-After` when the server is saturated or the
database cannot take the write now, 429 with `Retry-After` when a key sends faster than its rate
limit. A 200 is sent only after the uploads are committed to the database (group commit: concurrent
requests share one transaction, see `writer.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from sqlalchemy import Engine

from . import decode, store
from .metrics import ServiceMetrics
from .watch import Watch, parse_duration
from .writer import GroupWriter

MAX_SECONDS = 400 * 86400.0


def _duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if seconds > MAX_SECONDS:
        raise HTTPException(422, f"{text!r} is longer than 400 days")
    return seconds


Duration = Annotated[str, Query(pattern=r"^\d+(\.\d+)?[smhd]$",
                                description="a duration: 90s, 15m, 1h, 7d")]
End = Annotated[float | None, Query(ge=0, le=4_102_444_800,
                                    description="end of the window, unix seconds (default now)")]


@dataclass
class Settings:
    database: str
    max_body: int = 8 * 1024 * 1024
    max_inflight: int = 32  # concurrent ingests before 503
    rate_per_key: float | None = None  # uploads per second per ingest key (None: no limit)
    bucket_s: int = store.BUCKET_S
    webhook: str | None = None
    check_every_s: float | None = 300.0  # background drift checks (None: only on request)
    check_window: str = "1h"
    extra: dict[str, Any] = field(default_factory=dict)


class _RateLimiter:
    """A token bucket per key: `rate` per second, bursts of 2 s worth."""

    def __init__(self, rate: float) -> None:
        self.rate, self.burst = rate, max(1.0, 2 * rate)
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait_s(self, key: str) -> float:
        now = time.monotonic()
        with self._lock:
            tokens, t = self._state.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - t) * self.rate)
            if tokens >= 1:
                self._state[key] = (tokens - 1, now)
                return 0.0
            self._state[key] = (tokens, now)
            return (1 - tokens) / self.rate


class _KeyCache:
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


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The service. Without `engine`, one is made from `settings.database` and migrated; an
    engine passed in must already be migrated (`db.migrate`), as `edgeyard serve` does."""
    from . import db

    if engine is None:
        engine = db.make_engine(settings.database)
        db.migrate(engine)
    metrics = ServiceMetrics()
    watch = Watch(engine, webhook=settings.webhook, metrics=metrics)
    writer = GroupWriter(engine, settings.bucket_s)
    limiter = _RateLimiter(settings.rate_per_key) if settings.rate_per_key else None
    keys = _KeyCache(engine)
    inflight = asyncio.Semaphore(settings.max_inflight)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.check_every_s:
            watch.start_background(settings.check_every_s, parse_duration(settings.check_window))
        try:
            yield
        finally:
            watch.stop_background()
            writer.close()

    app = FastAPI(title="edgeyard telemetry", version="1", lifespan=lifespan,
                  description="Telemetry ingestion (OTLP/HTTP) and drift checks for edgeyard "
                              "releases.")
    app.state.engine, app.state.watch, app.state.metrics = engine, watch, metrics

    def key_of(authorization: str | None, cookie: str | None = None) -> str:
        if authorization and authorization.lower().startswith("bearer "):
            return authorization[7:].strip()
        if cookie:
            return cookie
        raise HTTPException(401, "an API key is required: Authorization: Bearer <key>",
                            headers={"WWW-Authenticate": "Bearer"})

    def admin(request: Request,
              authorization: Annotated[str | None, Header()] = None) -> None:
        key = key_of(authorization, request.cookies.get("edgeyard_key"))
        found = keys.get(key) or keys.lookup(key)
        if found is None:
            raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
        if found[0] != "admin":
            raise HTTPException(403, "this is an ingest key: reading and registering need an "
                                "admin key")

    Admin = Depends(admin)

    @app.post("/v1/metrics", summary="OTLP/HTTP metrics export (ingest key)",
              responses={200: {"description": "committed (partial_success when points were "
                                              "rejected)"},
                         400: {"description": "unreadable body"}, 401: {}, 403: {}, 413: {},
                         415: {}, 429: {}, 503: {}})
    async def otlp_metrics(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        content_type: Annotated[str | None, Header()] = None,
        content_encoding: Annotated[str | None, Header()] = None,
        content_length: Annotated[int | None, Header()] = None,
    ) -> Response:
        t0 = time.perf_counter()
        status = 500
        try:
            key = key_of(authorization)
            found = keys.get(key)
            if found is None:  # not known recently: ask the database (off the event loop)
                found = await run_in_threadpool(keys.lookup, key)
            if found is None:
                raise HTTPException(401, "unknown API key",
                                    headers={"WWW-Authenticate": "Bearer"})
            _, app_name = found  # ingest keys upload; so may admin keys
            if content_length is not None and content_length > settings.max_body:
                raise HTTPException(413, f"body over the {settings.max_body} byte limit")
            if limiter is not None and (wait := limiter.wait_s(key)) > 0:
                metrics.rejected("rate_limited")
                raise HTTPException(429, "this key is over its upload rate",
                                    headers={"Retry-After": str(max(1, round(wait)))})
            if inflight.locked():
                metrics.rejected("saturated")
                raise HTTPException(503, "saturated, retry later", headers={"Retry-After": "1"})
            async with inflight:
                body = await _read_capped(request, settings.max_body)
                decoded = await run_in_threadpool(_decode, settings, metrics, body,
                                                  content_type, content_encoding, app_name)
                res = store.IngestResult()
                if decoded.uploads:
                    try:  # acknowledged only once the group commit holding it is done
                        res = await asyncio.wrap_future(writer.submit(decoded.uploads))
                    except store.Busy:
                        metrics.rejected("busy")
                        raise HTTPException(503, "the database is busy, retry later",
                                            headers={"Retry-After": "1"}) from None
            metrics.ingested(res.new, res.duplicates, res.points, decoded.rejected)
            resp = _answer(decoded, content_type)
            status = resp.status_code
            return resp
        except HTTPException as exc:
            status = exc.status_code
            raise
        finally:
            metrics.request(status, time.perf_counter() - t0)

    @app.post("/api/releases", dependencies=[Admin], summary="register a release")
    def register(payload: Annotated[dict[str, Any], Body(
            description='{"manifest": <release.json>, "reference": <telemetry/reference.json>}')]
                 ) -> dict[str, str]:
        try:
            model, version = store.register_release(engine, payload["manifest"],
                                                    payload["reference"])
        except (KeyError, TypeError, ValueError) as exc:
            raise HTTPException(422, f"not a release: {exc!s}") from None
        return {"model": model, "release": version}

    @app.get("/api/releases", dependencies=[Admin], summary="registered releases")
    def list_releases() -> list[dict[str, Any]]:
        return store.releases(engine)

    @app.get("/api/drift", dependencies=[Admin], summary="drift check over a time window")
    def drift(model: str, release: str, window: Duration = "1h", profile: str | None = None,
              end: End = None, alert: bool = False) -> dict[str, Any]:
        rec = _release(engine, model, release)
        return watch.check(rec, _duration(window), end=end, profile=profile, alert=alert)

    @app.get("/api/timeline", dependencies=[Admin], summary="drift statistics per time step")
    def timeline(model: str, release: str, span: Duration = "24h", step: Duration = "1h",
                 end: End = None) -> dict[str, Any]:
        rec = _release(engine, model, release)
        span_s, step_s = _duration(span), _duration(step)
        if span_s / step_s > 500:
            raise HTTPException(422, f"{span} in steps of {step} is over 500 steps")
        return watch.timeline(rec, span_s, step_s, end=end)

    @app.get("/api/signal", dependencies=[Admin], summary="one signal: reference vs production")
    def signal(model: str, release: str, name: str, window: Duration = "1h",
               end: End = None) -> dict[str, Any]:
        rec = _release(engine, model, release)
        try:
            return watch.signal(rec, name, _duration(window), end=end)
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None

    @app.get("/api/findings", dependencies=[Admin], summary="findings, newest first")
    def list_findings(model: str | None = None) -> list[dict[str, Any]]:
        return store.findings_of(engine, model)

    @app.get("/login", include_in_schema=False)
    def login(key: str, next: str = "/") -> Response:
        found = store.lookup_key(engine, key)
        if found is None or found[0] != "admin":
            raise HTTPException(401, "unknown admin key")
        if not next.startswith("/") or next.startswith("//"):  # this site's pages only
            next = "/"
        resp = RedirectResponse(next, status_code=303)
        resp.set_cookie("edgeyard_key", key, httponly=True, samesite="strict")
        return resp

    @app.get("/", dependencies=[Admin], response_class=HTMLResponse, summary="HTML report")
    def report(model: str | None = None, release: str | None = None, window: Duration = "1h",
               end: End = None, span: Duration = "24h", step: Duration = "1h") -> HTMLResponse:
        from .report import render

        span_s, step_s = _duration(span), _duration(step)
        if span_s / step_s > 500:
            raise HTTPException(422, f"{span} in steps of {step} is over 500 steps")
        return HTMLResponse(render(watch, model, release, _duration(window), end, span_s, step_s))

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        body, ctype = metrics.exposition()
        return Response(body, media_type=ctype)

    @app.get("/healthz", summary="liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _release(engine: Engine, model: str, version: str) -> store.ReleaseRecord:
    rec = store.release(engine, model, version)
    if rec is None:
        known = ", ".join(f"{r['model']} {r['release']}" for r in store.releases(engine)) or "none"
        raise HTTPException(404, f"release {model} {version} is not registered (registered: "
                            f"{known}); run `edgeyard releases register <release dir>`")
    return rec


async def _read_capped(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body over the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(settings: Settings, metrics: ServiceMetrics, body: bytes, content_type: str | None,
            content_encoding: str | None, app_name: str | None) -> decode.Decoded:
    try:
        decoded = decode.read(body, content_type, content_encoding, settings.max_body)
    except decode.TooLarge as exc:
        metrics.rejected("too_large")
        raise HTTPException(413, str(exc)) from None
    except decode.BadRequest as exc:
        metrics.rejected("malformed")
        code = 415 if "Content-Type" in str(exc) else 400
        raise HTTPException(code, str(exc)) from None
    if app_name is not None:
        others = sorted({u.model for u in decoded.uploads if u.model != app_name})
        if others:
            metrics.rejected("forbidden")
            raise HTTPException(403, f"this ingest key is for {app_name!r}, not {others}")
    return decoded


def _answer(decoded: decode.Decoded, content_type: str | None) -> Response:
    """The OTLP response, in the request's encoding (partial_success when points were
    rejected)."""
    out: dict[str, Any] = {}
    if decoded.rejected:
        out["partialSuccess"] = {"rejectedDataPoints": str(decoded.rejected),
                                 "errorMessage": "; ".join(decoded.errors)}
    if (content_type or "").split(";")[0].strip().lower() == "application/json":
        return JSONResponse(out)
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as svc

    msg = svc.ExportMetricsServiceResponse()
    if decoded.rejected:
        msg.partial_success.rejected_data_points = decoded.rejected
        msg.partial_success.error_message = "; ".join(decoded.errors)
    return Response(msg.SerializeToString(), media_type="application/x-protobuf")


__all__ = ["Settings", "create_app"]
