"""POST /v1/metrics: OTLP/HTTP metrics from devices and OpenTelemetry apps (ingest key).

Every answer is OTLP's: 200 with `partial_success` when points were refused, and every refusal
(401, 403, 413, 415, 429, 503, 500) a `google.rpc.Status` in the request's encoding, never
FastAPI's JSON `detail`; so this route checks its key itself instead of through `deps.device`.
Before the body is read: the key (401), the declared size (413), the key's rate (429) and the
server's load (503); then the body is read (413 over the limit), decoded (on the event loop up
to 64 KiB, else in a thread) and handed to the writer, and answered only once durable: committed
by the group writer, or in the worker's spool (`spool.py`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from .. import decode, fastdecode, store
from ..errors import RefusalLog, status_body
from ..metrics import ServiceMetrics
from ..settings import Settings
from ..writer import GroupWriter
from .deps import KeyCache, key_of, read_capped, unknown_key

router = APIRouter()

INLINE_DECODE = 64 * 1024  # bodies up to this many bytes are decoded on the event loop


class RateLimiter:
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


@router.post("/v1/metrics", summary="OTLP/HTTP metrics export (ingest key)",
             responses={200: {"description": "committed (partial_success when points were "
                                             "rejected)"},
                        400: {"description": "unreadable body (google.rpc.Status)"}, 401: {},
                        403: {}, 413: {}, 415: {}, 429: {}, 500: {}, 503: {}})
async def otlp_metrics(request: Request) -> Response:
    # one parameter, the rest read from the app's state and the headers: FastAPI's dependency
    # solving cost a fifth of this route's time with the parts as dependencies (ingest.md)
    s = request.app.state
    settings: Settings = s.settings
    metrics: ServiceMetrics = s.metrics
    refusals: RefusalLog = s.refusals
    headers = request.headers
    content_type = headers.get("content-type")
    length = headers.get("content-length")
    content_length = int(length) if length and length.isdigit() else None
    t0 = time.perf_counter()
    status = 500
    as_json = decode.is_json(content_type)
    client = request.client.host if request.client else None
    try:
        key, app_name = await _known_key(s.keys, headers.get("authorization"))
        _admit(settings, metrics, s.limiter, s.inflight, key, content_length)
        async with s.inflight:
            body = await read_capped(request, settings.max_body)
            args = (settings, metrics, body, content_type, headers.get("content-encoding"),
                    app_name)
            # a device's window (kilobytes) is decoded on the event loop: handing it to a
            # thread cost more than decoding it (the GIL); a large body goes to a thread
            decoded = _decode(*args) if len(body) <= INLINE_DECODE \
                else await run_in_threadpool(_decode, *args)
            res = await _commit(s.writer, metrics, decoded)
        metrics.ingested(res.new, res.duplicates, res.points, decoded.rejected + res.rejected)
        resp = _answer(decoded, res, as_json)
        status = resp.status_code
        return resp
    except ClientDisconnect:  # the client went before its body arrived: no one to answer
        status = 499
        return Response(status_code=499)
    except HTTPException as exc:
        status = exc.status_code
        refusals.refused(status, "POST", "/v1/metrics", client, str(exc.detail))
        return _otlp_error(status, str(exc.detail), as_json, exc.headers)
    except Exception as exc:
        status = 500
        metrics.rejected("error")
        refusals.failed("POST", "/v1/metrics", client, exc)
        return _otlp_error(500, f"internal error ({type(exc).__name__}); the server logged "
                                "it: please report it", as_json, None)
    finally:
        metrics.request(status, time.perf_counter() - t0)


async def _known_key(keys: KeyCache, authorization: str | None) -> tuple[str, str | None]:
    """The key and the app it may upload for (None: any app); ingest keys upload, and so may
    admin keys."""
    key = key_of(authorization)
    found = keys.get(key)
    if found is None:  # not known recently: ask the database (off the event loop)
        found = await run_in_threadpool(keys.lookup, key)
    if found is None:
        raise unknown_key()
    return key, found[1]


def _admit(settings: Settings, metrics: ServiceMetrics, limiter: RateLimiter | None,
           inflight: asyncio.Semaphore, key: str, content_length: int | None) -> None:
    """Refuse before reading the body: over the size limit, the key's rate or the load."""
    if content_length is not None and content_length > settings.max_body:
        raise HTTPException(413, f"body over the {settings.max_body} byte limit")
    if limiter is not None and (wait := limiter.wait_s(key)) > 0:
        metrics.rejected("rate_limited")
        raise HTTPException(429, "this key is over its upload rate",
                            headers={"Retry-After": str(max(1, round(wait)))})
    if inflight.locked():
        metrics.rejected("saturated")
        raise HTTPException(503, "saturated, retry later", headers={"Retry-After": "1"})


async def _commit(writer: GroupWriter, metrics: ServiceMetrics, decoded: decode.Decoded
                  ) -> store.IngestResult:
    """The decoded uploads, committed (acknowledged only once the commit holding them is done);
    503 when the database is busy."""
    if not decoded.uploads:
        return store.IngestResult()
    try:
        return await asyncio.wrap_future(writer.submit(decoded.uploads))
    except store.Busy:
        metrics.rejected("busy")
        raise HTTPException(503, "the database is busy, retry later",
                            headers={"Retry-After": "1"}) from None


def _decode(settings: Settings, metrics: ServiceMetrics, body: bytes, content_type: str | None,
            content_encoding: str | None, app_name: str | None) -> decode.Decoded:
    try:
        decoded = fastdecode.read(body, content_type, content_encoding, settings.max_body,
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
