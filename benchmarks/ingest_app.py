"""What the service's app costs per upload, in process (no sockets), by how a request reaches
the ingest route.

Method
- Uploads: the ingestion benchmark's 20-signal collector windows (`benchmarks/ingest.py`:
  synthetic, seeded; 64 bodies), posted as OTLP/HTTP protobuf with an ingest key.
- The app: `create_app` on a fresh SQLite database with `discard=True` (the null endpoint: the
  same key check, limits and decoding, nothing stored), driven by calling it as ASGI on one
  event loop, the way uvicorn calls it (no sockets, no HTTP parsing).
- Three ways in, each an app of its own in the same process:
  - `direct`: the service's own app (`app._Service`: the route called before any middleware);
  - `middleware`: the route called from a middleware inside FastAPI's stack (the way before);
  - `router`: FastAPI's full path (middleware, router, the route's dependency solving).
- Timed: CPU time of the loop's thread (`time.thread_time`) over blocks of `--block` requests
  (100), the three ways alternating block by block, `--rounds` blocks each (40), after 200
  requests of warm-up each. Reported: each way's median µs per request over its blocks, and
  the median of the per-round ratios against `direct` (a slower or faster spell of the shared
  machine falls on the three alike). Also the Python function calls per request (`cProfile`,
  exact: the machine's speed does not change them).
- The machine: 2 shared cores; nothing else runs beside it.

    python benchmarks/ingest_app.py [--rounds 40] [--block 100]

Writes benchmarks/results/ingest_app.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WAYS = ("direct", "middleware", "router")


def apps(tmp: Path) -> tuple[dict[str, Any], str]:
    """The three apps (see the module docstring) and an ingest key."""
    from fastapi import FastAPI, Request

    from edgeyard.server import db, store
    from edgeyard.server.app import Settings, create_app
    from edgeyard.server.routes.ingest import otlp_metrics

    url = f"sqlite:///{tmp / 'edgeyard.db'}"
    engine = db.make_engine(url)
    db.migrate(engine)
    key = store.create_key(engine, "ingest")
    settings = Settings(database=url, check_every_s=None, discard=True, rollout_tick_s=0)

    class InMiddleware:  # the route called from a middleware inside FastAPI's stack
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"] == "/v1/metrics":
                response = await otlp_metrics(Request(scope, receive))
                await response(scope, receive, send)
                return
            await self.app(scope, receive, send)

    out: dict[str, Any] = {"direct": create_app(settings, engine)}
    for way in ("middleware", "router"):
        app = create_app(settings, engine)
        plain = FastAPI.__new__(FastAPI)  # the same app, called as a plain FastAPI
        plain.__dict__ = app.__dict__
        if way == "middleware":
            plain.add_middleware(InMiddleware)
        out[way] = plain
    return out, key


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--block", type=int, default=100)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ingest

    tmp = Path(tempfile.mkdtemp(prefix="edgeyard-ingest-app-"))
    ways, key = apps(tmp)
    rng = np.random.default_rng(0)
    bodies = [ingest.otlp.join([ingest.window(rng, time.time_ns())]) for _ in range(64)]
    head = [(b"content-type", b"application/x-protobuf"),
            (b"authorization", f"Bearer {key}".encode())]

    async def post(app: Any, body: bytes) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/v1/metrics",
                 "raw_path": b"/v1/metrics", "query_string": b"", "root_path": "",
                 "headers": [*head, (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {}}
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)  # a disconnect is never asked for here
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(f"{sent[0]['status']}: {sent[-1].get('body')!r}")

    async def run() -> dict[str, Any]:
        per_block: dict[str, list[float]] = {w: [] for w in WAYS}
        calls: dict[str, float] = {}
        async with contextlib.AsyncExitStack() as started:  # each app's lifespan
            for way in WAYS:
                await started.enter_async_context(ways[way].router.lifespan_context(ways[way]))
            for way in WAYS:
                for i in range(200):
                    await post(ways[way], bodies[i % 64])
            for r in range(args.rounds):
                for way in WAYS:
                    t = time.thread_time()
                    for i in range(args.block):
                        await post(ways[way], bodies[(r * args.block + i) % 64])
                    per_block[way].append((time.thread_time() - t) / args.block * 1e6)
            for way in WAYS:
                prof = cProfile.Profile()
                prof.enable()
                for i in range(args.block):
                    await post(ways[way], bodies[i % 64])
                prof.disable()
                calls[way] = pstats.Stats(prof).total_calls / args.block  # type: ignore[attr-defined]
        return {"per_block_us": per_block, "calls_per_request": calls}

    t0 = time.perf_counter()
    res = asyncio.run(run())
    blocks = res["per_block_us"]
    res["median_us"] = {w: statistics.median(blocks[w]) for w in WAYS}
    res["median_ratio"] = {w: statistics.median(b / d for b, d in
                                                zip(blocks[w], blocks["direct"], strict=True))
                           for w in WAYS}
    res.update(rounds=args.rounds, block=args.block, seconds=time.perf_counter() - t0)
    labels = {"direct": "the service's app (`_Service`: before any middleware)",
              "middleware": "from a middleware inside FastAPI's stack",
              "router": "FastAPI's router and dependency solving"}
    md = (f"{args.rounds} blocks of {args.block} uploads per way in, alternating; the null "
          "endpoint's app (decoded, not stored), in process.\n\n| the route reached | CPU µs "
          "per upload (median of blocks) | ratio to the service's app (median of rounds) | "
          "Python calls per upload |\n|---|---|---|---|\n" + "".join(
              f"| {labels[w]} | {res['median_us'][w]:.0f} | {res['median_ratio'][w]:.3f} | "
              f"{res['calls_per_request'][w]:.0f} |\n" for w in WAYS))
    from spool_mover import save

    save(args.out, "ingest_app", res, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
