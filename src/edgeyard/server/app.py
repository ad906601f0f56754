"""The ingestion and drift service (FastAPI): OTLP/HTTP in, JSON / HTML / Prometheus out.

    POST /v1/metrics             OTLP/HTTP metrics (ingest key)
    POST /api/releases           register a release's manifest and reference (admin key)
    GET  /api/releases           registered releases (admin key)
    GET  /api/apps               every app that uploaded, registered or not (admin key)
    GET  /api/signals            the series an app stores (admin key)
    GET  /api/drift              drift check over a time window (admin key)
    GET  /api/timeline           drift statistics per time step (admin key)
    GET  /api/signal             reference vs production histogram of one signal (admin key)
    GET  /api/findings           findings, newest first (admin key)
    /api/rollouts, /api/stable, /api/releases/.../files, /v1/assignment, /v1/releases/...
                                 releases served to devices and rollouts (rollout_api.py)
    GET  /                       the HTML report (admin key, or the cookie `POST /login` sets)
    GET  /login, POST /login     a form for the admin key; the POST sets the cookie
    GET  /metrics                Prometheus metrics of the service itself (no key)
    GET  /healthz                liveness (no key)

Keys travel as `Authorization: Bearer <key>` (or, for the report, in the cookie that a form POST
to `/login` sets: never in a URL). Ingest keys (devices) may only upload, and only for their app
when they have one; admin keys register releases and read. A missing or unknown key gets 401; a
key of the wrong kind or app gets 403.

Drift is checked against a registered release's build-time reference (`release=`), or against
the app's own data of an earlier period (`baseline=7d`: the 7 days before the checked window),
which is how apps that send plain OpenTelemetry metrics, with no release registered, are
checked.

OTLP answers as the specification says: 200 with `partial_success` (rejected data points and a
message) when some points were refused, 400 for a body that cannot be read, 413 over the size
limit, 415 for another Content-Type, 503 with `Retry-After` when the server is saturated or the
database cannot take the write now, 429 with `Retry-After` when a key sends faster than its rate
limit; every error's body is a `google.rpc.Status` in the request's encoding (`errors.py`), and
each refusal is logged (rate-limited). A 200 is sent only after the uploads are committed to the
database (group commit: concurrent requests share one transaction; one that fails is retried
alone, so that it never fails another: see `writer.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import decode, store
from .errors import RefusalLog, status_body
from .metrics import ServiceMetrics
from .rollout_api import add_routes
from .rollouts import RolloutLoop
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


DURATION = r"^\d+(\.\d+)?[smhd]$"
Duration = Annotated[str, Query(pattern=DURATION, description="a duration: 90s, 15m, 1h, 7d")]
Baseline = Annotated[str | None, Query(
    pattern=DURATION, description="compare with the app's own data of this period before the "
    "checked window (e.g. 7d) instead of a release's build-time reference")]
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
    max_series_per_request: int | None = 1_000  # distinct series one request may touch
    max_series_per_app: int | None = 10_000  # distinct series an app may store
    log_refusals_per_s: float = 10.0  # lines a second for refused requests (the rest counted)
    poll_s: float = 300.0  # how often devices ask for their assignment (sent to them)
    rollout_tick_s: float | None = 10.0  # how often the rollout loop wakes (None: off)
    max_release_file: int = 2 * 1024 * 1024 * 1024  # one uploaded release file, bytes
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
    writer = GroupWriter(engine, settings.bucket_s,
                         limits=store.Limits(series_per_app=settings.max_series_per_app),
                         metrics=metrics)
    limiter = _RateLimiter(settings.rate_per_key) if settings.rate_per_key else None
    keys = _KeyCache(engine)
    inflight = asyncio.Semaphore(settings.max_inflight)
    refusals = RefusalLog(settings.log_refusals_per_s)
    rollout_loop = RolloutLoop(engine, watch, settings.webhook)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.check_every_s:
            watch.start_background(settings.check_every_s, parse_duration(settings.check_window))
        if settings.rollout_tick_s:
            rollout_loop.start_background(settings.rollout_tick_s)
        try:
            yield
        finally:
            rollout_loop.stop_background()
            watch.stop_background()
            writer.close()

    app = FastAPI(title="edgeyard telemetry", version="1", lifespan=lifespan,
                  description="Telemetry ingestion (OTLP/HTTP) and drift checks for edgeyard "
                              "releases and OpenTelemetry apps.")
    app.state.engine, app.state.watch, app.state.metrics = engine, watch, metrics
    app.state.writer, app.state.rollouts = writer, rollout_loop

    def client_of(request: Request) -> str | None:
        return request.client.host if request.client else None

    @app.exception_handler(StarletteHTTPException)
    async def logged_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if 400 <= exc.status_code < 500:
            refusals.refused(exc.status_code, request.method, request.url.path,
                             client_of(request), str(exc.detail))
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def logged_validation_error(request: Request, exc: RequestValidationError
                                      ) -> Response:
        refusals.refused(422, request.method, request.url.path, client_of(request),
                         "; ".join(str(e.get("msg", e)) for e in exc.errors()[:3]))
        return await request_validation_exception_handler(request, exc)

    @app.exception_handler(Exception)
    async def logged_internal_error(request: Request, exc: Exception) -> Response:
        refusals.failed(request.method, request.url.path, client_of(request), exc)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); the server "
                                       "logged it: please report it"}, status_code=500)

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

    def device(authorization: Annotated[str | None, Header()] = None) -> str | None:
        """A device's key (ingest, or admin): the app it is for, None for any app."""
        found = keys.get(key := key_of(authorization)) or keys.lookup(key)
        if found is None:
            raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
        return found[1]

    add_routes(app, engine, admin, device, _read_capped, poll_s=settings.poll_s,
               max_file=settings.max_release_file, loop=rollout_loop)

    @app.post("/v1/metrics", summary="OTLP/HTTP metrics export (ingest key)",
              responses={200: {"description": "committed (partial_success when points were "
                                              "rejected)"},
                         400: {"description": "unreadable body (google.rpc.Status)"}, 401: {},
                         403: {}, 413: {}, 415: {}, 429: {}, 500: {}, 503: {}})
    async def otlp_metrics(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        content_type: Annotated[str | None, Header()] = None,
        content_encoding: Annotated[str | None, Header()] = None,
        content_length: Annotated[int | None, Header()] = None,
    ) -> Response:
        t0 = time.perf_counter()
        status = 500
        as_json = decode.is_json(content_type)
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
                    try:  # acknowledged only once the commit holding it is done
                        res = await asyncio.wrap_future(writer.submit(decoded.uploads))
                    except store.Busy:
                        metrics.rejected("busy")
                        raise HTTPException(503, "the database is busy, retry later",
                                            headers={"Retry-After": "1"}) from None
            metrics.ingested(res.new, res.duplicates, res.points,
                             decoded.rejected + res.rejected)
            resp = _answer(decoded, res, as_json)
            status = resp.status_code
            return resp
        except HTTPException as exc:
            status = exc.status_code
            refusals.refused(status, "POST", "/v1/metrics", client_of(request), str(exc.detail))
            return _otlp_error(status, str(exc.detail), as_json, exc.headers)
        except Exception as exc:
            status = 500
            metrics.rejected("error")
            refusals.failed("POST", "/v1/metrics", client_of(request), exc)
            return _otlp_error(500, f"internal error ({type(exc).__name__}); the server logged "
                                    "it: please report it", as_json, None)
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

    @app.get("/api/apps", dependencies=[Admin],
             summary="every app that uploaded, per release, registered or not")
    def list_apps() -> list[dict[str, Any]]:
        return store.apps(engine)

    @app.get("/api/signals", dependencies=[Admin], summary="the series an app stores")
    def list_signals(model: str) -> list[dict[str, Any]]:
        return store.series_list(engine, model)

    def target(model: str, release: str | None, baseline: str | None, ref_end: float
               ) -> store.ReleaseRecord:
        """The reference: a registered release's, or the app's own data before `ref_end`."""
        if baseline is not None:
            seconds = _duration(baseline)
            return store.baseline_record(engine, model, release, ref_end - seconds, ref_end)
        if release is None:
            raise HTTPException(422, "give release= (checked against its build-time "
                                "reference) or baseline= (against the app's own data of an "
                                "earlier period, e.g. baseline=7d)")
        return _release(engine, model, release)

    def now_or(end: float | None) -> float:
        return time.time() if end is None else end

    @app.get("/api/drift", dependencies=[Admin], summary="drift check over a time window")
    def drift(model: str, release: str | None = None, window: Duration = "1h",
              profile: str | None = None, end: End = None, alert: bool = False,
              baseline: Baseline = None) -> dict[str, Any]:
        end_s, window_s = now_or(end), _duration(window)
        rec = target(model, release, baseline, end_s - window_s)
        return watch.check(rec, window_s, end=end_s, profile=profile, alert=alert)

    @app.get("/api/timeline", dependencies=[Admin], summary="drift statistics per time step")
    def timeline(model: str, release: str | None = None, span: Duration = "24h",
                 step: Duration = "1h", end: End = None, baseline: Baseline = None
                 ) -> dict[str, Any]:
        span_s, step_s, end_s = _duration(span), _duration(step), now_or(end)
        if span_s / step_s > 500:
            raise HTTPException(422, f"{span} in steps of {step} is over 500 steps")
        rec = target(model, release, baseline, end_s - span_s)
        return watch.timeline(rec, span_s, step_s, end=end_s)

    @app.get("/api/signal", dependencies=[Admin], summary="one signal: reference vs production")
    def signal(model: str, name: str, release: str | None = None, window: Duration = "1h",
               end: End = None, baseline: Baseline = None) -> dict[str, Any]:
        end_s, window_s = now_or(end), _duration(window)
        rec = target(model, release, baseline, end_s - window_s)
        try:
            return watch.signal(rec, name, window_s, end=end_s)
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None

    @app.get("/api/findings", dependencies=[Admin], summary="findings, newest first")
    def list_findings(model: str | None = None) -> list[dict[str, Any]]:
        return store.findings_of(engine, model)

    @app.get("/login", include_in_schema=False)
    def login_form(next: str = "/") -> HTMLResponse:
        return HTMLResponse(_login_page(_local(next)))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request, authorization: Annotated[str | None, Header()] = None
                    ) -> Response:
        """The admin key from the form (`key`, url-encoded) or `Authorization: Bearer`; on
        success a cookie (HttpOnly, SameSite=Strict) and a redirect to `next`."""
        body = await _read_capped(request, 8192)
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
        except ValueError:
            raise HTTPException(400, "not a login form") from None
        key = (form.get("key") or [""])[0].strip()
        if not key and authorization and authorization.lower().startswith("bearer "):
            key = authorization[7:].strip()
        if not key:
            raise HTTPException(401, "an admin key is required: the form's `key` field or "
                                "Authorization: Bearer <key>")
        found = await run_in_threadpool(store.lookup_key, engine, key)
        if found is None or found[0] != "admin":
            raise HTTPException(401, "unknown admin key")
        resp = RedirectResponse(_local((form.get("next") or ["/"])[0]), status_code=303)
        resp.set_cookie("edgeyard_key", key, httponly=True, samesite="strict")
        return resp

    @app.get("/", dependencies=[Admin], response_class=HTMLResponse, summary="HTML report")
    def report(model: str | None = None, release: str | None = None, window: Duration = "1h",
               end: End = None, span: Duration = "24h", step: Duration = "1h",
               baseline: Baseline = None) -> HTMLResponse:
        from .report import render

        span_s, step_s = _duration(span), _duration(step)
        if span_s / step_s > 500:
            raise HTTPException(422, f"{span} in steps of {step} is over 500 steps")
        return HTMLResponse(render(watch, model, release, _duration(window), end, span_s, step_s,
                                   baseline_s=_duration(baseline) if baseline else None))

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        body, ctype = metrics.exposition()
        return Response(body, media_type=ctype)

    @app.get("/healthz", summary="liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _local(next_url: str) -> str:
    """`next_url` if it is a page of this site, else "/"."""
    if not next_url.startswith("/") or next_url.startswith("//") or "\\" in next_url:
        return "/"
    return next_url


def _login_page(next_url: str) -> str:
    return ('<!doctype html><html><head><meta charset="utf-8"><title>edgeyard: log in</title>'
            '</head><body style="font:14px system-ui,sans-serif;margin:24px">'
            '<h1 style="font-size:20px">edgeyard drift report</h1>'
            '<form method="post" action="/login"><label>Admin key '
            '<input type="password" name="key" autocomplete="current-password" autofocus>'
            f'</label><input type="hidden" name="next" value="{html.escape(next_url)}"> '
            '<button type="submit">Log in</button></form>'
            '<p style="color:#555">The key is kept in an HttpOnly cookie; it never travels in '
            'a URL.</p></body></html>')


def _release(engine: Engine, model: str, version: str) -> store.ReleaseRecord:
    rec = store.release(engine, model, version)
    if rec is None:
        known = ", ".join(f"{r['model']} {r['release']}" for r in store.releases(engine)) or "none"
        raise HTTPException(404, f"release {model} {version} is not registered (registered: "
                            f"{known}); run `edgeyard releases register <release dir>`, or "
                            "compare with the app's own earlier data: baseline=7d")
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
        decoded = decode.read(body, content_type, content_encoding, settings.max_body,
                              settings.max_series_per_request)
    except decode.TooLarge as exc:
        metrics.rejected("too_large")
        raise HTTPException(413, str(exc)) from None
    except decode.UnsupportedMediaType as exc:
        metrics.rejected("media_type")
        raise HTTPException(415, str(exc)) from None
    except decode.BadRequest as exc:
        metrics.rejected("malformed")
        raise HTTPException(400, str(exc)) from None
    if app_name is not None:
        others = sorted({u.model for u in decoded.uploads if u.model != app_name})
        if others:
            metrics.rejected("forbidden")
            raise HTTPException(403, f"this ingest key is for {app_name!r}, not {others}")
    return decoded


def _otlp_error(status: int, message: str, as_json: bool, headers: Mapping[str, str] | None
                ) -> Response:
    body, media = status_body(status, message, as_json)
    return Response(body, status_code=status, media_type=media, headers=headers)


def _answer(decoded: decode.Decoded, res: store.IngestResult, as_json: bool) -> Response:
    """The OTLP response, in the request's encoding (partial_success when points were
    rejected, by the decoder or by the store)."""
    rejected = decoded.rejected + res.rejected
    errors = list(dict.fromkeys(decoded.errors + res.errors))[:10]
    message = decode.safe_text("; ".join(errors))
    if as_json:
        out: dict[str, Any] = {}
        if rejected:
            out["partialSuccess"] = {"rejectedDataPoints": str(rejected),
                                     "errorMessage": message}
        return JSONResponse(out)
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as svc

    msg = svc.ExportMetricsServiceResponse()
    if rejected:
        msg.partial_success.rejected_data_points = rejected
        msg.partial_success.error_message = message
    return Response(msg.SerializeToString(), media_type="application/x-protobuf")


__all__ = ["Settings", "create_app"]
