"""A real `edgeyard agent` process on loopback: measurements through it, and every refusal."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import edgeyard
from edgeyard.gating import GatePolicy

pytestmark = pytest.mark.slow
TOKEN = "s3cret-token"


@pytest.fixture
def agent(tmp_path):
    work = tmp_path / "agent-work"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeyard.cli", "agent", "--port", "0", "--workdir", str(work),
         "--max-upload-mb", "1.5"],
        env={**os.environ, "EDGEYARD_AGENT_TOKEN": TOKEN}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    assert m, line + proc.stderr.read()
    yield {"port": int(m.group(1)), "work": work, "proc": proc}
    proc.send_signal(signal.SIGINT)  # it finishes the measurement in flight first
    proc.wait(timeout=60)


def request(port, method, path, body=b"", headers=None, token=TOKEN):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=body, headers=h)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data or b"{}")


def sha(data):
    import hashlib

    return hashlib.sha256(data).hexdigest()


def snapshot(root: Path):
    return {p: p.stat().st_mtime for p in root.rglob("*")}


def test_gate_through_the_agent(agent, gate_releases):
    report = edgeyard.gate(
        gate_releases["wide"], gate_releases["base"], profile="host",
        runner=f"agent://127.0.0.1:{agent['port']}", token=TOKEN,
        policy=GatePolicy(min_rounds=12, max_rounds=12), log=None,
    )
    found = {f.figure: f for f in report.findings}
    assert report.runners["host"] == f"agent://127.0.0.1:{agent['port']}"
    assert found["latency_p50"].verdict == "fail" and found["latency_p50"].ratio > 1.5
    samples = report.samples["host"]["onnx-fp32"]
    lat = samples["latency"]
    assert len(lat["candidate"]) == 12 and len(lat["candidate"][0]["samples_ns"]) >= 50
    assert len(samples["solo"]["candidate"]) == 4  # measured alone: peak memory
    # the runner cleaned up after itself
    assert list(agent["work"].iterdir()) == []


def test_refusals(agent, gate_releases, tmp_path):
    port, work = agent["port"], agent["work"]
    art = next((gate_releases["base"] / "artifacts").iterdir())
    data = art.read_bytes()
    before = snapshot(tmp_path)
    # no token, wrong token
    assert request(port, "DELETE", "/v1/files", token=None)[0] == 401
    status, body = request(port, "DELETE", "/v1/files", token="wrong")
    assert status == 403 and body["error"] == "wrong token"
    # an upload refused for its token is answered, not cut off mid-body (the body is drained)
    blob = os.urandom(2 * 1024 * 1024)
    for _ in range(3):
        status, body = request(port, "PUT", "/v1/files/x.onnx", blob,
                               {"X-Content-Sha256": sha(blob)}, token="wrong")
        assert status == 403 and body["error"] == "wrong token"
    # path traversal, raw and URL-encoded
    for name in ("../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", ".hidden", "a/b"):
        status, body = request(port, "PUT", f"/v1/files/{name}", b"x",
                               {"X-Content-Sha256": sha(b"x")})
        assert status in (400, 404), (name, status)
    # oversize upload: refused before the body is read. Only the headers are sent: the answer
    # comes without the body (sending 3 MB first races the server's close: EPIPE on a busy box)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("PUT", "/v1/files/big.onnx")
    for k, v in {"Authorization": f"Bearer {TOKEN}", "X-Content-Sha256": "0" * 64,
                 "Content-Length": str(3 * 1024 * 1024)}.items():
        conn.putheader(k, v)
    conn.endheaders()
    resp = conn.getresponse()
    status, body = resp.status, json.loads(resp.read() or b"{}")
    conn.close()
    assert status == 413 and "exceeds the agent's limit" in body["error"]
    # a body that does not match its declared hash
    status, body = request(port, "PUT", "/v1/files/a.onnx", data, {"X-Content-Sha256": "0" * 64})
    assert status == 422 and "does not match" in body["error"]
    # an artifact whose bytes differ from the manifest's sha256 is not measured
    evil = data[:-1] + bytes([data[-1] ^ 1])
    assert request(port, "PUT", "/v1/files/a.onnx", evil, {"X-Content-Sha256": sha(evil)})[0] == 201
    golden = (gate_releases["base"] / "golden.npz").read_bytes()
    assert request(port, "PUT", "/v1/files/g.npz", golden, {"X-Content-Sha256": sha(golden)})[0] == 201
    manifest = json.loads((gate_releases["base"] / "release.json").read_text())
    status, body = request(port, "POST", "/v1/measure", json.dumps(
        {"items": [{"manifest": manifest, "artifact_id": "onnx-fp32", "artifact": "a.onnx",
                    "golden": "g.npz"}]}).encode(), {"Content-Type": "application/json"})
    assert status == 409 and "does not match the manifest" in body["error"]
    # nothing was written outside the work directory, and cleanup empties it
    after = snapshot(tmp_path)
    outside = {p for p in after if work not in p.parents and p != work} - set(before)
    assert outside == set()
    assert sorted(p.name for p in work.iterdir()) == ["a.onnx", "g.npz"]
    assert request(port, "DELETE", "/v1/files")[1] == {"removed": 2}
    assert list(work.iterdir()) == []


def test_wrong_token_stops_the_gate_with_exit_4(agent, gate_releases):
    r = subprocess.run(
        [sys.executable, "-m", "edgeyard.cli", "gate", str(gate_releases["base"]), "--baseline",
         str(gate_releases["base"]), "--runner", f"agent://127.0.0.1:{agent['port']}",
         "--runner-token", "nope"], capture_output=True, text=True)
    assert r.returncode == 4
    assert "answered 403" in r.stderr and "wrong token" in r.stderr


def test_agent_needs_a_token():
    env = {k: v for k, v in os.environ.items() if k != "EDGEYARD_AGENT_TOKEN"}
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "edgeyard.cli", "agent", "--port", "0"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "needs a token" in r.stderr
    assert time.perf_counter() - start < 60
