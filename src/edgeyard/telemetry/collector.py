"""The on-device telemetry collector: summarize every call, never block inference, upload OTLP.

    collector = Collector.from_release("digits-1.0/", endpoint="https://t.example/v1/metrics",
                                       api_key=..., spool_dir=app_dir / "telemetry")
    rt = Runtime.from_release("digits-1.0/", profile="pixel-8", public_key=key,
                              collector=collector)

`on_call` (the runtime's observer hook) only appends a reference to an in-memory queue (bounded;
overflow is counted, never waited on). A background thread drains the queue in batches, runs the
release's projections vectorized, and updates the current window; a window closes after
`window_s` seconds or `window_calls` calls, becomes an OTLP ResourceMetrics, and goes to the disk
spool before any upload. A second thread uploads spooled windows (gzip, several per request),
with exponential backoff and jitter, honouring Retry-After, never retrying a 4xx other than 408
and 429 (OTLP/HTTP), and only when `upload_policy()` allows (e.g. unmetered network). Nothing raw
leaves the device: only sketches and counters.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import secrets
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import otlp
from .projections import Projector
from .ring import Ring
from .spool import Spool
from .window import LATENCY, Window

RETRYABLE = {408, 429, 502, 503, 504}


def pseudonymous_id(spool_dir: Path, device_id: str | None) -> str:
    """sha256(salt + id): the salt is random per install and never leaves the device; without an
    app-provided id, a random install id is used. Never a hardware identifier."""
    salt_file = spool_dir / "salt"
    if not salt_file.exists():
        tmp = spool_dir / ".tmp-salt"
        tmp.write_text(secrets.token_hex(16))
        os.replace(tmp, salt_file)
    salt = salt_file.read_text().strip()
    if device_id is None:
        id_file = spool_dir / "install_id"
        if not id_file.exists():
            tmp = spool_dir / ".tmp-install_id"
            tmp.write_text(uuid.uuid4().hex)
            os.replace(tmp, id_file)
        device_id = id_file.read_text().strip()
    return hashlib.sha256(f"{salt}:{device_id}".encode()).hexdigest()[:32]


class Collector:
    def __init__(
        self,
        spec: dict[str, Any],
        resource: dict[str, Any],
        endpoint: str | None,
        spool_dir: str | os.PathLike[str],
        *,
        api_key: str | None = None,
        window_s: float = 60.0,
        window_calls: int = 10_000,
        max_queue: int = 100_000,
        spool_bytes: int = 16 * 1024 * 1024,
        spool_age_s: float = 7 * 24 * 3600,
        upload_policy: Callable[[], bool] | None = None,
        batch_windows: int = 16,
        backoff_s: float = 1.0,
        backoff_max_s: float = 300.0,
        timeout_s: float = 10.0,
        copy_inputs: bool = True,
        ring_bytes: int = 8 * 1024 * 1024,
        io: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None,
        start: bool = True,
    ) -> None:
        self.spec = spec
        self.resource = dict(resource)
        self.endpoint = endpoint
        self.api_key = api_key
        self.window_s = window_s
        self.window_calls = window_calls
        self.copy_inputs = copy_inputs
        self.upload_policy = upload_policy
        self.batch_windows = batch_windows
        self.backoff_s, self.backoff_max_s, self.timeout_s = backoff_s, backoff_max_s, timeout_s
        self.spool = Spool(spool_dir, spool_bytes, spool_age_s)
        self.projector = Projector(spec)
        self._queue: deque[tuple[Any, ...]] = deque()
        self._max_queue = max_queue
        # fixed shapes (the usual case): calls go into a preallocated ring, no allocation per
        # call; dynamic shapes fall back to a queue of copies
        self._ring = None
        if io is not None and all(d >= 0 for s in io[0] + io[1] for d in s["shape"][1:]):
            per_sample = sum(int(np.prod(s["shape"][1:])) * np.dtype(s["dtype"]).itemsize
                             for s in io[0] + io[1])
            capacity = int(min(max_queue, max(64, ring_bytes // max(1, per_sample))))
            self._ring = Ring([(tuple(s["shape"][1:]), s["dtype"]) for s in io[0]],
                              [(tuple(s["shape"][1:]), s["dtype"]) for s in io[1]], capacity)
        self._queue_dropped = 0
        self._window = Window(spec)
        self._window_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_upload = threading.Event()
        self.stats: dict[str, Any] = {"windows": 0, "uploaded": 0, "rejected": 0, "attempts": 0,
                                      "spool_dropped": 0, "last_status": None,
                                      "retry_after_s": None}
        self._threads: list[threading.Thread] = []
        self._attempt = 0
        if start:
            self.start()

    @classmethod
    def from_release(cls, path: str | os.PathLike[str], endpoint: str | None,
                     spool_dir: str | os.PathLike[str], *, profile: str | None = None,
                     device_id: str | None = None, **kw: Any) -> Collector:
        """A collector for the release at `path`: its projections, identity and primary artifact."""
        manifest = json.loads((Path(path) / "release.json").read_text())
        tel = manifest.get("telemetry")
        if not tel:
            raise ValueError("this release has no telemetry projections (built by an older "
                             "edgeyard): rebuild it")
        profiles = list(manifest["profiles"])
        profile = profile or profiles[0]
        primary = manifest["profiles"][profile]["chain"][0]["target"]
        spool = Path(spool_dir)
        spool.mkdir(parents=True, exist_ok=True)
        resource = {
            "service.name": "edgeyard-device",
            "edgeyard.model": manifest["model"]["name"],
            "edgeyard.release": manifest["model"]["version"],
            "edgeyard.profile": profile,
            "edgeyard.artifact.sha256": manifest["artifacts"][primary].get("sha256") or "",
            "edgeyard.device_id": pseudonymous_id(spool, device_id),
        }
        kw.setdefault("io", (manifest["model"]["inputs"], manifest["model"]["outputs"]))
        return cls(tel["projections"], resource, endpoint, spool, **kw)

    # --- the hot path -------------------------------------------------------------------------

    def on_call(self, event: Any) -> None:
        """Runtime observer hook: a copy into a ring buffer, never a wait (full: counted)."""
        fb = tuple([(f.engine, f.kind, f.reason) for f in event.fallbacks]) if event.fallbacks \
            else ()
        ring = self._ring
        if ring is not None and ring.fits(event.inputs, event.outputs):
            if not ring.put(event.inputs, event.outputs, event.engine, event.latency_s, fb):
                self._queue_dropped += 1
            return
        if len(self._queue) >= self._max_queue:
            self._queue_dropped += 1
            return
        inputs = event.inputs
        if self.copy_inputs:  # the app may reuse its input buffers
            inputs = tuple([x.copy() for x in inputs])
        self._queue.append((inputs, event.outputs, event.engine, event.latency_s, fb))

    def observe(self, inputs: Any, outputs: Any, engine: str = "app", latency_s: float = 0.0
                ) -> None:
        """Record one call made outside the edgeyard runtime."""
        from ..runtime.runtime import CallEvent

        ins = inputs if isinstance(inputs, tuple) else (inputs,)
        outs = outputs if isinstance(outputs, list) else [outputs]
        self.on_call(CallEvent(tuple(np.asarray(x) for x in ins),
                               [np.asarray(o) for o in outs], engine, latency_s))

    # --- background work ----------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        for target, name in ((self._aggregate_loop, "aggregate"), (self._upload_loop, "upload")):
            t = threading.Thread(target=target, name=f"edgeyard-telemetry-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def _drain(self) -> None:
        batches = self._take()
        with self._window_lock:
            if self._queue_dropped:
                self._window.dropped += self._queue_dropped
                self._queue_dropped = 0
            for batch in batches:
                self._add_windowed(batch)
            if self._window.calls and time.time_ns() - self._window.start_ns >= self.window_s * 1e9:
                self._close_window()

    def _take(self) -> list[dict[str, Any]]:
        """Everything recorded since the last take, as batches of arrays."""
        batches = []
        if self._ring is not None:
            b = self._ring.take()
            if b is not None:
                batches.append(b)
        items = []
        while self._queue:
            items.append(self._queue.popleft())
        groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
        for it in items:  # the queue path: group calls of equal shapes
            key = (*(x.shape[1:] for x in it[0]), it[1] is None,
                   *(() if it[1] is None else (o.shape[1:] for o in it[1])))
            groups.setdefault(key, []).append(it)
        for group in groups.values():
            has_out = group[0][1] is not None
            sizes = [it[0][0].shape[0] for it in group]
            batches.append({
                "inputs": [np.concatenate([it[0][k] for it in group])
                           for k in range(len(group[0][0]))],
                "outputs": [np.concatenate([it[1][k] for it in group])
                            for k in range(len(group[0][1]))] if has_out else [],
                "has_outputs": np.full(sum(sizes), has_out),
                "sizes": sizes,
                "latency_s": [it[3] for it in group],
                "engines": [it[2] for it in group],
                "fallbacks": [it[4] for it in group],
            })
        return batches

    def _add_windowed(self, batch: dict[str, Any]) -> None:
        """Add a batch, closing a window each time it reaches `window_calls` calls."""
        sizes = batch["sizes"]
        c0 = s0 = 0
        while c0 < len(sizes):
            room = self.window_calls - self._window.calls
            c1 = min(len(sizes), c0 + room)
            s1 = s0 + sum(sizes[c0:c1])
            self._add(batch, c0, c1, s0, s1)
            if self._window.calls >= self.window_calls:
                self._close_window()
            c0, s0 = c1, s1

    def _add(self, batch: dict[str, Any], c0: int, c1: int, s0: int, s1: int) -> None:
        w = self._window
        ins = [a[s0:s1] for a in batch["inputs"]]
        has = batch["has_outputs"][s0:s1]
        if has.all() and batch["outputs"]:
            w.add_batch(self.projector, ins, [o[s0:s1] for o in batch["outputs"]])
        else:
            w.add_batch(self.projector, ins, None)
            if has.any() and batch["outputs"]:  # output signals from the calls that answered
                outs = [o[s0:s1][has] for o in batch["outputs"]]
                values, classes = self.projector.project([a[has] for a in ins], outs)
                w.add_projected({k: v for k, v in values.items() if k.startswith("output")},
                                classes)
        w.sketches[LATENCY].update(np.asarray(batch["latency_s"][c0:c1], np.float64) * 1e3)
        w.engines.update(e or "none" for e in batch["engines"][c0:c1])
        for fb in batch["fallbacks"][c0:c1]:
            if fb:
                w.fallbacks.update(fb)
        w.calls += c1 - c0
        w.end_ns = time.time_ns()

    def _close_window(self) -> None:
        w = self._window
        self._window = Window(self.spec)
        spool_drops = self.spool.dropped
        if spool_drops:
            w.dropped += spool_drops  # reported to the server in this window
            self.stats["spool_dropped"] += spool_drops
            (self.spool.dir / "dropped.count").unlink(missing_ok=True)
        upload_id = uuid.uuid4().hex
        attrs = {**self.resource, "edgeyard.upload_id": upload_id}
        self.spool.put(upload_id, otlp.window_bytes(w, attrs))
        self.stats["windows"] += 1
        self._wake_upload.set()

    def _aggregate_loop(self) -> None:
        # wake rarely and work in big batches: fewer, larger numpy calls hold the GIL less
        while not self._stop.wait(0.25):
            try:
                self._drain()
            except Exception:
                self.stats["aggregate_errors"] = self.stats.get("aggregate_errors", 0) + 1

    def _upload_loop(self) -> None:
        delay: float | None = None
        while not self._stop.is_set():
            if delay is None:  # nothing to send: sleep until a window closes
                self._wake_upload.wait(1.0)
                self._wake_upload.clear()
            elif delay > 0:  # backing off
                if self._stop.wait(delay):
                    return
            try:
                delay = self.upload_once()
            except Exception:
                delay = self.backoff_s

    def upload_once(self) -> float | None:
        """Try to upload the oldest spooled windows. Returns None when the spool is empty (or
        there is no endpoint), 0.0 to go on at once, or the seconds to wait before retrying."""
        if self.endpoint is None:
            return None
        if self.upload_policy is not None and not self.upload_policy():
            return 5.0
        files = self.spool.pending()[: self.batch_windows]
        if not files:
            self._attempt = 0
            return None
        body = gzip.compress(otlp.join([f.read_bytes() for f in files]))
        req = urllib.request.Request(self.endpoint, data=body, method="POST", headers={
            "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip",
            **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}),
        })
        self.stats["attempts"] += 1
        status, retry_after = None, None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            retry_after = exc.headers.get("Retry-After")
        except (urllib.error.URLError, OSError):
            status = None
        self.stats["last_status"] = status
        if status is not None and 200 <= status < 300:
            self.spool.remove(files)
            self.stats["uploaded"] += len(files)
            self._attempt = 0
            return 0.0
        if status is not None and 400 <= status < 500 and status not in RETRYABLE:
            # the server will never take these bytes: drop them (OTLP/HTTP: no retry)
            self.spool.remove(files)
            self.stats["rejected"] += len(files)
            return 0.0
        self._attempt += 1
        wait = min(self.backoff_max_s, self.backoff_s * 2 ** (self._attempt - 1))
        wait *= random.uniform(0.5, 1.0)  # jitter: a fleet must not retry in lockstep
        if retry_after:
            try:
                wait = max(wait, float(retry_after))
            except ValueError:
                pass
            self.stats["retry_after_s"] = retry_after
        return wait

    # --- control ------------------------------------------------------------------------------

    def flush(self, timeout_s: float = 10.0) -> None:
        """Summarize everything queued, close the current window into the spool, and try one
        upload now (does not wait for a server that is down)."""
        batches = self._take()
        with self._window_lock:
            for batch in batches:
                self._add_windowed(batch)
            if self._window.calls or self._window.dropped:
                self._close_window()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.upload_once() != 0.0:  # done, or the server wants us to wait
                    break
            except Exception:
                break

    def close(self, flush: bool = True) -> None:
        if flush:
            self.flush()
        self._stop.set()
        self._wake_upload.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
