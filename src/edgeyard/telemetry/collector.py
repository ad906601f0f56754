"""The on-device telemetry collector: summarize every call, never block inference, upload OTLP.

    collector = Collector.from_release("digits-1.0/", endpoint="https://t.example/v1/metrics",
                                       api_key=..., spool_dir=app_dir / "telemetry")
    rt = Runtime.from_release("digits-1.0/", profile="pixel-8", public_key=key,
                              collector=collector)

`on_call` (the runtime's observer hook) only appends the call to an in-memory log (`CallLog`:
bounded; overflow is counted, never waited on). Counters and latency are exact for every call; the
input and output signals come from every call, or, when the model is so fast that copying each
call would cost more than `max_overhead` (default 5%) of its latency, from a uniform random
sample of calls whose rate adapts to the measured latency (the window says how many calls were
sampled). A background thread drains the log in batches, runs the release's projections
vectorized, and updates the current window; a window closes after
`window_s` seconds or `window_calls` calls, becomes an OTLP ResourceMetrics, and goes to the disk
spool before any upload. A second thread uploads spooled windows (gzip, several per request),
with exponential backoff and jitter, honouring Retry-After, never retrying a 4xx other than 408
and 429 (OTLP/HTTP), and only when `upload_policy()` allows (e.g. unmetered network). Nothing raw
leaves the device: only sketches and counters.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import random
import secrets
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write
from . import otlp
from .calllog import CallLog
from .projections import Projector
from .sketch import ExpHistogram
from .spool import Spool
from .window import LATENCY, Window

_LOG = logging.getLogger("edgeyard.telemetry")


def _primary_sha(manifest: dict[str, Any], profile: str) -> str:
    primary = manifest["profiles"][profile]["chain"][0]["target"]
    return str(manifest["artifacts"][primary].get("sha256") or "")
RETRYABLE = {408, 429, 502, 503, 504}
MAX_EVERY = 1000  # sample at least one call in a thousand


def _costs(spec: dict[str, Any], io: tuple[list[dict[str, Any]], list[dict[str, Any]]]
           ) -> tuple[float, float, float]:
    """Seconds, on this device, that `CallLog.record` takes for a sampled and for an unsampled
    call of the model's shapes, and that the projections and signal sketches take per extra
    sample in a batch (random data, timed once at start-up, best of 5)."""
    rng = np.random.default_rng(0)

    def arrays(specs: list[dict[str, Any]], n: int) -> list[np.ndarray]:
        out = []
        for sp in specs:
            shape, dtype = [n] + [max(1, d) for d in sp["shape"][1:]], np.dtype(sp["dtype"])
            a = rng.integers(0, 100, shape) if dtype.kind in "iub" else rng.normal(0, 1, shape)
            out.append(a.astype(dtype))
        return out

    def best(fn: Callable[[], None], reps: int) -> float:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            times.append((time.perf_counter() - t0) / reps)
        return min(times)

    ins, outs = tuple(arrays(io[0], 1)), arrays(io[1], 1)
    hot = []
    for every in (1.0, float(MAX_EVERY)):
        log = CallLog(1 << 20, seed=0)
        log.set_every(every)
        hot.append(best(functools.partial(log.record, ins, outs, "x", 1e-3, ()), 200))
    projector, big, small = Projector(spec), 512, 32
    per_batch = {}
    for n in (big, small):
        window = Window(spec)
        per_batch[n] = best(functools.partial(window.add_batch, projector, arrays(io[0], n),
                                              arrays(io[1], n)), 2)
    per_sample = max(0.0, (per_batch[big] - per_batch[small]) / (big - small))
    return hot[0], hot[1], per_sample


def pseudonymous_id(spool_dir: Path, device_id: str | None) -> str:
    """sha256(salt + id): the salt is random per install and never leaves the device; without an
    app-provided id, a random install id is used. Never a hardware identifier."""
    salt_file = spool_dir / "salt"
    if not salt_file.exists():
        atomic_write(salt_file, secrets.token_hex(16), prefix=".tmp-salt-")
    salt = salt_file.read_text().strip()
    if device_id is None:
        id_file = spool_dir / "install_id"
        if not id_file.exists():
            atomic_write(id_file, uuid.uuid4().hex, prefix=".tmp-install_id-")
        device_id = id_file.read_text().strip()
    return hashlib.sha256(f"{salt}:{device_id}".encode()).hexdigest()[:32]


class Collector:
    """Summarizes every call of a runtime (or of `observe`) into windows and uploads them.

    Most arguments have device-friendly defaults: `window_s` / `window_calls` close a window on
    time or count; `max_queue` / `queue_bytes` bound the calls held in memory between two drains
    (a quarter of a second); `spool_bytes` / `spool_age_s` bound the disk spool; `max_overhead`
    is the share of the model's latency the hot path may cost (None: sample every call whatever
    it costs); `upload_policy` says when uploading is allowed."""

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
        queue_bytes: int = 8 * 1024 * 1024,
        max_overhead: float | None = 0.05,
        io: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None,
        start: bool = True,
    ) -> None:
        self.spec = spec
        self.resource = dict(resource)
        # set by from_release: the manifest, and whether the profile was chosen by the caller
        self._manifest: dict[str, Any] | None = None
        self._profile_explicit = True
        self.endpoint = endpoint
        self.api_key = api_key
        self.window_s = window_s
        self.window_calls = window_calls
        self.max_overhead = max_overhead
        self.upload_policy = upload_policy
        self.batch_windows = batch_windows
        self.backoff_s, self.backoff_max_s, self.timeout_s = backoff_s, backoff_max_s, timeout_s
        self.spool = Spool(spool_dir, spool_bytes, spool_age_s)
        self.projector = Projector(spec)
        # calls held in memory between two drains: bounded in count and in bytes
        per_call = 1024
        if io is not None:
            per_call += sum(int(np.prod([max(1, d) for d in sp["shape"][1:]]))
                            * np.dtype(sp["dtype"]).itemsize for sp in io[0] + io[1])
        self._log = CallLog(int(max(64, min(max_queue, queue_bytes // per_call))))
        # the hot path is the log's own method: no extra Python frame per call
        self.on_call = self._log.record  # type: ignore[method-assign]
        self._cost = _costs(spec, io) if io is not None and max_overhead else None
        # background CPU seconds per call (counters, latency; smoothed); this drain's CPU spent
        # on what is not per call (signals: per sample; closing windows: per window)
        self._bg_call: float | None = None
        sk = spec.get("sketch", {})
        self._sketch_size = (sk.get("max_size", 160), sk.get("max_scale", 20))
        self._every: float | None = None  # the sampling the measurements ask for (smoothed)
        self._signal_cpu = 0.0
        self._window = Window(spec)
        self._window_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_upload = threading.Event()
        # one upload at a time: `flush()` (the app's thread) and the uploader thread would
        # otherwise both send the windows still pending, and the server would get them twice
        self._upload_lock = threading.Lock()
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
        from ..errors import ManifestError
        from ..release import read_manifest

        manifest = read_manifest(path)
        tel = manifest.get("telemetry")
        if not tel:
            raise ManifestError("this release has no telemetry projections (built by an older "
                             "edgeyard): rebuild it")
        profiles = list(manifest["profiles"])
        explicit = profile is not None
        profile = profile or profiles[0]
        if profile not in manifest["profiles"]:
            raise ValueError(f"release has no profile {profile!r}; it has {', '.join(profiles)}")
        spool = Path(spool_dir)
        spool.mkdir(parents=True, exist_ok=True)
        resource = {
            "service.name": "edgeyard-device",
            "edgeyard.model": manifest["model"]["name"],
            "edgeyard.release": manifest["model"]["version"],
            "edgeyard.profile": profile,
            "edgeyard.artifact.sha256": _primary_sha(manifest, profile),
            "edgeyard.device_id": pseudonymous_id(spool, device_id),
        }
        kw.setdefault("io", (manifest["model"]["inputs"], manifest["model"]["outputs"]))
        col = cls(tel["projections"], resource, endpoint, spool, **kw)
        col._manifest, col._profile_explicit = manifest, explicit
        return col

    def bind_profile(self, profile: str) -> None:
        """Report as the runtime serving `profile` (`Runtime.from_release(collector=...)` calls
        this). A collector whose profile was left to its default takes the runtime's, with that
        profile's primary artifact; one given another profile explicitly is refused: its windows
        would be counted under the wrong devices."""
        current = self.resource.get("edgeyard.profile")
        if current == profile:
            return
        if self._profile_explicit or self._manifest is None:
            raise ValueError(
                f"the telemetry collector reports profile {current!r} but the runtime serves "
                f"{profile!r}: create it with Collector.from_release(..., profile={profile!r}) "
                f"(or leave profile out and let the runtime set it)")
        if profile not in self._manifest["profiles"]:
            raise ValueError(f"release has no profile {profile!r}")
        self.resource["edgeyard.profile"] = profile
        self.resource["edgeyard.artifact.sha256"] = _primary_sha(self._manifest, profile)

    # --- the hot path -------------------------------------------------------------------------

    def on_call(self, inputs: tuple[np.ndarray, ...], outputs: list[np.ndarray] | None,
                engine: str | None, latency_s: float, fallbacks: tuple[Any, ...]) -> None:
        """Runtime observer hook (`RuntimeObserver`): records the call, never waits (when the
        in-memory log is full the call is counted as dropped). Replaced per instance by the
        log's own `record`, so this body only documents the contract."""
        self._log.record(inputs, outputs, engine, latency_s, fallbacks)

    def observe(self, inputs: Any, outputs: Any, engine: str = "app", latency_s: float = 0.0
                ) -> None:
        """Record one call made outside the edgeyard runtime."""
        ins = inputs if isinstance(inputs, tuple) else (inputs,)
        outs = outputs if isinstance(outputs, list) else [outputs]
        self._log.record(tuple(np.asarray(x) for x in ins), [np.asarray(o) for o in outs],
                         engine, latency_s, ())

    # --- background work ----------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        for target, name in ((self._aggregate_loop, "aggregate"), (self._upload_loop, "upload")):
            t = threading.Thread(target=target, name=f"edgeyard-telemetry-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def _drain(self, close: bool = False) -> None:
        """Summarize what the log holds; close the window when its time is up (or `close`)."""
        cpu0, self._signal_cpu = time.thread_time(), 0.0
        batches = self._log.take()
        with self._window_lock:
            dropped, self._log.dropped = self._log.dropped, 0
            self._window.dropped += dropped
            for batch in batches:
                self._add_windowed(batch)
            w = self._window
            if (close and (w.calls or w.dropped)) or \
                    (w.calls and time.time_ns() - w.start_ns >= self.window_s * 1e9):
                self._close_window()
        self._adapt(batches, time.thread_time() - cpu0)

    def _adapt(self, batches: list[dict[str, Any]], cpu_s: float) -> None:
        """Keep what the collector costs per call under `max_overhead` of the median call
        latency by sampling the input and output signals of one call in `every` (counters and
        latency stay exact). Costs are measured on this device, not assumed: what a sampled call
        adds (its record on the hot path, timed in situ, and its projections and sketches here:
        this thread competes for the GIL), and the floor every call pays (an unsampled record,
        and its latency and counters here, measured per drain). every = marginal / (budget -
        floor) (at least a quarter of the budget goes to the samples), smoothed."""
        if self._cost is None:
            return
        lat = [x for b in batches for x in b["latency_s"] if x > 0]
        calls = sum(len(b["latency_s"]) for b in batches)
        if len(lat) < 32:
            return
        per_call = (cpu_s - self._signal_cpu) / calls
        self._bg_call = per_call if self._bg_call is None else \
            0.7 * self._bg_call + 0.3 * per_call
        timings = list(self._log.timings)
        hot = float(np.median(timings)) if len(timings) >= 8 else self._cost[0]
        unsampled = min(self._cost[1], hot)
        floor = unsampled + self._bg_call
        marginal = hot - unsampled + self._cost[2]
        budget = self.max_overhead * float(np.median(lat))  # type: ignore[operator]
        # sampling cannot lower the floor: where the floor takes most of the budget, the sampled
        # part still gets a quarter of it, so that a very fast model keeps a usable sample
        room = max(budget - floor, budget / 4)
        every = min(MAX_EVERY, max(1.0, marginal / room))
        self._every = every if self._every is None else 0.7 * self._every + 0.3 * every
        self._log.set_every(float(np.ceil(self._every)) if self._every > 1.05 else 1.0)

    @property
    def sampling(self) -> float:
        """One call in how many is sampled for the input and output signals right now."""
        return self._log.every

    def _add_windowed(self, batch: dict[str, Any]) -> None:
        """Add a batch, closing a window each time it reaches `window_calls` calls."""
        samples = batch["samples"]
        c0 = s0 = 0
        while c0 < len(samples):
            room = self.window_calls - self._window.calls
            c1 = min(len(samples), c0 + room)
            s1 = s0 + sum(samples[c0:c1])
            self._add(batch, c0, c1, s0, s1)
            if self._window.calls >= self.window_calls:
                self._close_window()
            c0, s0 = c1, s1

    def _add(self, batch: dict[str, Any], c0: int, c1: int, s0: int, s1: int) -> None:
        w = self._window
        if s1 > s0:
            t0 = time.thread_time()
            w.add_batch(self.projector, [a[s0:s1] for a in batch["inputs"]],
                        [o[s0:s1] for o in batch["outputs"]] or None)
            self._signal_cpu += time.thread_time() - t0
            w.sampled += c1 - c0 - batch["samples"][c0:c1].count(0)
        lat_ms = np.array(batch["latency_s"][c0:c1], np.float64) * 1e3
        w.sketches[LATENCY].update(lat_ms)
        engines = ["none" if e is None else e for e in batch["engines"][c0:c1]]
        w.engines.update(engines)
        names = np.array(engines)
        for e in set(engines):
            if e not in w.engine_latency:
                w.engine_latency[e] = ExpHistogram(*self._sketch_size)
            w.engine_latency[e].update(lat_ms[names == e])
        for i, events in batch["fallbacks"]:
            if c0 <= i < c1:
                w.fallbacks.update((f.engine, f.kind, f.reason) for f in events)
        w.calls += c1 - c0
        w.end_ns = time.time_ns()

    def _close_window(self) -> None:
        t0 = time.thread_time()
        w = self._window
        self._window = Window(self.spec)
        try:
            spool_drops = self.spool.take_dropped()
        except OSError:  # the spool is unusable: put below fails too, and says so
            spool_drops = 0
        if spool_drops:
            w.dropped += spool_drops  # reported to the server in this window
            self.stats["spool_dropped"] += spool_drops
        upload_id = uuid.uuid4().hex
        attrs = {**self.resource, "edgeyard.upload_id": upload_id}
        try:
            self.spool.put(upload_id, otlp.window_bytes(w, attrs))
        except OSError as exc:  # a full or read-only disk: the window is lost, the app is not
            self.stats["spool_errors"] = self.stats.get("spool_errors", 0) + 1
            self.stats["lost_windows"] = self.stats.get("lost_windows", 0) + 1
            _LOG.warning("edgeyard telemetry: could not spool a window (%s); it is lost", exc)
            return
        self.stats["windows"] += 1
        self._wake_upload.set()
        self._signal_cpu += time.thread_time() - t0  # per window, not per call

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
        with self._upload_lock:
            return self._upload_batch()

    def _upload_batch(self) -> float | None:
        assert self.endpoint is not None
        if self.upload_policy is not None and not self.upload_policy():
            return 5.0
        listed = self.spool.pending()[: self.batch_windows]
        parts = [(f, self.spool.read(f)) for f in listed]
        files = [f for f, b in parts if b is not None]  # others were removed since listing
        if not files:
            self._attempt = 0
            return None if not listed else 0.0
        body = gzip.compress(otlp.join([b for _, b in parts if b is not None]))
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
        self._drain(close=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.upload_once() != 0.0:  # done, or the server wants us to wait
                    break
            except Exception:
                break

    def close(self, flush: bool = True) -> None:
        """Stop the background threads, after closing the current window into the spool and
        trying one upload (`flush`). Never raises for a telemetry problem: it is logged and
        counted (`stats["close_errors"]`), and the app goes on."""
        if flush:
            try:
                self.flush()
            except Exception as exc:
                self.stats["close_errors"] = self.stats.get("close_errors", 0) + 1
                _LOG.warning("edgeyard telemetry: flushing on close failed: %s: %s",
                             type(exc).__name__, exc)
        self._stop.set()
        self._wake_upload.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
