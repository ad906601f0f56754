"""The service's routes, one `APIRouter` per concern; `create_app` (`app.py`) includes `ROUTERS`
and keeps what they share on `app.state` (`deps.py`)."""

from __future__ import annotations

from fastapi import APIRouter

from . import drift, ingest, releases, report, rollouts, service

ROUTERS: tuple[APIRouter, ...] = (releases.router, rollouts.router, ingest.router, drift.router,
                                  report.router, service.router)

__all__ = ["ROUTERS"]
