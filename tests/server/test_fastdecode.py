"""The native fast path for collector uploads (`edgeyard.server.fastdecode`, `_otlp.c`) gives
exactly what the general decoder (`decode.parse` + `decode.decode`) gives, for every body it
takes, and leaves every other body to it: the collector's own windows, hand-made corner cases,
Hypothesis' bodies over the full range of every field, and random byte mutations of real
bodies (seeded). In-process: no server."""

from __future__ import annotations

import gzip
import math
import os
import shutil
import struct
import sysconfig
import time
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("opentelemetry.proto", reason="the decoder reads OTLP protobuf")

from edgeyard.server import decode, fastdecode
from edgeyard.server.errors import _varint as varint  # protobuf's base-128 varint
from edgeyard.telemetry import otlp
from edgeyard.telemetry.projections import Projector, default_projections
from edgeyard.telemetry.window import Window

from .builders import (
    CUMULATIVE,
    PROTO,
    exp_metric,
    exp_point,
    explicit_metric,
    explicit_point,
    pb,
    request,
    resource_metrics,
    sum_metric,
    sum_point,
)
from .test_otlp_ranges import metric

native = pytest.mark.skipif(not fastdecode.available(), reason=fastdecode.describe())
EXAMPLES = int(os.environ.get("EDGEYARD_FUZZ_EXAMPLES", "300"))
NOW = time.time_ns()


def canon(d: decode.Decoded) -> str:
    """Everything a `Decoded` holds, comparable (NaN equal to NaN: reprs)."""
    def sketch(h):
        return repr(h.serialize() if isinstance(h, decode.ExplicitHistogram) else
                    (h.to_parts(), h.missing, h.non_finite))

    ups = [(u.upload_id, u.model, u.release, u.profile, u.device_id, u.start_ns, u.end_ns,
            sorted((k, sketch(h)) for k, h in u.sketches.items()), sorted(u.counters.items()),
            repr(u.cumulative), u.points, sorted(u.sketch_points.items()),
            sorted(u.counter_points.items())) for u in d.uploads]
    return repr((ups, d.rejected, d.errors, sorted(d.series)))


def general(body: bytes, max_series: int | None = None) -> decode.Decoded | str:
    try:
        return decode.decode(decode.parse(body, PROTO), max_series)
    except decode.BadRequest as exc:
        return f"400: {exc}"


def same(body: bytes, max_series: int | None = None) -> decode.Decoded | None:
    """The fast path's answer (None: left to the general one), checked against the general
    decoder's."""
    fast = fastdecode.common(body, max_series)
    if fast is not None:
        slow = general(body, max_series)
        assert not isinstance(slow, str), f"the fast path took a body the parser refuses: {slow}"
        assert canon(fast) == canon(slow)
    return fast


SPEC = default_projections([{"name": "image", "shape": [1, 3, 8, 8], "dtype": "float32"}],
                           [{"name": "logits", "shape": [1, 10], "dtype": "float32"}],
                           random_projections=10)
PROJECTOR = Projector(SPEC)


def collector_window(rng: np.random.Generator, calls: int = 100, bad_inputs: bool = False
                     ) -> bytes:
    """A window as the collector writes it: 20 sketched signals, latency by engine, classes,
    calls, fallbacks; `bad_inputs`: some inputs NaN and Inf (the invalid_values counters)."""
    x = rng.normal(0.5, 0.2, (calls, 3, 8, 8)).astype(np.float32)
    if bad_inputs:
        x[:3] = np.nan
        x[3:5] = np.inf
    y = rng.normal(0, 2, (calls, 10)).astype(np.float32)
    w = Window(SPEC, NOW)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and Inf inputs, on purpose
        w.add_batch(PROJECTOR, [x], [y])
    w.sketches["latency_ms"].update(rng.lognormal(0, 0.3, calls))
    for engine in ("tflite-int8", "onnx-fp32"):
        w.engine_latency.setdefault(engine, type(w.sketches["latency_ms"])()).update(
            rng.lognormal(0, 0.3, calls // 2))
        w.engines[engine] = calls // 2
    w.fallbacks[("tflite-int8", "error", "RuntimeError")] = 3
    w.calls = w.sampled = calls
    w.end_ns = NOW + 60 * 10**9
    return otlp.window_bytes(w, {"service.name": "edgeyard-device", "edgeyard.model": "m",
                                 "edgeyard.release": "1.0", "edgeyard.profile": "pixel-8",
                                 "edgeyard.device_id": uuid.uuid4().hex,
                                 "edgeyard.upload_id": uuid.uuid4().hex})


def test_the_native_decoder_is_built_where_there_is_a_compiler():
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None or os.environ.get("EDGEYARD_NO_NATIVE") == "1":
        pytest.skip(f"no C compiler ({cc}): the package installs without the fast path")
    assert fastdecode.available(), fastdecode.describe()


@native
@pytest.mark.parametrize("bad_inputs", [False, True])
def test_collector_windows_take_the_fast_path_and_decode_as_the_general_decoder(bad_inputs):
    rng = np.random.default_rng(7)
    for n in (1, 3):
        body = otlp.join([collector_window(rng, bad_inputs=bad_inputs) for _ in range(n)])
        got = same(body)
        assert got is not None and len(got.uploads) == n and got.rejected == 0
        up = got.uploads[0]
        assert up.points >= 20 and "latency_ms" in up.sketches
        if bad_inputs:
            assert sum(h.missing + h.non_finite for h in up.sketches.values()) > 0
    # through `read`: gzip inflated first, the same answer as decode.read
    body = otlp.join([collector_window(rng)])
    fast = fastdecode.read(gzip.compress(body), PROTO, "gzip", 10**7)
    assert canon(fast) == canon(decode.read(gzip.compress(body), PROTO, "gzip", 10**7))


def raw_metric(name: bytes, data_field: int, data: bytes) -> bytes:
    """A serialized Metric, byte by byte (for what the protobuf classes will not write)."""
    return field(1, name) + field(data_field, data)


def field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def with_metric(raw: bytes, upload_id: str | None = "u1") -> bytes:
    """A request of one resource holding `raw` (a serialized Metric) in one scope."""
    rm = resource_metrics([], model="m", upload_id=upload_id).SerializeToString()
    return field(1, rm + field(2, field(2, raw)))


def raw_point(sides: list[bytes]) -> bytes:
    """An ExponentialHistogramDataPoint of one value, 1.0, its positive side(s) as given."""
    fixed = lambda n, v: varint(n << 3 | 1) + struct.pack("<Q", v)  # noqa: E731
    double = lambda n, v: varint(n << 3 | 1) + struct.pack("<d", v)  # noqa: E731
    out = fixed(3, NOW) + fixed(4, 1) + double(5, 1.0) + double(12, 1.0) + double(13, 1.0)
    return out + b"".join(field(8, side) for side in sides)


def raw_histogram(*points: bytes) -> bytes:
    """A delta ExponentialHistogram of serialized points."""
    return b"".join(field(1, p) for p in points) + varint(2 << 3) + varint(1)


def corner_cases() -> dict[str, bytes]:
    exp = lambda *pts, **kw: request(resource_metrics([exp_metric("edgeyard.x", list(pts), **kw)],  # noqa: E731
                                                      model="m")).SerializeToString()
    ok = exp_point([1.0, 2.0], time=NOW)
    hist = exp_metric("edgeyard.x", [ok]).exponential_histogram.SerializeToString()
    _, m, _, _ = pb()
    exemplar = exp_point([1.0], time=NOW)
    exemplar.exemplars.add(as_double=1.0, time_unix_nano=NOW)
    return {
        "cumulative": exp(ok, temporality=CUMULATIVE),
        "explicit histogram": request(resource_metrics([explicit_metric(
            "edgeyard.e", [explicit_point([1.0, 7.0], time=NOW)])], model="m")).SerializeToString(),
        "gauge": request(resource_metrics([m.Metric(name="g", gauge=m.Gauge(
            data_points=[sum_point(3, time=NOW)]))], model="m")).SerializeToString(),
        "non-monotonic sum": request(resource_metrics([sum_metric(
            "s", [sum_point(3, time=NOW)], monotonic=False)], model="m")).SerializeToString(),
        "double sum": request(resource_metrics([sum_metric(
            "s", [sum_point(3.0, time=NOW)])], model="m")).SerializeToString(),
        "negative sum": request(resource_metrics([sum_metric(
            "s", [sum_point(-3, time=NOW)])], model="m")).SerializeToString(),
        "no recorded value": exp(exp_point([1.0], time=NOW, flags=1)),
        "exemplar": exp(exemplar),
        "count mismatch": exp(exp_point([1.0, 2.0], time=NOW, count=5)),
        "scale 21": exp(exp_point([1.0], time=NOW, scale=21)),
        "index out of range": exp(exp_point([1.0], time=NOW, positive_offset=2**31 - 1)),
        "min over max": exp(exp_point([1.0, 2.0], time=NOW, min=3.0, max=2.0)),
        "infinite sum": exp(exp_point([1.0], time=NOW, sum=math.inf)),
        "zero threshold": exp(exp_point([0.0], time=NOW, zero_threshold=0.5)),
        "time after 2262": exp(exp_point([1.0], time=2**63)),
        "no upload id": request(resource_metrics([exp_metric("edgeyard.x", [ok])], model="m",
                                                 upload_id=None)).SerializeToString(),
        "no model": request(resource_metrics([exp_metric("edgeyard.x", [ok])], model="")
                            ).SerializeToString(),
        "name with NUL": exp(ok).replace(b"edgeyard.x", b"edgeyard\0x"),
        "name of 301 characters": request(resource_metrics([exp_metric("é" * 301, [ok])],
                                                           model="m")).SerializeToString(),
        "bad UTF-8 in a description": with_metric(field(1, b"edgeyard.x") + field(2, b"\xc3\x28")
                                                  + field(10, hist)),
        "a surrogate in the unit": with_metric(field(1, b"edgeyard.x") + field(3, b"\xed\xa0\x80")
                                               + field(10, hist)),
        "two data fields": with_metric(raw_metric(b"edgeyard.x", 10, hist) + field(10, hist)),
        "two positive sides": with_metric(raw_metric(b"edgeyard.x", 10, raw_histogram(
            raw_point([field(2, varint(1)), field(2, varint(1))])))),
        "unpacked bucket counts": with_metric(raw_metric(b"edgeyard.x", 10, raw_histogram(
            raw_point([varint(2 << 3) + varint(1)])))),
        "truncated": exp(ok)[:-3],
        "a group": exp(ok) + b"\x0b\x0c",
    }


@native
@pytest.mark.parametrize("case", sorted(corner_cases()))
def test_what_the_fast_path_leaves_to_the_general_decoder(case):
    body = corner_cases()[case]
    assert fastdecode.common(body) is None, case
    # and the service's `read` answers exactly as the general decoder does
    try:
        want = canon(decode.read(body, PROTO, None, 10**7))
    except decode.BadRequest as exc:
        with pytest.raises(decode.BadRequest, match=str(exc)[:40].replace("(", r"\(")):
            fastdecode.read(body, PROTO, None, 10**7)
    else:
        assert canon(fastdecode.read(body, PROTO, None, 10**7)) == want


@native
def test_a_series_limit_sends_the_body_to_the_general_decoder():
    body = otlp.join([collector_window(np.random.default_rng(1))])
    assert same(body, max_series=1000) is not None
    assert fastdecode.common(body, max_series=3) is None
    assert canon(fastdecode.read(body, PROTO, None, 10**7, 3)) == canon(
        decode.read(body, PROTO, None, 10**7, 3))


@native
def test_a_metric_without_data_and_unknown_fields_are_skipped_as_protobuf_skips_them():
    hist = exp_metric("edgeyard.x", [exp_point([1.0], time=NOW)]).exponential_histogram
    unknown = varint(99 << 3 | 0) + b"\x05" + varint(98 << 3 | 5) + b"abcd"
    body = with_metric(field(1, b"edgeyard.empty")) + field(1, resource_metrics(
        [], model="m").SerializeToString() + field(2, field(2, raw_metric(
            b"edgeyard.x", 10, hist.SerializeToString() + unknown) + unknown)))
    got = same(body)
    assert got is not None and [u.points for u in got.uploads] == [1]


@native
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(ms=st.lists(metric(), min_size=1, max_size=4), uid=st.sampled_from(["auto", None]))
def test_hypothesis_bodies_decode_as_the_general_decoder(ms, uid):
    same(request(resource_metrics(ms, model="fuzz", upload_id=uid)).SerializeToString())


@st.composite
def valid_metric(draw):
    """Points the fast path takes: delta exponential histograms of any finite values, delta
    monotonic integer sums, with attributes."""
    attrs = draw(st.sampled_from([{}, {"engine": "a"}, {"class": 3}, {"b": True, "f": 0.5},
                                  {"signal": "input.a", "kind": "missing"},
                                  {"signal": "input.b", "kind": "non_finite"}]))
    name = draw(st.sampled_from(["edgeyard.input.a", "edgeyard.latency", "x.y"]))
    if draw(st.booleans()):
        values = draw(st.lists(st.floats(-1e300, 1e300), max_size=30))  # merged sums stay finite
        return exp_metric(name, [exp_point(values, time=NOW, point_attrs=attrs)
                                 for _ in range(draw(st.integers(1, 2)))])
    return sum_metric("edgeyard.invalid_values" if "signal" in attrs else name,
                      [sum_point(draw(st.integers(0, 2**40)), time=NOW, point_attrs=attrs)])


@native
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(ms=st.lists(valid_metric(), min_size=1, max_size=6))
def test_valid_bodies_take_the_fast_path(ms):
    body = request(resource_metrics(ms, model="fuzz")).SerializeToString()
    assert same(body) is not None


@native
def test_random_byte_mutations_of_real_bodies():
    """Flipped, dropped, repeated and inserted bytes (seeded): each mutated body is decoded
    equally, or left to the general decoder; none crashes."""
    rng = np.random.default_rng(2026)
    bodies = [otlp.join([collector_window(rng, calls=20, bad_inputs=b)]) for b in (False, True)]
    taken = 0
    for i in range(3000):
        b = bytearray(bodies[i % 2])
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, len(b)))
            op = int(rng.integers(0, 4))
            if op == 0:
                b[at] ^= 1 << int(rng.integers(0, 8))
            elif op == 1:
                del b[at: at + int(rng.integers(1, 9))]
            elif op == 2:
                b[at:at] = b[at: at + int(rng.integers(1, 9))]
            else:
                b[at:at] = rng.integers(0, 256, int(rng.integers(1, 5))).astype(np.uint8).tobytes()
        taken += same(bytes(b)) is not None
    assert 0 < taken < 3000  # some mutations stay valid, most are left to the general path


@native
@pytest.mark.parametrize("order", [["1", 1, True, 1.0, 2.5], [2.5, 1.0, True, 1, "1"]],
                         ids=["text-first", "double-first"])
def test_attribute_values_that_compare_equal_make_their_own_series_in_any_order(order):
    """1, 1.0 and True are equal as dictionary keys (and so are tuples holding them), but each
    makes its own series name. Both decoders keep what a point's name and attributes come to
    between requests, and their caches once gave True's point the name that 1 had made before
    it. Each value's series is the same whatever came before it, through both decoders."""
    want = {(str, "1"): ("signal.x{engine=1}", '{"engine":"1"}'),  # keyed by type too
            (int, 1): ("signal.x{engine=1}", '{"engine":1}'),
            (bool, True): ("signal.x{engine=True}", '{"engine":true}'),
            (float, 1.0): ("signal.x{engine=1.0}", '{"engine":1.0}'),
            (float, 2.5): ("signal.x{engine=2.5}", '{"engine":2.5}')}
    for value in order:
        point_attrs = {"engine": value}
        body = request(resource_metrics([
            sum_metric("edgeyard.calls", [sum_point(3, time=NOW, point_attrs=point_attrs)]),
            exp_metric("edgeyard.signal.x", [exp_point([1.0, 2.0], time=NOW,
                                                       point_attrs=point_attrs)])],
            model="m")).SerializeToString()
        got = same(body)
        assert got is not None, value  # the fast path takes them
        (up,) = got.uploads
        assert (list(up.sketches), [c[1] for c in up.counters]) == \
            ([want[type(value), value][0]], [want[type(value), value][1]]), value
