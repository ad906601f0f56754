"""How many device windows per second the ingestion service takes, and what a day's check costs.

Method
- Payload: windows of a synthetic model with 20 sketched signals (an input of shape [1, 3, 8, 8]:
  mean, std, min, max, 3 channel means, 10 random projections; top-1 confidence and entropy of
  10 softmax outputs; latency) plus its counters, 100 calls per window, values drawn from a
  seeded generator (numpy; no data set needed), encoded by the collector's own OTLP code: about
  6 kB of protobuf per window. Every window has its own upload id.
- Server: `edgeyard serve` in its own process (uvicorn, one worker), on SQLite (a file, WAL,
  synchronous=FULL) and on PostgreSQL 15 (a server this script starts with initdb/pg_ctl in a
  temp dir; default durability, synchronous_commit=on). Every 200 is sent after the commit.
- Load: a separate load-generator process (`--generate`) with `--connections` keep-alive HTTP
  connections (threads), each posting one window per request, as fast as the answers come. Two
  seconds of warm-up, then `--seconds` of measurement; repeated `--repeats` times; reported:
  the median uploads/s over repeats, and the median and p99 request latency of the last repeat.
  Also one run with 16 windows per request (what a device sends after an outage).
- Drift check over a day: 288 five-minute buckets of windows (one window per bucket and per
  segment, 2 segments) are ingested with start times over the last 24 h; then, with the
  server's caches cold and then warm, `GET /api/drift?window=24h` (merges 288 x 20 aggregates
  per segment, then the test) and `GET /api/timeline?span=24h&step=1h` (24 checks) are timed;
  median of 5.
- The machine: 2 cores shared by the server, the database and the load generator.

    python benchmarks/ingest.py [--seconds 15] [--repeats 3] [--connections 8]

Writes benchmarks/results/ingest.json and .md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
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


def window_bytes(rng: np.random.Generator, start_ns: int, profile: str = "bench-board") -> bytes:
    x, y = data(rng, 100)
    w = Window(SPEC, start_ns)
    w.add_batch(PROJECTOR, [x], [y])
    w.sketches["latency_ms"].update(rng.lognormal(0, 0.3, 100))
    w.calls = w.sampled = 100
    w.engines["onnx-int8"] = 100
    w.end_ns = start_ns + 60 * 10**9
    attrs = {"service.name": "edgeyard-device", "edgeyard.model": "bench",
             "edgeyard.release": "1.0", "edgeyard.profile": profile,
             "edgeyard.device_id": uuid.uuid4().hex[:32], "edgeyard.upload_id": uuid.uuid4().hex}
    return otlp.window_bytes(w, attrs)


# --- the load generator (its own process) -----------------------------------------------------


def generate(url: str, key: str, seconds: float, connections: int, per_request: int) -> dict:
    rng = np.random.default_rng(os.getpid())
    now = time.time_ns()
    pool = [window_bytes(rng, now) for _ in range(64)]  # bodies differ only by upload id below

    def body() -> bytes:
        from opentelemetry.proto.metrics.v1 import metrics_pb2

        parts = []
        for _ in range(per_request):
            rm = metrics_pb2.ResourceMetrics()
            rm.ParseFromString(pool[int(rng.integers(len(pool)))])
            for kv in rm.resource.attributes:
                if kv.key == "edgeyard.upload_id":
                    kv.value.string_value = uuid.uuid4().hex
            parts.append(rm.SerializeToString())
        return otlp.join(parts)

    host = url.split("//")[1]
    bodies = [body() for _ in range(400)]
    lat: list[float] = []
    counts = {"ok": 0, "other": 0}
    lock = threading.Lock()
    start = time.monotonic()
    warm_end, end = start + 2.0, start + 2.0 + seconds

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection(host, timeout=30)
        i = k
        while True:
            t = time.monotonic()
            if t >= end:
                break
            conn.request("POST", "/v1/metrics", body=bodies[i % len(bodies)], headers={
                "Content-Type": "application/x-protobuf", "Authorization": f"Bearer {key}"})
            resp = conn.getresponse()
            resp.read()
            t1 = time.monotonic()
            i += connections
            if t >= warm_end:
                with lock:
                    counts["ok" if resp.status == 200 else "other"] += 1
                    lat.append(t1 - t)
        conn.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    return {"requests_ok": counts["ok"], "requests_other": counts["other"],
            "uploads_per_s": counts["ok"] * per_request / seconds,
            "latency_p50_ms": 1e3 * lat[len(lat) // 2] if lat else None,
            "latency_p99_ms": 1e3 * lat[int(len(lat) * 0.99)] if lat else None}


def load(url: str, key: str, seconds: float, connections: int, per_request: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--generate", url, "--key", key, "--seconds",
                          str(seconds), "--connections", str(connections), "--per-request",
                          str(per_request)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the server side --------------------------------------------------------------------------


def start_server(data_dir: Path, database: str | None) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "edgeyard.cli", "serve", "--port", str(port), "--data-dir",
           str(data_dir), "--check-every", "0"] + (["--database", database] if database else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and "listening" in proc.stdout.readline()
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, url


def call(url: str, key: str, path: str, body: bytes | None = None, ctype: str = "application/json"
         ) -> bytes:
    req = urllib.request.Request(url + path, data=body, method="POST" if body else "GET",
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=300) as resp:
        return bytes(resp.read())


def day_of_windows(url: str, ingest: str, admin: str) -> dict:
    rng = np.random.default_rng(1)
    x, y = data(rng, 400)
    ref = reference_window(SPEC, [x], [y])
    ref.sketches["latency_ms"].update(rng.lognormal(0, 0.3, 400))
    manifest = {"model": {"name": "bench", "version": "1.0"}, "evaluation": {},
                "telemetry": {"projections": SPEC}}
    call(url, admin, "/api/releases", json.dumps({"manifest": manifest,
                                                  "reference": ref.to_json()}).encode())
    now = time.time()
    parts = []
    for b in range(288):
        for profile in ("board-a", "board-b"):
            start = int((now - 86400 + 300 * b + 10) * 1e9)
            parts.append(window_bytes(rng, start, profile))
    for i in range(0, len(parts), 16):
        call(url, ingest, "/v1/metrics", otlp.join(parts[i : i + 16]), "application/x-protobuf")
    out = {}
    for name, path in (("drift_24h", "/api/drift?model=bench&release=1.0&window=24h"),
                       ("timeline_24h_by_hour",
                        "/api/timeline?model=bench&release=1.0&span=24h&step=1h")):
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            call(url, admin, path)
            times.append(time.perf_counter() - t0)
        out[name] = {"first_s": times[0], "median_s": statistics.median(times)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--per-request", type=int, default=1)
    ap.add_argument("--generate", metavar="URL")
    ap.add_argument("--key")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    if args.generate:
        print(json.dumps(generate(args.generate, args.key, args.seconds, args.connections,
                                  args.per_request)))
        return 0
    from pg import PostgresServer

    results: dict = {"method": __doc__, "signals_per_window": len(SPEC["signals"]) + 1}
    with tempfile.TemporaryDirectory() as tmp:
        pg = None if PostgresServer.available() else PostgresServer().start()
        backends = {"sqlite": None}
        if pg is not None:
            backends["postgresql"] = pg.create_database()
        try:
            for name, database in backends.items():
                proc, url = start_server(Path(tmp) / name, database)
                try:
                    ingest = (Path(tmp) / name / "ingest.key").read_text().strip()
                    admin = (Path(tmp) / name / "admin.key").read_text().strip()
                    runs = [load(url, ingest, args.seconds, args.connections, 1)
                            for _ in range(args.repeats)]
                    batched = load(url, ingest, args.seconds, args.connections, 16)
                    results[name] = {
                        "uploads_per_s_median": statistics.median(r["uploads_per_s"] for r in runs),
                        "runs": runs, "batched_16": batched,
                        "day": day_of_windows(url, ingest, admin),
                    }
                    print(name, json.dumps(results[name]["uploads_per_s_median"]), flush=True)
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
        finally:
            if pg is not None:
                pg.stop()
    window = window_bytes(np.random.default_rng(0), time.time_ns())
    results["window_bytes"] = len(window)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(results, indent=2))
    md = ["| database | uploads/s (1 window per request) | p50 / p99 ms | uploads/s (16 per "
          "request) | drift check 24 h (cold / warm) | timeline 24 h by hour (cold / warm) |",
          "|---|---|---|---|---|---|"]
    for name in ("sqlite", "postgresql"):
        r = results.get(name)
        if not r:
            continue
        last, day = r["runs"][-1], r["day"]
        md.append(f"| {name} | {r['uploads_per_s_median']:.0f} | {last['latency_p50_ms']:.1f} / "
                  f"{last['latency_p99_ms']:.1f} | {r['batched_16']['uploads_per_s']:.0f} | "
                  f"{day['drift_24h']['first_s']:.2f} / {day['drift_24h']['median_s']:.2f} s | "
                  f"{day['timeline_24h_by_hour']['first_s']:.2f} / "
                  f"{day['timeline_24h_by_hour']['median_s']:.2f} s |")
    md.append(f"\n{results['signals_per_window']} signals per window, {len(window):,} bytes of "
              f"protobuf per window; {args.connections} connections; 2 cores shared by server, "
              "database and load generator.")
    (out / "ingest.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
