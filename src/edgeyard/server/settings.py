"""The service's settings (what `edgeyard serve` takes on its command line)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .store import BUCKET_S


@dataclass
class Settings:
    database: str
    max_body: int = 8 * 1024 * 1024
    max_inflight: int = 128  # concurrent ingests per worker before 503
    rate_per_key: float | None = None  # uploads per second per ingest key (None: no limit)
    bucket_s: int = BUCKET_S
    webhook: str | None = None
    check_every_s: float | None = 300.0  # background drift checks (None: only on request)
    check_window: str = "1h"
    max_series_per_request: int | None = 1_000  # distinct series one request may touch
    max_series_per_app: int | None = 10_000  # distinct series an app may store
    log_refusals_per_s: float = 10.0  # lines a second for refused requests (the rest counted)
    poll_s: float = 300.0  # how often devices ask for their assignment (sent to them)
    rollout_tick_s: float | None = 10.0  # how often the rollout loop wakes (None: off)
    max_release_file: int = 2 * 1024 * 1024 * 1024  # one uploaded release file, bytes
    precompute_every_s: float | None = 30.0  # the leader's look for closed buckets (None: off)
    retention_s: float | None = None  # uploads and aggregates older than this are deleted
    leader_retry_s: float = 5.0  # how often a follower tries to become the leader
    append: bool = True  # requests append windows, the compactor merges them (False: merge inline)
    loop_writer: bool = False  # group commits on the event loop (--commit-on-loop; False: a thread)
    discard: bool = False  # decode and answer, store nothing (the benchmark's null endpoint)
    spool_dir: str | None = None  # acknowledge spoolable uploads from a spool here (spool.py)
    spool_mover_process: bool = False  # the host's mover is a process (serve --workers N)
    # 0: a spooled upload is answered after its fdatasync; else once written to the OS, with an
    # fdatasync every this many seconds (spool.py: what a power loss can take)
    spool_sync_s: float = 0.0
    freeze_heap: bool = False  # gc.freeze() once started (`edgeyard serve`'s processes; app.py)
    extra: dict[str, Any] = field(default_factory=dict)


__all__ = ["Settings"]
