"""The on-disk spool under concurrency: writers in threads and in other processes, an uploader
taking windows as they land, the bounds dropping old ones. No window is ever sent half-written,
none is lost or sent twice, nothing raises into the app."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import shutil
import threading

import numpy as np
import pytest

from edgeyard.telemetry.spool import Spool

WINDOWS_PER_WRITER = 150


def window(writer: str, k: int) -> tuple[str, bytes]:
    """A window whose bytes carry their own checksum: a half-written one cannot pass."""
    body = np.random.default_rng(hash((writer, k)) % 2**32).bytes(2000 + k % 7 * 900)
    upload_id = hashlib.sha256(f"{writer}-{k}".encode()).hexdigest()[:32]
    return upload_id, hashlib.sha256(body).digest() + body


def intact(data: bytes) -> bool:
    return hashlib.sha256(data[32:]).digest() == data[:32]


def write_many(directory: str, writer: str, max_bytes: int = 1 << 30) -> None:
    spool = Spool(directory, max_bytes=max_bytes)
    for k in range(WINDOWS_PER_WRITER):
        spool.put(*window(writer, k))


def upload_until(spool: Spool, expected: int, got: dict[str, int], stop: threading.Event,
                 errors: list[str]) -> None:
    while not stop.is_set() or spool.pending():
        for f in spool.pending()[:16]:
            data = spool.read(f)
            if data is None:  # removed since it was listed
                continue
            if not intact(data):
                errors.append(f"half-written window sent: {f.name}")
            uid = Spool.upload_id(f)
            got[uid] = got.get(uid, 0) + 1
            spool.remove([f])
        if len(got) >= expected:
            return


def test_threads_and_processes_hammer_put_and_upload(tmp_path):
    directory = tmp_path / "spool"
    spool = Spool(directory, max_bytes=1 << 30)
    got: dict[str, int] = {}
    errors: list[str] = []
    stop = threading.Event()
    writers = ["t0", "t1", "t2"]
    procs = ["p0", "p1"]
    expected = WINDOWS_PER_WRITER * (len(writers) + len(procs))
    uploader = threading.Thread(target=upload_until, args=(spool, expected, got, stop, errors),
                                daemon=True)
    uploader.start()
    ctx = mp.get_context("fork")
    children = [ctx.Process(target=write_many, args=(str(directory), p)) for p in procs]
    threads = [threading.Thread(target=write_many, args=(str(directory), w)) for w in writers]
    try:
        for c in children:
            c.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in children:
            c.join(120)
        assert [c.exitcode for c in children] == [0] * len(children)
    finally:
        stop.set()
        uploader.join(120)
    assert errors == []
    want = {window(w, k)[0] for w in writers + procs for k in range(WINDOWS_PER_WRITER)}
    assert set(got) == want  # none lost
    assert set(got.values()) == {1}  # none sent twice
    assert spool.pending() == [] and not list(directory.glob(".tmp-*.pb"))


def test_bounds_drop_under_concurrency_and_every_drop_is_counted(tmp_path):
    directory = tmp_path / "spool"
    spool = Spool(directory, max_bytes=40_000)  # about 10 windows
    # each writer (threads and processes, one Spool object each) enforces the bound itself
    args = (str(directory),)
    writers = [threading.Thread(target=write_many, args=(*args, f"w{i}", 40_000))
               for i in range(2)]
    children = [mp.get_context("fork").Process(target=write_many, args=(*args, "p0", 40_000))]
    for w in [*writers, *children]:
        w.start()
    for t in writers:
        t.join()
    children[0].join(120)
    assert children[0].exitcode == 0
    kept = len(spool.pending())
    assert kept > 0
    assert kept + spool.dropped == 3 * WINDOWS_PER_WRITER  # every window kept or counted once
    assert sum(f.stat().st_size for f in spool.pending()) <= 40_000


def test_take_dropped_resets_the_count(tmp_path):
    spool = Spool(tmp_path / "s")
    spool._count_dropped(3)
    spool._count_dropped(2)
    assert spool.dropped == 5
    assert spool.take_dropped() == 5 and spool.dropped == 0


def test_close_never_raises_when_the_disk_fails(telemetry_release, digits_data, tmp_path):
    from edgeyard.telemetry import Collector

    col = Collector.from_release(telemetry_release.path, None, tmp_path / "spool",
                                 window_calls=1000)
    col.observe(digits_data.x_eval[:1], [np.zeros((1, 10), np.float32)])
    shutil.rmtree(col.spool.dir)
    col.spool.dir.write_text("not a directory any more")  # every write now fails (even as root)
    col.close()  # must not raise
    assert col.stats["lost_windows"] == 1 and col.stats["spool_errors"] == 1


def test_the_collector_reports_the_runtime_profile(tmp_path, digits_data, digits_cnn):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("opentelemetry.proto")
    import edgeyard
    from edgeyard.runtime import Runtime
    from edgeyard.telemetry import Collector
    from profile_files import write_profile

    write_profile(tmp_path / "p", "first", [("onnx", "fp32")])
    write_profile(tmp_path / "p", "second", [("onnx", "int8")])
    d = digits_data
    rel = edgeyard.build(digits_cnn, example_inputs=(d.x_eval[:1],), profiles=["first", "second"],
                         calibration=d.x_calib, evaluation=d.x_eval[:64], out=tmp_path / "rel",
                         profile_dirs=[tmp_path / "p"], log=None)
    col = Collector.from_release(rel.path, None, tmp_path / "spool", start=False)
    assert col.resource["edgeyard.profile"] == "first"  # the default, before a runtime binds it
    Runtime.from_release(rel.path, "second", allow_unsigned=True, collector=col)
    assert col.resource["edgeyard.profile"] == "second"
    assert col.resource["edgeyard.artifact.sha256"] == rel.artifacts["onnx-int8"]["sha256"]
    pinned = Collector.from_release(rel.path, None, tmp_path / "spool2", profile="first",
                                    start=False)
    with pytest.raises(ValueError, match="reports profile 'first' but the runtime serves 'second'"):
        Runtime.from_release(rel.path, "second", allow_unsigned=True, collector=pinned)
    with pytest.raises(ValueError, match="has no profile 'third'"):
        Collector.from_release(rel.path, None, tmp_path / "s3", profile="third")
