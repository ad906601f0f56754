"""The Android wrapper's JNI bridge, end to end on the plain JVM: mobile_shims/android's CMake
file builds libedgeyard_collector_jni.so (the glue + the C core) against the JDK's jni.h; a
Java driver opens NativeCollector on the real digits release, replays the calls the Python
collector sees (same inputs, outputs, engines, latencies, a fallback, a batch of 3 and a call
every engine failed), and the library's Spool + Uploader post the window to a real `edgeyard
serve`. What the server stored from Java equals what it stored from the Python collector's
upload of the same calls, and a retried upload (same upload id) is stored once."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra: pip install 'edgeyard[server]'")
pytest.importorskip("sqlalchemy", reason="the server extra: pip install 'edgeyard[server]'")

ROOT = Path(__file__).resolve().parents[2]
ANDROID = ROOT / "mobile_shims" / "android"
DRIVER = Path(__file__).resolve().parent / "jni" / "JniBridgeDriver.java"
FAST_JVM = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
PROFILE = "host"


def _tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found: {hint}")
    return path


def _jdk_home(javac: str) -> Path:
    home = Path(os.environ.get("JAVA_HOME") or Path(os.path.realpath(javac)).parents[1])
    if not (home / "include" / "jni.h").is_file():
        pytest.skip(f"no jni.h in {home}/include: the JNI bridge needs a full JDK "
                    f"(apt-get install -y openjdk-17-jdk-headless) or JAVA_HOME set to one")
    return home


@pytest.fixture(scope="module")
def jni_build(tmp_path_factory) -> dict[str, Path]:
    """libedgeyard_collector_jni.so from mobile_shims/android/CMakeLists.txt, and the Java
    library + driver compiled."""
    cmake = _tool("cmake", "apt-get install -y cmake")
    javac = _tool("javac", "the JNI bridge test needs a JDK 17+ "
                           "(apt-get install -y openjdk-17-jdk-headless)")
    _tool("java", "apt-get install -y openjdk-17-jdk-headless")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler (gcc) to build the JNI library")
    home = _jdk_home(javac)
    out = tmp_path_factory.mktemp("jni")
    env = {**os.environ, "JAVA_HOME": str(home)}
    build = out / "build"
    for cmd in ([cmake, "-S", str(ANDROID), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                 "-DCMAKE_C_FLAGS=-Werror"],
                [cmake, "--build", str(build), "--target", "edgeyard_collector_jni"]):
        r = subprocess.run(["nice", *cmd], capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, f"{' '.join(cmd)}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    lib = build / "libedgeyard_collector_jni.so"
    assert lib.is_file()
    classes = out / "classes"
    sources = sorted(str(p) for p in (ANDROID / "src/main/java").rglob("*.java"))
    r = subprocess.run(["nice", javac, *(f"-J{o}" for o in FAST_JVM), "-Xlint:all", "-Werror",
                        "-encoding", "UTF-8", "-d", str(classes), *sources, str(DRIVER)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"javac failed:\n{r.stdout}\n{r.stderr}"
    return {"lib_dir": build, "classes": classes}


def _calls(digits_data, release_path: Path):
    """The calls both collectors see: (engine or None, latency_s, fallbacks, inputs, outputs)."""
    from edgeyard.engines import load_engine
    from edgeyard.release import load_release
    from edgeyard.runtime.runtime import FallbackEvent

    rel = load_release(release_path)
    target = rel.chain(PROFILE)[0]
    engine = load_engine("onnx", rel.path / target["path"])
    rng = np.random.default_rng(3)
    x = digits_data.x_eval
    calls = []
    for i in range(40):
        xi = np.ascontiguousarray(x[i : i + 1])
        yi = np.asarray(engine.predict([xi])[0], np.float32)
        calls.append((target["target"], float(rng.lognormal(-6, 0.5)), (), [xi], [yi]))
    # a batch of 3, a call after a fallback, and a call no engine answered (engine -1 in C)
    xb = np.ascontiguousarray(x[40:43])
    yb = np.concatenate([np.asarray(engine.predict([xb[k : k + 1]])[0], np.float32)
                         for k in range(3)])
    calls.append((target["target"], 0.0031, (), [xb], [yb]))
    fb = (FallbackEvent(target["target"], "error", "RuntimeError: out of memory"),)
    x1 = np.ascontiguousarray(x[43:44])
    calls.append((target["target"], 0.0123, fb, [x1],
                  [np.asarray(engine.predict([x1])[0], np.float32)]))
    calls.append((None, 0.0456, fb, [np.ascontiguousarray(x[44:45])], None))
    return calls


def _write_calls(path: Path, calls) -> None:
    def s(v: str) -> bytes:
        b = v.encode()
        return struct.pack(">i", len(b)) + b

    def tensors(ts) -> bytes:
        if ts is None:
            return struct.pack(">i", -1)
        out = struct.pack(">i", len(ts))
        for t in ts:
            flat = np.ascontiguousarray(t, ">f4").reshape(-1)
            out += struct.pack(">i", flat.size) + flat.tobytes()
        return out

    data = struct.pack(">i", len(calls))
    for engine, lat, fbs, ins, outs in calls:
        data += s(engine or "") + struct.pack(">d", lat) + struct.pack(">i", len(fbs))
        for f in fbs:
            data += s(f.engine) + s(f.kind) + s(f.reason)
        data += tensors(ins) + tensors(outs)
    path.write_bytes(data)


def _python_upload(release_path: Path, calls, spool: Path, url: str, key: str) -> None:
    """The Python collector over the same calls, filed under profile "python" (so the two
    uploads can be told apart on the server), posted as the collector posts (gzip protobuf)."""
    from edgeyard.telemetry import otlp
    from edgeyard.telemetry.collector import Collector

    col = Collector.from_release(release_path, None, spool, device_id="py-device",
                                 window_calls=10_000, window_s=3600, max_overhead=None,
                                 start=False)
    col.resource["edgeyard.profile"] = "python"
    for engine, lat, fbs, ins, outs in calls:
        col.on_call(tuple(ins), outs, engine, lat, fbs)
    col._drain(close=True)
    parts = [f.read_bytes() for f in col.spool.pending()]
    assert len(parts) == 1
    req = urllib.request.Request(url, data=gzip.compress(otlp.join(parts)), method="POST",
                                 headers={"Content-Type": "application/x-protobuf",
                                          "Content-Encoding": "gzip",
                                          "Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200


@pytest.fixture
def server(tmp_path):
    """A real `edgeyard serve` (uvicorn, SQLite in its data directory), as tests/server starts
    one."""
    from server.conftest import ServeProcess

    p = ServeProcess(tmp_path / "data").start()
    yield p
    p.stop()


def test_release_ships_the_projector_directions(telemetry_release):
    from edgeyard.telemetry.projections import Projector, read_directions

    tel = telemetry_release.manifest["telemetry"]
    entry = tel["directions"]
    spec = tel["projections"]
    got = read_directions(telemetry_release.path, entry, spec)
    projector = Projector(spec)
    rp = [s["name"] for s in spec["signals"] if s["kind"] == "random_projection"]
    assert rp and entry["signals"] == rp
    for name in rp:
        assert got[name].tobytes() == projector.directions(name).tobytes()


def test_jni_window_equals_python_window_on_a_real_server(jni_build, telemetry_release,
                                                           digits_data, server, tmp_path):
    from edgeyard.server import store
    from server.conftest import engine_of

    srv = server
    key = srv.key("ingest")
    url = srv.url + "/v1/metrics"
    calls = _calls(digits_data, telemetry_release.path)
    calls_file = tmp_path / "calls.bin"
    _write_calls(calls_file, calls)
    _python_upload(telemetry_release.path, calls, tmp_path / "py-spool", url, key)

    java = shutil.which("java")
    assert java is not None
    window = tmp_path / "window.json"
    cmd = [java, *FAST_JVM, f"-Djava.library.path={jni_build['lib_dir']}", "-cp",
           str(jni_build["classes"]), "JniBridgeDriver", str(telemetry_release.path), PROFILE,
           "java-device", str(calls_file), str(tmp_path / "java-spool"), url, key, str(window)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"driver failed:\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}"
    out = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert out["calls"] == str(len(calls))
    assert out["first_upload"].startswith("true status=200 uploaded=1"), r.stdout
    assert out["retry_upload"].startswith("true status=200 uploaded=2 rejected=0"), r.stdout
    # errors are Java exceptions naming what the C core (or the glue) refused
    assert "holds 5 floats" in out["bad_shape"], out["bad_shape"]
    assert "not in the chain" in out["bad_engine"], out["bad_engine"]
    assert out["after_close"] == "null"
    assert out["upload_id"] in window.read_text()
    assert len(out["upload_id"]) == 32 and int(out["upload_id"], 16) >= 0

    engine = engine_of(srv)
    try:
        # one Python window + one Java window: the retried Java upload was a duplicate
        assert store.upload_count(engine) == 2
        py = store.signals(engine, "digits", "1.0", 0, 2**40, profile="python")
        jv = store.signals(engine, "digits", "1.0", 0, 2**40, profile=PROFILE)
        assert set(py) == set(jv) and len(py) > 5, (sorted(py), sorted(jv))
        spec = telemetry_release.manifest["telemetry"]["projections"]
        soft = {s["name"] for s in spec["signals"] if s.get("activation") == "softmax"}
        for name in sorted(py):
            a, b = jv[name], py[name]
            assert (a.count, a.zero_count, a.scale) == (b.count, b.zero_count, b.scale), name
            for side in ("positive", "negative"):
                ta, tb = getattr(a, side).trimmed(), getattr(b, side).trimmed()
                assert (ta.offset, ta.counts.tolist()) == (tb.offset, tb.counts.tolist()), \
                    (name, side)
            if name in soft:  # numpy's exp/log are its own SIMD code, not libm's
                assert (a.min, a.max) == pytest.approx((b.min, b.max), rel=1e-12), name
            else:  # bit for bit (mobile_shims/README.md, "Exactness")
                assert (a.min, a.max) == (b.min, b.max), name
            # per-call updates in C, one batch per drain in Python: sums in another order
            assert a.sum == pytest.approx(b.sum, rel=1e-12, abs=1e-300), name
        pc = store.counter_rows(engine, "digits", "1.0", 0, 2**40, profile="python")
        jc = store.counter_rows(engine, "digits", "1.0", 0, 2**40, profile=PROFILE)
        assert jc == pc
        assert jc[("calls", '{"engine":"none"}')] == 1  # every engine failed: engine -1
        assert sum(v for (n, _), v in jc.items() if n == "calls") == len(calls)
    finally:
        engine.dispose()
