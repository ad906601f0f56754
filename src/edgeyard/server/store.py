"""Writes and reads of the telemetry store (one SQLAlchemy Core code path for both databases).

`ingest` commits a request's uploads in one transaction before the server answers: an upload id
seen before is skipped (a retry counts once), every other upload's sketches are merged into the
per-bucket aggregates and its counters added. A conflict with a concurrent writer (PostgreSQL:
two first inserts of the same aggregate) rolls the transaction back and runs it again; the
upload-id check inside the transaction keeps the retry exact.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from ..telemetry.sketch import ExpHistogram
from ..telemetry.window import Window
from . import db
from .decode import Upload

BUCKET_S = 300
MAX_SKEW_S = 86_400  # a device clock further than this from ours: file by arrival time


class Busy(RuntimeError):
    """The database could not take the write now (-> 503 with Retry-After)."""


@dataclass
class IngestResult:
    new: int = 0
    duplicates: int = 0
    points: int = 0
    new_ids: set[str] = field(default_factory=set)


def bucket_of(upload: Upload, now: float, bucket_s: int) -> int:
    t = upload.start_ns / 1e9 if upload.start_ns else now
    if abs(t - now) > MAX_SKEW_S:
        t = now
    return int(t // bucket_s) * bucket_s


def _write(engine: Engine) -> Connection:
    return engine.connect().execution_options(write=True)


def ingest(engine: Engine, uploads: list[Upload], bucket_s: int = BUCKET_S,
           attempts: int = 5) -> IngestResult:
    for attempt in range(attempts):
        try:
            with _write(engine) as conn, conn.begin():
                return _ingest(conn, uploads, bucket_s)
        except IntegrityError:
            if attempt == attempts - 1:
                raise Busy("concurrent writers kept conflicting") from None
        except DBAPIError as exc:  # SQLite "database is locked", PostgreSQL serialization
            msg = str(exc).lower()
            if "deadlock" in msg and attempt < attempts - 1:
                continue
            if "locked" in msg or "serializ" in msg or "deadlock" in msg:
                raise Busy(str(exc.orig)) from None
            raise
    raise AssertionError("unreachable")


def _ingest(conn: Connection, uploads: list[Upload], bucket_s: int) -> IngestResult:
    res = IngestResult()
    now = time.time()
    seen: set[str] = set()
    ids = [u.upload_id for u in uploads]
    known = set(conn.scalars(select(db.uploads.c.upload_id).where(db.uploads.c.upload_id.in_(ids))))
    sketches: dict[tuple[str, str, str, str, int], list[ExpHistogram]] = defaultdict(list)
    counts: dict[tuple[str, str, str, int, str, str], int] = defaultdict(int)
    rows = []
    for u in uploads:
        if u.upload_id in known or u.upload_id in seen:
            res.duplicates += 1
            continue
        seen.add(u.upload_id)
        res.new_ids.add(u.upload_id)
        b = bucket_of(u, now, bucket_s)
        for signal, h in u.sketches.items():
            sketches[(u.model, u.release, u.profile, signal, b)].append(h)
        for (name, attrs), v in u.counters.items():
            counts[(u.model, u.release, u.profile, b, name, attrs)] += v
        rows.append({"upload_id": u.upload_id, "model": u.model, "release": u.release,
                     "profile": u.profile, "device_id": u.device_id, "received_at": now,
                     "start_ns": u.start_ns, "end_ns": u.end_ns, "points": u.points})
        res.new += 1
        res.points += u.points
    if not rows:
        return res
    conn.execute(insert(db.uploads), rows)
    _merge_sketches(conn, sketches)
    _add_counters(conn, counts)
    return res


def _merge_sketches(conn: Connection, sketches: dict[tuple[str, str, str, str, int],
                                                      list[ExpHistogram]]) -> None:
    """Merge into the aggregates: one locking select per (model, release), then one insert and
    one update statement for all rows (executemany)."""
    t = db.aggregates
    keys = sorted(sketches)  # a fixed order: writers never lock rows in opposite orders
    existing: dict[tuple[str, str, str, str, int], Any] = {}
    for (model, release), group in itertools.groupby(keys, key=lambda k: (k[0], k[1])):
        g = list(group)
        q = select(t.c.id, t.c.profile, t.c.signal, t.c.bucket, t.c.sketch, t.c.uploads).where(
            t.c.model == model, t.c.release == release,
            t.c.profile.in_({k[2] for k in g}), t.c.signal.in_({k[3] for k in g}),
            t.c.bucket.in_({k[4] for k in g})).order_by(t.c.id).with_for_update()
        for r in conn.execute(q):
            existing[(model, release, r.profile, r.signal, r.bucket)] = r
    inserts, updates = [], []
    for k in keys:
        hs = sketches[k]
        row = existing.get(k)
        if row is None:
            inserts.append({"model": k[0], "release": k[1], "profile": k[2], "signal": k[3],
                            "bucket": k[4], "sketch": ExpHistogram.merge_all(hs).serialize(),
                            "uploads": len(hs)})
        else:
            merged = ExpHistogram.merge_all([ExpHistogram.deserialize(row.sketch), *hs])
            updates.append({"b_id": row.id, "b_sketch": merged.serialize(),
                            "b_uploads": row.uploads + len(hs)})
    if inserts:
        conn.execute(insert(t), inserts)
    if updates:
        conn.execute(update(t).where(t.c.id == bindparam("b_id")).values(
            sketch=bindparam("b_sketch"), uploads=bindparam("b_uploads")), updates)


def _add_counters(conn: Connection, counts: dict[tuple[str, str, str, int, str, str], int]
                  ) -> None:
    t = db.counters
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    rows = [{"model": k[0], "release": k[1], "profile": k[2], "bucket": k[3], "name": k[4],
             "attrs": k[5], "value": v} for k, v in counts.items()]
    if rows:
        stmt = upsert(t).values(rows)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["model", "release", "profile", "bucket", "name", "attrs"],
            set_={"value": t.c.value + stmt.excluded.value}))


# --- releases -------------------------------------------------------------------------------


def register_release(engine: Engine, manifest: dict[str, Any], reference: dict[str, Any]
                     ) -> tuple[str, str]:
    """Store (or replace) a release's manifest and reference window."""
    model, version = manifest["model"]["name"], str(manifest["model"]["version"])
    tel = manifest.get("telemetry")
    if not tel or "projections" not in tel:
        raise ValueError("the manifest has no telemetry section: rebuild the release with this "
                         "edgeyard")
    Window.from_json(tel["projections"], reference)  # refuses a reference that does not load
    accuracy = _accuracy(manifest)
    t = db.releases
    with _write(engine) as conn, conn.begin():
        conn.execute(t.delete().where(and_(t.c.model == model, t.c.release == version)))
        conn.execute(insert(t).values(model=model, release=version, registered_at=time.time(),
                                      manifest=json.dumps(manifest), reference=json.dumps(reference),
                                      accuracy=accuracy))
    return model, version


def _accuracy(manifest: dict[str, Any]) -> float | None:
    """The source model's held-out accuracy measured at build time, where the manifest has it."""
    for key in ("source_accuracy", "accuracy"):
        v = (manifest.get("evaluation") or {}).get(key)
        if isinstance(v, int | float):
            return float(v)
    return None


@dataclass
class ReleaseRecord:
    model: str
    release: str
    registered_at: float
    manifest: dict[str, Any]
    reference: Window
    accuracy: float | None
    spec: dict[str, Any] = field(default_factory=dict)


def releases(engine: Engine) -> list[dict[str, Any]]:
    t = db.releases
    with engine.connect() as conn:
        return [{"model": r.model, "release": r.release, "registered_at": r.registered_at}
                for r in conn.execute(select(t.c.model, t.c.release, t.c.registered_at)
                                      .order_by(t.c.model, t.c.registered_at))]


def release(engine: Engine, model: str, version: str) -> ReleaseRecord | None:
    t = db.releases
    with engine.connect() as conn:
        r = conn.execute(select(t).where(and_(t.c.model == model, t.c.release == version))
                         ).first()
    if r is None:
        return None
    manifest = json.loads(r.manifest)
    spec = manifest["telemetry"]["projections"]
    return ReleaseRecord(r.model, r.release, r.registered_at, manifest,
                         Window.from_json(spec, json.loads(r.reference)), r.accuracy, spec)


# --- reading aggregates -----------------------------------------------------------------------


def signals(engine: Engine, model: str, version: str, start: float, end: float,
            profile: str | None = None, signal: str | None = None, by_bucket: bool = False,
            ) -> dict[Any, ExpHistogram]:
    """Merged sketches per signal (or per (bucket, signal) with `by_bucket`) of uploads whose
    windows started in [start, end)."""
    t = db.aggregates
    cond = [t.c.model == model, t.c.release == version, t.c.bucket >= _floor(start),
            t.c.bucket < end]
    if profile is not None:
        cond.append(t.c.profile == profile)
    if signal is not None:
        cond.append(t.c.signal == signal)
    parts: dict[Any, list[ExpHistogram]] = defaultdict(list)
    with engine.connect() as conn:
        for r in conn.execute(select(t.c.signal, t.c.bucket, t.c.sketch).where(and_(*cond))):
            key = (r.bucket, r.signal) if by_bucket else r.signal
            parts[key].append(ExpHistogram.deserialize(r.sketch))
    return {k: ExpHistogram.merge_all(v) for k, v in parts.items()}


def _floor(start: float) -> int:
    return int(start // 1) if start > 0 else 0


def counter_rows(engine: Engine, model: str, version: str, start: float, end: float,
                 profile: str | None = None, by_bucket: bool = False
                 ) -> dict[tuple[Any, ...], int]:
    """Summed counters: (name, attrs JSON) -> value, or (bucket, name, attrs) with `by_bucket`."""
    t = db.counters
    cond = [t.c.model == model, t.c.release == version, t.c.bucket >= _floor(start),
            t.c.bucket < end]
    if profile is not None:
        cond.append(t.c.profile == profile)
    cols = [t.c.bucket] if by_bucket else []
    with engine.connect() as conn:
        q = select(*cols, t.c.name, t.c.attrs, func.sum(t.c.value)).where(and_(*cond)) \
            .group_by(*cols, t.c.name, t.c.attrs)
        return {tuple(r[:-1]): int(r[-1]) for r in conn.execute(q)}


def window(engine: Engine, rec: ReleaseRecord, start: float, end: float,
           profile: str | None = None) -> Window:
    """The production Window of a release over [start, end): merged sketches and counters."""
    w = Window(rec.spec, int(start * 1e9))
    w.end_ns = int(end * 1e9)
    for name, h in signals(engine, rec.model, rec.release, start, end, profile).items():
        w.sketches[name] = h
    for (name, attrs), v in counter_rows(engine, rec.model, rec.release, start, end,
                                         profile).items():
        add_counter(w, rec.spec, name, attrs, v)
    return w


def add_counter(w: Window, spec: dict[str, Any], name: str, attrs: str, value: int) -> None:
    """Add one stored counter row to a window's exact counters."""
    a = json.loads(attrs)
    cls_name = (spec.get("classes") or {}).get("name") or "output.class"
    if name == cls_name:
        k = a.get("class")
        if isinstance(k, int) and 0 <= k < w.classes.size:
            w.classes[k] += value
    elif name == "calls":
        w.engines[str(a.get("engine"))] += value
        w.calls += value
    elif name == "fallbacks":
        w.fallbacks[(str(a.get("engine")), str(a.get("kind")), str(a.get("reason")))] += value
    elif name == "telemetry.dropped":
        w.dropped += value
    elif name == "telemetry.sampled":
        w.sampled += value


def segments(engine: Engine, model: str, version: str, start: float, end: float
             ) -> list[str]:
    t = db.aggregates
    with engine.connect() as conn:
        return list(conn.scalars(select(t.c.profile).distinct().where(and_(
            t.c.model == model, t.c.release == version, t.c.bucket >= _floor(start),
            t.c.bucket < end)).order_by(t.c.profile)))


def device_count(engine: Engine, model: str, version: str, start: float, end: float) -> int:
    t = db.uploads
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count(func.distinct(t.c.device_id))).where(and_(
            t.c.model == model, t.c.release == version, t.c.start_ns >= int(start * 1e9),
            t.c.start_ns < int(end * 1e9)))) or 0)


def upload_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(db.uploads)) or 0)


# --- keys -----------------------------------------------------------------------------------


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(engine: Engine, kind: str, app: str | None = None, label: str = "") -> str:
    """A new random key (shown once; only its sha256 is stored)."""
    if kind not in ("ingest", "admin"):
        raise ValueError(f"key kind must be 'ingest' or 'admin' (got {kind!r})")
    key = f"ey{kind[0]}_" + secrets.token_urlsafe(24)
    with _write(engine) as conn, conn.begin():
        conn.execute(insert(db.api_keys).values(key_hash=_hash(key), kind=kind, app=app,
                                                label=label, created_at=time.time()))
    return key


def add_key(engine: Engine, key: str, kind: str, app: str | None = None, label: str = "") -> None:
    """Register a key chosen elsewhere (e.g. from a secret store)."""
    with _write(engine) as conn, conn.begin():
        conn.execute(db.api_keys.delete().where(db.api_keys.c.key_hash == _hash(key)))
        conn.execute(insert(db.api_keys).values(key_hash=_hash(key), kind=kind, app=app,
                                                label=label, created_at=time.time()))


def lookup_key(engine: Engine, key: str) -> tuple[str, str | None] | None:
    """(kind, app) of a key, or None."""
    t = db.api_keys
    with engine.connect() as conn:
        r = conn.execute(select(t.c.kind, t.c.app).where(t.c.key_hash == _hash(key))).first()
    return None if r is None else (r.kind, r.app)


def has_keys(engine: Engine, kind: str) -> bool:
    with engine.connect() as conn:
        n = conn.scalar(select(func.count()).select_from(db.api_keys)
                        .where(db.api_keys.c.kind == kind))
    return bool(n)


# --- findings -------------------------------------------------------------------------------


def record_findings(engine: Engine, model: str, version: str, profile: str,
                    found: Iterable[dict[str, str]]) -> list[dict[str, Any]]:
    """Store findings; returns those never seen before (to alert on once)."""
    t = db.findings
    now = time.time()
    new = []
    with _write(engine) as conn, conn.begin():
        for f in found:
            key = and_(t.c.model == model, t.c.release == version, t.c.profile == profile,
                       t.c.signal == f["signal"], t.c.kind == f["kind"])
            row = conn.execute(select(t.c.id).where(key)).first()
            if row is None:
                conn.execute(insert(t).values(model=model, release=version, profile=profile,
                                              signal=f["signal"], kind=f["kind"],
                                              message=f["message"], first_seen=now,
                                              last_seen=now, notified=False))
                new.append({"model": model, "release": version, "profile": profile, **f})
            else:
                conn.execute(update(t).where(t.c.id == row.id).values(last_seen=now,
                                                                      message=f["message"]))
    return new


def mark_notified(engine: Engine, items: list[dict[str, Any]]) -> None:
    t = db.findings
    with _write(engine) as conn, conn.begin():
        for f in items:
            conn.execute(update(t).where(and_(
                t.c.model == f["model"], t.c.release == f["release"],
                t.c.profile == f["profile"], t.c.signal == f["signal"], t.c.kind == f["kind"])
            ).values(notified=True))


def forget_unnotified(engine: Engine, items: list[dict[str, Any]]) -> None:
    """Drop findings the webhook was not told about, so that the next check finds them new."""
    t = db.findings
    with _write(engine) as conn, conn.begin():
        for f in items:
            conn.execute(t.delete().where(and_(
                t.c.model == f["model"], t.c.release == f["release"],
                t.c.profile == f["profile"], t.c.signal == f["signal"], t.c.kind == f["kind"],
                t.c.notified.is_(False))))


def findings_of(engine: Engine, model: str | None = None) -> list[dict[str, Any]]:
    t = db.findings
    q = select(t).order_by(t.c.last_seen.desc())
    if model:
        q = q.where(t.c.model == model)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q.limit(500))]
