"""OTLP/HTTP details against a real `edgeyard serve` on SQLite and PostgreSQL: compressed bodies
(every gzip member, trailers checked), the Content-Type alone deciding 415, error bodies as
google.rpc.Status in the request's encoding, a rate-limited log line per refusal, and the
admin login by form POST or header, never by URL."""

from __future__ import annotations

import gzip
import json
import time
import urllib.error
import urllib.request
import zlib

import pytest

from .builders import (
    exp_metric,
    exp_point,
    partial,
    post,
    request,
    resource_metrics,
    sum_metric,
    sum_point,
    to_json,
)
from .conftest import engine_of, make_client

JSON = "application/json"


@pytest.fixture
def server(serve, server_database):
    return serve(server_database, "--log-refusals-per-s", "5")


def body(n: int = 1, model: str = "app") -> bytes:
    now = time.time_ns()
    return request(resource_metrics([sum_metric("edgeyard.calls", [sum_point(n, start=now,
                                                                             time=now)])],
                                    model=model)).SerializeToString()


def calls(server) -> int:
    from edgeyard.server import store

    engine = engine_of(server)
    try:
        return sum(store.counter_rows(engine, "app", "1.0", 0, 2**40).values())
    finally:
        engine.dispose()


def status_of(answer: bytes, as_json: bool = False) -> tuple[int, str]:
    if as_json:
        d = json.loads(answer)
        return d["code"], d["message"]
    from google.rpc import status_pb2

    s = status_pb2.Status()
    s.ParseFromString(answer)
    return s.code, s.message


def test_gzip_members_trailers_and_trailing_bytes(server):
    key = server.key("ingest")
    two = gzip.compress(body(1)) + gzip.compress(body(2))  # RFC 1952: one stream, two members
    assert post(server.url, two, key, encoding="gzip")[0] == 200
    assert calls(server) == 3  # both members stored
    full = gzip.compress(body(4))
    cases = {"truncated (no trailer)": full[:-8], "cut mid-stream": full[: len(full) // 2],
             "bad CRC": full[:-8] + b"\0\0\0\0" + full[-4:],
             "trailing garbage": full + b"garbage", "trailing zeros": full + b"\0" * 16,
             "empty": b""}
    for what, data in cases.items():
        status, answer, headers = post(server.url, data, key, encoding="gzip")
        assert status == 400, what
        assert headers["content-type"] == "application/x-protobuf", what
        assert status_of(answer)[0] == 3, what  # INVALID_ARGUMENT
    assert post(server.url, zlib.compress(body(8)), key, encoding="deflate")[0] == 200
    assert post(server.url, zlib.compress(body(16)) + b"x", key, encoding="deflate")[0] == 400
    assert post(server.url, zlib.compress(body(16))[:-4], key, encoding="deflate")[0] == 400
    assert calls(server) == 3 + 8


def test_content_type_alone_decides_415_and_errors_are_status_messages(server):
    key = server.key("ingest")
    # a JSON body whose text mentions Content-Type: a 400 (not OTLP), never a 415
    status, answer, headers = post(server.url, b'{"resourceMetrics": "Content-Type"}', key, JSON)
    assert status == 400 and headers["content-type"] == JSON
    code, message = status_of(answer, as_json=True)
    assert code == 3 and "OTLP JSON" in message
    status, answer, headers = post(server.url, body(), key, "text/plain")
    assert status == 415 and status_of(answer)[0] == 3
    status, answer, headers = post(server.url, to_json(request()), key, "text/plain; charset=x")
    assert status == 415
    # unauthenticated, in either encoding
    status, answer, headers = post(server.url, body(), "not-a-key")
    assert status == 401 and headers["content-type"] == "application/x-protobuf"
    assert status_of(answer)[0] == 16  # UNAUTHENTICATED
    status, answer, headers = post(server.url, b"{}", "not-a-key", JSON)
    assert status == 401 and status_of(answer, as_json=True)[0] == 16
    # JSON requests get JSON answers, partial success included
    bad = request(resource_metrics([exp_metric("x", [exp_point([1.0], scale=99)])]))
    status, answer, headers = post(server.url, to_json(bad), key, JSON)
    assert status == 200 and headers["content-type"] == JSON
    assert partial(answer, as_json=True)[0] == 1


def test_each_refusal_is_logged_at_a_bounded_rate(server):
    key = server.key("ingest")
    t0 = time.monotonic()
    for _ in range(40):
        post(server.url, b"\xff\xff not protobuf", key)
    took = time.monotonic() - t0
    time.sleep(1.1)
    post(server.url, b"x", key, "text/plain")
    log = server.log_text()
    lines = [ln for ln in log.splitlines() if "/v1/metrics" in ln]
    allowed = 5 + 5 * took  # a burst of 5, then 5 a second (--log-refusals-per-s 5)
    assert 5 <= len(lines) <= allowed + 2, (took, log[-3000:])
    assert any(" 400: body is not an OTLP protobuf" in ln for ln in lines)
    last = [ln for ln in lines if " 415: Content-Type 'text/plain'" in ln]
    assert len(last) == 1
    if allowed < 38:  # some were over the rate: the next line logged says how many (the
        # 415's, or one of the 400s' when the loop took long enough for the rate to refill)
        assert any("lines suppressed" in ln for ln in lines), lines
    assert all(len(ln) < 1000 for ln in lines)


def test_an_internal_error_answers_a_status_message_in_the_request_encoding(engine, monkeypatch,
                                                                            caplog):
    from edgeyard.server import store

    monkeypatch.setattr(store, "_ingest", lambda *a: (_ for _ in ()).throw(KeyError("boom")))
    key = store.create_key(engine, "ingest")
    with make_client(engine) as client:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"}
        r = client.post("/v1/metrics", content=body(), headers=headers)
        assert r.status_code == 500 and r.headers["content-type"] == "application/x-protobuf"
        assert status_of(r.content)[0] == 13  # INTERNAL
        r = client.post("/v1/metrics", content=to_json(request(resource_metrics([sum_metric(
            "c", [sum_point(1)])]))), headers={**headers, "Content-Type": JSON})
        assert r.status_code == 500 and status_of(r.content, as_json=True)[0] == 13
    assert any("KeyError" in rec.getMessage() for rec in caplog.records)


def test_the_status_message_written_without_googleapis_is_the_same_bytes():
    from google.rpc import status_pb2

    from edgeyard.server.errors import encode_status

    for code, message in ((0, ""), (3, "x"), (16, "é" * 300), (13, "a\nb")):
        assert encode_status(code, message) == status_pb2.Status(
            code=code, message=message).SerializeToString()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _open(req):
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_login_by_form_post_or_header_never_by_url(server):
    admin = server.key("admin")
    # the form: no key in it, none accepted in the URL
    status, headers, page = _open(urllib.request.Request(
        f"{server.url}/login?key={admin}&next=/%3Fmodel%3Dx"))
    assert status == 200 and "set-cookie" not in {k.lower() for k in headers}
    assert 'method="post"' in page and 'type="password"' in page and admin not in page
    assert 'value="/?model=x"' in page
    # the form's POST sets the cookie and goes to `next` (this site's pages only)
    form = f"key={admin}&next=%2F%3Fmodel%3Dx".encode()
    status, headers, _ = _open(urllib.request.Request(
        server.url + "/login", data=form, method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"}))
    assert status == 303 and headers["location"] == "/?model=x"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    value = cookie.split(";")[0]
    status, _, page = _open(urllib.request.Request(server.url + "/", headers={"Cookie": value}))
    assert status == 200 and "edgeyard drift report" in page
    status, headers, _ = _open(urllib.request.Request(
        server.url + "/login", data=b"next=https://evil.example/", method="POST",
        headers={"Authorization": f"Bearer {admin}"}))
    assert status == 303 and headers["location"] == "/"
    for data, auth in ((f"key={server.key('ingest')}".encode(), None), (b"key=nope", None),
                       (b"", None), (b"", "Bearer nope")):
        h = {"Authorization": auth} if auth else {}
        status, headers, _ = _open(urllib.request.Request(server.url + "/login", data=data,
                                                          method="POST", headers=h))
        assert status == 401 and "set-cookie" not in {k.lower() for k in headers}
    assert admin not in server.log_text()
