"""The HTML report (`server/report.py`) and its login.

    GET  /                       the HTML report (admin key, or the cookie `POST /login` sets)
    GET  /login, POST /login     a form for the admin key; the POST sets the cookie

The key is kept in an HttpOnly, SameSite=Strict cookie: it never travels in a URL.
"""

from __future__ import annotations

import gzip
import html
import urllib.parse
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from .. import store
from .deps import (
    Admin,
    Baseline,
    Duration,
    End,
    EngineDep,
    WatchDep,
    bearer,
    read_capped,
    seconds,
    span_steps,
)

router = APIRouter()


@router.get("/login", include_in_schema=False)
def login_form(next: str = "/") -> HTMLResponse:
    return HTMLResponse(_login_page(_local(next)))


@router.post("/login", include_in_schema=False)
async def login(engine: EngineDep, request: Request,
                authorization: Annotated[str | None, Header()] = None) -> Response:
    """The admin key from the form (`key`, url-encoded) or `Authorization: Bearer`; on
    success a cookie (HttpOnly, SameSite=Strict) and a redirect to `next`."""
    body = await read_capped(request, 8192)
    try:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
    except ValueError:
        raise HTTPException(400, "not a login form") from None
    key = (form.get("key") or [""])[0].strip() or bearer(authorization) or ""
    if not key:
        raise HTTPException(401, "an admin key is required: the form's `key` field or "
                            "Authorization: Bearer <key>")
    found = await run_in_threadpool(store.lookup_key, engine, key)
    if found is None or found[0] != "admin":
        raise HTTPException(401, "unknown admin key")
    resp = RedirectResponse(_local((form.get("next") or ["/"])[0]), status_code=303)
    resp.set_cookie("edgeyard_key", key, httponly=True, samesite="strict")
    return resp


@router.get("/", dependencies=[Admin], response_class=HTMLResponse, summary="HTML report")
def report(watch: WatchDep, model: str | None = None, release: str | None = None,
           window: Duration = "1h", end: End = None, span: Duration = "24h",
           step: Duration = "1h", baseline: Baseline = None,
           accept_encoding: Annotated[str, Header()] = "") -> Response:
    """The page is one self-contained file (the chart library inlined, ~1 MB): sent gzipped
    (~0.3 MB) to a client that accepts it."""
    from ..report import render

    span_s, step_s = span_steps(span, step)
    page = render(watch, model, release, seconds(window), end, span_s, step_s,
                  baseline_s=seconds(baseline) if baseline else None)
    if "gzip" not in accept_encoding.lower():
        return HTMLResponse(page)
    return Response(gzip.compress(page.encode(), compresslevel=6), media_type="text/html",
                    headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})


def _local(next_url: str) -> str:
    """`next_url` if it is a page of this site, else "/"."""
    if not next_url.startswith("/") or next_url.startswith("//") or "\\" in next_url:
        return "/"
    return next_url


def _login_page(next_url: str) -> str:
    return ('<!doctype html><html><head><meta charset="utf-8"><title>edgeyard: log in</title>'
            '</head><body style="font:14px system-ui,sans-serif;margin:24px">'
            '<h1 style="font-size:20px">edgeyard drift report</h1>'
            '<form method="post" action="/login"><label>Admin key '
            '<input type="password" name="key" autocomplete="current-password" autofocus>'
            f'</label><input type="hidden" name="next" value="{html.escape(next_url)}"> '
            '<button type="submit">Log in</button></form>'
            '<p style="color:#555">The key is kept in an HttpOnly cookie; it never travels in '
            'a URL.</p></body></html>')
