"""The device's side of a rollout: fetch the assigned release, verify it, self-test it, swap it in
atomically, and keep the previous one for a rollback that needs no network.

    updater = Updater(root="app_data/models", server="https://models.example", model="digits",
                      profile="pixel-8", device_id=device_id, api_key=key,
                      public_key="release.pub.pem")
    deployment = Deployment(updater, collector_options={"endpoint": ..., "api_key": key})
    y = deployment.predict(x)            # the serving release answers; swaps happen between calls

On disk, under `root`: `releases/<version>-<manifest sha256[:12]>/` (one directory per release
received), `current` and `previous` (symlinks to two of them), `state.json` (what failed here and
why), `staging-*` (a download in progress; a cut download resumes with HTTP Range).

A release is taken only when every check passes, in this order: its Ed25519 signature verifies
with the app's public key (release.json.sig over release.json's bytes as downloaded, checked
before they are parsed; a release in the old embedded format still verifies, with a deprecation
warning), the manifest names the assigned model and version (an old signed release replayed
under a new version is refused), every file it lists has the size and sha256 the signed manifest
records, and `Runtime.from_release` loads it
with its primary engine passing the self-test on the golden inputs. Then `current` is swapped
with one `rename` (atomic on POSIX); `previous` keeps what served before. A release that fails
a check of what was served (signature, manifest, size, sha256) is recorded in `state.json` at
once and not fetched again while the server keeps assigning it. One that verifies but does not
load or fails its self-test here may have met a passing cause (memory pressure, a busy
accelerator, an interpreter race): its verified files stay staged and the next polls try it again,
`load_attempts` times in all, before it is refused the same way. The device keeps serving what it
has meanwhile, and so it does when the server cannot be reached.

`Deployment.predict` reverts to `previous` on its own, with no network, when the new release's
engines all fail (`AllEnginesFailed` `revert_after` times in a row) after a swap. Telemetry is
built from the serving release, so every window carries `edgeyard.release`: the server tells the
cohorts apart by it.

Device-side code: numpy, the runtime wheels, the standard library (urllib), `cryptography`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import shutil
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._files import write_json_atomic
from .._hashing import sha256_file
from ..errors import EdgeyardError
from ..release import read_manifest
from ..signing import SIGNATURE_FILE  # a name only: `cryptography` loads on first verify

CHUNK = 1 << 16
MAX_SIGNATURE_FILE = 1024


class UpdateError(EdgeyardError):
    """A release could not be taken (download, verification or self-test failed)."""


class Unhealthy(UpdateError):
    """A release that verified but does not load or fails its self-test on this device: tried
    again at later polls (`Updater.load_attempts` in all) before it is refused."""


class Interrupted(UpdateError):
    """A download that did not finish (network, server): it resumes on the next poll; the
    release is not refused for it."""


@dataclass(frozen=True)
class Assignment:
    model: str
    release: str
    manifest_sha256: str
    poll_s: float
    rollout: str | None


class Updater:
    """Polls the server for this device's release and installs it (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str], server: str, model: str, profile: str,
                 device_id: str, *, api_key: str | None = None, public_key: Any = None,
                 allow_unsigned: bool = False, poll_s: float = 300.0, timeout_s: float = 30.0,
                 backoff_max_s: float = 3600.0, threads: int | None = None,
                 load_attempts: int = 3,
                 on_swap: Callable[[Path], None] | None = None) -> None:
        if public_key is None and not allow_unsigned:
            raise UpdateError("an updater needs the release public key (public_key=...) to "
                              "verify what it installs; allow_unsigned=True only for tests")
        if not isinstance(load_attempts, int) or load_attempts < 1:
            raise UpdateError(f"load_attempts must be an integer >= 1 (got {load_attempts!r}): "
                              f"how many polls may try a release that does not load here")
        self.root = Path(root)
        (self.root / "releases").mkdir(parents=True, exist_ok=True)
        self.server = server.rstrip("/")
        self.model, self.profile, self.device_id = model, profile, device_id
        self.api_key, self.public_key, self.allow_unsigned = api_key, public_key, allow_unsigned
        self.poll_s, self.timeout_s, self.backoff_max_s = poll_s, timeout_s, backoff_max_s
        self.threads = threads
        self.load_attempts = load_attempts
        self.on_swap = on_swap
        self._unnotified: Path | None = None  # swapped to, but on_swap raised (see _notify)
        self.stats: dict[str, Any] = {"polls": 0, "installs": 0, "refused": 0, "offline": 0,
                                      "reverts": 0, "last_error": None}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0

    # --- what is installed --------------------------------------------------------------------

    def current(self) -> Path | None:
        link = self.root / "current"
        return link.resolve() if link.exists() else None

    def previous(self) -> Path | None:
        link = self.root / "previous"
        return link.resolve() if link.exists() else None

    def serving_release(self) -> str | None:
        cur = self.current()
        if cur is None:
            return None
        return str(read_manifest(cur)["model"]["version"])

    def _state(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / "state.json").read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return {"failed": {}}

    def _save_state(self, state: dict[str, Any]) -> None:
        write_json_atomic(self.root / "state.json", state, indent=1)

    def refused(self) -> dict[str, str]:
        """Releases this device refused, `<version>@<manifest sha256>` -> why."""
        return dict(self._state().get("failed", {}))

    # --- polling ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="edgeyard-updater",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 5)
            self._thread = None

    def _loop(self) -> None:
        delay = random.uniform(0, min(self.poll_s, 30.0))  # a fleet must not poll in lockstep
        while not self._stop.wait(delay):
            try:
                self.poll_once()
                self._failures = 0
                delay = self.poll_s * random.uniform(0.8, 1.2)
            except Exception as exc:  # offline or refused: keep serving, back off
                self._failures += 1
                self.stats["last_error"] = f"{type(exc).__name__}: {exc}"
                delay = min(self.backoff_max_s, self.poll_s * 2 ** min(self._failures, 10))
                delay *= random.uniform(0.5, 1.0)

    def _get(self, url: str, headers: dict[str, str] | None = None) -> Any:
        req = urllib.request.Request(url, headers={
            **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}),
            **(headers or {})})
        return urllib.request.urlopen(req, timeout=self.timeout_s)

    def assignment(self) -> Assignment | None:
        """What the server wants this device to serve (None: nothing assigned)."""
        q = urllib.parse.urlencode({"model": self.model, "device": self.device_id,
                                    "profile": self.profile,
                                    "release": self.serving_release() or ""})
        try:
            with self._get(f"{self.server}/v1/assignment?{q}") as resp:
                if resp.status == 204:
                    return None
                d = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (204, 404):
                return None
            raise
        poll = float(d.get("poll_s") or self.poll_s)
        return Assignment(d["model"], str(d["release"]), d["manifest_sha256"], poll,
                          d.get("rollout"))

    def poll_once(self) -> str:
        """One poll: "unchanged", "installed <version>", "refused <version>: why",
        "interrupted <version>: why" (resumes next poll), "deferred <version>: why (attempt n of
        N)" (verified, but it did not load or self-test here: tried again next poll), "loaded
        <version>" (installed before, its load by the app failed and now worked), "none"."""
        self.stats["polls"] += 1
        try:
            a = self.assignment()
        except (urllib.error.URLError, OSError):
            self.stats["offline"] += 1
            raise
        if a is None:
            return "none"
        self.poll_s = a.poll_s
        key = f"{a.release}@{a.manifest_sha256}"
        cur = self.current()
        if cur is not None and cur.name == _dirname(a.release, a.manifest_sha256):
            if self._unnotified is not None:  # installed, but the app failed to load it
                self._notify(self._unnotified)
                return f"loaded {a.release}"
            return "unchanged"
        if key in self._state().get("failed", {}):
            return f"refused {a.release}: {self._state()['failed'][key]}"
        prev = self.previous()
        if prev is not None and prev.name == _dirname(a.release, a.manifest_sha256):
            self._swap(prev)  # back to what served before (a rollback): no download
            return f"installed {a.release}"
        try:
            staged = self._download(a)
            self._check(staged, a)
        except Interrupted as exc:
            self.stats["last_error"] = str(exc)
            return f"interrupted {a.release}: {exc}"
        except Unhealthy as exc:
            n = self._attempted(key)
            if n < self.load_attempts:  # the staged files stay: the next poll loads them again
                self.stats["last_error"] = str(exc)
                return f"deferred {a.release}: {exc} (attempt {n} of {self.load_attempts})"
            self._refuse(key, f"{exc} ({n} attempts)", a)
            return f"refused {a.release}: {exc} ({n} attempts)"
        except UpdateError as exc:
            self._refuse(key, str(exc), a)
            return f"refused {a.release}: {exc}"
        final = self.root / "releases" / _dirname(a.release, a.manifest_sha256)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staged, final)
        self._forget_attempts(key)
        self._swap(final)
        self.stats["installs"] += 1
        return f"installed {a.release}"

    def _attempted(self, key: str) -> int:
        """Count one more failed load of `key` in `state.json` (it survives a restart of the
        app); how many there have been."""
        state = self._state()
        attempts = state.setdefault("attempts", {})
        attempts[key] = int(attempts.get(key, 0)) + 1
        self._save_state(state)
        return int(attempts[key])

    def _forget_attempts(self, key: str) -> None:
        state = self._state()
        if key in state.get("attempts", {}):
            del state["attempts"][key]
            self._save_state(state)

    def _refuse(self, key: str, why: str, a: Assignment | None = None) -> None:
        state = self._state()
        state.setdefault("failed", {})[key] = why
        state.get("attempts", {}).pop(key, None)
        self._save_state(state)
        self.stats["refused"] += 1
        if a is not None:  # not fetched again: its staged files go
            shutil.rmtree(self.root / f"staging-{_dirname(a.release, a.manifest_sha256)}",
                          ignore_errors=True)

    # --- download and checks ------------------------------------------------------------------

    def _download(self, a: Assignment) -> Path:
        staging = self.root / f"staging-{_dirname(a.release, a.manifest_sha256)}"
        staging.mkdir(exist_ok=True)
        base = (f"{self.server}/v1/releases/{urllib.parse.quote(a.model)}/"
                f"{urllib.parse.quote(a.release)}/files/")
        self._fetch(base + "release.json", staging / "release.json", a.manifest_sha256, None)
        sig = self._fetch_signature(base + SIGNATURE_FILE, staging / SIGNATURE_FILE)
        # the signature first, over the bytes as downloaded; only then are they parsed
        manifest = self._verify_signature((staging / "release.json").read_bytes(), sig, a)
        if manifest.get("model", {}).get("name") != a.model or \
                str(manifest.get("model", {}).get("version")) != a.release:
            raise UpdateError(f"the manifest served as {a.model} {a.release} is "
                              f"{manifest.get('model', {}).get('name')} "
                              f"{manifest.get('model', {}).get('version')} (replayed or mixed up)")
        for rel, sha, size in _files(manifest, self.profile):
            self._fetch(base + urllib.parse.quote(rel), staging / rel, sha, size)
        return staging

    def _fetch(self, url: str, dest: Path, sha256: str, size: int | None) -> None:
        """Download `url` into `dest`, resuming a partial file with Range; check the sha256."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() and sha256_file(dest) == sha256:
            return
        part = dest.with_name(dest.name + ".part")
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with self._get(url, headers) as resp, open(part, "ab" if have else "wb") as f:
                if have and resp.status != 206:  # the server sent the whole file again
                    f.seek(0)
                    f.truncate()
                total = _expected_total(resp)
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    if size is not None and f.tell() > size:
                        raise UpdateError(f"{dest.name} is larger than the signed manifest "
                                          f"says ({size} bytes)")
                # http.client ends a body cut short as if it were complete: check the length
                short = [n for n in (total, size) if n is not None and f.tell() < n]
                if short:
                    raise Interrupted(f"download of {dest.name} was cut at {f.tell()} of "
                                      f"{short[0]} bytes")
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # the partial file is complete already (or wrong): start over
                part.unlink(missing_ok=True)
            raise Interrupted(f"download of {dest.name} failed: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            # cut mid-way: the part stays, the next poll resumes it with Range
            raise Interrupted(f"download of {dest.name} was cut: {exc}") from None
        got = sha256_file(part)
        if got != sha256:
            part.unlink(missing_ok=True)
            raise UpdateError(f"{dest.name} does not match its sha256 (tampered or corrupt)")
        os.replace(part, dest)

    def _fetch_signature(self, url: str, dest: Path) -> bytes | None:
        """release.json.sig (small, and its own check is the signature): None when the server
        has none (an unsigned release, or one in the old embedded format)."""
        try:
            with self._get(url) as resp:
                data: bytes = resp.read(MAX_SIGNATURE_FILE + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                dest.unlink(missing_ok=True)
                return None
            raise Interrupted(f"download of {dest.name} failed: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise Interrupted(f"download of {dest.name} was cut: {exc}") from None
        if len(data) > MAX_SIGNATURE_FILE:
            raise UpdateError(f"{dest.name} is larger than {MAX_SIGNATURE_FILE} bytes: not a "
                              f"signature")
        dest.write_bytes(data)  # the runtime checks it again when it loads the release
        return data

    def _verify_signature(self, data: bytes, sig: bytes | None, a: Assignment) -> dict[str, Any]:
        """The manifest parsed from `data`, once its signature holds (UpdateError otherwise)."""
        if self.public_key is not None:
            from ..signing import verify_bytes

            verdict = verify_bytes(data, sig, self.public_key)
            if not verdict.manifest_ok:
                raise UpdateError(f"signature check failed: {verdict.reason}")
            if verdict.deprecated:
                self.stats["deprecated"] = f"{a.release}: {verdict.deprecated}"
        # allow_unsigned (tests only) parses unchecked bytes
        try:
            manifest = json.loads(data)
        except ValueError as exc:
            raise UpdateError(f"release.json of {a.release} is not JSON: {exc}") from None
        if not isinstance(manifest, dict):
            raise UpdateError(f"release.json of {a.release} is not a JSON object")
        return manifest

    def _check(self, staged: Path, a: Assignment) -> None:
        """The release loads here and its primary engine passes the self-test (Unhealthy when
        not)."""
        from .runtime import Runtime

        try:
            rt = Runtime.from_release(staged, self.profile, self.public_key,
                                      allow_unsigned=self.allow_unsigned, threads=self.threads)
        except Exception as exc:
            raise Unhealthy(f"it does not load: {type(exc).__name__}: {exc}") from None
        try:
            engines = rt.status()["engines"]
            if not engines or engines[0]["state"] != "healthy":
                why = engines[0].get("reason") if engines else "no engine"
                raise Unhealthy(f"its primary engine failed the self-test: {why}")
        finally:
            rt.close()

    # --- swapping -----------------------------------------------------------------------------

    def _swap(self, target: Path) -> None:
        with self._lock:
            cur = self.current()
            if cur is not None and cur != target:
                _link(self.root / "previous", cur)
            _link(self.root / "current", target)
            self._prune()
        self._notify(target)

    def _notify(self, target: Path) -> None:
        """Tell `on_swap` what serves now. When it raises (the app could not load the release:
        a transient error of the loader), the swap stays on disk and every later poll tries
        again, instead of answering "unchanged" to a device still serving the old runtime."""
        if self.on_swap is None:
            return
        self._unnotified = target
        self.on_swap(target)
        self._unnotified = None

    def revert(self, why: str) -> bool:
        """Serve `previous` again, now, with no network; the release reverted from is refused
        from then on. False when there is nothing to go back to."""
        with self._lock:
            cur, prev = self.current(), self.previous()
            if prev is None or cur is None:
                return False
            manifest = read_manifest(cur)
            key = f"{manifest['model']['version']}@{_manifest_sha(cur)}"
            _link(self.root / "current", prev)
            _link(self.root / "previous", cur)
        self._refuse(key, f"reverted on the device: {why}")
        self.stats["reverts"] += 1
        self._notify(prev)
        return True

    def _prune(self) -> None:
        keep = {p for p in (self.current(), self.previous()) if p is not None}
        for d in (self.root / "releases").iterdir():
            if d.resolve() not in keep:
                shutil.rmtree(d, ignore_errors=True)


def _close(rt: Any, collector: Any) -> None:
    if rt is not None:
        rt.close()
    if collector is not None:
        collector.close()  # flushes its last window and uploads what is spooled; never raises


def _expected_total(resp: Any) -> int | None:
    """The whole file's length as the response states it (Content-Range of a 206, else
    Content-Length), None when it does not."""
    crange = resp.headers.get("Content-Range") or ""
    if resp.status == 206 and "/" in crange and crange.rsplit("/", 1)[1].isdigit():
        return int(crange.rsplit("/", 1)[1])
    length = resp.headers.get("Content-Length")
    return int(length) if resp.status == 200 and length and length.isdigit() else None


def _dirname(release: str, manifest_sha: str) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in release)
    return f"{safe}-{manifest_sha[:12]}"


def _manifest_sha(directory: Path) -> str:
    return hashlib.sha256((directory / "release.json").read_bytes()).hexdigest()


def _files(manifest: dict[str, Any], profile: str) -> list[tuple[str, str, int | None]]:
    """(path, sha256, size) of every file the device needs: the profile's artifacts, the golden
    data, the telemetry reference and projection directions (a native collector reads them)."""
    out: list[tuple[str, str, int | None]] = []
    if profile not in manifest.get("profiles", {}):
        raise UpdateError(f"the release has no profile {profile!r}")
    for entry in manifest["profiles"][profile]["chain"]:
        a = manifest["artifacts"][entry["target"]]
        if a.get("path") and a.get("sha256") and entry.get("status") in ("ok", "unverified"):
            if a["path"].endswith(".mlpackage"):
                continue  # a bundle directory: not served as one file
            out.append((a["path"], a["sha256"], a.get("size_bytes")))
    g = manifest["golden"]
    out.append((g["path"], g["sha256"], None))
    tel = manifest.get("telemetry")
    if tel:
        out.append((tel["reference"]["path"], tel["reference"]["sha256"], None))
        if tel.get("directions"):
            out.append((tel["directions"]["path"], tel["directions"]["sha256"], None))
    for rel, _, _ in out:
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise UpdateError(f"the manifest names a file outside the release: {rel!r}")
    return out


def _link(link: Path, target: Path) -> None:
    tmp = link.with_name(f".{link.name}-{os.getpid()}-{threading.get_ident()}")
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)


class Deployment:
    """The app's handle on an updating model: the serving release's runtime (and collector),
    rebuilt when the updater swaps a release in, reverted on the spot when a new release's
    engines all fail."""

    def __init__(self, updater: Updater, *, collector_options: dict[str, Any] | None = None,
                 revert_after: int = 3, poll: bool = True,
                 runtime_options: dict[str, Any] | None = None) -> None:
        self.updater = updater
        self.collector_options = collector_options
        self.runtime_options = runtime_options or {}
        self.revert_after = revert_after
        self._lock = threading.RLock()
        # calls in flight per runtime: an old runtime is closed only once none is using it
        # (closing a native interpreter under a running call crashes the process)
        self._idle = threading.Condition(self._lock)
        self._inflight: dict[int, int] = {}
        self._rt: Any = None
        self._collector: Any = None
        self._release: str | None = None  # the version of the runtime that serves
        self._failed_in_a_row = 0
        updater.on_swap = self._on_swap
        if updater.current() is None:
            try:
                updater.poll_once()
            except Exception as exc:  # offline at first start: nothing to serve yet
                updater.stats["last_error"] = f"{type(exc).__name__}: {exc}"
        self._load()
        if poll:
            updater.start()

    def _load(self) -> None:
        from .runtime import Runtime

        cur = self.updater.current()
        if cur is None:
            return
        collector = None
        if self.collector_options is not None:
            from ..telemetry.collector import Collector

            opts = dict(self.collector_options)
            spool = opts.pop("spool_dir", None) or tempfile.mkdtemp(prefix="edgeyard-spool-")
            collector = Collector.from_release(cur, opts.pop("endpoint", None), spool,
                                               device_id=self.updater.device_id, **opts)
        rt = Runtime.from_release(cur, self.updater.profile, self.updater.public_key,
                                  allow_unsigned=self.updater.allow_unsigned,
                                  threads=self.updater.threads, collector=collector,
                                  **self.runtime_options)
        version = str(read_manifest(cur)["model"]["version"])
        with self._lock:
            old_rt, old_col = self._rt, self._collector
            self._rt, self._collector, self._release = rt, collector, version
            self._failed_in_a_row = 0
        if old_rt is not None or old_col is not None:  # off the swap's path: the calls still
            # running on the old runtime finish first, and a collector's close uploads
            threading.Thread(target=self._close_when_idle, args=(old_rt, old_col),
                             name="edgeyard-close-old", daemon=True).start()

    def _on_swap(self, _target: Path) -> None:
        self._load()

    @property
    def release(self) -> str | None:
        """The version whose runtime answers `predict` now."""
        return self._release

    def predict(self, x: Any) -> Any:
        from .runtime import AllEnginesFailed

        with self._lock:
            rt = self._rt
            if rt is not None:
                self._inflight[id(rt)] = self._inflight.get(id(rt), 0) + 1
        if rt is None:
            raise UpdateError("no release installed yet (the server was not reachable)")
        try:
            y = rt.predict(x)
        except AllEnginesFailed:
            self._done(rt)
            with self._lock:
                self._failed_in_a_row += 1
                revert = self._failed_in_a_row >= self.revert_after
            if revert and self.updater.revert(f"every engine failed {self.revert_after} calls "
                                              f"in a row"):
                return self.predict(x)
            raise
        except BaseException:
            self._done(rt)
            raise
        self._done(rt)
        self._failed_in_a_row = 0
        return y

    def _done(self, rt: Any) -> None:
        with self._idle:
            left = self._inflight.get(id(rt), 1) - 1
            if left > 0:
                self._inflight[id(rt)] = left
            else:
                self._inflight.pop(id(rt), None)
                self._idle.notify_all()

    def _close_when_idle(self, rt: Any, collector: Any) -> None:
        with self._idle:
            self._idle.wait_for(lambda: id(rt) not in self._inflight, timeout=60)
        _close(rt, collector)

    def close(self) -> None:
        self.updater.stop()
        with self._lock:
            if self._rt is not None:
                self._rt.close()
            if self._collector is not None:
                self._collector.close()
            self._rt = self._collector = None
