"""Drift on real data (scikit-learn's bundled digits): the server flags shifted windows on the
right signals and leaves clean ones alone; over many clean windows the false-alarm rate is at
most 1%; webhooks fire once per new finding."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import numpy as np
import pytest

from .conftest import make_client, otlp_windows, request_body

PROTO = "application/x-protobuf"


def shifted(digits_data):
    """Held-out digits the model never saw (the calibration split, disjoint from the reference's
    evaluation split), clean and shifted three ways."""
    x, y = digits_data.x_calib, digits_data.y_calib
    rng = np.random.default_rng(0)
    return {
        "clean": x,
        "inverted": (1.0 - x).astype(np.float32),  # brightness inverted: ink becomes paper
        "noisy": np.clip(x + rng.normal(0, 0.25, x.shape), 0, 1).astype(np.float32),
        "no-zeros": x[y != 0],  # class 0 removed from the traffic
    }


@pytest.fixture
def registered(client, engine, telemetry_release):
    from edgeyard.server import store

    root = telemetry_release.path
    store.register_release(engine, json.loads((root / "release.json").read_text()),
                           json.loads((root / "telemetry" / "reference.json").read_text()))
    admin = store.create_key(engine, "admin")
    ingest = store.create_key(engine, "ingest", app="digits")
    return {"Authorization": f"Bearer {admin}"}, ingest


def test_shifted_digits_are_flagged_on_the_right_signals(client, registered, telemetry_release,
                                                         digits_data, tmp_path):
    auth, ingest = registered
    for segment, xs in shifted(digits_data).items():
        body = request_body(otlp_windows(telemetry_release.path, xs, tmp_path, n_windows=None,
                                         calls=100, device=segment, segment=segment))
        r = client.post("/v1/metrics", content=body,
                        headers={"Content-Type": PROTO, "Authorization": f"Bearer {ingest}"})
        assert r.status_code == 200, r.text
    res = client.get("/api/drift", params={"model": "digits", "release": "1.0",
                                           "window": "1h"}, headers=auth).json()
    seg = res["segments"]
    assert set(seg) == {"clean", "inverted", "noisy", "no-zeros"}
    assert seg["clean"]["verdict"] == "ok" and seg["clean"]["drifted"] == []
    inverted = set(seg["inverted"]["drifted"])
    assert {"input.input.mean", "output.class"} <= inverted
    assert {"input.input.std", "output.confidence"} <= set(seg["noisy"]["drifted"])
    assert "output.class" in seg["no-zeros"]["drifted"]
    # the label-free accuracy estimate falls where the model is confused, and says its premise
    ea_clean = seg["clean"]["expected_accuracy"]
    ea_noisy = seg["noisy"]["expected_accuracy"]
    assert ea_noisy["current"] < ea_clean["current"] - 0.05
    assert "calibrated" in ea_noisy["note"]
    # the whole fleet (all segments together) drifts too; the per-segment view says where
    assert res["verdict"] == "drift" and res["devices"] == 4
    # the terminal table and the HTML report carry the same result
    from edgeyard.server.cli import format_result

    table = format_result(client.get("/api/drift", params={
        "model": "digits", "release": "1.0", "profile": "inverted"}, headers=auth).json())
    assert "DRIFT" in table and "input.input.mean" in table
    html = client.get("/", params={"model": "digits", "release": "1.0"}, headers=auth).text
    specs = re.search(r'<script type="application/json" id="edgeyard-charts">(.*?)</script>',
                      html, re.S)
    assert specs and len(json.loads(specs.group(1))) >= 10  # histograms and time series
    assert 'id="drift-table"' in html and 'id="segments"' in html


def test_false_alarm_rate_over_many_clean_windows(telemetry_release, digits_data):
    """Reference and window are disjoint random draws from one pool of held-out digits
    (exchangeable: the no-drift hypothesis holds exactly); 200 windows, the default policy."""
    from edgeyard.data import run_batched
    from edgeyard.drift import DriftPolicy, check
    from edgeyard.engines import load_engine
    from edgeyard.telemetry.window import Window, reference_window

    manifest = telemetry_release.manifest
    spec = manifest["telemetry"]["projections"]
    entry = telemetry_release.chain("host")[0]
    engine = load_engine(entry["format"], telemetry_release.path / entry["path"])
    pool = np.concatenate([digits_data.x_calib, digits_data.x_eval])
    outs = run_batched(engine.predict, (pool,), 1)[0]
    rng = np.random.default_rng(0)
    alarms = 0
    windows = 200
    for _ in range(windows):
        order = rng.permutation(len(pool))
        ref_idx, win_idx = order[:360], order[360 : 360 + int(rng.integers(150, 359))]
        ref = reference_window(spec, [pool[ref_idx]], [outs[ref_idx]])
        win = reference_window(spec, [pool[win_idx]], [outs[win_idx]])
        assert isinstance(win, Window)
        report = check(ref, win, DriftPolicy())
        alarms += report.verdict == "drift"
    assert alarms / windows <= 0.01, f"{alarms} false alarms in {windows} clean windows"


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        n = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(n)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_webhook_is_called_once_per_new_finding(engine, telemetry_release, digits_data, tmp_path):
    from edgeyard.server import store

    root = telemetry_release.path
    store.register_release(engine, json.loads((root / "release.json").read_text()),
                           json.loads((root / "telemetry" / "reference.json").read_text()))
    hook = HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    ingest = store.create_key(engine, "ingest")
    admin = {"Authorization": f"Bearer {store.create_key(engine, 'admin')}"}
    try:
        with make_client(engine, webhook=f"http://127.0.0.1:{hook.server_port}/hook") as client:
            xs = shifted(digits_data)["inverted"]
            body = request_body(otlp_windows(root, xs, tmp_path, n_windows=None, calls=100,
                                             device="inverted", segment="inverted"))
            assert client.post("/v1/metrics", content=body, headers={
                "Content-Type": PROTO, "Authorization": f"Bearer {ingest}"}).status_code == 200
            params = {"model": "digits", "release": "1.0", "alert": "true"}
            first = client.get("/api/drift", params=params, headers=admin).json()
            assert first["verdict"] == "drift"
            assert client.get("/api/drift", params=params, headers=admin).status_code == 200
            found = client.get("/api/findings", headers=admin).json()
    finally:
        hook.shutdown()
    assert len(_Hook.received) == 2  # two segments ("all" and "inverted"), once each
    posted = [f for msg in _Hook.received for f in msg["findings"]]
    assert {f["signal"] for f in posted if f["kind"] == "drift"} >= {"input.input.mean"}
    assert all(f["notified"] for f in found)
    keys = [(f["profile"], f["signal"], f["kind"]) for f in posted]
    assert len(keys) == len(set(keys))
