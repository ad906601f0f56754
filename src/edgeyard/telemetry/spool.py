"""The on-disk spool: closed windows wait here until the server acknowledges them.

One file per window (`<ns>-<upload id>.pb`, written to a temp name, fsynced, then renamed), so a
window that reached the spool survives a crash or `kill -9`. Bounded in bytes and age: the
oldest windows are dropped first and counted (`dropped`, persisted in `dropped.count`).

Several threads, and several processes sharing the directory, may write and upload at once:
only committed windows are ever pending (a `.tmp-` file is a window being written), a window
removed by someone else between listing and reading is skipped (`read` returns None), and the
dropped count is updated under a file lock.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .._files import atomic_write

STALE_TMP_S = 600.0


def _abandoned(tmp: Path) -> bool:
    """A temp file no live writer will finish: its process (named in it) is gone, or it is older
    than STALE_TMP_S. Another process sharing the spool may be writing one right now (found by
    the spool stress test: a second process's start deleted the first one's window mid-write)."""
    parts = tmp.name.split("-")
    try:
        pid = int(parts[1])
    except (IndexError, ValueError):
        pid = None
    if pid is not None and pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, another user's
    try:
        return time.time() - tmp.stat().st_mtime > STALE_TMP_S
    except FileNotFoundError:
        return False


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (flock; a no-op where fcntl does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Spool:
    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = 16 * 1024 * 1024,
                 max_age_s: float = 7 * 24 * 3600) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        for stale in self.dir.glob(".tmp-*"):  # a write cut short by a crash
            if _abandoned(stale):
                stale.unlink(missing_ok=True)

    @property
    def dropped(self) -> int:
        try:
            return int((self.dir / "dropped.count").read_text())
        except (OSError, ValueError):
            return 0

    def _count_dropped(self, n: int) -> None:
        if n:
            with _locked(self.dir / ".lock"):
                self._add_dropped(n)

    def _add_dropped(self, n: int) -> None:  # the caller holds the file lock
        atomic_write(self.dir / "dropped.count", str(self.dropped + n), prefix=".tmp-dropped-")

    def take_dropped(self) -> int:
        """The dropped count, reset to 0 (it is being reported)."""
        with _locked(self.dir / ".lock"):
            n = self.dropped
            if n:
                (self.dir / "dropped.count").unlink(missing_ok=True)
            return n

    def put(self, upload_id: str, data: bytes) -> Path:
        name = f"{time.time_ns():020d}-{upload_id}.pb"
        path = atomic_write(self.dir / name, data, prefix=".tmp-", durable=True)
        self.enforce()
        return path

    def pending(self) -> list[Path]:
        """Committed windows, oldest first: never a `.tmp-` file still being written (pathlib's
        `*` matches dot files, and an uploader that took one sent half a window)."""
        return sorted(p for p in self.dir.glob("*.pb") if not p.name.startswith("."))

    def enforce(self) -> int:
        """Drop the oldest windows beyond the age or byte bound; returns how many. Under the
        spool's file lock, so that writers in several threads or processes neither drop one
        window twice nor count one drop twice; a window the uploader took meanwhile is not
        counted."""
        with self._lock, _locked(self.dir / ".lock"):
            now = time.time_ns()
            dropped = 0
            sizes = {}
            for f in self.pending():
                try:  # the uploader may remove a sent window at any moment
                    sizes[f] = f.stat().st_size
                except FileNotFoundError:
                    continue
            total = sum(sizes.values())
            for f in sizes:
                age_s = (now - int(f.name.split("-", 1)[0])) / 1e9
                if total > self.max_bytes or age_s > self.max_age_s:
                    total -= sizes[f]
                    try:
                        f.unlink()
                    except FileNotFoundError:  # sent meanwhile: not a drop
                        continue
                    dropped += 1
            if dropped:
                self._add_dropped(dropped)
            return dropped

    @staticmethod
    def read(path: Path) -> bytes | None:
        """A pending window's bytes, or None when it was removed since it was listed (sent by
        another uploader, or dropped by the bounds)."""
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def remove(self, paths: list[Path]) -> None:
        for p in paths:
            p.unlink(missing_ok=True)

    @staticmethod
    def upload_id(path: Path) -> str:
        return path.stem.split("-", 1)[1]
