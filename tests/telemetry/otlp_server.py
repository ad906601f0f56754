"""A real OTLP/HTTP receiver on loopback for the collector tests: it can refuse, answer 503
with Retry-After, reject with 400, then accept; it decodes every payload with the official
opentelemetry-proto messages and remembers the upload ids it acknowledged."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self) -> None:
        self.mode = "accept"  # accept | 503 | 400
        self.retry_after = "1"
        self.requests = []  # (status, [upload ids])
        self.accepted = {}  # upload id -> ResourceMetrics
        self.duplicates = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
                    ExportMetricsServiceRequest,
                    ExportMetricsServiceResponse,
                )

                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                req = ExportMetricsServiceRequest()
                req.ParseFromString(body)
                ids = []
                for rm in req.resource_metrics:
                    attrs = {a.key: a.value.string_value for a in rm.resource.attributes}
                    ids.append(attrs["edgeyard.upload_id"])
                status = {"accept": 200, "503": 503, "400": 400}[outer.mode]
                outer.requests.append((status, ids))
                if status == 200:
                    for uid, rm in zip(ids, req.resource_metrics, strict=True):
                        if uid in outer.accepted:
                            outer.duplicates += 1
                        outer.accepted[uid] = rm
                data = ExportMetricsServiceResponse().SerializeToString()
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", outer.retry_after)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.handler = Handler
        self.server = None
        self.port = None

    def start(self, port: int = 0) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self.handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/metrics"
