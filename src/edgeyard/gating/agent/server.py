"""The device agent: receives artifacts, checks them against the release manifest, measures them
with the same protocol as the local runner, and returns the raw samples.

HTTP API (every route but /v1/health needs `Authorization: Bearer <token>`):

    GET    /v1/health              {"ok": true, "version": ..., "host": ...}
    PUT    /v1/files/<name>        upload one file; header X-Content-Sha256 must match the body
    POST   /v1/measure             {"items": [{"manifest", "artifact_id", "artifact", "golden"}],
                                    "spec"}: the items measured in one process, calls interleaved
    DELETE /v1/files               remove every uploaded file

Safety: uploads are limited in size (413 before the body is read), names are plain file names
(no separators, no leading dot; 400 otherwise) and every path is checked to stay inside the work
directory; the stored artifact's sha256 must equal the manifest's (409 otherwise); the work
directory is emptied on DELETE and removed on shutdown when the agent created it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import tempfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ... import __version__
from ..._hashing import sha256_file
from ..._signals import stop_on_signals
from ..bench.process import MeasureError, measure_in_process
from ..bench.protocol import MeasureSpec

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_JSON = 8 * 1024 * 1024


# a refused request's body up to this size is read and dropped before the answer
DRAIN_BYTES = 16 * 1024 * 1024

class AgentServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], token: str, workdir: Path | None = None,
                 max_upload_bytes: int = 256 * 1024 * 1024) -> None:
        if not token:
            raise ValueError("the agent needs a token")
        self.token = token
        self.own_workdir = workdir is None
        self.workdir = (Path(tempfile.mkdtemp(prefix="edgeyard-agent-")) if workdir is None
                        else Path(workdir)).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.max_upload_bytes = max_upload_bytes
        self.measure_lock = threading.Lock()  # one measurement at a time: they must not overlap
        super().__init__(address, _Handler)

    def file_path(self, name: str) -> Path | None:
        """The stored file for `name`, or None when `name` is not a plain file name."""
        if not NAME.match(name) or ".." in name:
            return None
        path = (self.workdir / name).resolve()
        if path.parent != self.workdir:
            return None
        return path

    def clean(self) -> int:
        n = 0
        for p in self.workdir.iterdir():
            if p.is_file():
                p.unlink()
                n += 1
            elif p.is_dir():
                shutil.rmtree(p)
        return n

    def server_close(self) -> None:
        super().server_close()
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class _Handler(BaseHTTPRequestHandler):
    server: AgentServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, drain: bool = False) -> None:
        # the body may be unread: close the connection rather than parse garbage next. With
        # `drain` (a refusal before the body was read), a body of up to DRAIN_BYTES is read and
        # dropped first, so a client still sending it (an upload with a wrong token) reads this
        # answer instead of a broken pipe; a larger one is not read at all
        self.close_connection = True
        raw = self.headers.get("Content-Length", "")
        if drain and raw.isdigit() and 0 < int(raw) <= DRAIN_BYTES:
            try:
                self.rfile.read(int(raw))
            except OSError:
                pass
        self._reply(status, {"error": message})

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            self._error(HTTPStatus.UNAUTHORIZED, "missing bearer token", drain=True)
            return False
        if not hmac.compare_digest(header[7:].encode(), self.server.token.encode()):
            self._error(HTTPStatus.FORBIDDEN, "wrong token", drain=True)
            return False
        return True

    def _length(self, limit: int) -> int | None:
        raw = self.headers.get("Content-Length")
        if raw is None or not raw.isdigit():
            self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            return None
        n = int(raw)
        if n > limit:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"body of {n} bytes exceeds the agent's limit of {limit} bytes")
            return None
        return n

    def do_GET(self) -> None:
        if self.path == "/v1/health":
            self._reply(HTTPStatus.OK, {"ok": True, "version": __version__})
        elif self._authorized():
            self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}")

    def do_PUT(self) -> None:
        if not self._authorized():
            return
        if not self.path.startswith("/v1/files/"):
            self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}", drain=True)
            return
        from urllib.parse import unquote

        name = unquote(self.path[len("/v1/files/"):])
        dest = self.server.file_path(name)
        if dest is None:
            self._error(HTTPStatus.BAD_REQUEST,
                        f"refused file name {name!r}: plain names only (letters, digits, . _ -)",
                        drain=True)
            return
        want = (self.headers.get("X-Content-Sha256") or "").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", want):
            self._error(HTTPStatus.BAD_REQUEST, "X-Content-Sha256 header (64 hex digits) required",
                        drain=True)
            return
        n = self._length(self.server.max_upload_bytes)
        if n is None:
            return
        fd, tmp = tempfile.mkstemp(dir=self.server.workdir, prefix=".upload-")
        h = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as f:
                left = n
                while left:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    h.update(chunk)
                    f.write(chunk)
                    left -= len(chunk)
            if left:
                raise ValueError(f"upload ended {left} bytes short")
            if h.hexdigest() != want:
                raise ValueError(f"upload sha256 {h.hexdigest()} does not match X-Content-Sha256")
            os.replace(tmp, dest)
        except (OSError, ValueError) as exc:
            Path(tmp).unlink(missing_ok=True)
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
            return
        self._reply(HTTPStatus.CREATED, {"name": name, "sha256": want, "size_bytes": n})

    def do_DELETE(self) -> None:
        if not self._authorized():
            return
        if self.path != "/v1/files":
            self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}")
            return
        self._reply(HTTPStatus.OK, {"removed": self.server.clean()})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        if self.path != "/v1/measure":
            self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}")
            return
        n = self._length(MAX_JSON)
        if n is None:
            return
        try:
            req = json.loads(self.rfile.read(n))
            spec = MeasureSpec.from_dict(req.get("spec", {}))
            raw_items = req["items"]
            assert isinstance(raw_items, list) and raw_items
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"malformed measure request: {exc!r}")
            return
        items = []
        for it in raw_items:
            try:
                manifest = it["manifest"]
                entry = manifest["artifacts"][it["artifact_id"]]
            except (KeyError, TypeError) as exc:
                self._error(HTTPStatus.BAD_REQUEST, f"malformed measure item: {exc!r}")
                return
            artifact = self.server.file_path(str(it.get("artifact", "")))
            golden = self.server.file_path(str(it.get("golden", "")))
            for what, path, digest in (("artifact", artifact, entry.get("sha256")),
                                       ("golden data", golden, manifest["golden"]["sha256"])):
                if path is None or not path.is_file():
                    self._error(HTTPStatus.BAD_REQUEST, f"{what} file not uploaded or bad name")
                    return
                actual = sha256_file(path)
                if actual != digest:
                    self._error(HTTPStatus.CONFLICT,
                                f"{what} sha256 {actual[:16]}... does not match the manifest's "
                                f"{str(digest)[:16]}...: refusing to measure it")
                    return
            items.append({"format": entry["format"], "artifact": artifact, "golden": golden,
                          "input_names": [s["name"] for s in manifest["model"]["inputs"]],
                          "output_names": [s["name"] for s in manifest["model"]["outputs"]]})
        with self.server.measure_lock:
            try:
                ms = measure_in_process(items, spec, workdir=self.server.workdir)
            except MeasureError as exc:
                self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
                return
        self._reply(HTTPStatus.OK, {"measurements": [m.to_dict() for m in ms]})


def serve(host: str, port: int, token: str, workdir: Path | None = None,
          max_upload_bytes: int = 256 * 1024 * 1024) -> None:
    server = AgentServer((host, port), token, workdir, max_upload_bytes)
    stop_on_signals()
    print(f"edgeyard agent listening on http://{host}:{server.server_address[1]} "
          f"(work directory {server.workdir}, upload limit {max_upload_bytes} bytes)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
