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
                                 releases served to devices and rollouts
    GET  /                       the HTML report (admin key, or the cookie `POST /login` sets)
    GET  /login, POST /login     a form for the admin key; the POST sets the cookie
    GET  /metrics                Prometheus metrics of the worker that answers (no key)
    GET  /api/service            the worker that answers and the leader (admin key)
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
each refusal is logged (rate-limited). A 200 is sent only once the uploads are durable: committed
to the database (group commit: concurrent requests share one transaction; one that fails is
retried alone, so that it never fails another: see `writer.py`), or, with a spool
(`Settings.spool_dir`, `edgeyard serve`'s default on SQLite), in the worker's spool file after
its `fdatasync` when the database is sure to take them as they are; a mover stores those behind
the answers (`spool.py`). The commit appends the windows; the compactor (`compactor.py`) merges
them into the aggregates, and reads move what is spooled and merge what is pending first.

Several workers serve one port (`workers.py`); the background work runs on the leader
(`leader.py`): scheduled checks, rollout decisions, drift results computed ahead and retention
(`precompute.py`).

The routes live in `routes/`, one `APIRouter` per concern (ingest, releases, rollouts, drift,
report, service); what they share is on `app.state` and reaches them as FastAPI dependencies
(`routes/deps.py`). `create_app` builds that state, includes the routers and installs the
handlers that log every refused request.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from . import store
from .compactor import Compactor
from .errors import RefusalLog
from .leader import Leadership
from .metrics import ServiceMetrics
from .precompute import Maintenance
from .rollouts import RolloutLoop
from .routes import ROUTERS
from .routes.deps import KeyCache
from .routes.ingest import RateLimiter, otlp_metrics
from .settings import Settings
from .spool import Mover, Spool, drain
from .watch import Watch, parse_duration
from .writer import DiscardWriter, GroupWriter, LoopWriter, SpoolWriter


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The service. Without `engine`, one is made from `settings.database` and migrated; an
    engine passed in must already be migrated (`db.migrate`), as `edgeyard serve` does."""
    from . import db

    if engine is None:
        engine = db.make_engine(settings.database)
        db.migrate(engine)
    app = _Service(title="edgeyard telemetry", version="1", lifespan=_lifespan,
                  description="Telemetry ingestion (OTLP/HTTP) and drift checks for edgeyard "
                              "releases and OpenTelemetry apps.")
    _set_state(app, settings, engine)
    for router in ROUTERS:
        app.include_router(router)
    # Starlette types a handler as taking any Exception; each is called with its own type only
    app.add_exception_handler(StarletteHTTPException, _logged_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError,
                              _logged_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _logged_internal_error)
    return app


def _set_state(app: FastAPI, settings: Settings, engine: Engine) -> None:
    """The parts the routes share (`routes/deps.py` hands them out)."""
    s = app.state
    s.settings, s.engine = settings, engine
    s.metrics = metrics = ServiceMetrics()
    s.watch = Watch(engine, webhook=settings.webhook, metrics=metrics, bucket_s=settings.bucket_s)
    limits = store.Limits(series_per_app=settings.max_series_per_app)
    writer = LoopWriter if settings.loop_writer else GroupWriter
    s.mover = None
    if settings.discard:
        s.writer = DiscardWriter()
    elif settings.spool_dir and settings.append:
        root = Path(settings.spool_dir)
        own = Spool(root, sync_every_s=settings.spool_sync_s)
        mover = Mover(engine, root, limits, own=own)
        s.writer = SpoolWriter(engine, own, mover.wake, settings.bucket_s, limits=limits,
                               metrics=metrics)
        s.mover = None if settings.spool_mover_process else mover
        store.before_settle(engine, lambda: drain(engine, root, limits))
    else:
        s.writer = writer(engine, settings.bucket_s, limits=limits, metrics=metrics,
                          append=settings.append)
    s.compactor = Compactor(engine)
    s.rollouts = RolloutLoop(engine, s.watch, settings.webhook)
    s.keys = KeyCache(engine)
    s.limiter = RateLimiter(settings.rate_per_key) if settings.rate_per_key else None
    s.inflight = asyncio.Semaphore(settings.max_inflight)
    s.refusals = RefusalLog(settings.log_refusals_per_s)
    s.maintenance = Maintenance(engine, s.watch, settings.bucket_s,
                                retention_s=settings.retention_s)
    s.leadership = _background(app)


class _Service(FastAPI):
    """The service's app: `POST /v1/metrics` is handed to its route function at once, before
    FastAPI's and Starlette's middleware (error pages, telemetry, body limit), the router (some
    30 routes matched in turn), dependency solving and the exit-stack middleware. The route
    answers every outcome itself (OTLP's status bodies: it never raises), caps the body it
    reads, and logs its refusals and failures; it stays in the router for the API schema.
    In process, the null endpoint's app spends 1.61 times the CPU per upload through FastAPI's
    router and 1.05 times from a middleware inside FastAPI's stack, 785 Python calls per
    upload against 1,386 and 819 (benchmarks/ingest_app.py)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" \
                and scope["path"] == "/v1/metrics":
            scope["app"] = self  # what Request.app reads
            response = await otlp_metrics(Request(scope, receive))
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    s = app.state
    s.leadership.start()
    if s.settings.append and not s.settings.discard:
        s.compactor.start()
    if s.mover is not None:
        s.mover.start()
    if not s.settings.discard or s.settings.freeze_heap:
        threading.Thread(target=_warm_up, args=(not s.settings.discard, s.settings.freeze_heap),
                         name="edgeyard-warm-up", daemon=True).start()
    try:
        yield
    finally:
        s.leadership.stop()
        s.writer.close()
        if s.mover is not None:
            s.mover.stop()  # moves what is left, then lets the spool go
        s.compactor.stop()


def _warm_up(bundle: bool, freeze: bool) -> None:
    """What a started worker does once, in the background: bundle the report's chart library
    now (seconds, once per process) rather than in the first request for the page (a missing
    extra shows itself when the page is asked for); then, for `edgeyard serve`, collect and
    freeze the heap. The service's ~150,000 long-lived objects (modules, FastAPI's routes,
    SQLAlchemy's caches) are then left out of the garbage collector's full passes, which
    stopped a worker for 40-100 ms three times in 5 s under 64 connections (in one pair of
    64-connection runs the p99 latency went from 148 to 55 ms). Not in tests' apps: a test
    process's objects would never be collected."""
    if bundle:
        try:
            from . import charts, report  # noqa: F401

            charts.javascript()
        except Exception:  # the page's own request reports it
            pass
    if freeze:
        gc.collect()
        gc.freeze()


def _background(app: FastAPI) -> Leadership:
    """The background work (scheduled checks, rollout decisions, precomputed drift results,
    retention), run by whichever worker leads (`leader.py`)."""
    s = app.state
    settings: Settings = s.settings

    def gain() -> None:
        if settings.check_every_s:
            s.watch.start_background(settings.check_every_s,
                                     parse_duration(settings.check_window))
        if settings.rollout_tick_s:
            s.rollouts.start_background(settings.rollout_tick_s)
        if settings.precompute_every_s:
            s.maintenance.start_background(settings.precompute_every_s)

    def lose() -> None:
        s.maintenance.stop_background()
        s.rollouts.stop_background()
        s.watch.stop_background()

    return Leadership(s.engine, gain, lose, retry_s=settings.leader_retry_s)


# --- every refused request is logged (rate-limited: `errors.RefusalLog`) ----------------------


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _logged_http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if 400 <= exc.status_code < 500:
        request.app.state.refusals.refused(exc.status_code, request.method, request.url.path,
                                           _client(request), str(exc.detail))
    return await http_exception_handler(request, exc)


async def _logged_validation_error(request: Request, exc: RequestValidationError
                                   ) -> Response:
    request.app.state.refusals.refused(
        422, request.method, request.url.path, _client(request),
        "; ".join(str(e.get("msg", e)) for e in exc.errors()[:3]))
    return await request_validation_exception_handler(request, exc)


async def _logged_internal_error(request: Request, exc: Exception) -> Response:
    request.app.state.refusals.failed(request.method, request.url.path, _client(request), exc)
    return JSONResponse({"detail": f"internal error ({type(exc).__name__}); the server "
                                   "logged it: please report it"}, status_code=500)


__all__ = ["Settings", "create_app"]
