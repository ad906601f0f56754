"""Releases served to devices, and rollouts decided by the fleet's telemetry, against a real
`edgeyard serve` (real uvicorn, SQLite or PostgreSQL), with the real updater, runtime and
collector on the device side."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .conftest import engine_of

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "digits"))
from rollout_fleet import Device, close_all, versions_of


@pytest.fixture(scope="session")
def two_engine_release(digits_data, digits_cnn, tmp_path_factory):
    """A digits release whose profile `host` has two engines (ONNX fp32, then int8): a failing
    primary falls back to the second, which is what the fleet reports."""
    pytest.importorskip("onnxruntime")
    import edgeyard
    from profile_files import write_profile

    root = tmp_path_factory.mktemp("rollout")
    write_profile(root / "profiles", "host", [("onnx", "fp32"), ("onnx", "int8")])
    d = digits_data
    rel = edgeyard.build(digits_cnn, example_inputs=(d.x_eval[:1],), profiles=["host"],
                         calibration=d.x_calib, evaluation=(d.x_eval, d.y_eval),
                         out=root / "digits", profile_dirs=[root / "profiles"], name="digits",
                         version="1.0", log=None)
    assert rel.ok, rel.summary()
    return rel.path


@pytest.fixture
def releases(two_engine_release, tmp_path):
    return versions_of(two_engine_release, tmp_path / "releases", ["1.0", "1.1", "1.2"])


def get(url, key, headers=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}",
                                               **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def client_of(server):
    from edgeyard.server.client import Client

    return Client(server.url, server.key("admin"))


def test_release_files_are_served_content_addressed_with_etag_and_ranges(
        serve, server_database, releases):
    from edgeyard.server.client import ServerError

    dirs, _ = releases
    server = serve(server_database)
    c, ingest = client_of(server), server.key("ingest")
    q = "model=digits&device=d1&profile=host"
    assert get(f"{server.url}/v1/assignment?{q}", ingest)[0] == 204  # nothing stable yet
    first = c.register(dirs["1.0"])
    assert {"release.json", "release.json.sig"} <= set(first["uploaded"])
    assert len(first["uploaded"]) >= 5
    again = c.register(dirs["1.1"])  # the same artifacts: nothing but the manifest (and .sig) is new
    stored = get(f"{server.url}/api/releases/digits/1.1/files", server.key("admin"))
    assert json.loads(stored[2])["missing"] == []
    c.set_stable("digits", "1.0")
    status, _, body = get(f"{server.url}/v1/assignment?{q}", ingest)
    a = json.loads(body)
    assert status == 200 and a["release"] == "1.0" and a["rollout"] is None
    raw = (dirs["1.0"] / "release.json").read_bytes()
    assert a["manifest_sha256"] == hashlib.sha256(raw).hexdigest()
    # the detached signature is served as uploaded: byte for byte, like the manifest
    sig_url = f"{server.url}/v1/releases/digits/1.0/files/release.json.sig"
    assert get(sig_url, ingest)[2] == (dirs["1.0"] / "release.json.sig").read_bytes()
    assert get(f"{server.url}/v1/releases/digits/1.0/files/release.json", ingest)[2] == raw

    m = json.loads(raw)
    path = m["artifacts"]["onnx-fp32"]["path"]
    want = (dirs["1.0"] / path).read_bytes()
    url = f"{server.url}/v1/releases/digits/1.0/files/{path}"
    status, headers, body = get(url, ingest)
    assert status == 200 and body == want and headers["ETag"].strip('"') == \
        hashlib.sha256(want).hexdigest()
    assert get(url, ingest, {"If-None-Match": headers["ETag"]})[0] == 304
    status, headers, body = get(url, ingest, {"Range": "bytes=100-"})
    assert status == 206 and body == want[100:]
    assert headers["Content-Range"] == f"bytes 100-{len(want) - 1}/{len(want)}"
    assert get(url, ingest, {"Range": "bytes=-10"})[2] == want[-10:]
    assert get(url, ingest, {"Range": f"bytes={len(want)}-"})[0] == 416
    assert get(f"{server.url}/v1/releases/digits/1.0/files/nope.onnx", ingest)[0] == 404

    # the server takes only the registered release's own files
    with pytest.raises(ServerError, match="sha256"):
        c._call("PUT", f"/api/releases/digits/1.0/files/{path}", raw=want[:-1] + b"x")
    with pytest.raises(ServerError, match="not a file of"):
        c._call("PUT", "/api/releases/digits/1.0/files/extra.bin", raw=b"x")
    with pytest.raises(ServerError, match="not the manifest registered"):
        c._call("PUT", "/api/releases/digits/1.0/files/release.json",
                raw=raw.replace(b'"1.0"', b'"9.9"', 1))
    with pytest.raises(ServerError, match="not one line"):
        c._call("PUT", "/api/releases/digits/1.0/files/release.json.sig", raw=b"garbage")
    # an ingest key of another app reads nothing of this one
    from edgeyard.server import store

    other = store.create_key(engine_of(server), "ingest", app="another-model")
    assert get(url, other)[0] == 403
    assert again["model"] == "digits"


def start_rollout(c, release, **plan):
    return c.start_rollout("digits", release, **{"steps": [10, 50, 100], "hold_s": 2.0,
                                                  "max_hold_s": 60.0, "check_s": 0.5, **plan})


def updater_for(server, root, pub, device="d1"):
    from edgeyard.runtime.updater import Updater

    return Updater(root, server.url, "digits", "host", device, api_key=server.key("ingest"),
                   public_key=pub, poll_s=0.5, threads=1)


def test_the_updater_never_installs_a_tampered_replayed_or_unsigned_release(
        serve, releases, tmp_path):
    from sqlalchemy import update

    from edgeyard.server import db

    dirs, pub = releases
    server = serve(None)
    c = client_of(server)
    for v in ("1.0", "1.1", "1.2"):
        c.register(dirs[v])
    c.set_stable("digits", "1.0")
    u = updater_for(server, tmp_path / "dev", pub)
    assert u.poll_once() == "installed 1.0" and u.serving_release() == "1.0"
    assert u.poll_once() == "unchanged"
    engine = engine_of(server)
    m11 = json.loads((dirs["1.1"] / "release.json").read_text())
    # tampered: 1.1's int8 artifact altered in the server's storage after upload
    sha = m11["artifacts"]["onnx-int8"]["sha256"]
    with engine.begin() as conn:
        data = conn.execute(db.blobs.select().where(db.blobs.c.sha256 == sha)).first().data
        conn.execute(update(db.blobs).where(db.blobs.c.sha256 == sha).values(
            data=data[:-8] + b"tampered"))
    start_rollout(c, "1.1", steps=[100])
    got = u.poll_once()
    assert got.startswith("refused 1.1") and "sha256" in got, got
    assert u.serving_release() == "1.0" and u.poll_once().startswith("refused 1.1")
    c.rollout(c.rollouts("digits")[-1]["id"], "rollback")
    # replayed: release 1.0's signed manifest (and its valid .sig) served as 1.2
    with engine.begin() as conn:
        for path in ("release.json", "release.json.sig"):
            old = conn.execute(db.release_files.select().where(
                (db.release_files.c.release == "1.0") & (db.release_files.c.path == path))
            ).first()
            conn.execute(update(db.release_files).where(
                (db.release_files.c.release == "1.2") & (db.release_files.c.path == path)
            ).values(sha256=old.sha256, size=old.size))
    start_rollout(c, "1.2", steps=[100])
    got = u.poll_once()
    assert got.startswith("refused 1.2") and "replayed" in got, got
    assert u.serving_release() == "1.0"
    assert sorted(k.split("@")[0] for k in u.refused()) == ["1.1", "1.2"]
    c.rollout(c.rollouts("digits")[-1]["id"], "rollback")


def test_an_unsigned_release_is_refused(serve, releases, tmp_path):
    dirs, pub = releases
    (dirs["1.2"] / "release.json.sig").unlink()  # unsigned: no detached signature
    server = serve(None)
    c = client_of(server)
    c.register(dirs["1.0"])
    c.register(dirs["1.2"])
    c.set_stable("digits", "1.0")
    u = updater_for(server, tmp_path / "dev", pub)
    assert u.poll_once() == "installed 1.0"
    start_rollout(c, "1.2", steps=[100])
    got = u.poll_once()
    assert got.startswith("refused 1.2") and "signature" in got and "not signed" in got, got
    assert u.serving_release() == "1.0"


def test_an_old_format_release_still_installs_for_one_version(serve, releases, tmp_path):
    """A release signed the old way (a `signature` field inside release.json, no .sig) is
    still taken, with the deprecation noted; re-signing it is what `edgeyard sign` does."""
    from edgeyard.signing import load_private_key, sign_manifest

    dirs, pub = releases
    d = dirs["1.1"]
    m = sign_manifest(json.loads((d / "release.json").read_text()),
                      load_private_key(Path(pub).with_name("release.pem")))
    (d / "release.json").write_text(json.dumps(m, indent=2))
    (d / "release.json.sig").unlink()
    server = serve(None)
    c = client_of(server)
    c.register(dirs["1.0"])
    assert "release.json.sig" not in c.register(d)["uploaded"]
    c.set_stable("digits", "1.0")
    u = updater_for(server, tmp_path / "dev", pub)
    assert u.poll_once() == "installed 1.0" and "deprecated" not in u.stats
    start_rollout(c, "1.1", steps=[100])
    assert u.poll_once() == "installed 1.1"
    assert "edgeyard sign" in u.stats["deprecated"]


class CuttingProxy:
    """Forwards to the server; the first download of `cut` is cut after half its bytes."""

    def __init__(self, upstream: str, cut: str) -> None:
        self.upstream, self.cut, self.ranges, self.cuts = upstream, cut, [], 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                if self.path.endswith(proxy.cut):
                    proxy.ranges.append(self.headers.get("Range"))
                req = urllib.request.Request(proxy.upstream + self.path, headers=headers)
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        status, hdrs, body = r.status, r.headers, r.read()
                except urllib.error.HTTPError as exc:
                    status, hdrs, body = exc.code, exc.headers, exc.read()
                self.send_response(status)
                for k, v in hdrs.items():
                    if k.lower() not in ("transfer-encoding", "connection", "date", "server"):
                        self.send_header(k, v)
                self.end_headers()
                if self.path.endswith(proxy.cut) and proxy.cuts == 0 and status == 200:
                    proxy.cuts += 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def test_a_cut_download_resumes_with_a_range_request(serve, releases, tmp_path):
    from edgeyard.runtime.updater import Updater

    dirs, pub = releases
    server = serve(None)
    c = client_of(server)
    c.register(dirs["1.0"])
    c.set_stable("digits", "1.0")
    m = json.loads((dirs["1.0"] / "release.json").read_text())
    artifact = m["artifacts"]["onnx-fp32"]["path"]
    proxy = CuttingProxy(server.url, artifact)
    try:
        u = Updater(tmp_path / "dev", proxy.url, "digits", "host", "d1",
                    api_key=server.key("ingest"), public_key=pub, threads=1)
        got = u.poll_once()
        assert got.startswith("interrupted 1.0") and "cut" in got, got
        assert u.serving_release() is None and u.refused() == {}
        assert u.poll_once() == "installed 1.0"  # resumed where the cut left it
        assert u.serving_release() == "1.0" and proxy.cuts == 1
        assert proxy.ranges[0] is None and proxy.ranges[1].startswith("bytes=")
        assert int(proxy.ranges[1][6:-1]) > 0
        size = len((dirs["1.0"] / artifact).read_bytes())
        assert (u.current() / artifact).stat().st_size == size
    finally:
        proxy.close()


def wait_for(pred, timeout, every=0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(every)
    return pred()


def stalled(server, devices) -> str:
    """Why devices are behind: each one's last polls and counters, and every thread's stack in
    the server (`kill -USR1`), for the failure message."""
    os.kill(server.proc.pid, signal.SIGUSR1)
    time.sleep(1.0)
    return "\n".join([d.describe() for d in devices[:10]]
                     + ["server log (tail):", server.log_text()[-8000:]])


def verdicts(r: dict) -> str:
    """A rollout's state and, per decision, the figures that did not come out "not worse"."""
    return json.dumps({**{k: v for k, v in r.items() if k != "decisions"}, "decisions": [
        {**d, "figures": [f for f in d["figures"] if f["outcome"] != "not_worse"]}
        for d in r["decisions"]]}, indent=1)


@pytest.mark.slow
def test_a_fleet_of_50_takes_a_healthy_release_to_100_and_rolls_a_bad_one_back(
        serve, releases, digits_data, tmp_path):
    """50 devices (threads: updater + runtime + collector each) against a real server: 1.1
    (the same model) goes 20% -> 50% -> 100% and becomes stable; 1.2, whose primary engine fails
    half of its calls in the field (the fallback rate x50), is rolled back at its first step by
    the server, and its cohort is back on 1.1 within one poll interval of the decision."""
    dirs, pub = releases
    poll_s = 2.0
    # no day checks computed ahead: with 1 s buckets each one merges thousands of aggregates,
    # and on this 2-core box beside 50 device threads it starved the rollout's looks (the bad
    # release came out "inconclusive" in CI); the rollout is what this test is about
    server = serve(None, "--bucket-s", "1", "--poll", str(poll_s), "--rollout-tick", "0.2",
                   "--precompute-every", "0")
    c = client_of(server)
    for v in dirs:
        c.register(dirs[v])
    c.set_stable("digits", "1.0")
    x = digits_data.x_calib
    # each device calls predict 5 times a second (250 calls/s in all, ~50 a second from a 20%
    # cohort) and uploads a window a second: flat out (a call every 4 ms, a window every 0.5 s)
    # the 50 app threads held this process's GIL and a CI machine's cores, and a poll for the
    # assignment took 5-15 s, so the cohort moved late and its telemetry came later still
    devices = [Device(i, tmp_path / "fleet", server.url, server.key("ingest"), pub, x,
                      bad={"1.2": 0.5}, poll_s=poll_s, pace_s=0.2, window_s=1.0)
               for i in range(50)]
    try:
        assert {d.deployment.release for d in devices} == {"1.0"}
        for d in devices:
            d.start()
        # sized for this traffic (~50 new-cohort calls a second at 20%): fewer
        # looks (each spends a share of the false-halt budget), an absolute fallback floor of
        # 1% (a 50% failure rate is far above it), p90 latency within 50%: the devices are
        # threads of this process on two cores shared with the server and, in CI, another
        # stream of tests; there the per-bucket log ratio of p90 scattered with an sd of 1.1
        # (1.1 was 1.06x 1.0) and a 20% margin left the healthy release undecided at 120 s
        plan = {"steps": [20, 50, 100], "hold_s": 3.0, "check_s": 2.0, "max_hold_s": 120.0,
                "min_calls": 300, "fallback_floor": 0.01, "latency_margin": 0.5}
        healthy = start_rollout(c, "1.1", **plan)
        done = wait_for(lambda: c.rollout(healthy["id"])["state"] != "running", 240, 1.0)
        r = c.rollout(healthy["id"])
        assert r["state"] == "completed", verdicts(r) + stalled(server, devices)
        assert [d["action"] for d in r["decisions"]] == ["start", "advance", "complete"], \
            r["decisions"]
        assert done and c._call("GET", "/api/stable/digits")["stable"] == "1.1"
        # the rest of the fleet downloads, verifies and self-tests 1.1 (50 devices, 2 cores)
        assert wait_for(lambda: {d.deployment.release for d in devices} == {"1.1"}, 90), \
            stalled(server, [d for d in devices if d.deployment.release != "1.1"])

        bad = start_rollout(c, "1.2", **plan)
        seen = [0.0]  # when the test's last look ended: the decision was visible by then (a
        # look that began just before the decision can be answered after it: on a loaded machine
        # its request waited 94 ms for the server)

        def decided_yet() -> bool:
            decided = c.rollout(bad["id"])["state"] != "running"
            seen[0] = time.time()
            return decided

        wait_for(decided_yet, 120, 0.5)
        visible = seen[0]
        r = c.rollout(bad["id"])
        assert r["state"] == "rolled_back" and r["step"] == 0, verdicts(r)
        decision = r["decisions"][-1]
        assert decision["action"] == "rollback"
        fallback = next(f for f in decision["figures"] if f["figure"] == "fallback rate")
        assert fallback["outcome"] == "worse" and fallback["estimate"] > 5
        cohort = [d for d in devices if any(rel == "1.2" for _, rel in d.history)]
        assert 2 <= len(cohort) <= 20  # its first step: 20% of the fleet
        decided = decision["time"]  # when the look began (its figures end there)
        assert visible >= decided
        back = wait_for(lambda: all(d.deployment.release == "1.1" for d in cohort),
                        poll_s * 1.2 + 30)
        assert back
        # each device took the old release back (a swap from disk: no download) at its first
        # poll once the decision was visible: no poll that began after it left the device on
        # 1.2. In time: within one poll interval (+20% jitter) of that moment, or of its own
        # install of 1.2 when that was still running, + 3 s for the poll's own request (the
        # server and 50 device threads share two cores; on a loaded CI machine the look that
        # decides and a poll's round trip each took seconds)
        swapped = []
        for d in cohort:
            went = max(t for t, rel in d.swaps if rel == "1.2")
            back_at = next(t for t, rel in d.swaps if rel == "1.1" and t > went)
            wasted = [p for p in d.polls if p[0] >= visible and p[1] <= back_at
                      and p[2] == "unchanged"]
            assert not wasted, (d.device_id, visible, back_at, wasted)
            # 0 when the device was back before the test itself saw the decision
            swapped.append(max(0.0, back_at - max(went, visible)))
        assert max(swapped) <= poll_s * 1.2 + 3.0, (swapped, visible - decided)
        # and served with it once its runtime loaded (0 when before the test saw the decision;
        # a device notes what it serves after each call, so its next call is waited for)
        assert wait_for(lambda: all(d.history[-1][1] == "1.1" for d in cohort), 30)
        served = []
        for d in cohort:
            went = max(t for t, rel in d.history if rel == "1.2")
            again = next(t for t, rel in d.history if rel == "1.1" and t > went)
            served.append(max(0.0, again - max(went, visible)))
        assert max(served) <= poll_s * 1.2 + 10.0, served
        assert all(d.deployment.release == "1.1" for d in devices)
        # no device ever served a release other than these, or stopped answering
        assert {rel for d in devices for _, rel in d.history} <= {"1.0", "1.1", "1.2"}
        assert sum(len(d.errors) for d in devices) == 0, devices[0].errors[:3]
        took = sorted(t1 - t0 for d in devices for t0, t1, _ in d.polls)
        print(f"{len(took)} polls: median {took[len(took) // 2]:.2f} s, "
              f"p99 {took[int(len(took) * 0.99)]:.2f} s, max {took[-1]:.2f} s")
    finally:
        close_all(devices)


def test_a_rollout_survives_kill_9_with_its_plan_and_every_decision(serve, server_database,
                                                                     releases, tmp_path):
    dirs, _ = releases
    server = serve(server_database, "--rollout-tick", "0.2")
    c = client_of(server)
    c.register(dirs["1.0"], files=True)
    c.register(dirs["1.1"], files=True)
    c.set_stable("digits", "1.0")
    r = start_rollout(c, "1.1", steps=[5, 25, 100], hold_s=3600, max_hold_s=7200)
    c.rollout(r["id"], "pause")
    c.rollout(r["id"], "resume")
    before = c.rollout(r["id"])
    server.kill9()
    again = serve(server_database, "--rollout-tick", "0.2", data_dir=server.data_dir)
    after = client_of(again).rollout(r["id"])
    for k in ("state", "step", "steps", "plan", "previous", "release"):
        assert after[k] == before[k], k
    assert after["decisions"] == before["decisions"]
    assert [d["action"] for d in after["decisions"]] == ["start", "pause", "resume"]
    # the assignment is the same after the restart (sticky cohorts)
    key = again.key("ingest")
    got = [json.loads(get(f"{again.url}/v1/assignment?model=digits&device=d{i}", key)[2])
           ["release"] for i in range(200)]
    assert 0 < got.count("1.1") < 40  # 5% of 200, give or take


def device_with_1_0_stable(serve, releases, tmp_path):
    """A server holding 1.0 (stable) and 1.1, an admin client, and one device's updater."""
    from edgeyard.runtime.updater import Updater

    dirs, pub = releases
    server = serve(None)
    c = client_of(server)
    c.register(dirs["1.0"])
    c.register(dirs["1.1"])
    c.set_stable("digits", "1.0")
    return server, c, Updater(tmp_path / "dev", server.url, "digits", "host", "d1",
                              api_key=server.key("ingest"), public_key=pub, threads=1)


def test_a_release_whose_engines_all_fail_reverts_on_the_device_without_the_network(
        serve, releases, digits_data, tmp_path):
    from edgeyard.runtime.runtime import AllEnginesFailed
    from edgeyard.runtime.updater import Deployment

    server, c, updater = device_with_1_0_stable(serve, releases, tmp_path)
    app = threading.current_thread()

    class Broken:  # every engine of 1.1 fails in the field (its self-test passed)
        def __init__(self, engine):
            self.engine = engine

        def __getattr__(self, name):
            return getattr(self.engine, name)

        def predict(self, inputs):
            if threading.current_thread() is app:
                raise RuntimeError("injected: the delegate crashed")
            return self.engine.predict(inputs)

    def wrap(target, engine):
        return Broken(engine) if updater.serving_release() == "1.1" else engine

    deployment = Deployment(updater, poll=False, revert_after=3,
                            runtime_options={"wrap_engine": wrap})
    x = digits_data.x_eval[:1]
    assert deployment.release == "1.0" and deployment.predict(x) is not None
    start_rollout(c, "1.1", steps=[100])
    assert updater.poll_once() == "installed 1.1" and deployment.release == "1.1"
    server.kill9()  # from here on, no network
    for _ in range(2):
        with pytest.raises(AllEnginesFailed):
            deployment.predict(x)
    y = deployment.predict(x)  # the third failure in a row reverts, and 1.0 answers
    assert y is not None and deployment.release == "1.0"
    assert updater.serving_release() == "1.0" and updater.stats["reverts"] == 1
    assert [k.split("@")[0] for k in updater.refused()] == ["1.1"]
    assert "reverted on the device" in next(iter(updater.refused().values()))
    deployment.close()


def test_a_release_the_app_failed_to_load_is_loaded_again_at_the_next_poll(
        serve, releases, digits_data, tmp_path):
    """CI saw a device of the fleet test keep serving 1.0: loading 1.1's runtime raised once
    (CPython's "AST constructor recursion depth mismatch", a race of 50 threads), the swap
    stayed on disk, and every later poll answered "unchanged". The next poll now loads it."""
    from edgeyard.runtime.updater import Deployment

    _, c, updater = device_with_1_0_stable(serve, releases, tmp_path)
    failures = [SystemError("AST constructor recursion depth mismatch (injected)")]

    def wrap(target, engine):
        if updater.serving_release() == "1.1" and failures:
            raise failures.pop()
        return engine

    deployment = Deployment(updater, poll=False, runtime_options={"wrap_engine": wrap})
    x = digits_data.x_eval[:1]
    assert deployment.release == "1.0"
    start_rollout(c, "1.1", steps=[100])
    with pytest.raises(SystemError):
        updater.poll_once()
    assert updater.serving_release() == "1.1" and deployment.release == "1.0"
    assert deployment.predict(x) is not None  # the old runtime still answers meanwhile
    assert updater.poll_once() == "loaded 1.1" and deployment.release == "1.1"
    assert updater.poll_once() == "unchanged" and deployment.predict(x) is not None
    deployment.close()


def failing_loads(monkeypatch, times: int | None, version: str = "1.1"):
    """Runtime.from_release raises MemoryError for releases of `version`, `times` times (None:
    always) and then loads for real; returns the list of the failures it raised."""
    from edgeyard.release import read_manifest
    from edgeyard.runtime.runtime import Runtime

    real = Runtime.from_release.__func__
    raised: list[str] = []

    def from_release(cls, directory, *args, **kwargs):
        if str(read_manifest(directory)["model"]["version"]) == version and \
                (times is None or len(raised) < times):
            raised.append(str(directory))
            raise MemoryError("injected: the app took the memory")
        return real(cls, directory, *args, **kwargs)

    monkeypatch.setattr(Runtime, "from_release", classmethod(from_release))
    return raised


def test_a_release_that_fails_to_load_once_is_installed_at_the_next_poll(
        serve, releases, tmp_path, monkeypatch):
    """A load that fails for a passing cause does not refuse the release for good: the verified
    files stay staged and the next poll loads them (CI saw a fleet device refuse a healthy 1.1
    for good after one failed load)."""
    _, c, u = device_with_1_0_stable(serve, releases, tmp_path)
    assert u.poll_once() == "installed 1.0"
    raised = failing_loads(monkeypatch, times=1)
    start_rollout(c, "1.1", steps=[100])
    got = u.poll_once()
    assert got.startswith("deferred 1.1: it does not load: MemoryError") and \
        got.endswith("(attempt 1 of 3)"), got
    assert len(raised) == 1 and u.serving_release() == "1.0" and u.refused() == {}
    staged = Path(raised[0])
    assert (staged / "release.json").is_file() and (staged / "release.json.sig").is_file()
    assert u.poll_once() == "installed 1.1" and u.serving_release() == "1.1"
    assert not staged.exists() and u.refused() == {} and not u._state().get("attempts")


def test_a_release_that_never_loads_is_refused_after_its_attempts_even_across_restarts(
        serve, releases, tmp_path, monkeypatch):
    from edgeyard.runtime.updater import UpdateError, Updater

    server, c, u = device_with_1_0_stable(serve, releases, tmp_path)
    assert u.poll_once() == "installed 1.0"
    raised = failing_loads(monkeypatch, times=None)
    start_rollout(c, "1.1", steps=[100])
    assert u.poll_once().endswith("(attempt 1 of 3)")
    assert u.poll_once().endswith("(attempt 2 of 3)")
    # the app restarts: the count is on disk
    again = Updater(tmp_path / "dev", server.url, "digits", "host", "d1",
                    api_key=server.key("ingest"), public_key=u.public_key, threads=1)
    got = again.poll_once()
    assert got == "refused 1.1: it does not load: MemoryError: injected: the app took the " \
                  "memory (3 attempts)", got
    assert len(raised) == 3 and again.serving_release() == "1.0"
    assert again.poll_once().startswith("refused 1.1") and len(raised) == 3  # not loaded again
    assert [k.split("@")[0] for k in again.refused()] == ["1.1"]
    assert not list((tmp_path / "dev").glob("staging-*")) and not again._state()["attempts"]
    with pytest.raises(UpdateError, match="load_attempts must be an integer >= 1"):
        Updater(tmp_path / "dev2", server.url, "digits", "host", "d1", public_key=u.public_key,
                load_attempts=0)
