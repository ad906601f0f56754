"""A soak of the field path: device processes as `make demo` runs them, for minutes, against a
real `edgeyard serve`, with a server crash in the middle; every call is accounted for.

Method
- Release: the digits CNN (examples/digits, scikit-learn's bundled digits) trained and built for
  `linux-x86_64` (onnx fp32 / int8), signed with a fresh Ed25519 key, registered on the server.
- Server: `edgeyard serve` on SQLite in its own process. At a third of the run it is killed with
  SIGKILL (no shutdown, no flush) and started again on the same port and data directory a few
  seconds later; the devices keep predicting meanwhile and their collectors spool and retry.
- Devices: `--devices` processes, each a loop of sessions: a session is one process (runtime +
  collector, as examples/digits/device.py) that predicts held-out digits (the calibration split)
  one call at a time for 10-40 s at a jittered pace, with windows of 1 s or 50 calls, then closes
  the collector (flush + upload what is spooled) and exits; the next session of the same device
  reuses its app directory, so windows spooled while the server was down are uploaded by a later
  process. Each session prints its calls, windows, uploads, lost windows and spool errors.
- Accounting, after the last session and a final drain: the server's database (read directly,
  after the server stopped) must hold exactly one upload row per window the devices closed, and
  its `calls` counters must sum to exactly the calls the devices made: a lost window shows as
  fewer, a duplicate as more. Pending spool files left on devices are reported.

    python benchmarks/field_soak.py [--seconds 600] [--devices 4]

Writes benchmarks/results/field_soak.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# the collector's own accounting, summed over sessions
COUNTS = ("windows", "uploaded", "rejected", "spool_dropped", "lost_windows", "spool_errors",
          "close_errors")


def device_session(args: argparse.Namespace) -> int:
    """One device process: predict for `--session-s` seconds, close, print the accounting."""
    from edgeyard.runtime import Runtime
    from edgeyard.telemetry import Collector

    x = np.load(args.data)["x"]
    rng = np.random.default_rng(args.seed)
    collector = Collector.from_release(
        args.release, args.server.rstrip("/") + "/v1/metrics", Path(args.app_dir) / "telemetry",
        profile="linux-x86_64", device_id=args.device_id, api_key=args.key,
        window_s=1.0, window_calls=50, max_overhead=None)
    rt = Runtime.from_release(args.release, "linux-x86_64", args.public_key,
                              collector=collector, threads=1)
    calls, t_end = 0, time.monotonic() + args.session_s
    while time.monotonic() < t_end:
        i = int(rng.integers(len(x)))
        rt.predict(x[i : i + 1])
        calls += 1
        time.sleep(float(rng.uniform(0.0, 0.01)))
    collector.close()
    print(json.dumps({"calls": calls, **{k: collector.stats.get(k, 0) for k in COUNTS},
        "pending": len(collector.spool.pending())}))
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.port = data_dir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgeyard.cli", "serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir), "--check-every", "0"],
            stdout=subprocess.DEVNULL, stderr=open(self.data_dir.parent / "serve.log", "ab"))
        for _ in range(600):
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit("edgeyard serve exited; see serve.log") from None
                time.sleep(0.1)
        raise SystemExit("edgeyard serve did not answer in 60 s")

    def key(self, kind: str) -> str:
        return (self.data_dir / f"{kind}.key").read_text().strip()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


def build_release(work: Path) -> tuple[Path, Path, np.ndarray]:
    sys.path.insert(0, str(ROOT / "examples" / "digits"))
    import digits
    import torch

    import edgeyard
    from edgeyard.signing import generate_keys, sign_release

    data = digits.load()
    model = digits.train(digits.make_cnn(), data, epochs=15)
    rel = edgeyard.build(model, example_inputs=(torch.from_numpy(data.x_eval[:1]),),
                         profiles=["linux-x86_64"],
                         calibration=(data.x_calib[i : i + 32]
                                      for i in range(0, len(data.x_calib), 32)),
                         evaluation=(data.x_eval, data.y_eval), out=work / "digits-1.0",
                         name="digits", version="1.0", log=None)
    if not rel.ok:
        raise SystemExit(rel.summary())
    key, pub = generate_keys(work / "keys" / "release.pem")
    sign_release(rel.path, key)
    return rel.path, pub, data.x_calib


def soak(seconds: float, n_devices: int, work: Path) -> dict[str, Any]:
    from edgeyard.server.client import Client

    t0 = time.perf_counter()
    release, pub, x = build_release(work)
    print(f"release built and signed in {time.perf_counter() - t0:.0f} s", flush=True)
    np.savez(work / "inputs.npz", x=x)
    server = Server(work / "server")
    server.start()
    Client(server.url, server.key("admin")).register(release)
    rng = np.random.default_rng(0)
    sessions: list[dict[str, Any]] = []
    running: dict[str, tuple[subprocess.Popen[str], float]] = {}
    seeds = iter(range(1_000_000))
    start = time.monotonic()
    kill_at, killed, restarted = start + seconds / 3, None, None

    def launch(device: str, session_s: float) -> None:
        cmd = [sys.executable, __file__, "--session", "--release", str(release),
               "--public-key", str(pub), "--server", server.url, "--key", server.key("ingest"),
               "--device-id", device, "--data", str(work / "inputs.npz"),
               "--app-dir", str(work / "fleet" / device), "--session-s", f"{session_s:.1f}",
               "--seed", str(next(seeds))]
        running[device] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            text=True), time.monotonic())

    def reap(device: str) -> None:
        proc, began = running.pop(device)
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"device {device} failed:\n{err[-3000:]}")
        sessions.append({"device": device, "began_s": round(began - start, 1),
                         "wall_s": round(time.monotonic() - began, 1),
                         **json.loads(out.strip().splitlines()[-1])})

    devices = [f"dev-{i}" for i in range(n_devices)]
    for d in devices:
        launch(d, float(rng.uniform(10, 40)))
    while running:
        now = time.monotonic()
        if killed is None and now >= kill_at:
            server.kill()
            killed = now - start
            print(f"[{killed:5.0f} s] server killed with SIGKILL", flush=True)
        if killed is not None and restarted is None and now - start >= killed + 5:
            server.start()
            restarted = time.monotonic() - start
            print(f"[{restarted:5.0f} s] server restarted", flush=True)
        for d in list(running):
            if running[d][0].poll() is not None:
                reap(d)
                left = seconds - (time.monotonic() - start)
                if left > 5:
                    launch(d, float(min(left, rng.uniform(10, 40))))
        time.sleep(0.2)
    # a last short session per device: uploads what an earlier process left in its spool
    for d in devices:
        launch(d, 0.0)
    for d in devices:
        reap(d)
    server.stop()

    db = sqlite3.connect(work / "server" / "edgeyard.db")
    uploads = db.execute("SELECT count(*), count(DISTINCT upload_id) FROM uploads "
                         "WHERE model='digits'").fetchone()
    server_calls = db.execute("SELECT coalesce(sum(value), 0) FROM counters "
                              "WHERE model='digits' AND name='calls'").fetchone()[0]
    db.close()
    dev = {k: sum(s[k] for s in sessions) for k in ("calls", *COUNTS)}
    pending = sum(s["pending"] for s in sessions if s["began_s"] >= 0 and s["calls"] == 0)
    return {
        "seconds": seconds, "devices": n_devices, "sessions": len(sessions),
        "server_killed_at_s": round(killed or -1, 1), "server_restarted_at_s":
            round(restarted or -1, 1),
        "device": dev, "pending_at_end": pending,
        "server": {"uploads": uploads[0], "distinct_upload_ids": uploads[1],
                   "calls": int(server_calls)},
        "lost_calls": dev["calls"] - int(server_calls),
        "lost_windows": dev["windows"] - uploads[0],
        "ok": dev["calls"] == server_calls and dev["windows"] == uploads[0] and pending == 0
              and all(dev[k] == 0 for k in COUNTS[2:]),
        "session_log": sessions,
    }


def markdown(r: dict[str, Any]) -> str:
    d, s = r["device"], r["server"]
    return "\n".join([
        "# Field soak: device processes against edgeyard serve (SQLite), with a server crash",
        "",
        f"{r['devices']} devices, {r['seconds']:.0f} s, {r['sessions']} device processes "
        f"(sessions); server SIGKILLed at {r['server_killed_at_s']} s and restarted at "
        f"{r['server_restarted_at_s']} s. Method: see the docstring of benchmarks/field_soak.py.",
        "",
        "| | devices (sum of sessions) | server database |",
        "|---|---|---|",
        f"| calls | {d['calls']} | {s['calls']} |",
        f"| windows | {d['windows']} closed, {d['uploaded']} acknowledged sends | "
        f"{s['uploads']} upload "
        f"rows, {s['distinct_upload_ids']} distinct ids |",
        "| rejected / dropped from a full spool / lost / spool errors / close errors | "
        + " / ".join(str(d[k]) for k in COUNTS[2:]) + " | |",
        f"| pending on devices at the end | {r['pending_at_end']} | |",
        "",
        f"Lost calls: {r['lost_calls']}; lost windows: {r['lost_windows']} (negative would be "
        f"duplicates). Verdict: {'PASS' if r['ok'] else 'FAIL'}. A send whose answer the crash "
        "cut is sent again and counted again on the device; the server stores it once (by its "
        "upload id).",
        "",
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--devices", type=int, default=4)
    ap.add_argument("--out", type=Path, default=RESULTS)
    # one device session (run by the soak itself)
    ap.add_argument("--session", action="store_true", help=argparse.SUPPRESS)
    for name in ("release", "public-key", "server", "key", "device-id", "data", "app-dir"):
        ap.add_argument(f"--{name}", help=argparse.SUPPRESS)
    ap.add_argument("--session-s", type=float, default=10.0, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.session:
        return device_session(args)
    with tempfile.TemporaryDirectory(prefix="edgeyard-soak-") as tmp:
        r = soak(args.seconds, args.devices, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "field_soak.json").write_text(json.dumps(r, indent=2) + "\n")
    (args.out / "field_soak.md").write_text(markdown(r))
    print(markdown(r))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
