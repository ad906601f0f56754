"""The common case of an upload, decoded without the protobuf runtime: what `decode.read` gives,
about five times faster.

Nearly every body the service receives comes from an edgeyard collector: delta exponential
histograms and delta monotonic integer sums, every point valid. The compiled module `_otlp`
(`_otlp.c`, built when the package is installed; `hatch_build.py`) reads such a body straight
from its wire format into plain values, with every check of `decode.sketch_from_point`; this
module builds the `Upload`s from them with decode's own functions (signal names, identities,
series limits, merges). Anything else (a body that is not valid protobuf, any point the Python
decoder would refuse, cumulative temporality, explicit-bucket histograms, gauges, OTLP JSON, a
body without upload ids, a compiled module that is missing) goes to `decode.read`, which gives
the reasons. The two paths give equal `Decoded` results for every body the fast one takes:
`tests/server/test_fastdecode.py` checks that on the collector's windows, on hand-made corner
cases, and on random mutations of real bodies.
"""

from __future__ import annotations

from typing import Any

from ..telemetry.sketch import ExpHistogram, ExpParts
from . import decode, native
from .decode import (
    MAX_ATTRS,
    MAX_COUNT,
    MAX_SIGNAL,
    PREFIX,
    Decoded,
    Upload,
    add_counter,
    add_sketch,
    series_key,
    text_ok,
)

# EDGEYARD_NATIVE_DECODE=0 turns the fast path off (to compare, or to rule it out)
_otlp, MISSING = native.load("_otlp", "EDGEYARD_NATIVE_DECODE")


class _General(Exception):
    """The body needs the general decoder (a point it would refuse, a limit it would apply)."""


def available() -> bool:
    """Whether the compiled fast path was built (see `describe`)."""
    return _otlp is not None


def describe() -> str:
    """One line for the service's start and `/api/service`: which decoder reads uploads."""
    if _otlp is not None:
        return "native (edgeyard.server._otlp) for collector bodies, protobuf otherwise"
    return f"protobuf only: the native fast path is {MISSING}"


def read(body: bytes, content_type: str | None, encoding: str | None, limit: int,
         max_series: int | None = None) -> Decoded:
    """`decode.read`, through the fast path where it applies."""
    media = decode.media_type(content_type)
    if _otlp is None or media not in decode.PROTOBUF_TYPES or len(body) > limit:
        return decode.read(body, content_type, encoding, limit, max_series)
    data = decode.inflate(body, encoding, limit)
    got = common(data, max_series)
    if got is not None:
        return got
    return decode.decode(decode.parse(data, content_type), max_series)


def common(data: bytes, max_series: int | None = None) -> Decoded | None:
    """The uploads of a serialized ExportMetricsServiceRequest, or None when it is not the
    common case (then `decode.decode(decode.parse(...))` reads it)."""
    if _otlp is None:
        return None
    resources = _otlp.scan(data)
    if resources is None:
        return None
    try:
        return _assemble(resources, max_series)
    except _General:
        return None


def _assemble(resources: list[tuple[list[Any], list[Any]]], max_series: int | None
              ) -> Decoded:
    out = Decoded([], max_series=max_series)
    for pairs, points in resources:
        res = dict(pairs)
        ident, _ = decode._identity(res)
        upload_id = res.get("edgeyard.upload_id")
        if ident is None or not upload_id:  # refused, or identified by its bytes' hash
            raise _General
        model, release, profile, device = ident
        up = Upload(upload_id=decode._id(str(upload_id)), model=model, release=release,
                    profile=profile, device_id=device)
        invalid: list[tuple[str, str, int]] = []
        for kind, name, attr_pairs, value, start, end in points:
            attrs = tuple(sorted(dict(attr_pairs).items())) if attr_pairs else ()
            if kind == "h":
                _histogram(out, up, name, attrs, value)
            else:
                _counter(out, up, name, attrs, value, invalid)
            up.points += 1
            if start:
                up.start_ns = start if not up.start_ns else min(up.start_ns, start)
            up.end_ns = max(up.end_ns, end)
        for signal, what, n in invalid:  # as `decode.decode` folds them
            h = up.sketches.get(signal)
            if h is None:
                h = up.sketches[signal] = ExpHistogram()
            attr = "missing" if what == "missing" else "non_finite"
            if getattr(h, attr) + n > MAX_COUNT:
                raise _General
            setattr(h, attr, getattr(h, attr) + n)
            up.sketch_points[signal] = up.sketch_points.get(signal, 0) + 1
        if up.points:
            out.uploads.append(up)
    return out


def _histogram(out: Decoded, up: Upload, name: str, attrs: tuple[tuple[str, Any], ...],
               parts: tuple[Any, ...]) -> None:
    signal = decode._histogram_signal(name, attrs)
    if signal is None or not out.admit(series_key("h", signal)):
        raise _General
    h: Any = ExpParts(parts)  # merged by the store as parts, never built (`ExpParts`)
    cur = up.sketches.get(signal)
    if cur is not None:  # a second point of the signal: merged here, as sketches
        if isinstance(cur, ExpParts):
            up.sketches[signal] = cur.build()
        h = h.build()
    if add_sketch(up, signal, h):
        raise _General


def _counter(out: Decoded, up: Upload, name: str, attrs: tuple[tuple[str, Any], ...], v: int,
             invalid: list[tuple[str, str, int]]) -> None:
    short = name[len(PREFIX):] if name.startswith(PREFIX) else name
    d = dict(attrs)
    canon = decode._canon_of(attrs)
    if len(canon) > MAX_ATTRS:
        raise _General
    if short == "invalid_values" and d.get("kind") in ("missing", "non_finite"):
        signal = str(d.get("signal"))
        if len(signal) > MAX_SIGNAL or not text_ok(signal) or v > MAX_COUNT:
            raise _General
        if not out.admit(series_key("h", signal)):
            raise _General
        invalid.append((signal, str(d["kind"]), v))
        return
    if not out.admit(series_key("c", short, canon)) or add_counter(up, (short, canon), v):
        raise _General
