"""`agent://host:port`: measure on a device running `edgeyard agent`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from ..bench.process import MeasureError
from ..bench.protocol import Measurement, MeasureSpec
from .base import ArtifactRef, Runner, RunnerError


class AgentRunner(Runner):
    def __init__(self, host: str, port: int, token: str, timeout_s: float = 600.0) -> None:
        self.url = f"agent://{host}:{port}"
        self.base = f"http://{host}:{port}"
        self.token = token
        self.timeout_s = timeout_s
        self._uploaded: set[str] = set()

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> dict[str, Any]:
        req = urllib.request.Request(self.base + path, data=body, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"{}")  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", "")
            except (ValueError, OSError):
                message = ""
            if exc.code == 422 and path == "/v1/measure":
                raise MeasureError(message) from None
            raise RunnerError(f"{self.url} answered {exc.code} to {method} {path}: {message}") \
                from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RunnerError(f"{self.url} is unreachable: {reason}") from None

    def _upload(self, name: str, data: bytes, sha256: str) -> None:
        if name in self._uploaded:
            return
        self._request("PUT", f"/v1/files/{name}", data,
                      {"X-Content-Sha256": sha256, "Content-Type": "application/octet-stream"})
        self._uploaded.add(name)

    def measure(self, refs: Sequence[ArtifactRef], spec: MeasureSpec) -> list[Measurement]:
        items = []
        for ref in refs:
            entry = ref.entry
            art_name = f"{entry['sha256']}{ref.path.suffix}"
            if ref.path.is_dir():
                raise RunnerError(
                    f"{ref.path.name} is a bundle directory ({ref.path.suffix}); the agent "
                    f"protocol sends single files, so measure it with the local runner on a Mac")
            gold_sha = ref.manifest["golden"]["sha256"]
            gold_name = f"{gold_sha}.npz"
            self._upload(art_name, ref.path.read_bytes(), entry["sha256"])
            self._upload(gold_name, ref.golden.read_bytes(), gold_sha)
            items.append({"manifest": ref.manifest, "artifact_id": ref.artifact_id,
                          "artifact": art_name, "golden": gold_name})
        body = json.dumps({"items": items, "spec": spec.to_dict()}).encode()
        out = self._request("POST", "/v1/measure", body, {"Content-Type": "application/json"})
        return [Measurement.from_dict(m) for m in out["measurements"]]

    def close(self) -> None:
        if self._uploaded:
            try:
                self._request("DELETE", "/v1/files")
            except RunnerError:
                pass
            self._uploaded.clear()
