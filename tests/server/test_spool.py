"""The ingest spool (`server/spool.py`): windows acknowledged once in a worker's spool file, then
moved into the database behind the answers. Stored exactly as the group commit stores them,
once whatever the retries; a crash's cut-short tail, a corrupt record and a request the database
refuses each lose only themselves; a dead worker's spool is taken over; reads see every
acknowledged window at once."""

from __future__ import annotations

import marshal
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from .test_partsmerge import _body, _uploads, direct_and_other


def _requests(n: int, seed: int = 3, start: float | None = None) -> list:
    now = start if start is not None else time.time() // 300 * 300 - 3600
    rng = np.random.default_rng(seed)
    return _uploads([_body(now + 300 * (i % 2) + 5, rng.integers(-50, 400, 60).astype(float),
                           calls=i + 1) for i in range(n)])


def _same_data(a, b) -> None:
    from edgeyard.server import store

    assert store.signals(a, "app", "1.0", 0, 2**40, by_bucket=True) == \
        store.signals(b, "app", "1.0", 0, 2**40, by_bucket=True)
    assert store.counter_rows(a, "app", "1.0", 0, 2**40, by_bucket=True) == \
        store.counter_rows(b, "app", "1.0", 0, 2**40, by_bucket=True)
    assert store.upload_count(a) == store.upload_count(b)


def test_a_record_reads_back_as_the_uploads_it_holds():
    from edgeyard.server import spool

    (ups,) = _requests(1)
    received, bucket_s, back = spool.decode_record(spool.encode(123.5, 5, ups))
    assert (received, bucket_s, len(back)) == (123.5, 5, 1)
    a, b = ups[0], back[0]
    for name in ("upload_id", "model", "release", "profile", "device_id", "start_ns", "end_ns",
                 "points", "counters", "sketch_points", "counter_points"):
        assert getattr(a, name) == getattr(b, name), name
    assert {k: v.to_parts() for k, v in a.sketches.items()} == \
        {k: v.to_parts() for k, v in b.sketches.items()}


@pytest.mark.parametrize("layouts", [("packed", "packed"), ("parts", "parts"),
                                     ("packed", "parts")])
def test_spooled_windows_are_stored_once_as_the_group_commit_stores_them(database_url,
                                                                          tmp_path, layouts):
    """Twelve requests through a spool (three of them sent twice, one already stored by a
    direct commit): the database holds what committing each request directly gives. The
    records' sketches packed (`packedparts`), as parts (a worker without the compiled module,
    or a server before the packed layout), or some of each in one spool."""
    from edgeyard.server import packedparts, spool, store

    if "packed" in layouts and not packedparts.available():
        pytest.skip(packedparts.describe())

    def encode(now: float, uploads: list, layout: str) -> bytes:
        if layout == "packed":
            data = spool.encode(now, 300, uploads)
        else:
            with pytest.MonkeyPatch.context() as m:
                m.setattr(packedparts, "pack", lambda parts: None)
                data = spool.encode(now, 300, uploads)
        version = store.PACKED if layout == "packed" else store.SPOOLED
        assert marshal.loads(data)[0] == version
        return data

    requests = _requests(12)
    with direct_and_other(database_url, tmp_path, requests) as (direct, spooled):
        store.ingest_requests(spooled, [requests[0]])  # the first, stored directly
        sp = spool.Spool(tmp_path / "spool")
        now = time.time()
        sp.append([encode(now, r, layouts[0]) for r in requests[:7]])
        sp.append([encode(now, r, layouts[1]) for r in requests[7:] + requests[:3]])  # retries
        assert spool.backlog(sp.dir) > 0
        got = spool.move(spooled, sp.dir, max_windows=5, until_empty=True)
        assert (got.records, got.windows, got.rejected) == (15, 15, 0)
        assert spool.backlog(sp.dir) == 0
        assert spool.move(spooled, sp.dir).records == 0  # moved records are not moved again
        _same_data(spooled, direct)
        sp.close()
        spool.drain(spooled, tmp_path / "spool")  # a dead owner's spool, all moved: removed
        assert not sp.dir.exists()


def test_a_moved_record_moved_again_is_stored_once(engine, tmp_path):
    """A mover killed between its commit and writing its position: the next one moves the
    same records again, and the ledger drops them."""
    from edgeyard.server import spool, store

    sp = spool.Spool(tmp_path / "spool")
    sp.append([spool.encode(time.time(), 300, r) for r in _requests(4)])
    assert spool.move(engine, sp.dir).windows == 4
    (sp.dir / "moved").unlink()  # the position lost
    assert spool.move(engine, sp.dir).windows == 4
    assert store.upload_count(engine) == 4


def test_a_tail_cut_short_by_a_crash_and_a_corrupt_record_lose_only_themselves(engine,
                                                                                tmp_path):
    from edgeyard.server import spool, store

    requests = _requests(9)
    root = tmp_path / "spool"
    first = spool.Spool(root, name="w1")
    first.append([spool.encode(time.time(), 300, r) for r in requests[:3]])
    seg1 = first.dir / "00000001.log"
    with open(seg1, "ab") as f:  # killed while writing a record: never acknowledged
        f.write(spool.HEADER.pack(5000, 0) + b"\x00" * 100)
    first.close()
    # the worker started again under the same name: it appends to a segment of its own
    second = spool.Spool(root, name="w1")
    second.append([spool.encode(time.time(), 300, r) for r in requests[3:6]])
    second.append([spool.encode(time.time(), 300, r) for r in requests[6:]])
    seg2 = second.dir / "00000002.log"
    assert seg2.exists()
    data = bytearray(seg2.read_bytes())
    n = spool.HEADER.unpack_from(data, 0)[0]
    second_record = spool.HEADER.size + n
    data[second_record + spool.HEADER.size + 10] ^= 0xFF  # a bit flipped in its 5th record
    seg2.write_bytes(bytes(data))
    got = spool.move(engine, second.dir, until_empty=True)
    # the first segment's 3 records (its cut-short tail skipped), then the second segment's
    # first: its second record is corrupt, so the rest of that segment is skipped (and kept in
    # *.corrupt for a person to look at)
    assert got.windows == 4 and store.upload_count(engine) == 4
    assert (second.dir / "00000002.corrupt").exists()
    assert not seg1.exists()  # moved whole: deleted
    second.append([spool.encode(time.time(), 300, r) for r in _requests(2, seed=9)])
    assert spool.move(engine, second.dir).windows == 2  # what follows is moved
    second.close()


def test_a_request_the_database_refuses_alone_is_kept_aside_and_the_others_stored(
        engine, tmp_path, monkeypatch):
    from edgeyard.server import spool, store

    requests = _requests(6)
    bad = requests[2][0].upload_id
    real = store.ingest_requests

    def refusing(engine_, reqs, *args, **kwargs):
        if any(u.upload_id == bad for r in reqs for u in r):
            raise ValueError("this request cannot be stored")
        return real(engine_, reqs, *args, **kwargs)

    real_fast = spool.fastmove.append

    def refusing_fast(engine_, reqs, *args, **kwargs):  # the move's fast lane, likewise
        if any(row[0] == bad for _, rows in reqs for row in rows):
            raise ValueError("this request cannot be stored")
        return real_fast(engine_, reqs, *args, **kwargs)

    monkeypatch.setattr(spool.store, "ingest_requests", refusing)
    monkeypatch.setattr(spool.fastmove, "append", refusing_fast)
    sp = spool.Spool(tmp_path / "spool")
    sp.append([spool.encode(time.time(), 300, r) for r in requests])
    got = spool.move(engine, sp.dir)
    assert (got.windows, got.rejected) == (6, 1)
    assert store.upload_count(engine) == 5
    kept = (sp.dir / "rejected.log").read_bytes()
    n, _ = spool.HEADER.unpack_from(kept, 0)
    _, _, ups = spool.decode_record(kept[spool.HEADER.size:spool.HEADER.size + n])
    assert ups[0].upload_id == bad
    sp.close()


def test_a_record_whose_packed_sketches_are_cut_short_is_kept_aside_alone(engine, tmp_path):
    """A record whose checksum holds but whose packed sketches do not read (cut short before
    the checksum was taken: a bug, or a file edited by hand), between good ones: the fast lane
    and the general path both refuse it, it is kept in rejected.log, and the others are
    stored."""
    from edgeyard.server import packedparts, spool, store

    if not packedparts.available():
        pytest.skip(packedparts.describe())
    requests = _requests(5)
    now = time.time()
    records = [spool.encode(now, 300, r) for r in requests]
    version, received, bucket_s, rows = marshal.loads(records[2])
    assert version == store.PACKED
    rows = [(*row[:12], row[12][:-7]) for row in rows]
    records[2] = marshal.dumps((version, received, bucket_s, rows))
    sp = spool.Spool(tmp_path / "spool")
    sp.append(records)
    got = spool.move(engine, sp.dir)
    assert (got.windows, got.rejected) == (5, 1)
    assert store.upload_count(engine) == 4
    kept = (sp.dir / "rejected.log").read_bytes()
    n, _ = spool.HEADER.unpack_from(kept, 0)
    assert kept[spool.HEADER.size:spool.HEADER.size + n] == records[2]
    assert spool.move(engine, sp.dir).records == 0
    sp.close()


def test_a_database_that_is_away_keeps_the_records_for_the_next_move(engine, tmp_path,
                                                                      monkeypatch):
    from edgeyard.server import spool, store

    sp = spool.Spool(tmp_path / "spool")
    sp.append([spool.encode(time.time(), 300, r) for r in _requests(3)])
    real = store.ingest_requests

    def busy(*args, **kwargs):
        raise store.Busy("database is locked")

    monkeypatch.setattr(spool.store, "ingest_requests", busy)
    with pytest.raises(store.Busy):
        spool.move(engine, sp.dir)
    assert spool.backlog(sp.dir) > 0
    monkeypatch.setattr(spool.store, "ingest_requests", real)
    assert spool.move(engine, sp.dir).windows == 3
    sp.close()


def test_only_one_process_owns_a_spool_and_a_live_ones_is_moved_not_removed(engine, tmp_path):
    from edgeyard.server import spool

    sp = spool.Spool(tmp_path / "spool", name="w1")
    with pytest.raises(RuntimeError, match="live process"):
        spool.Spool(tmp_path / "spool", name="w1")
    assert spool.owner_alive(sp.dir)
    sp.append([spool.encode(time.time(), 300, r) for r in _requests(2)])
    assert spool.drain(engine, tmp_path / "spool").windows == 2
    assert sp.dir.exists()  # its owner lives: it may append again
    sp.close()
    assert not spool.owner_alive(sp.dir)


def test_a_full_spool_refuses_uploads_with_busy_until_it_is_moved(engine, tmp_path):
    from edgeyard.server import spool, store
    from edgeyard.server.writer import SpoolWriter

    sp = spool.Spool(tmp_path / "spool", max_backlog=1, backlog_every_s=0.0)
    w = SpoolWriter(engine, sp, threading.Event())
    try:
        first, again, second = _requests(3)
        fut: Future = w.submit(first)
        assert fut.result(timeout=30).new == 1 and w.spooled == 0  # new series: committed
        assert w.submit(again).result(timeout=30).new == 1 and w.spooled == 1
        with pytest.raises(store.Busy, match="spool"):
            w.submit(second).result(timeout=30)
        assert spool.move(engine, sp.dir).windows == 1
        assert w.submit(second).result(timeout=30).new == 1 and w.spooled == 2
        assert spool.move(engine, sp.dir).windows == 1
        assert store.upload_count(engine) == 3
    finally:
        w.close()
        sp.close()


def _post(url: str, key: str, body: bytes) -> int:
    import urllib.request

    req = urllib.request.Request(url + "/v1/metrics", data=body, method="POST",
                                 headers={"Content-Type": "application/x-protobuf",
                                          "Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return int(resp.status)


def test_the_app_answers_from_the_spool_and_reads_see_every_window_at_once(engine, tmp_path):
    """The first window of a shape goes to the database (its series are new); the rest are
    answered from the spool, and a read right after the answers sees all of them."""
    from edgeyard.server import store

    from .conftest import make_client

    key = store.create_key(engine, "ingest")
    bodies = [_body(time.time() - 30, [1.0, 2.0, 3.0], calls=i + 1) for i in range(20)]
    with make_client(engine, spool_dir=str(tmp_path / "spool")) as c:
        for b in bodies:
            r = c.post("/v1/metrics", content=b, headers={
                "Content-Type": "application/x-protobuf", "Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
        assert c.app.state.writer.spooled == 19
        assert store.signals(engine, "app", "1.0", 0, 2**40)["x"].count == 60
        assert store.upload_count(engine) == 20
        calls = store.counter_rows(engine, "app", "1.0", 0, 2**40)
        assert sum(calls.values()) == 210, calls  # 1 + 2 + ... + 20 calls


@pytest.mark.parametrize("sync", [[], ["--spool-sync-ms", "60000"]], ids=["each", "timed"])
def test_serve_answers_from_spools_and_a_server_killed_with_them_unmoved_loses_nothing(
        serve, tmp_path, sync):
    """`edgeyard serve --workers 2` on SQLite (spooled by default) with its mover process
    stopped: the answers come from the spools, the database holds only the first window of
    each worker; the whole server killed with -9, then started again: every acknowledged
    upload is stored. "timed": answered before any fdatasync (a minute apart): the kernel
    keeps what a killed process wrote."""
    import os
    import signal

    from edgeyard.server import db, store

    server = serve(None, "--workers", "2", *sync)
    assert server.proc is not None and server.proc.stdout is not None
    mover = 0
    while not mover:  # the supervisor's lines after "listening"
        line = server.proc.stdout.readline()
        assert line, server.log_text()
        if line.startswith("spool mover:"):
            mover = int(line.split(":")[1])
    os.kill(mover, signal.SIGSTOP)
    key = server.key("ingest")
    for i in range(30):
        assert _post(server.url, key, _body(time.time() - 30, [float(i), 2.0], calls=1)) == 200
    engine = db.make_engine(db.default_url(tmp_path / "data"))
    try:
        direct = store.upload_count(engine)
        assert 1 <= direct <= 2  # each worker's first window of the shape
        workers = [int(p.name) for p in Path("/proc").iterdir()
                   if p.name.isdigit() and _parent(int(p.name)) == server.proc.pid]
        server.kill9()  # the workers follow it (SIGTERM on the supervisor's death)
        os.kill(mover, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.upload_count(engine) == direct
        again = serve(data_dir=tmp_path / "data")
        again.stop()
        assert f"stored {30 - direct} windows a stopped server had spooled" in again.out, \
            again.out
        assert store.upload_count(engine) == 30
    finally:
        engine.dispose()


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_failed_append_is_cut_back_off_and_the_next_goes_to_a_new_segment(engine, tmp_path,
                                                                             monkeypatch):
    """The disk fails an append (a full disk): its records were never acknowledged and are cut
    off; the next append starts a new segment; the acknowledged ones are all moved."""
    import os

    from edgeyard.server import spool, store

    a, b, c = _requests(3)
    sp = spool.Spool(tmp_path / "spool")
    sp.append([spool.encode(time.time(), 300, a)])

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", full)
    with pytest.raises(OSError, match="No space"):
        sp.append([spool.encode(time.time(), 300, b)])
    monkeypatch.undo()
    sp.append([spool.encode(time.time(), 300, c)])
    assert sorted(p.name for p in sp.dir.glob("*.log")) == ["00000001.log", "00000002.log"]
    assert spool.move(engine, sp.dir, until_empty=True).windows == 2
    assert store.upload_count(engine) == 2  # a and c; b was refused (503) and not stored
    sp.close()


def test_a_spool_synced_on_a_timer_answers_without_waiting_for_the_disk(engine, tmp_path,
                                                                       monkeypatch):
    """`sync_every_s`: an append only writes; the timer's thread syncs what was written (and
    nothing when nothing was); a segment is synced before the next one starts, and the spool
    when it closes. Every record is moved."""
    import os

    from edgeyard.server import spool, store

    synced: list[int] = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counted)
    a, b, c, d = _requests(4)
    each = spool.Spool(tmp_path / "spool", "each")
    each.append([spool.encode(time.time(), 300, a)])
    assert len(synced) == 1  # before the answer
    each.close()

    synced.clear()
    timed = spool.Spool(tmp_path / "spool", "timed", sync_every_s=0.05)
    timed.append([spool.encode(time.time(), 300, b)])
    assert synced == []  # the answer did not wait for the disk
    deadline = time.monotonic() + 10
    while not synced and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(synced) == 1
    time.sleep(0.3)  # nothing written since: no fdatasync
    assert len(synced) == 1
    timed.close()
    assert len(synced) == 1

    synced.clear()
    rotating = spool.Spool(tmp_path / "spool", "rotating", segment_bytes=1, sync_every_s=3600)
    rotating.append([spool.encode(time.time(), 300, c)])
    assert synced == []
    rotating.append([spool.encode(time.time(), 300, d)])  # past segment_bytes: a new segment
    assert len(synced) == 1  # the first one, before the second one's first record
    rotating.close()
    assert len(synced) == 2  # the second one, at close
    assert spool.drain(engine, tmp_path / "spool").windows == 4
    assert store.upload_count(engine) == 4


def test_with_a_timed_sync_a_spooled_request_is_answered_on_the_callers_thread(engine, tmp_path):
    from edgeyard.server import spool, store
    from edgeyard.server.writer import SpoolWriter

    sp = spool.Spool(tmp_path / "spool", sync_every_s=0.05)
    w = SpoolWriter(engine, sp, threading.Event())
    try:
        first, second = _requests(2)
        assert w.submit(first).result(timeout=30).new == 1 and w.spooled == 0  # new series
        fut = w.submit(second)
        assert fut.done() and fut.result().new == 1 and w.spooled == 1  # no thread waited
        assert spool.move(engine, sp.dir).windows == 1
        assert store.upload_count(engine) == 2
    finally:
        w.close()
        sp.close()


def test_a_record_of_a_layout_this_server_does_not_read_is_kept_aside(engine, tmp_path):
    import marshal

    from edgeyard.server import spool, store

    (a,) = _requests(1)
    sp = spool.Spool(tmp_path / "spool")
    sp.append([marshal.dumps((99, time.time(), 300, [])), spool.encode(time.time(), 300, a)])
    assert spool.move(engine, sp.dir, until_empty=True).windows == 1
    assert store.upload_count(engine) == 1
    assert (sp.dir / "rejected.log").stat().st_size > 0
    sp.close()


def test_a_window_is_filed_in_the_bucket_size_of_the_server_that_answered(engine, tmp_path):
    """The record keeps the server's bucket size: whoever moves it (another process, a server
    started with another `--bucket-s`) files the window where the answering server would."""
    from edgeyard.server import spool, store

    start = time.time() // 300 * 300 - 3600 + 7  # 7 s into a 5-minute bucket
    (a,) = _uploads([_body(start, [1.0, 2.0])])
    sp = spool.Spool(tmp_path / "spool")
    sp.append([spool.encode(time.time(), 5, a)])
    spool.move(engine, sp.dir)
    (bucket,) = store.signals(engine, "app", "1.0", 0, 2**40, by_bucket=True)
    assert bucket[0] == int(start // 5 * 5) != int(start // 300 * 300)
    sp.close()


def test_any_process_reading_a_sqlite_file_sees_what_its_spool_holds(tmp_path):
    """The spool of a SQLite database lies beside its file (`<file>-spool`): a process with an
    engine of its own (a script, `edgeyard drift` offline, a test) moves it before it reads."""
    from edgeyard.server import db, spool, store

    url = f"sqlite:///{tmp_path / 'edgeyard.db'}"
    server = db.make_engine(url)
    db.migrate(server)
    reader = db.make_engine(url)
    try:
        root = db.spool_of(server)
        assert root == tmp_path / "edgeyard.db-spool"
        sp = spool.Spool(root)
        sp.append([spool.encode(time.time(), 300, r) for r in _requests(3)])
        assert store.upload_count(reader) == 0
        assert sum(store.counter_rows(reader, "app", "1.0", 0, 2**40).values()) == 6
        assert store.upload_count(reader) == 3
        sp.close()
    finally:
        server.dispose()
        reader.dispose()


def test_a_corrupt_length_in_the_segment_being_written_does_not_stall_the_spool(engine,
                                                                               tmp_path):
    """A record header whose length no append writes (a flipped bit): the move does not wait
    for the record forever, and what is appended after it is moved."""
    from edgeyard.server import spool, store

    a, b, c = _requests(3)
    sp = spool.Spool(tmp_path / "spool")
    sp.append([spool.encode(time.time(), 300, r) for r in (a, b)])
    seg = sp.dir / "00000001.log"
    data = bytearray(seg.read_bytes())
    data[0:4] = (2**32 - 1).to_bytes(4, "little")
    seg.write_bytes(bytes(data))
    assert spool.move(engine, sp.dir).windows == 0
    assert (sp.dir / "00000001.corrupt").exists()
    sp.append([spool.encode(time.time(), 300, c)])
    assert spool.move(engine, sp.dir).windows == 1
    assert store.upload_count(engine) == 1
    sp.close()


def test_the_mover_waits_after_a_pass_short_of_a_transaction_and_not_after_a_full_one(tmp_path):
    """A pass that moved a few windows is followed by a wait of `idle_s` (so that the next
    transaction holds more than one request's windows); a full pass goes on at once; an empty
    one waits for the writer's wake."""
    from edgeyard.server import spool, store

    passes = [(2, 3), (40, spool.MOVE_WINDOWS), (0, 0), (1, 1)]  # (records, windows) moved

    class Scripted(spool.Mover):
        def once(self) -> int:
            records, windows = passes.pop(0)
            self.windows += windows
            return records

    class Stop:  # records the loop's waits; stops it once the script is done
        def __init__(self) -> None:
            self.waits: list[float] = []

        def is_set(self) -> bool:
            return not passes

        def wait(self, s: float) -> bool:
            self.waits.append(s)
            return False

    mover = Scripted(None, tmp_path, store.Limits(), idle_s=0.25)  # type: ignore[arg-type]
    woken = []
    mover.wake = type("Wake", (), {"wait": lambda self, s: woken.append(s),
                                   "clear": lambda self: None})()
    stop = Stop()
    mover._loop(stop)  # type: ignore[arg-type]
    assert stop.waits == [0.25, 0.25]  # after the 3 windows and after the 1: not the full pass
    assert woken == [0.25]  # the empty pass waits for the writer


@pytest.mark.parametrize("read_bytes", [64, "cut", 1 << 20], ids=["each-larger", "cut", "whole"])
def test_records_are_read_whole_whatever_the_read_size(engine, tmp_path, monkeypatch,
                                                       read_bytes):
    """A read of a segment stops at what it holds (READ_BYTES at most): records larger than a
    read are read whole, a record cut by a read's end is read again from its start with the
    next, and what a live owner appends after a move is moved by the next one."""
    from edgeyard.server import spool, store

    requests = _requests(7)
    sizes = [len(spool.encode(time.time(), 300, r)) for r in requests]
    if read_bytes == "cut":  # larger than each record (packed or not), smaller than all
        read_bytes = max(sizes) + 100
    assert min(sizes) > 64 and max(sizes) + 100 < sum(sizes) < 1 << 20  # the cases are real
    monkeypatch.setattr(spool, "READ_BYTES", read_bytes)
    sp = spool.Spool(tmp_path / "spool")
    sp.append([spool.encode(time.time(), 300, r) for r in requests[:4]])
    assert spool.move(engine, sp.dir).windows == 4
    sp.append([spool.encode(time.time(), 300, r) for r in requests[4:]])
    assert spool.move(engine, sp.dir).windows == 3
    assert spool.move(engine, sp.dir).windows == 0
    assert store.upload_count(engine) == 7
    sp.close()
