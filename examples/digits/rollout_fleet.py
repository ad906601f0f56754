"""A simulated fleet for rollouts (used by journey.py and tests/server/test_rollouts.py): signed
copies of a release under other version numbers, and devices (threads) that run the real
updater, runtime and collector against a real `edgeyard serve`."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def versions_of(release_dir: Path, out: Path, versions: list[str],
                keys: tuple[Path, Path] | None = None) -> tuple[dict[str, Path], Path]:
    """Copies of a built release under other version numbers (the same model: an A/A), each
    signed with `keys` (private, public; default: a new pair); returns the directories and the
    public key."""
    from edgeyard.signing import generate_keys, sign_release

    key, pub = keys or generate_keys(out / "keys" / "release.pem")
    dirs = {}
    for v in versions:
        d = out / f"digits-{v}"
        shutil.copytree(release_dir, d)
        m = json.loads((d / "release.json").read_text())
        m["model"]["version"] = v
        (d / "release.json").write_text(json.dumps(m, indent=2))
        sign_release(d, key)  # a new release.json.sig over the edited bytes
        dirs[v] = d
    return dirs, pub


class Faulty:
    """The primary engine of a bad release: raises on a share of the calls made from the app's
    thread (the field); the self-test at load, run by the updater, passes."""

    def __init__(self, engine: Any, rate: float, seed: int, field: threading.Thread) -> None:
        self.engine, self.rate, self.field = engine, rate, field
        self.rng = np.random.default_rng(seed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def predict(self, inputs: Any) -> Any:
        if threading.current_thread() is self.field and self.rng.random() < self.rate:
            raise RuntimeError("injected fault: the delegate crashed")
        return self.engine.predict(inputs)


class Device(threading.Thread):
    """One device: an updater polling the server, the serving release's runtime and collector,
    and an app calling predict at its own pace. `bad`: version -> share of the primary
    engine's calls that fail (after the self-test: faults come from the field)."""

    def __init__(self, i: int, root: Path, server: str, key: str, pub: Path, x: np.ndarray,
                 bad: dict[str, float], poll_s: float, pace_s: float = 0.004,
                 profile: str = "host", model: str = "digits", window_s: float = 0.5) -> None:
        super().__init__(name=f"device-{i}", daemon=True)
        self.i, self.x, self.bad, self.pace_s = i, x, bad, pace_s
        self.device_id = f"device-{i:03d}"
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.served: dict[str, int] = {}
        self.history: list[tuple[float, str | None]] = []  # (time, serving release) on change
        from edgeyard.runtime.breaker import BreakerPolicy
        from edgeyard.runtime.updater import Deployment, Updater

        self.updater = Updater(root / self.device_id, server, model, profile, self.device_id,
                               api_key=key, public_key=pub, poll_s=poll_s, threads=1)
        self.deployment = Deployment(
            self.updater, poll=True,
            collector_options={"endpoint": server + "/v1/metrics", "api_key": key,
                               "spool_dir": str(root / self.device_id / "spool"),
                               "window_s": window_s, "window_calls": 200, "max_overhead": None},
            # the devices are threads of one process: a call's wall time includes its wait for
            # the GIL, so the runtime's latency budget (which demotes an engine whose p90 is
            # over it) would act on the simulation's queue: it is off here
            runtime_options={"wrap_engine": self._wrap,
                             "breaker": BreakerPolicy(latency_min_calls=10**9)})
        self.swaps: list[tuple[float, str]] = []  # (time, release) the updater swapped in
        swap = self.updater.on_swap

        def noted(target: Path) -> None:
            self.swaps.append((time.time(), target.name.rsplit("-", 1)[0]))
            assert swap is not None
            swap(target)

        self.updater.on_swap = noted
        # (started, ended, result) of every poll: when a device looked, and what it did
        self.polls: list[tuple[float, float, str]] = []
        poll_once = self.updater.poll_once

        def logged() -> str:
            t0 = time.time()
            got = "error"
            try:
                got = poll_once()
                return got
            finally:
                self.polls.append((t0, time.time(), got))

        self.updater.poll_once = logged  # type: ignore[method-assign]
        self._note()

    def _wrap(self, target: str, engine: Any) -> Any:
        release = self.updater.serving_release()  # `current` points at what loads
        rate = self.bad.get(release or "", 0.0)
        if rate and target == self.primary(release):  # the bad release's primary engine
            return Faulty(engine, rate, self.i, self)
        return engine

    def primary(self, release: str | None) -> str | None:
        cur = self.updater.current()
        if cur is None:
            return None
        m = json.loads((cur / "release.json").read_text())
        chain = m["profiles"][self.updater.profile]["chain"]
        return next((e["target"] for e in chain if e.get("status") in ("ok", "unverified")),
                    None)

    def _note(self) -> None:
        r = self.deployment.release
        if not self.history or self.history[-1][1] != r:
            self.history.append((time.time(), r))

    def run(self) -> None:
        rng = np.random.default_rng(self.i)
        while not self.stop.is_set():
            try:
                self.deployment.predict(self.x[int(rng.integers(len(self.x)))][None])
                r = self.deployment.release or "none"
                self.served[r] = self.served.get(r, 0) + 1
            except Exception as exc:  # recorded: the test asserts there are none
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._note()
            time.sleep(self.pace_s)

    def close(self, timeout_s: float = 30.0) -> None:
        self.stop.set()
        self.join(timeout=timeout_s)
        self.deployment.close()

    def describe(self) -> str:
        """What this device serves, its last polls and its updater's counters (for a test's
        failure message)."""
        polls = [(round(t1 - t0, 1), got[:80]) for t0, t1, got in self.polls[-3:]]
        return (f"{self.device_id}: serving {self.deployment.release}, alive {self.is_alive()}, "
                f"last polls (seconds, result) {polls}, updater {self.updater.stats}")


def close_all(devices: list[Device], timeout_s: float = 60.0) -> None:
    """Stop every device at once, then close each (the whole fleet waits `timeout_s` at most
    for its app threads, not each device in turn)."""
    for d in devices:
        d.stop.set()
    deadline = time.monotonic() + timeout_s
    for d in devices:
        d.close(max(0.1, deadline - time.monotonic()))
