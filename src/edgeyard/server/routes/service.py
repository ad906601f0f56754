"""The service itself.

    GET  /metrics                Prometheus metrics of the worker that answers (no key)
    GET  /healthz                liveness (no key)
    GET  /api/service            the worker that answers, and the leader (admin key)
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response

from .. import fastdecode, leader, partsmerge
from .deps import Admin, EngineDep, MetricsDep

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def prometheus(metrics: MetricsDep) -> Response:
    body, ctype = metrics.exposition()
    return Response(body, media_type=ctype)


@router.get("/healthz", summary="liveness")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/api/service", dependencies=[Admin],
            summary="the worker that answers, and which worker leads the background work")
def service(engine: EngineDep, request: Request) -> dict[str, Any]:
    s = request.app.state
    now = time.time()
    current = leader.current(engine)
    if current is not None:
        current["beat_age_s"] = now - current["beat"]
    return {
        "worker": {"id": leader.worker_id(), "leading": s.leadership.leading,
                   "leading_since": s.leadership.since, "decoder": fastdecode.describe(),
                   "merge": partsmerge.describe()},
        "leader": current,
        "maintenance": {"errors": s.maintenance.errors},
    }
