"""Refusals as OTLP/HTTP wants them, and a log of them that a flood cannot blow up.

OTLP/HTTP: the body of every 4xx and 5xx answer to an export is a `google.rpc.Status` in the
request's encoding (binary protobuf for protobuf requests, JSON for JSON ones). The message is
`google.rpc.status_pb2.Status` where googleapis-common-protos is installed (it comes with the
OpenTelemetry exporters), else the same bytes are written here: field 1 `code` (varint), field 2
`message` (UTF-8); `details` is never set.

`RefusalLog`: one line per refused request (status, route, client, reason), at most `per_s`
lines a second; lines over that are counted, and the count is told on the next line written.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback

from .decode import safe_text

log = logging.getLogger("edgeyard.server.access")

# HTTP status -> google.rpc.Code
GRPC_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 413: 8, 415: 3, 422: 3, 429: 8, 500: 13,
             501: 12, 503: 14}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_status(code: int, message: str) -> bytes:
    """google.rpc.Status{code, message} in protobuf's wire format (what status_pb2 writes)."""
    out = bytearray()
    if code:
        out += b"\x08" + _varint(code)
    m = message.encode("utf-8")
    if m:
        out += b"\x12" + _varint(len(m)) + m
    return bytes(out)


def status_body(http_status: int, message: str, as_json: bool) -> tuple[bytes, str]:
    """The body and media type of an OTLP error answer."""
    code = GRPC_CODE.get(http_status, 2)  # 2: UNKNOWN
    message = safe_text(message)[:2000]
    if as_json:
        return json.dumps({"code": code, "message": message}).encode(), "application/json"
    try:
        from google.rpc import status_pb2
    except ImportError:
        return encode_status(code, message), "application/x-protobuf"
    return status_pb2.Status(code=code, message=message).SerializeToString(), \
        "application/x-protobuf"


class RefusalLog:
    def __init__(self, per_s: float = 10.0, logger: logging.Logger = log) -> None:
        self.per_s = per_s
        self.logger = logger
        self._tokens = max(1.0, per_s)
        self._t = time.monotonic()
        self._suppressed = 0
        self._lock = threading.Lock()

    def _take(self) -> int | None:
        """None when over the rate; else how many lines were suppressed since the last one."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(max(1.0, self.per_s), self._tokens + (now - self._t) * self.per_s)
            self._t = now
            if self._tokens < 1:
                self._suppressed += 1
                return None
            self._tokens -= 1
            n, self._suppressed = self._suppressed, 0
            return n

    def refused(self, status: int, method: str, path: str, client: str | None, reason: str
                ) -> bool:
        """Log one refused request; False when it was over the rate (counted, not written)."""
        n = self._take()
        if n is None:
            return False
        more = f" (+{n} lines suppressed)" if n else ""
        self.logger.warning("%s %s %s %d: %s%s", client or "-", method, path, status,
                            safe_text(str(reason))[:300], more)
        return True

    def failed(self, method: str, path: str, client: str | None, exc: BaseException) -> bool:
        """Log an internal error: its type and message, and the traceback's last 4 kB."""
        n = self._take()
        if n is None:
            return False
        more = f" (+{n} lines suppressed)" if n else ""
        tb = "".join(traceback.format_exception(exc))[-4000:]
        self.logger.error("%s %s %s 500: %s: %s%s\n%s", client or "-", method, path,
                          type(exc).__name__, safe_text(str(exc))[:300], more, tb)
        return True
