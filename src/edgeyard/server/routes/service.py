"""The service itself (no key).

    GET  /metrics                Prometheus metrics of the service
    GET  /healthz                liveness
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from .deps import MetricsDep

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def prometheus(metrics: MetricsDep) -> Response:
    body, ctype = metrics.exposition()
    return Response(body, media_type=ctype)


@router.get("/healthz", summary="liveness")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
