"""Releases served to devices: content-addressed files, the stable release per app, and what
one device is assigned.

A registered release (`store.register_release`) gets its files uploaded one by one
(`put_file`): `release.json` must be the registered manifest (the same JSON), and every other
file must be one the manifest lists (an artifact, the golden data, the telemetry reference)
with the sha256 the manifest records. Contents are stored once per sha256 (`blobs`), so
releases that share a file share its row. Devices download with `GET
/v1/releases/{model}/{release}/files/{path}` (ETag = the sha256, Range for a resumed
download); the server is not trusted by the device for any of it: the device checks the
Ed25519 signature of the manifest and every sha256 itself (`runtime.updater`). The signature is
one more file, `release.json.sig` (detached, over release.json's exact bytes: the server keeps
and serves the bytes uploaded, never a re-serialization); it is uploaded when the release
directory has one, checked only to be a signature line, and not required to serve (a release
in the old format carries its signature inside release.json; devices refuse an unsigned one).

A device's assignment: the release an active rollout gives its cohort (`rollouts.py`), else the
app's stable release (set by hand for the first release, and by a rollout that completes).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import Engine, and_, insert, select, update

from ..errors import EdgeyardError, NotFound
from ..signing import SIGNATURE_FILE
from . import db
from .store import _write

MANIFEST = "release.json"


class FileRefused(EdgeyardError, ValueError):
    """An uploaded file that is not part of the registered release (or does not match it)."""


class ReleaseNotRegistered(NotFound):
    """A release the server has no manifest of."""


class NotServable(EdgeyardError, ValueError):
    """A registered release whose files are not all uploaded yet."""


def listed_files(manifest: dict[str, Any]) -> dict[str, tuple[str, int | None]]:
    """path -> (sha256, size) of every file a device may download: every artifact with a file
    (every profile's), the golden data, the telemetry reference and projection directions."""
    out: dict[str, tuple[str, int | None]] = {}
    for a in (manifest.get("artifacts") or {}).values():
        if a.get("path") and a.get("sha256") and not str(a["path"]).endswith(".mlpackage"):
            out[a["path"]] = (a["sha256"], a.get("size_bytes"))
    g = manifest.get("golden") or {}
    if g.get("path") and g.get("sha256"):
        out[g["path"]] = (g["sha256"], None)
    tel = manifest.get("telemetry") or {}
    for part in ("reference", "directions"):
        f = tel.get(part) or {}
        if f.get("path") and f.get("sha256"):
            out[f["path"]] = (f["sha256"], None)
    return {p: v for p, v in out.items() if _safe(p)}


def _safe(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return bool(parts) and not path.startswith("/") and ".." not in parts and "\\" not in path


def _manifest(engine: Engine, model: str, release: str) -> dict[str, Any]:
    t = db.releases
    with engine.connect() as conn:
        r = conn.execute(select(t.c.manifest).where(and_(t.c.model == model,
                                                         t.c.release == release))).first()
    if r is None:
        raise ReleaseNotRegistered(f"release {model} {release} is not registered")
    return json.loads(r.manifest)  # type: ignore[no-any-return]


def put_file(engine: Engine, model: str, release: str, path: str, data: bytes) -> dict[str, Any]:
    """Store one file of a registered release (idempotent)."""
    manifest = _manifest(engine, model, release)
    sha = hashlib.sha256(data).hexdigest()
    if path == MANIFEST:
        try:
            sent = json.loads(data)
        except ValueError as exc:
            raise FileRefused(f"{MANIFEST} is not JSON: {exc}") from None
        if sent != manifest:
            raise FileRefused(f"{MANIFEST} is not the manifest registered for {model} "
                              f"{release}: register it again first")
    elif path == SIGNATURE_FILE:
        from ..signing import SigningError, parse_signature_line

        try:
            parse_signature_line(data)
        except SigningError as exc:
            raise FileRefused(str(exc)) from None
    else:
        listed = listed_files(manifest)
        if path not in listed:
            raise FileRefused(f"{path!r} is not a file of {model} {release} (its files: "
                              f"{', '.join(sorted(listed)) or 'none'})")
        if listed[path][0] != sha:
            raise FileRefused(f"{path} has sha256 {sha[:12]}..., the manifest records "
                              f"{listed[path][0][:12]}...")
    b, f = db.blobs, db.release_files
    with _write(engine) as conn, conn.begin():
        if conn.execute(select(b.c.sha256).where(b.c.sha256 == sha)).first() is None:
            conn.execute(insert(b).values(sha256=sha, size=len(data), data=data))
        key = and_(f.c.model == model, f.c.release == release, f.c.path == path)
        if conn.execute(select(f.c.path).where(key)).first() is None:
            conn.execute(insert(f).values(model=model, release=release, path=path, sha256=sha,
                                          size=len(data)))
        else:
            conn.execute(update(f).where(key).values(sha256=sha, size=len(data)))
    return {"path": path, "sha256": sha, "size": len(data)}


def files(engine: Engine, model: str, release: str) -> dict[str, dict[str, Any]]:
    """The stored files of a release: path -> {sha256, size}."""
    f = db.release_files
    with engine.connect() as conn:
        return {r.path: {"sha256": r.sha256, "size": r.size} for r in conn.execute(
            select(f.c.path, f.c.sha256, f.c.size).where(
                and_(f.c.model == model, f.c.release == release)))}


def missing_files(engine: Engine, model: str, release: str) -> list[str]:
    """What a device would need and the server does not have yet (release.json and its .sig
included)."""
    have = files(engine, model, release)
    want = [MANIFEST, SIGNATURE_FILE, *listed_files(_manifest(engine, model, release))]
    return [p for p in want if p not in have]


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    size: int
    data: bytes


def read_file(engine: Engine, model: str, release: str, path: str) -> StoredFile | None:
    f, b = db.release_files, db.blobs
    with engine.connect() as conn:
        r = conn.execute(select(b.c.sha256, b.c.size, b.c.data).join_from(
            f, b, f.c.sha256 == b.c.sha256).where(
            and_(f.c.model == model, f.c.release == release, f.c.path == path))).first()
    return None if r is None else StoredFile(r.sha256, int(r.size), bytes(r.data))


def manifest_sha(engine: Engine, model: str, release: str) -> str | None:
    f = db.release_files
    with engine.connect() as conn:
        r = conn.execute(select(f.c.sha256).where(and_(
            f.c.model == model, f.c.release == release, f.c.path == MANIFEST))).first()
    return None if r is None else str(r.sha256)


def servable(engine: Engine, model: str, release: str) -> None:
    """Raise `NotServable` unless every file of the release is stored (a device could take
    it), `ReleaseNotRegistered` for a release the server does not know."""
    # no .sig: the devices judge (an old-format release signs inside release.json)
    missing = [p for p in missing_files(engine, model, release) if p != SIGNATURE_FILE]
    if missing:
        raise NotServable(f"{model} {release} cannot be served yet: {len(missing)} of its files "
                         f"are not uploaded ({', '.join(missing[:5])}); run `edgeyard releases "
                         f"register <release dir>`")


def stable(engine: Engine, model: str) -> str | None:
    t = db.stable
    with engine.connect() as conn:
        r = conn.execute(select(t.c.release).where(t.c.model == model)).first()
    return None if r is None else str(r.release)


def set_stable(engine: Engine, model: str, release: str, conn: Any = None) -> None:
    """Make `release` what the app's devices serve outside a rollout (in `conn`'s transaction
    when given)."""
    t = db.stable

    def run(c: Any) -> None:
        if c.execute(select(t.c.model).where(t.c.model == model)).first() is None:
            c.execute(insert(t).values(model=model, release=release, updated_at=time.time()))
        else:
            c.execute(update(t).where(t.c.model == model).values(release=release,
                                                                  updated_at=time.time()))
    if conn is not None:
        run(conn)
        return
    with _write(engine) as c, c.begin():
        run(c)


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """An HTTP Range header of one range -> (first, last) inclusive; None: no (usable) range,
    send the whole file; "unsatisfiable": 416."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    spec = header[6:].strip()
    first_s, _, last_s = spec.partition("-")
    try:
        if first_s == "":  # the last N bytes
            n = int(last_s)
            if n <= 0:
                return "unsatisfiable"
            return max(0, size - n), size - 1
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
    except ValueError:
        return None
    if first >= size or last < first:
        return "unsatisfiable"
    return first, min(last, size - 1)
