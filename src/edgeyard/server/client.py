"""A small client of the service's admin API (stdlib only): register releases, run checks.

The admin key comes from `key=`, else `$EDGEYARD_ADMIN_KEY`, else the `admin.key` file that
`edgeyard serve` writes into its data directory (`./edgeyard-data` by default).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import EdgeyardError

DEFAULT_URL = "http://127.0.0.1:4318"


class ServerError(EdgeyardError):
    pass


def admin_key(key: str | None = None, data_dir: str | os.PathLike[str] = "edgeyard-data",
              wait_s: float = 20.0) -> str:
    """The key to use; waits up to `wait_s` for the file of a server that is still starting."""
    if key:
        return key
    if os.environ.get("EDGEYARD_ADMIN_KEY"):
        return os.environ["EDGEYARD_ADMIN_KEY"]
    f = Path(data_dir) / "admin.key"
    deadline = time.monotonic() + wait_s
    while not f.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if f.exists():
        return f.read_text().strip()
    raise ServerError(f"no admin key: pass --key, set $EDGEYARD_ADMIN_KEY, or run next to the "
                      f"server's data directory ({f} is missing)")


class Client:
    def __init__(self, url: str = DEFAULT_URL, key: str | None = None, timeout_s: float = 60.0,
                 connect_wait_s: float = 20.0) -> None:
        self.url = url.rstrip("/")
        self.connect_wait_s = connect_wait_s
        self.key = key
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
              **params: Any) -> Any:
        q = {k: v for k, v in params.items() if v is not None}
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(q)}" if q else "")
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/octet-stream" if raw is not None
                   else "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            return self._open(req)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            try:
                body = json.loads(detail)
                detail = body.get("detail", body.get("message", detail))
            except (ValueError, AttributeError):
                pass
            raise ServerError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServerError(f"cannot reach the server at {self.url}: {exc}") from None

    def _open(self, req: urllib.request.Request) -> Any:
        """One request; a refused connection is retried for `connect_wait_s` (a server that
        is still starting, as right after `edgeyard serve &`)."""
        deadline = time.monotonic() + self.connect_wait_s
        while True:
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read() or b"null")
            except urllib.error.URLError as exc:
                refused = isinstance(exc.reason, ConnectionRefusedError)
                if not refused or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def register(self, release_dir: str | os.PathLike[str], files: bool = True
                 ) -> dict[str, Any]:
        """Upload a release's manifest and build-time reference sketches (drift checks), and
        with `files` every file a device downloads (rollouts): only those the server does not
        hold yet."""
        root = Path(release_dir)
        manifest_file, ref_file = root / "release.json", root / "telemetry" / "reference.json"
        for f in (manifest_file, ref_file):
            if not f.exists():
                raise ServerError(f"{f} is missing: is {root} a release built by edgeyard?")
        body = {"manifest": json.loads(manifest_file.read_text()),
                "reference": json.loads(ref_file.read_text())}
        out: dict[str, Any] = self._call("POST", "/api/releases", body)
        if files:
            base = f"/api/releases/{_q(out['model'])}/{_q(out['release'])}/files"
            missing = self._call("GET", base)["missing"]
            from ..signing import SIGNATURE_FILE

            if SIGNATURE_FILE in missing and not (root / SIGNATURE_FILE).is_file():
                missing.remove(SIGNATURE_FILE)  # unsigned, or signed the old way inside
            for rel in missing:
                f = root / rel
                if not f.is_file():
                    raise ServerError(f"{f} is missing: the release directory is incomplete")
                self._call("PUT", f"{base}/{urllib.parse.quote(rel)}", raw=f.read_bytes())
            out["uploaded"] = missing
        return out

    def set_stable(self, model: str, release: str) -> dict[str, Any]:
        """What the app's devices serve outside a rollout."""
        out: dict[str, Any] = self._call("PUT", f"/api/stable/{_q(model)}", {"release": release})
        return out

    def start_rollout(self, model: str, release: str, **plan: Any) -> dict[str, Any]:
        """Start rolling `release` out (plan: the fields of `edgeyard.rollout.plan.Plan`)."""
        out: dict[str, Any] = self._call("POST", "/api/rollouts",
                                         {"model": model, "release": release, **plan})
        return out

    def rollouts(self, model: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self._call("GET", "/api/rollouts", model=model)
        return out

    def rollout(self, rollout_id: str, action: str | None = None) -> dict[str, Any]:
        """One rollout; with `action` (pause, resume, promote, rollback) after it."""
        if action is None:
            out: dict[str, Any] = self._call("GET", f"/api/rollouts/{_q(rollout_id)}")
        else:
            out = self._call("POST", f"/api/rollouts/{_q(rollout_id)}/{_q(action)}")
        return out

    def drift(self, model: str, release: str | None = None, window: str = "1h",
              profile: str | None = None, end: float | None = None, alert: bool = False,
              baseline: str | None = None) -> dict[str, Any]:
        """A drift check of [end - window, end): against the release's build-time reference,
        or with `baseline` (e.g. "7d") against the app's own data of that period before."""
        out: dict[str, Any] = self._call("GET", "/api/drift", model=model, release=release,
                                         window=window, profile=profile, end=end,
                                         alert=str(alert).lower(), baseline=baseline)
        return out


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")
