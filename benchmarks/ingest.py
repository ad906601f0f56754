"""How many device windows per second the ingestion service takes, against the same HTTP stack
storing nothing, and what a day of 10,000 devices costs to check and to keep.

Method
- Payload: windows of a synthetic model with 20 sketched signals (an input of shape [1, 3, 8, 8]:
  mean, std, min, max, 3 channel means, 10 random projections; top-1 confidence and entropy of
  10 softmax outputs; latency) plus its counters, 100 calls per window, values drawn from a
  seeded generator (numpy; no data set needed), encoded by the collector's own OTLP code: about
  6 kB of protobuf per window, one window per request. Every request has its own upload id.
- Server: `edgeyard serve --workers W` (W worker processes behind one port, connections handed
  to each in turn), on
  SQLite (a file, WAL, synchronous=FULL) and on PostgreSQL 15 (a server this script starts
  with initdb/pg_ctl in a temp dir; synchronous_commit=on). Every 200 is sent once durable: after
  the commit, or after the spool's fdatasync (below).
  The null endpoint is the same command with `--discard`: the same HTTP stack, key check and
  decoding, then 200 without storing; the ratio stored / null is what storage costs.
- Native code: collector bodies go through the compiled fast path (`server/_otlp.c`) and
  sketches are merged by `server/_expmerge.c`; `--decoders native python` measures the same
  server again with both turned off (`EDGEYARD_NATIVE_DECODE=0 EDGEYARD_NATIVE_MERGE=0`: what a
  host without a C compiler runs), after the native runs, on a fresh database.
- Storage: a request whose series are all stored is answered once its windows are in the
  worker's spool file (fdatasync) and the host's mover process stores them behind the answers,
  hundreds a transaction (`server/spool.py`; serve's default on SQLite, `--spool on` here for
  PostgreSQL too); the others, and every request with `--spool off`, are answered after their
  group commit. Either way windows are appended to `pending`, one row per aggregate bucket
  (merged in the commit), and the compactor merges them into the aggregates (the default);
  `--merge-in-request`: merged into the aggregates in the request's commit (no spool).
  `--spool-sync-ms N`: one more stored server per N > 0 (serve's flag), measured in the same
  rounds, each with its own database: a spooled request answered once its record is written to
  the operating system, an fdatasync every N ms (what a power loss can take; a killed process
  loses nothing).
  With the spool, a stored run's uploads/s counts the time its mover then takes to store what
  was answered (the backlog left in the spool when the load stops, polled every 20 ms): the
  200s of the run / (the run's seconds + that drain); the 200s a second are kept as
  `answered_per_s`.
- Load: a separate load-generator process (`--generate`): an asyncio (uvloop) client with
  `--connections` keep-alive HTTP/1.1 connections, each posting a window as soon as the answer
  to the last one came. Two seconds of warm-up, then `--seconds` of measurement, `--repeats`
  times: the median uploads/s; p50 / p99 latency of the median run. The stored server and the
  null endpoint run side by side (each idle while the other is loaded) and their runs
  alternate (stored, null, stored, null, ...): stored / null is the median of the repeats'
  ratios, each of two runs seconds apart (the machine's speed drifts by tens of percent over
  minutes). After the stored runs, the database's upload count is compared with the 200s the
  generator counted (lost: acknowledged but not stored).
- A day of 10,000 devices: 288 five-minute buckets x 2 device profiles; each bucket's
  aggregate is one real window's sketches with every count scaled by the 5,000 devices of its
  profile (what merging 5,000 windows of that distribution gives), ingested through the store,
  and 2,880,000 rows of the per-window upload ledger (10,000 devices x 288 windows: what the
  server keeps per window for de-duplication, device counts and rollouts) bulk-inserted. Then
  the service is started (W workers) and timed, cold: the day check computed live
  (`/api/drift?window=24h&fresh=true`), what the leader took to compute it ahead
  (`--precompute-every 2`), and, after a restart (every worker answering and its start-up work,
  the report's chart bundle, done), `/api/drift?window=24h` and the HTML report answered from
  the precomputed result (the report over the day reads the day's aggregates for
  its plots). Storage: the database's size on disk / 10,000.
- The machine: 2 cores shared by the server's workers, the database and the load generator.

    python benchmarks/ingest.py [--seconds 10] [--repeats 3] [--workers 2] [--day-devices 10000]
        [--decoders native python] [--merge-in-request] [--commit-on-loop] [--skip-day]
        [--spool default|on|off] [--spool-sync-ms 0 [N ...]]

Writes benchmarks/results/ingest.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from edgeyard.telemetry import otlp  # noqa: E402
from edgeyard.telemetry.projections import Projector, default_projections  # noqa: E402
from edgeyard.telemetry.window import Window, reference_window  # noqa: E402

INPUTS = [{"name": "image", "shape": [1, 3, 8, 8], "dtype": "float32"}]
OUTPUTS = [{"name": "logits", "shape": [1, 10], "dtype": "float32"}]
SPEC = default_projections(INPUTS, OUTPUTS, random_projections=10)
PROJECTOR = Projector(SPEC)


def data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(0.5, 0.2, (n, 3, 8, 8)).astype(np.float32)
    logits = rng.normal(0, 2, (n, 10)).astype(np.float32)
    return x, logits


def window(rng: np.random.Generator, start_ns: int, profile: str = "bench-board",
           device: str | None = None, upload_id: str | None = None) -> bytes:
    """One collector window (a serialized ResourceMetrics)."""
    x, y = data(rng, 100)
    w = Window(SPEC, start_ns)
    w.add_batch(PROJECTOR, [x], [y])
    w.sketches["latency_ms"].update(rng.lognormal(0, 0.3, 100))
    w.calls = w.sampled = 100
    w.engines["onnx-int8"] = 100
    w.end_ns = start_ns + 60 * 10**9
    attrs = {"service.name": "edgeyard-device", "edgeyard.model": "bench",
             "edgeyard.release": "1.0", "edgeyard.profile": profile,
             "edgeyard.device_id": device or uuid.uuid4().hex[:32],
             "edgeyard.upload_id": upload_id or uuid.uuid4().hex}
    return otlp.window_bytes(w, attrs)


# --- the load generator (its own process) -----------------------------------------------------


def generate(url: str, key: str, seconds: float, connections: int) -> dict:
    """Post windows over `connections` keep-alive connections; what came back."""
    import uvloop

    rng = np.random.default_rng(os.getpid())
    ids = [uuid.uuid4().hex.encode() for _ in range(64)]
    pool = [otlp.join([window(rng, time.time_ns(), upload_id=i.decode())]) for i in ids]
    host, port = url.split("//")[1].split(":")
    head = (f"POST /v1/metrics HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-protobuf"
            f"\r\nAuthorization: Bearer {key}\r\nContent-Length: ").encode()
    lat: list[float] = []
    counts = {"ok": 0, "ok_total": 0, "other": 0}

    def request(i: int) -> bytes:  # a fresh upload id in a pooled body (ids are fixed-length)
        body = pool[i % 64].replace(ids[i % 64], uuid.uuid4().hex.encode())
        return head + str(len(body)).encode() + b"\r\n\r\n" + body

    async def connection(k: int, warm_end: float, end: float) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        i = k
        while (t := time.perf_counter()) < end:
            writer.write(request(i))
            i += connections
            head_bytes = await reader.readuntil(b"\r\n\r\n")
            status = int(head_bytes[9:12])
            length = 0
            for line in head_bytes.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            counts["ok_total" if status == 200 else "other"] += 1
            if t >= warm_end:
                lat.append(time.perf_counter() - t)
                counts["ok"] += status == 200
        writer.close()

    async def run() -> None:
        start = time.perf_counter()
        warm_end, end = start + 2.0, start + 2.0 + seconds
        await asyncio.gather(*(connection(k, warm_end, end) for k in range(connections)))

    uvloop.run(run())
    lat.sort()
    return {"uploads_per_s": counts["ok"] / seconds, "acknowledged": counts["ok_total"],
            "refused": counts["other"],
            "latency_p50_ms": 1e3 * lat[len(lat) // 2] if lat else None,
            "latency_p99_ms": 1e3 * lat[int(len(lat) * 0.99)] if lat else None}


def load(url: str, key: str, seconds: float, connections: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--generate", url, "--key", key, "--seconds",
                          str(seconds), "--connections", str(connections)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the server side --------------------------------------------------------------------------


class Server:
    def __init__(self, data_dir: Path, database: str | None, workers: int, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        cmd = [sys.executable, "-m", "edgeyard.cli", "serve", "--port", str(self.port),
               "--data-dir", str(data_dir), "--check-every", "0", "--rollout-tick", "0",
               "--workers", str(workers), *extra] + (["--database", database] if database else [])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env={**os.environ, **(env or {})})
        assert self.proc.stdout is not None and "listening" in self.proc.stdout.readline()
        for _ in range(600):
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        # every worker answering (a connection the kernel gives to a worker still starting
        # waits for it), then the start-up work done: each worker bundles the report's chart
        # library in the background (~2.3 s of CPU here); a "cold" request must not time that
        seen: set[str] = set()
        deadline = time.monotonic() + 120
        while len(seen) < workers and time.monotonic() < deadline:
            seen.add(json.loads(call(self.url, self.key("admin"), "/api/service"))["worker"]["id"])
        time.sleep(6.0)

    def key(self, kind: str) -> str:
        return (self.data_dir / f"{kind}.key").read_text().strip()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def call(url: str, key: str, path: str, body: bytes | None = None,
         ctype: str = "application/json") -> bytes:
    req = urllib.request.Request(url + path, data=body, method="POST" if body else "GET",
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=600) as resp:
        return bytes(resp.read())


def timed(url: str, key: str, path: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    out = call(url, key, path)
    return time.perf_counter() - t0, out


def uploads_stored(database: str, data_dir: Path) -> int:
    from edgeyard.server import db, store

    engine = db.make_engine(database or db.default_url(data_dir))
    try:
        return store.upload_count(engine)
    finally:
        engine.dispose()


def spooled_in_time(r: dict, spool_dir: Path, seconds: float) -> dict:
    """A stored run's figures counting the time the spool's mover took, after the load, to
    store what was answered: uploads/s over the run and that drain (`answered_per_s`: the 200s
    a second), so that a mover falling behind lowers the figure instead of hiding in the
    spool."""
    from edgeyard.server import spool

    t0 = time.perf_counter()
    while spool_dir.is_dir() and any(spool.backlog(d) for d in spool_dir.iterdir()
                                     if d.is_dir()):
        if time.perf_counter() - t0 > 300:
            raise RuntimeError("the spool did not drain in 300 s")
        time.sleep(0.02)
    drain = time.perf_counter() - t0
    return {**r, "answered_per_s": r["uploads_per_s"], "drain_s": drain,
            "uploads_per_s": r["uploads_per_s"] * seconds / (seconds + drain)}


def stored_modes(args: argparse.Namespace) -> dict[str, list[str]]:
    """The stored servers each run measures: "stored" (serve's default: an answer waits for
    the spool's fdatasync) and one per `--spool-sync-ms` N > 0 ("stored_sync<N>ms")."""
    return {"stored": [], **{f"stored_sync{ms:g}ms": ["--spool-sync-ms", f"{ms:g}"]
                             for ms in args.spool_sync_ms if ms}}


def throughput(tmp: Path, name: str, databases: Callable[[], str | None],
               args: argparse.Namespace, decoder: str = "native") -> dict:
    """Stored and null-endpoint runs for each connection count, interleaved (stored, null,
    stored, null, ...: a slower or faster spell of the shared machine falls on both alike; each
    repeat's stored / null is a ratio of two runs seconds apart); `decoder` "python": the
    server's native modules turned off (the decoder's fast path and the sketch merge). Each
    stored server (`stored_modes`) has a database of its own (`databases()`)."""
    out: dict = {}
    env = {"EDGEYARD_NATIVE_DECODE": "0", "EDGEYARD_NATIVE_MERGE": "0"} \
        if decoder == "python" else {}
    flags = (["--commit-on-loop"] if args.commit_on_loop else []) + \
        (["--merge-in-request"] if args.merge_in_request else []) + \
        ({"on": ["--spool"], "off": ["--no-spool"]}.get(args.spool, []))
    modes = stored_modes(args)
    dirs = {mode: tmp / f"{name}-{decoder}-{mode}" for mode in modes}
    urls = {mode: databases() for mode in modes}
    servers = {mode: Server(dirs[mode], urls[mode], args.workers, *flags, *extra, env=env)
               for mode, extra in modes.items()}
    servers["null"] = Server(tmp / f"{name}-{decoder}-null", None, args.workers, "--discard",
                             env=env)
    try:
        for conns in args.connections:
            runs: dict[str, list] = {mode: [] for mode in servers}
            for _ in range(args.repeats):
                for mode, server in servers.items():
                    r = load(server.url, server.key("ingest"), args.seconds, conns)
                    if mode != "null":
                        r = spooled_in_time(r, dirs[mode] / ("spool" if urls[mode] else
                                                             "edgeyard.db-spool"), args.seconds)
                    runs[mode].append(r)
            for mode in modes:
                ratios = sorted(s["uploads_per_s"] / n["uploads_per_s"]
                                for s, n in zip(runs[mode], runs["null"], strict=True))
                out[f"ratio_{conns}" if mode == "stored" else f"ratio_{mode}_{conns}"] = \
                    ratios[len(ratios) // 2]
            for mode, rs in runs.items():
                rs.sort(key=lambda r: r["uploads_per_s"])
                out[f"{mode}_{conns}"] = {**rs[len(rs) // 2], "runs": rs}
                print(name, decoder, mode, conns, round(rs[len(rs) // 2]["uploads_per_s"]),
                      flush=True)
    finally:
        for server in servers.values():
            server.stop()
    for mode in modes:
        acked = sum(r["acknowledged"] for c in args.connections
                    for r in out[f"{mode}_{c}"]["runs"])
        stored = uploads_stored(urls[mode], dirs[mode])
        prefix = "" if mode == "stored" else f"{mode}_"
        out[f"{prefix}acknowledged"], out[f"{prefix}stored"] = acked, stored
        out[f"{prefix}lost"] = acked - min(acked, stored)
    return out


def scaled(u, k: int):
    """The upload as if `k` devices had each sent it: every count and sum times k."""
    for h in u.sketches.values():
        h.positive.counts *= k
        h.negative.counts *= k
        h.zero_count *= k
        h.count *= k
        h.sum *= k
        h.missing *= k
        h.non_finite *= k
    u.counters = {key: v * k for key, v in u.counters.items()}
    return u


def fill_day(database: str, data_dir: Path, devices: int) -> dict:
    """Register the release, ingest the day's aggregates and bulk-load its upload ledger."""
    from sqlalchemy import insert

    from edgeyard.server import db, decode, store

    engine = db.make_engine(database or db.default_url(data_dir))
    db.migrate(engine)
    rng = np.random.default_rng(1)
    x, y = data(rng, 400)
    ref = reference_window(SPEC, [x], [y])
    ref.sketches["latency_ms"].update(rng.lognormal(0, 0.3, 400))
    manifest = {"model": {"name": "bench", "version": "1.0"}, "evaluation": {},
                "telemetry": {"projections": SPEC}}
    store.register_release(engine, manifest, ref.to_json())
    now = time.time()
    starts = [now - 86400 + 300 * (b + 1) for b in range(288)]  # within a day of now
    profiles = ("board-a", "board-b")
    t0 = time.perf_counter()
    for b, s in enumerate(starts):
        ups = []
        for i, p in enumerate(profiles):  # filed under devices of the ledger below
            body = otlp.join([window(rng, int(s * 1e9), p, f"device-{(2 * b + i) % devices:06d}")])
            (u,) = decode.read(body, "application/x-protobuf", None, 1 << 24).uploads
            ups.append(scaled(u, devices // len(profiles)))
        store.ingest(engine, ups)
    aggregates_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = ({"upload_id": uuid.uuid4().hex, "model": "bench", "release": "1.0",
             "profile": profiles[d % 2], "device_id": f"device-{d:06d}", "received_at": s + 70,
             "start_ns": int(s * 1e9), "end_ns": int((s + 60) * 1e9), "points": 26,
             "calls": 100, "fallbacks": 0, "errors": 0}
            for s in starts for d in range(devices))
    batch: list[dict] = []
    with engine.connect().execution_options(write=True) as conn:
        for r in rows:
            batch.append(r)
            if len(batch) == 50_000:
                with conn.begin():
                    conn.execute(insert(db.uploads), batch)
                batch = []
        if batch:
            with conn.begin():
                conn.execute(insert(db.uploads), batch)
    ledger_s = time.perf_counter() - t0
    size = storage_bytes(engine, database, data_dir)
    engine.dispose()
    return {"devices": devices, "windows": devices * 288, "aggregates_load_s": aggregates_s,
            "ledger_load_s": ledger_s, "bytes": size, "bytes_per_device_day": size / devices}


def storage_bytes(engine, database: str | None, data_dir: Path) -> int:
    from sqlalchemy import text

    if database:
        with engine.connect() as conn:
            return int(conn.scalar(text("SELECT pg_database_size(current_database())")))
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(f.stat().st_size for f in data_dir.glob("edgeyard.db*"))


def day(tmp: Path, name: str, database: str | None, args: argparse.Namespace) -> dict:
    data_dir = tmp / f"{name}-day"
    data_dir.mkdir(parents=True, exist_ok=True)
    out = fill_day(database or "", data_dir, args.day_devices)
    check = "/api/drift?model=bench&release=1.0&window=24h"
    server = Server(data_dir, database, args.workers, "--precompute-every", "2")
    try:
        admin = server.key("admin")
        out["live_cold_s"], _ = timed(server.url, admin, check + "&fresh=true")
        out["live_warm_s"], _ = timed(server.url, admin, check + "&fresh=true")
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:  # the leader computes the day ahead
            res = json.loads(call(server.url, admin, check))
            if "precomputed" in res:
                out["leader_compute_s"] = res["precomputed"]["seconds"]
                out["devices_counted"] = res["devices"]
                break
            time.sleep(2)
    finally:
        server.stop()
    server = Server(data_dir, database, args.workers, "--precompute-every", "0")
    try:  # a fresh process: nothing cached
        admin = server.key("admin")
        out["precomputed_cold_s"], body = timed(server.url, admin, check)
        assert "precomputed" in json.loads(body)
        out["precomputed_warm_s"], _ = timed(server.url, admin, check)
        out["report_page_cold_s"], _ = timed(server.url, admin,
                                             "/?model=bench&release=1.0&window=24h")
    finally:
        server.stop()
    print(name, "day", json.dumps(out), flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--day-devices", type=int, default=10_000)
    ap.add_argument("--skip-day", action="store_true",
                    help="measure the throughput again; keep the day's results in --out")
    ap.add_argument("--day-only", action="store_true",
                    help="measure the day again; keep the throughput results in --out")
    ap.add_argument("--commit-on-loop", action="store_true",
                    help="the stored server commits on its event loop (edgeyard serve's flag)")
    ap.add_argument("--merge-in-request", action="store_true",
                    help="the stored server merges each batch into the aggregates in its commit, "
                         "no pending rows (edgeyard serve's flag)")
    ap.add_argument("--spool", choices=["default", "on", "off"], default="default",
                    help="serve's --spool / --no-spool (default: on with SQLite, off with "
                         "PostgreSQL)")
    ap.add_argument("--spool-sync-ms", type=float, nargs="+", default=[0.0],
                    help="serve's --spool-sync-ms: 0 (its default: an answer waits for the "
                         "spool's fdatasync) and, for each N > 0, one more stored server, "
                         "measured in the same rounds")
    ap.add_argument("--decoders", nargs="+", choices=["native", "python"], default=["native"],
                    help="python: also measure with the native modules (decode, merge) "
                         "turned off (the same run, after the native one)")
    ap.add_argument("--generate", metavar="URL")
    ap.add_argument("--key")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    if args.generate:
        print(json.dumps(generate(args.generate, args.key, args.seconds, args.connections[0])))
        return 0
    from pg import PostgresServer

    results: dict = {"method": __doc__, "signals_per_window": len(SPEC["signals"]) + 1,
                     "workers": args.workers, "cores": os.cpu_count(),
                     "storage": "merged in the request's commit" if args.merge_in_request
                     else "appended, then compacted", "commit": "on the event loop"
                     if args.commit_on_loop else "in a thread beside the event loop",
                     "spool": {"default": "SQLite spooled, PostgreSQL not (serve's default)",
                               "on": "both databases spooled (--spool)",
                               "off": "not spooled (--no-spool)"}[args.spool]}
    tmp = Path(tempfile.mkdtemp(prefix="edgeyard-ingest-"))
    pg = None if PostgresServer.available() else PostgresServer().start()
    try:
        backends = ["sqlite"] + (["postgresql"] if pg is not None else [])
        kept = json.loads((Path(args.out) / "ingest.json").read_text()) \
            if args.day_only or args.skip_day else {}
        if args.day_only:  # the kept throughput runs' settings describe them, not this run's
            results.update({k: kept[k] for k in RUN_SETTINGS if k in kept})
        for name in backends:
            # --day-only keeps the throughput results, --skip-day the day's
            results[name] = {k: v for k, v in kept.get(name, {}).items()
                             if (k == "day") == args.skip_day}
            for decoder in [] if args.day_only else args.decoders:
                key = "throughput" if decoder == "native" else f"throughput_{decoder}"
                databases = pg.create_database if name == "postgresql" and pg \
                    else lambda: None
                results[name][key] = throughput(tmp, name, databases, args, decoder)
            if not args.skip_day:
                day_db = pg.create_database() if name == "postgresql" and pg else None
                results[name]["day"] = day(tmp, name, day_db, args)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    results["window_bytes"] = len(window(np.random.default_rng(0), time.time_ns()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(results, indent=2))
    md = markdown(results, args)
    (out / "ingest.md").write_text(md)
    print(md)
    return 0


RUN_SETTINGS = ("workers", "storage", "commit", "spool")  # what the throughput runs ran with


def _modes(r: dict, connections: int) -> list[str]:
    """The stored servers a throughput result holds (`stored_modes`), the default first."""
    return sorted((k.removesuffix(f"_{connections}") for k in r
                   if k.startswith("stored") and k.endswith(f"_{connections}")),
                  key=lambda m: (m != "stored", m))


def markdown(results: dict, args: argparse.Namespace) -> str:
    md = ["| database | decoder | spool sync | connections | uploads/s stored | answered/s "
          "(mover's drain after the run) | p50 / p99 ms | uploads/s null endpoint | "
          "stored / null |", "|---|---|---|---|---|---|---|---|---|"]
    runs = [(name, decoder, results[name][key]) for name in ("sqlite", "postgresql")
            for decoder, key in (("native", "throughput"), ("python", "throughput_python"))
            if results.get(name, {}).get(key)]
    for name, decoder, r in runs:
        for mode in _modes(r, args.connections[0]):
            sync = "each answer" if mode == "stored" else \
                f"every {mode.removeprefix('stored_sync')}"
            for c in args.connections:
                s, n = r[f"{mode}_{c}"], r[f"null_{c}"]
                drained = f"{s['answered_per_s']:,.0f} ({s['drain_s']:.2f} s)" \
                    if "drain_s" in s else "-"
                ratio = r.get(f"ratio_{c}" if mode == "stored" else f"ratio_{mode}_{c}",
                              s["uploads_per_s"] / n["uploads_per_s"])
                md.append(f"| {name} | {decoder} | {sync} | {c} | {s['uploads_per_s']:,.0f} | "
                          f"{drained} | {s['latency_p50_ms']:.1f} / "
                          f"{s['latency_p99_ms']:.1f} | {n['uploads_per_s']:,.0f} | "
                          f"{ratio:.2f} |")
    md.append("")
    for name, decoder, r in runs:
        for mode in _modes(r, args.connections[0]):
            prefix = "" if mode == "stored" else f"{mode}_"
            if f"{prefix}acknowledged" in r:
                md.append(f"- {name}, {decoder} decoder, {mode}: "
                          f"{r[f'{prefix}acknowledged']:,} uploads acknowledged, "
                          f"{r[f'{prefix}stored']:,} stored, {r[f'{prefix}lost']} lost.")
    if any(d == "python" for _, d, _ in runs):
        md.append("- decoder: `native` is the compiled fast path for collector bodies "
                  "(`edgeyard/server/_otlp.c`) and the compiled sketch merge "
                  "(`edgeyard/server/_expmerge.c`), `python` the same server with both turned "
                  "off (`EDGEYARD_NATIVE_DECODE=0 EDGEYARD_NATIVE_MERGE=0`), measured after it "
                  "in the same run.")
    md += ["", "| database | devices x windows | day check live (cold / warm) | leader's "
           "compute | day check precomputed (cold / warm) | report page cold | storage per "
           "device-day |", "|---|---|---|---|---|---|---|"]
    for name in ("sqlite", "postgresql"):
        d = results.get(name, {}).get("day")
        if not d:
            continue
        md.append(f"| {name} | {d['devices']:,} x 288 | {d['live_cold_s']:.2f} / "
                  f"{d['live_warm_s']:.2f} s | {d.get('leader_compute_s', float('nan')):.2f} s | "
                  f"{d['precomputed_cold_s'] * 1e3:.0f} / {d['precomputed_warm_s'] * 1e3:.0f} ms"
                  f" | {d['report_page_cold_s']:.2f} s | {d['bytes_per_device_day'] / 1024:.1f}"
                  " KiB |")
    md.append(f"\n{results['signals_per_window']} signals per window, "
              f"{results['window_bytes']:,} bytes of protobuf per window, one window per "
              f"request; {results['workers']} workers; {results['cores']} cores shared by the "
              "workers, the database and the load generator; each window "
              f"{results.get('storage', 'appended, then compacted')}, the group commit "
              f"{results.get('commit', 'in a thread beside the event loop')}; spool: "
              f"{results.get('spool', 'none')}.")
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    sys.exit(main())
