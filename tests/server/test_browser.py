"""The HTML report in a real headless browser (Debian's chromium): the page the running server
serves draws its charts (Vega-Lite, from the JavaScript inlined in the page) and its drift
table, not only a 200, with nothing on the console."""

from __future__ import annotations

import gzip
import html
import json
import re
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from .chromium import CHROMIUM, chart_errors, chromium_console, drawn_charts
from .conftest import otlp_windows, request_body

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed "
                                "(apt install chromium; .ci/run installs it)")


def chromium(*args: str, timeout: int = 120) -> str:
    return chromium_console(*args, timeout=timeout)[0]


def login_page(server_url: str, admin: str) -> str:
    """A page that posts the login form on load, served from this host (same site as the
    server, so that the SameSite=Strict cookie comes along after the redirect); its URL."""
    page = (f'<form method="post" action="{server_url}/login"><input name="key" '
            f'value="{html.escape(admin)}"><input name="next" value="/"></form>'
            '<script>document.forms[0].submit()</script>').encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_port}/"


def test_report_renders_plots_and_the_drift_table(serve, telemetry_release, digits_data,
                                                  tmp_path):
    server = serve()
    root = telemetry_release.path
    body = json.dumps({"manifest": json.loads((root / "release.json").read_text()),
                       "reference": json.loads((root / "telemetry" / "reference.json")
                                               .read_text())}).encode()
    admin = server.key("admin")
    req = urllib.request.Request(server.url + "/api/releases", data=body, method="POST", headers={
        "Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).close()
    inverted = (1.0 - digits_data.x_calib).astype("float32")
    windows = otlp_windows(root, inverted, tmp_path, n_windows=4, calls=90)
    req = urllib.request.Request(server.url + "/v1/metrics", data=request_body(windows),
                                 method="POST", headers={
                                     "Authorization": f"Bearer {server.key('ingest')}",
                                     "Content-Type": "application/x-protobuf"})
    urllib.request.urlopen(req, timeout=30).close()

    # the browser logs in with the form's POST (the key becomes a cookie; it never travels in
    # a URL), follows the redirect, runs the page
    login = login_page(server.url, admin)
    dom, console = chromium_console("--virtual-time-budget=10000", "--dump-dom", login)
    assert not console, console
    assert 'id="verdict"' in dom and "verdict: drift" in dom
    table = re.search(r'<table id="drift-table">(.*?)</table>', dom, re.S)
    assert table, dom[:2000]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.S)
    assert len(rows) >= 10  # a header and one row per signal
    assert any("input.input.mean" in r and "DRIFT" in r for r in rows)
    hists = re.findall(r'<div class="plot" data-signal="([^"]+)"><div class="chart vega-embed',
                       dom)
    assert "input.input.mean" in hists and len(hists) >= 8
    ids, drawn = drawn_charts(dom)  # every chart drawn by vega-embed, none failed
    assert len(ids) >= 11 and drawn == ids, chart_errors(dom)
    assert dom.count('aria-roledescription="bar"') > 100  # histogram bars, not empty frames
    assert dom.count('aria-roledescription="circle"') > 10  # the drift-over-time points
    # and it paints: a screenshot of the page is a real image with content
    png = tmp_path / "report.png"
    chromium("--window-size=1280,1600", "--virtual-time-budget=10000", f"--screenshot={png}",
             login)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    # the page (the chart library inlined) travels gzipped to a client that takes it
    page = {}
    for enc in ("gzip", "identity"):
        req = urllib.request.Request(server.url + "/", headers={
            "Authorization": f"Bearer {admin}", "Accept-Encoding": enc})
        with urllib.request.urlopen(req, timeout=60) as r:
            page[enc] = (r.headers.get("Content-Encoding"), r.read())
    assert page["gzip"][0] == "gzip" and page["identity"][0] is None
    assert gzip.decompress(page["gzip"][1]).count(b'id="verdict"') == 1
    assert len(page["gzip"][1]) < len(page["identity"][1]) / 2
