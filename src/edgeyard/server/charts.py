"""The report's charts as Vega-Lite specs (built with Altair), and the JavaScript that draws them.

Each builder returns a plain dict: a Vega-Lite spec whose rows sit in its top-level `datasets`
(validating the chart's structure is then cheap: Altair's schema check does not walk thousands
of data rows). Non-finite numbers become null, so that every spec is strict JSON. The page
inlines the Vega / Vega-Lite / vega-embed bundle of vl-convert once (`javascript()`): the report
stays one file that opens offline, with no CDN.
"""

from __future__ import annotations

import functools
import math
import re
from types import ModuleType
from typing import Any

from .._deps import require

REF, CUR = "#4a78c2", "#e07b39"
PALETTE = ["#4a78c2", "#e07b39", "#3a9b5b", "#b8443f", "#8a63b8", "#9b7a3a", "#d46aa8",
           "#5a5a5a", "#b3b82e", "#36a6b5"]
ALERT = "#b00020"
ROWS = "rows"  # the name of each spec's dataset


def altair() -> ModuleType:
    return require("altair", extra="server", purpose="the HTML report's charts")


def finite(x: Any) -> Any:
    """`x` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite(v) for v in x]
    return x


def _spec(chart: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The chart's validated spec with `rows` as its named dataset."""
    spec: dict[str, Any] = chart.to_dict()
    spec["datasets"] = {ROWS: finite(rows)}
    return finite(spec)


def _edge(x: float | None, side: str) -> str:
    if x is None:
        return "-inf" if side == "lower" else "+inf"
    return f"{x:.4g}"


def histogram(sig: dict[str, Any]) -> dict[str, Any] | None:
    """Reference and production bucket masses of one signal (`watch.histogram`'s result), side
    by side per bucket; the tooltip gives the bucket's range. None: no production data."""
    p, q = sig.get("reference") or [], sig.get("current") or []
    if not p:
        return None
    alt = altair()
    rows = [{"bucket": i, "range": f"[{_edge(lo, 'lower')}, {_edge(hi, 'upper')})",
             "source": source, "share": share}
            for i, (lo, hi, a, b) in enumerate(zip(sig["lower"], sig["upper"], p, q,
                                                   strict=True))
            for source, share in (("reference", a), ("production", b))]
    span = f"{_edge(sig['lower'][0], 'lower')} … {_edge(sig['upper'][-1], 'upper')}"
    chart = alt.Chart(alt.Data(name=ROWS)).mark_bar().encode(
        x=alt.X("bucket:O", title=span, axis=alt.Axis(labels=False, ticks=False)),
        xOffset=alt.XOffset("source:N", sort=["reference", "production"]),
        y=alt.Y("share:Q", title=None, axis=alt.Axis(format="%")),
        color=alt.Color("source:N", legend=None, scale=alt.Scale(
            domain=["reference", "production"], range=[REF, CUR])),
        tooltip=[alt.Tooltip("range:N", title="bucket"), alt.Tooltip("source:N"),
                 alt.Tooltip("share:Q", format=".2%")],
    ).properties(width=260, height=120, title=alt.Title(
        sig["name"], subtitle=f"ref n={sig.get('n_reference', 0)}, "
                              f"prod n={sig.get('n_current', 0)}", fontSize=12))
    return _spec(chart, rows)


def lines(series: dict[str, list[float | None]], xs: list[float], *, title: str, x_title: str,
          when: list[str], hline: float | None = None) -> dict[str, Any] | None:
    """Several series over the same x, one point per step (a step without data breaks its
    line); zoom and pan along x with the mouse, a click on the legend picks series, the tooltip
    gives each point. `hline`: a dashed alert line. None: no value at all."""
    if not any(v is not None for s in series.values() for v in s):
        return None
    alt = altair()
    rows = [{"x": x, "series": name, "value": v, "until": w}
            for name, values in series.items()
            for x, v, w in zip(xs, values, when, strict=True)]
    pick = alt.selection_point(name="pick", fields=["series"], bind="legend")
    zoom = alt.selection_interval(name="zoom", encodings=["x"], bind="scales")
    base = alt.Chart(alt.Data(name=ROWS)).encode(
        x=alt.X("x:Q", title=x_title),
        y=alt.Y("value:Q", title=title),
        color=alt.Color("series:N", title=None,
                        scale=alt.Scale(domain=list(series), range=PALETTE)),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.15)),
    )
    layers = [base.mark_line(strokeWidth=1.5, clip=True).add_params(pick, zoom),
              base.mark_circle(size=30, clip=True).encode(tooltip=[
                  alt.Tooltip("series:N"), alt.Tooltip("value:Q", format=".4~g"),
                  alt.Tooltip("until:N", title="step until"),
                  alt.Tooltip("x:Q", title=x_title, format=".3~g")])]
    if hline is not None:
        layers.append(alt.Chart(alt.Data(values=[{"y": hline}])).mark_rule(
            color=ALERT, strokeDash=[4, 3], clip=True).encode(y="y:Q"))
    return _spec(alt.layer(*layers).properties(width=640, height=180), rows)


def rollout(decisions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A rollout's share of the fleet over time, a point per decision (the tooltip says what
    was decided and why)."""
    if not decisions:
        return None
    alt = altair()
    t0 = decisions[0]["time"]
    rows = [{"t": d["time"] - t0, "percent": d["percent"], "action": d["action"],
             "why": d["why"]} for d in decisions]
    base = alt.Chart(alt.Data(name=ROWS)).encode(
        x=alt.X("t:Q", title="seconds since the start"),
        y=alt.Y("percent:Q", title="share of the fleet (%)", scale=alt.Scale(domain=[0, 100])))
    line = base.mark_line(interpolate="step-after", color=PALETTE[0])
    points = base.mark_circle(size=60).encode(
        color=alt.Color("action:N", title="decision", scale=alt.Scale(range=PALETTE)),
        tooltip=[alt.Tooltip("action:N"), alt.Tooltip("percent:Q", title="share %"),
                 alt.Tooltip("t:Q", title="seconds"), alt.Tooltip("why:N")])
    return _spec(alt.layer(line, points).properties(width=560, height=110), rows)


def vegalite_version(alt: ModuleType, vlc: ModuleType) -> str | None:
    """The Vega-Lite version (major.minor) that Altair writes specs for, when vl-convert can
    bundle it; else None (vl-convert's newest)."""
    m = re.match(r"v?(\d+)\.(\d+)", str(getattr(alt, "SCHEMA_VERSION", "")))
    known: list[str] = list(getattr(vlc, "get_vegalite_versions", list)())
    want = f"{m.group(1)}.{m.group(2)}" if m else None
    return want if want in known else None


@functools.cache
def javascript() -> str:
    """Vega, Vega-Lite and vega-embed in one script (globals `vega`, `vegaLite`, `vegaEmbed`),
    safe to inline in a <script> element. Built once per process: bundling takes seconds."""
    vlc = require("vl_convert", extra="server", purpose="the HTML report's charts")
    bundle = str(vlc.javascript_bundle(vl_version=vegalite_version(altair(), vlc)))
    # "</script" or "<!--" would end or confuse the HTML script element: "\x3C" is "<" inside
    # a JavaScript string, template or regular expression alike
    return re.sub(r"<(?=/script|!--)", r"\\x3C", bundle, flags=re.IGNORECASE)
