"""The HTML report in a real headless browser (Debian's chromium): the page the running server
serves renders its plots and its drift table, not only a 200."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request

import pytest

from .conftest import otlp_windows, request_body

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed "
                                "(apt install chromium; .ci/run installs it)")


def chromium(*args: str, timeout: int = 120) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--user-data-dir=/tmp/edgeyard-chromium-test", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    return out.stdout


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

    # the browser logs in (the key becomes a cookie), follows the redirect, runs the page
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", f"{server.url}/login?key={admin}")
    assert 'id="verdict"' in dom and "verdict: drift" in dom
    table = re.search(r'<table id="drift-table">(.*?)</table>', dom, re.S)
    assert table, dom[:2000]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.S)
    assert len(rows) >= 10  # a header and one row per signal
    assert any("input.input.mean" in r and "DRIFT" in r for r in rows)
    hists = re.findall(r'<svg class="hist"[^>]*data-signal="([^"]+)"', dom)
    assert "input.input.mean" in hists and len(hists) >= 8
    assert dom.count("<rect") > 100  # histogram bars drawn, not empty frames
    assert "<circle" in dom  # the drift-over-time points
    # and it paints: a screenshot of the page is a real image with content
    png = tmp_path / "report.png"
    chromium("--window-size=1280,1600", f"--screenshot={png}", f"{server.url}/login?key={admin}")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
