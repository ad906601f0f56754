"""The fallback runtime with real artifacts and real faults."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from edgeyard.runtime import AllEnginesFailed, BreakerPolicy, Runtime

from .faults import FaultyEngine

CHAIN = ["tflite-int8", "executorch-fp32", "onnx-fp32"]


def states(rt):
    return {e["target"]: (e["state"], e["reason"]) for e in rt.status()["engines"]}


def x1(signed_release, i=0):
    return signed_release["data"].x_eval[i : i + 1]


def wrap_primary(**kw):
    made = {}

    def wrap(tid, engine):
        if tid == CHAIN[0]:
            made["engine"] = FaultyEngine(engine, active_after=8, **kw)  # 8 calls: the self-test
            return made["engine"]
        return engine

    return wrap, made


def test_signed_release_verifies_self_tests_and_answers(signed_release):
    rt = Runtime.from_release(signed_release["path"], "phone", signed_release["public"])
    assert [e["state"] for e in rt.status()["engines"]] == ["healthy"] * 3
    d = signed_release["data"]
    preds = [int(rt.predict(d.x_eval[i : i + 1]).argmax()) for i in range(50)]
    assert np.mean(np.array(preds) == d.y_eval[:50]) > 0.9
    assert rt.status()["served_by"] == {"tflite-int8": 50}
    # batches larger than the artifacts' batch of 1 are split and joined
    assert rt.predict(d.x_eval[:7]).shape == (7, 10)
    rt.close()


def test_corrupted_artifact_is_refused_and_the_next_engine_answers(signed_release, release_copy):
    art = next((release_copy / "artifacts").glob("*tflite-int8.tflite"))
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0x55
    art.write_bytes(bytes(data))
    rt = Runtime.from_release(release_copy, "phone", signed_release["public"])
    state, reason = states(rt)["tflite-int8"]
    assert state == "failed" and "does not match its sha256" in reason
    assert rt.predict(x1(signed_release)).shape == (1, 10)
    assert rt.status()["served_by"] == {"executorch-fp32": 1}


def test_tampered_manifest_trusts_no_engine(signed_release, release_copy):
    # any edit of release.json breaks release.json.sig: every engine is refused
    manifest = json.loads((release_copy / "release.json").read_text())
    manifest["profiles"]["phone"]["budgets"]["max_latency_p90_ms"] = 500.0
    (release_copy / "release.json").write_text(json.dumps(manifest))
    rt = Runtime.from_release(release_copy, "phone", signed_release["public"],
                              default=np.zeros((1, 10), np.float32))
    for state, reason in states(rt).values():
        assert state == "failed" and "release.json edited or replaced" in reason, reason
    # no .sig at all: not signed
    (release_copy / "release.json.sig").unlink()
    rt = Runtime.from_release(release_copy, "phone", signed_release["public"])
    assert all("the release is not signed" in r for _, r in states(rt).values())


def test_tampered_old_format_manifest_trusts_the_untouched_entries(signed_release,
                                                                    release_copy, tmp_path):
    """The deprecated embedded format, read for one more version: per-artifact trust."""
    from edgeyard.signing import generate_keys, load_private_key, sign_manifest

    priv, pub = generate_keys(tmp_path / "old.pem")
    manifest = sign_manifest(json.loads((release_copy / "release.json").read_text()),
                             load_private_key(priv))
    (release_copy / "release.json.sig").unlink()
    # an edit outside the artifact entries: each engine still verifies on its own statement
    manifest["profiles"]["phone"]["budgets"]["max_latency_p90_ms"] = 500.0
    (release_copy / "release.json").write_text(json.dumps(manifest))
    with pytest.warns(DeprecationWarning, match="edgeyard sign"):
        rt = Runtime.from_release(release_copy, "phone", pub)
    assert [s for s, _ in states(rt).values()] == ["healthy"] * 3
    # an edit of the primary's entry (a looser self-test tolerance): that engine is refused
    manifest["artifacts"]["tflite-int8"]["selftest"]["atol"] = 1e9
    (release_copy / "release.json").write_text(json.dumps(manifest))
    with pytest.warns(DeprecationWarning):
        rt = Runtime.from_release(release_copy, "phone", pub)
    state, reason = states(rt)["tflite-int8"]
    assert state == "failed" and "does not verify either (tampered)" in reason
    assert states(rt)["executorch-fp32"][0] == "healthy"
    rt.predict(x1(signed_release))
    assert rt.status()["served_by"] == {"executorch-fp32": 1}


def test_wrong_key_refuses_every_engine_and_the_static_default_answers(signed_release):
    rt = Runtime.from_release(signed_release["path"], "phone", signed_release["other_public"],
                              default=np.zeros((1, 10), np.float32))
    for state, reason in states(rt).values():
        assert state == "failed" and "(wrong key)" in reason
    assert rt.predict(x1(signed_release)).tolist() == [[0.0] * 10]
    assert rt.status()["served_by"] == {"default": 1}
    bare = Runtime.from_release(signed_release["path"], "phone", signed_release["other_public"])
    with pytest.raises(AllEnginesFailed) as exc:
        bare.predict(x1(signed_release))
    assert set(exc.value.reasons) == set(CHAIN) and "wrong key" in str(exc.value)


def test_unsigned_needs_explicit_consent(signed_release):
    rt = Runtime.from_release(signed_release["path"], "phone")
    assert all("no public key given" in r for _, r in states(rt).values())
    rt = Runtime.from_release(signed_release["path"], "phone", allow_unsigned=True)
    assert all(s == "healthy" for s, _ in states(rt).values())


def test_nan_engine_falls_back_then_is_demoted(signed_release):
    wrap, made = wrap_primary(mode="nan")
    rt = Runtime.from_release(signed_release["path"], "phone", signed_release["public"],
                              wrap_engine=wrap)
    for i in range(5):
        assert np.isfinite(rt.predict(x1(signed_release, i))).all()
    state, reason = states(rt)["tflite-int8"]
    assert state == "demoted" and "NaN" in reason
    st = rt.status()
    assert st["served_by"] == {"executorch-fp32": 5}
    by_kind = {(f["engine"], f["kind"]): f["count"] for f in st["fallbacks"]}
    assert by_kind[("tflite-int8", "invalid_output")] == 3  # tried until demoted
    assert by_kind[("tflite-int8", "unavailable")] == 2  # then skipped while resting
    assert made["engine"].injected["nan"] == 3


def test_raising_engine_and_cool_off_retry(signed_release):
    wrap, made = wrap_primary(mode="raise")
    rt = Runtime.from_release(signed_release["path"], "phone", signed_release["public"],
                              wrap_engine=wrap, breaker=BreakerPolicy(failures=2, cooloff_s=0.2))
    for i in range(3):
        rt.predict(x1(signed_release, i))
    state, reason = states(rt)["tflite-int8"]
    assert state == "demoted" and "delegate lost its context" in reason
    made["engine"].mode = "ok"  # the fault clears
    time.sleep(0.25)
    rt.predict(x1(signed_release))
    assert states(rt)["tflite-int8"] == ("healthy", None)
    assert rt.status()["served_by"]["tflite-int8"] == 1


def test_slow_engine_is_demoted_on_p90_budget(signed_release):
    wrap, _ = wrap_primary(mode="slow", sleep_s=0.008)  # budget: 5 ms
    rt = Runtime.from_release(signed_release["path"], "phone", signed_release["public"],
                              wrap_engine=wrap, breaker=BreakerPolicy(latency_min_calls=5))
    for i in range(8):
        rt.predict(x1(signed_release, i))
    state, reason = states(rt)["tflite-int8"]
    assert state == "demoted" and "> budget 5 ms" in reason
    served = rt.status()["served_by"]
    assert served["tflite-int8"] == 5 and served["executorch-fp32"] == 3


def test_engine_failing_its_self_test_is_marked_failed(signed_release):
    def wrap(tid, engine):
        return FaultyEngine(engine, mode="offset") if tid == "executorch-fp32" else engine

    rt = Runtime.from_release(signed_release["path"], "phone", signed_release["public"],
                              wrap_engine=wrap)
    state, reason = states(rt)["executorch-fp32"]
    assert state == "failed" and reason.startswith("self-test failed: output 0 max abs error")


def test_validator_and_observer(signed_release):
    events = []

    class Observer:
        def on_call(self, inputs, outputs, engine, latency_s, fallbacks):
            events.append((engine, fallbacks))

    def only_confident(outs):
        return float(outs[0].max()) > 1e9  # rejects everything but the last resort

    rt = Runtime.from_release(signed_release["path"], "phone", signed_release["public"],
                              validator=only_confident, observers=[Observer()],
                              default=np.full((1, 10), 2e9, np.float32))
    rt.predict(x1(signed_release))
    ((engine, fallbacks),) = events
    assert engine == "default"
    assert [(f.engine, f.kind) for f in fallbacks] == [(t, "invalid_output") for t in CHAIN]
    assert "validator rejected" in fallbacks[0].reason


class _Service(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        n = len(body["inputs"][0])
        data = json.dumps({"outputs": [[[7.0] * 10] * n]}).encode()
        if self.server.delay:
            time.sleep(self.server.delay)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def service():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Service)
    srv.delay = 0.0
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_remote_model_service_is_the_last_resort(signed_release, service):
    url = f"http://127.0.0.1:{service.server_address[1]}/predict"
    rt = Runtime.from_release(signed_release["path"], "phone", signed_release["other_public"],
                              remote=url, default=np.zeros((1, 10), np.float32))
    assert rt.predict(x1(signed_release)).tolist() == [[7.0] * 10]
    service.delay = 1.0  # slower than the timeout: the static default answers
    from edgeyard.runtime import RemoteModel

    rt = Runtime.from_release(signed_release["path"], "phone", signed_release["other_public"],
                              remote=RemoteModel(url, timeout_s=0.2),
                              default=np.zeros((1, 10), np.float32))
    assert rt.predict(x1(signed_release)).tolist() == [[0.0] * 10]
    fb = {f["engine"]: f for f in rt.status()["fallbacks"]}
    assert "timed out" in fb["remote"]["reason"]


@pytest.mark.slow
def test_soak_10000_calls_4_threads_random_faults(signed_release):
    faulty = {}

    def wrap(tid, engine):
        if tid == "onnx-fp32":
            return engine  # always healthy
        faulty[tid] = FaultyEngine(engine, p_raise=0.04, p_nan=0.04, seed=len(faulty),
                                   active_after=8)  # the self-test's 8 golden samples pass
        return faulty[tid]

    rt = Runtime.from_release(signed_release["path"], "phone", signed_release["public"],
                              wrap_engine=wrap,
                              # faults, not latency, are under test: on a loaded machine the
                              # healthy engine's p90 passes the profile's 5 ms and demotes it
                              breaker=BreakerPolicy(failures=2, cooloff_s=0.02,
                                                    latency_min_calls=10**9))
    d = signed_release["data"]
    errors, answers = [], [0] * 4

    def worker(k):
        for i in range(2500):
            try:
                y = rt.predict(d.x_eval[(i + k) % len(d.x_eval)][None])
                assert y.shape == (1, 10) and np.isfinite(y).all()
                answers[k] += 1
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = rt.status()
    assert errors == [] and sum(answers) == 10_000
    assert sum(st["served_by"].values()) == 10_000 and st["failed_calls"] == 0
    counts = {}
    for f in st["fallbacks"]:
        counts[(f["engine"], f["kind"])] = counts.get((f["engine"], f["kind"]), 0) + f["count"]
    for tid, eng in faulty.items():
        assert eng.injected["raise"] > 0 and eng.injected["nan"] > 0
        assert counts.get((tid, "error"), 0) == eng.injected["raise"]
        assert counts.get((tid, "invalid_output"), 0) == eng.injected["nan"]
    # the primary came back after its cool-offs and kept serving
    assert st["served_by"].get("tflite-int8", 0) > 1000
