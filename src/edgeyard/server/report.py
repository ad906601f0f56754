"""The HTML report: one self-contained page (inline SVG plots, no scripts, no external files).

Per model and release: the verdict of the latest window, the drift table (each signal's
statistics against its calibrated threshold, and the rule checks), the label-free accuracy
estimate, each signal's reference vs production histogram, the drift statistics over the last
day, and the fallback and latency panels, then one row per segment (profile), and the series
the app stores. The reference is the registered release's; for an app without one (plain
OpenTelemetry metrics), or with `baseline`, the app's own data of the period before the window
(7 days unless said otherwise).
"""

from __future__ import annotations

import html
import time
import urllib.parse
from typing import Any

from .watch import Watch, histogram

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 8px;border-bottom:1px solid #eee;
text-align:right}th{background:#f6f6f6}td:first-child,th:first-child{text-align:left}
.drift{color:#b00020;font-weight:600}.ok{color:#1b7f3b}.na{color:#888}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{border:1px solid #eee;padding:6px}
.note{color:#555;font-size:12px}.verdict{font-size:18px;padding:6px 10px;display:inline-block}
"""
REF, CUR = "#4a78c2", "#e07b39"
PALETTE = ["#4a78c2", "#e07b39", "#3a9b5b", "#b8443f", "#8a63b8", "#9b7a3a", "#d46aa8",
           "#5a5a5a", "#b3b82e", "#36a6b5"]


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return _e(x)


def histogram_svg(sig: dict[str, Any], width: int = 260, height: int = 120) -> str:
    """Reference and production bucket masses, side by side per bucket."""
    p, q = sig.get("reference", []), sig.get("current", [])
    n = len(p)
    title = f"{sig['name']} (ref n={sig.get('n_reference', 0)}, prod n={sig.get('n_current', 0)})"
    if n == 0:
        return (f'<svg class="hist" width="{width}" height="{height}" role="img">'
                f'<title>{_e(title)}</title><text x="8" y="60" fill="#888">no production '
                f'data</text></svg>')
    top = max(max(p), max(q), 1e-12)
    bw = (width - 10) / n
    bars = []
    for i, (a, b) in enumerate(zip(p, q, strict=True)):
        x = 5 + i * bw
        for j, (v, color) in enumerate(((a, REF), (b, CUR))):
            h = (height - 20) * v / top
            bars.append(f'<rect x="{x + j * bw / 2:.2f}" y="{height - 15 - h:.2f}" '
                        f'width="{max(bw / 2 - 0.3, 0.3):.2f}" height="{h:.2f}" fill="{color}"/>')
    lo, hi = sig["lower"][0], sig["upper"][-1]
    return (f'<svg class="hist" width="{width}" height="{height}" role="img" '
            f'data-signal="{_e(sig["name"])}"><title>{_e(title)}</title>{"".join(bars)}'
            f'<text x="5" y="{height - 2}" font-size="10">{_num(lo)}</text>'
            f'<text x="{width - 5}" y="{height - 2}" font-size="10" text-anchor="end">'
            f'{_num(hi)}</text></svg>')


def lines_svg(series: dict[str, list[float | None]], xs: list[float], title: str,
              width: int = 560, height: int = 180, hline: float | None = None) -> str:
    """Line chart of several series over the same x (None values leave gaps)."""
    vals = [v for s in series.values() for v in s if v is not None]
    if hline is not None:
        vals.append(hline)
    if not vals or len(xs) < 1:
        return (f'<svg class="lines" width="{width}" height="{height}"><title>{_e(title)}'
                f'</title><text x="8" y="60" fill="#888">no data</text></svg>')
    top = max(vals) * 1.1 or 1.0
    x0, x1 = xs[0], xs[-1] if xs[-1] > xs[0] else xs[0] + 1
    px = lambda x: 40 + (width - 50) * (x - x0) / (x1 - x0)  # noqa: E731
    py = lambda y: height - 20 - (height - 35) * y / top  # noqa: E731
    out = [f'<svg class="lines" width="{width}" height="{height}" role="img">'
           f'<title>{_e(title)}</title>',
           f'<line x1="40" y1="{height - 20}" x2="{width - 10}" y2="{height - 20}" '
           f'stroke="#999"/>',
           f'<text x="36" y="{py(top / 1.1) + 4:.1f}" font-size="10" text-anchor="end">'
           f'{_num(top / 1.1)}</text><text x="36" y="{height - 18}" font-size="10" '
           f'text-anchor="end">0</text>']
    if hline is not None:
        out.append(f'<line x1="40" y1="{py(hline):.1f}" x2="{width - 10}" y2="{py(hline):.1f}" '
                   f'stroke="#b00020" stroke-dasharray="4 3"/>')
    for k, (name, s) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        runs: list[list[str]] = [[]]  # a step without data breaks the line
        for x, v in zip(xs, s, strict=True):
            if v is None:
                runs.append([])
                continue
            runs[-1].append(f"{px(x):.1f},{py(v):.1f}")
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="2.5" fill="{color}"/>')
        for pts in runs:
            if len(pts) > 1:
                out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                           f'points="{" ".join(pts)}"><title>{_e(name)}</title></polyline>')
        out.append(f'<text x="{width - 10}" y="{14 + 12 * k}" font-size="10" fill="{color}" '
                   f'text-anchor="end">{_e(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _ratio(sig: dict[str, Any] | None) -> float | None:
    """KS over its calibrated threshold (None where the step was not tested)."""
    if not sig or sig.get("ks") is None or not sig.get("threshold"):
        return None
    return float(sig["ks"]) / float(sig["threshold"])


def _drift_table(report: dict[str, Any]) -> str:
    rows = []
    for s in report.get("signals", []):
        drifted = s.get("verdict") == "drift"
        cls = "drift" if drifted else ("ok" if s.get("verdict") == "ok" else "na")
        rules = ", ".join(f"{r['name']} fail" for r in s.get("rules") or []
                          if r.get("status") == "fail") or "pass"
        rows.append(
            f'<tr class="{cls}"><td>{_e(s["name"])}</td><td>{_num(s.get("n"))}</td>'
            f'<td>{_num(s.get("ks"))}</td><td>{_num(s.get("ks_bound"))}</td>'
            f'<td>{_num(s.get("threshold"))}</td><td>{_num(s.get("p_value"))}</td>'
            f'<td>{_num(s.get("psi"))}</td><td>{_num(s.get("js"))}</td>'
            f'<td>{"DRIFT" if drifted else _e(s.get("verdict"))}</td><td>{_e(rules)}</td></tr>')
    c = report.get("classes")
    if c:
        cls = "drift" if c.get("verdict") == "drift" else "ok"
        rows.append(f'<tr class="{cls}"><td>output.class (counts)</td><td>{_num(c.get("n"))}</td>'
                    f'<td colspan="2">chi² {_num(c.get("statistic"))}</td><td></td>'
                    f'<td>{_num(c.get("p_value"))}</td><td></td><td></td>'
                    f'<td>{"DRIFT" if c.get("verdict") == "drift" else _e(c.get("verdict"))}'
                    '</td><td></td></tr>')
    return ('<table id="drift-table"><tr><th>signal</th><th>n</th><th>KS</th><th>± bound</th>'
            '<th>threshold</th><th>p</th><th>PSI</th><th>JS</th><th>verdict</th><th>rules</th>'
            '</tr>' + "".join(rows) + "</table>")


def _runtime(rt: dict[str, Any]) -> str:
    by = rt.get("latency_ms_by_engine", {})
    eng = "".join(f"<tr><td>{_e(k)}</td><td>{v}</td><td>{_num((by.get(k) or {}).get('p50'))}"
                  f"</td><td>{_num((by.get(k) or {}).get('p90'))}</td></tr>"
                  for k, v in rt["engines"].items())
    fb = "".join(f"<tr><td>{_e(f['engine'])}</td><td>{_e(f['kind'])}</td>"
                 f"<td>{_e(f['reason'][:120])}</td><td>{f['count']}</td></tr>"
                 for f in rt["fallbacks"][:20]) or '<tr><td colspan="4">none</td></tr>'
    lat = rt["latency_ms"]
    return (f'<p>calls {rt["calls"]}, sampled for signals {rt["sampled"]}, dropped on devices '
            f'{rt["dropped"]}; latency p50 {_num(lat["p50"])} ms, p90 {_num(lat["p90"])} ms, '
            f'p99 {_num(lat["p99"])} ms</p>'
            f'<table id="engines"><tr><th>served by</th><th>calls</th><th>p50 ms</th>'
            f'<th>p90 ms</th></tr>{eng}</table>'
            f'<table id="fallbacks"><tr><th>engine</th><th>kind</th><th>reason</th>'
            f'<th>count</th></tr>{fb}</table>')


DEFAULT_BASELINE_S = 7 * 86400.0


def _rollouts(watch: Watch, model: str) -> str:
    """Each rollout of the model, newest first: its timeline of decisions and what decided."""
    from . import rollouts

    out = []
    for rid in reversed(rollouts.list_ids(watch.engine, model)[-10:]):
        st = rollouts.get(watch.engine, rid)
        if st is None:
            continue
        t0 = st.decisions[0]["time"] if st.decisions else 0.0
        rows = []
        for d in st.decisions:
            worse = [f for f in d["figures"] if f.get("outcome") == "worse"]
            figs = "; ".join(f'{_e(f["figure"])} {_num(f.get("estimate"))}' for f in worse) or \
                (f'{len(d["figures"])} figures not worse' if d["figures"] else "–")
            rows.append(f'<tr><td>+{d["time"] - t0:.0f} s</td><td>{_e(d["action"])}</td>'
                        f'<td>{d["percent"]:g}%</td><td>{_e(d["why"])}</td><td>{figs}</td></tr>')
        cls = {"rolled_back": "drift", "completed": "ok"}.get(st.state, "")
        out.append(f'<h3>{_e(st.release)} in place of {_e(st.previous)}: '
                   f'<span class="{cls}">{_e(st.state.replace("_", " "))}</span> at '
                   f'{st.percent:g}%</h3><table class="rollout"><tr><th>when</th><th>decision'
                   f'</th><th>share</th><th>why</th><th>figures</th></tr>{"".join(rows)}</table>')
    return ("<h2>Rollouts</h2>" + "".join(out)) if out else ""


def _link(**params: str) -> str:
    return _e("/?" + urllib.parse.urlencode(params))


def render(watch: Watch, model: str | None, release: str | None, window_s: float,
           end: float | None = None, span_s: float = 86400.0, step_s: float = 3600.0,
           baseline_s: float | None = None) -> str:
    from . import store

    rels = store.releases(watch.engine)
    registered = {r["model"] for r in rels}
    unregistered = sorted(set(store.models(watch.engine)) - registered)
    nav = " · ".join(f'<a href="{_link(model=r["model"], release=r["release"])}">'
                     f'{_e(r["model"])} {_e(r["release"])}</a>' for r in rels) or "none yet"
    others = " · ".join(f'<a href="{_link(model=m, baseline="7d")}">{_e(m)}</a>'
                        for m in unregistered)
    head = (f'<!doctype html><html><head><meta charset="utf-8"><title>edgeyard drift report'
            f'</title><style>{CSS}</style></head><body><h1>edgeyard drift report</h1>'
            f'<p>Releases: {nav}</p>'
            + (f'<p id="apps">Apps without a registered release (checked against their own '
               f'earlier data): {others}</p>' if others else ""))
    if model is None and rels:
        model, release = rels[-1]["model"], rels[-1]["release"]
    elif model is None and unregistered:
        model = unregistered[0]
    if model is None:
        return head + "<p>No registered release selected.</p></body></html>"
    end = time.time() if end is None else end
    if baseline_s is None and (release is None or store.release(watch.engine, model, release)
                               is None):
        baseline_s = DEFAULT_BASELINE_S  # no build reference to check against: its own past
    if baseline_s is not None:
        ref_end = end - window_s
        rec = store.baseline_record(watch.engine, model, release, ref_end - baseline_s, ref_end)
        against = f"against its own data of the {_num(baseline_s / 3600)} h before"
    else:
        assert release is not None
        found = store.release(watch.engine, model, release)
        assert found is not None
        rec = found
        against = "against the release's build-time reference"
    wins = watch.windows(rec, end - window_s, end)  # read once: the check and the plots
    res = watch.check(rec, window_s, end=end, windows=wins)
    verdict = res["verdict"]
    parts = [head, f'<h2>{_e(rec.model)} {_e(rec.release or "(every release)")}: the '
                   f'{_num(window_s)} s until '
                   f'{time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(end))}, {against}</h2>',
             f'<p class="verdict {"drift" if verdict == "drift" else "ok"}" id="verdict">'
             f'verdict: {_e(verdict)}</p><p>{res["devices"]} devices.</p>']
    ov = res["overall"]
    if ov:
        parts.append(_drift_table(ov))
        ea = ov.get("expected_accuracy")
        if ea:
            parts.append(f'<p id="expected-accuracy">Expected accuracy {_num(ea.get("current"))}'
                         f' vs reference {_num(ea.get("reference"))} (change '
                         f'{_num(ea.get("difference"))}, interval [{_num(ea.get("ci_low"))}, '
                         f'{_num(ea.get("ci_high"))}])'
                         + (f'; accuracy measured with labels at build: '
                            f'{_num(ea.get("reference_accuracy"))}'
                            if ea.get("reference_accuracy") is not None else "")
                         + f'. <span class="note">{_e(ea.get("note", ""))}</span></p>')
        findings = ov.get("findings") or []
        if findings:
            parts.append("<ul>" + "".join(f'<li class="drift">{_e(f["kind"])} '
                                          f'{_e(f["signal"])}: {_e(f["message"])}</li>'
                                          for f in findings) + "</ul>")
        parts.append('<p class="note">KS from the histograms: the exact KS on the raw values '
                     'lies in [KS, KS + bound]. Thresholds are calibrated on the reference for '
                     'this window\'s size (bootstrap), Holm-corrected across signals.</p>')
    parts.append('<h2>Reference vs production</h2><div class="plots">')
    for name in sorted(rec.reference.sketches):
        if rec.reference.sketches[name].count == 0:
            continue
        sig = histogram(rec, name, wins["all"].sketches.get(name))
        parts.append(f'<div class="plot">{histogram_svg(sig)}<br>{_e(name)}</div>')
    parts.append(f'</div><p class="note"><span style="color:{REF}">■ reference</span> '
                 f'<span style="color:{CUR}">■ production</span></p>')
    tl = watch.timeline(rec, span_s, step_s, end=end)
    unit, per = ("h", 3600.0) if span_s >= 7200 else ("s", 1.0)
    xs = [(s["end"] - end) / per for s in tl["steps"]]
    when = f"the last {_num(span_s / per)} {unit}, per {_num(step_s / per)} {unit}"
    names = sorted({n for s in tl["steps"] for n in s["signals"]})
    ratio = {n: [_ratio(s["signals"].get(n)) for s in tl["steps"]] for n in names}
    parts.append(f'<h2>Drift over {when} (KS / threshold; above 1 = drift)</h2>'
                 + lines_svg(ratio, xs, "KS / threshold", hline=1.0))
    lat = {"p50": [s["runtime"]["latency_ms"]["p50"] for s in tl["steps"]],
           "p90": [s["runtime"]["latency_ms"]["p90"] for s in tl["steps"]]}
    fbs = {"fallbacks": [float(sum(f["count"] for f in s["runtime"]["fallbacks"]))
                         for s in tl["steps"]],
           "calls / 100": [s["runtime"]["calls"] / 100 for s in tl["steps"]]}
    parts.append(f'<h2>Latency (ms) over {when}</h2>' + lines_svg(lat, xs, "latency ms"))
    parts.append(f'<h2>Fallbacks over {when}</h2>' + lines_svg(fbs, xs, "fallbacks"))
    if ov:
        parts.append("<h2>Runtime over the window</h2>" + _runtime(ov["runtime"]))
    if res["segments"]:
        rows = "".join(
            f'<tr><td>{_e(k)}</td><td class="{"drift" if v["verdict"] == "drift" else "ok"}">'
            f'{_e(v["verdict"])}</td><td>{_e(", ".join(v.get("drifted") or []) or "–")}</td>'
            f'<td>{v["runtime"]["calls"]}</td><td>{sum(f["count"] for f in v["runtime"]["fallbacks"])}'
            f'</td><td>{_num(v["runtime"]["latency_ms"]["p90"])}</td></tr>'
            for k, v in res["segments"].items())
        parts.append('<h2>By segment (profile)</h2><table id="segments"><tr><th>profile</th>'
                     '<th>verdict</th><th>drifted</th><th>calls</th><th>fallbacks</th>'
                     f'<th>p90 ms</th></tr>{rows}</table>')
    parts.append(_rollouts(watch, rec.model))
    series = store.series_list(watch.engine, rec.model)
    if series:
        rows = "".join(f'<tr><td>{_e(x["name"])}</td><td>{_e(x["kind"])}</td>'
                       f'<td>{_e(x["attributes"] or "")}</td></tr>' for x in series[:500])
        more = f'<p class="note">and {len(series) - 500} more</p>' if len(series) > 500 else ""
        parts.append(f'<h2>Series stored ({len(series)})</h2><table id="series"><tr>'
                     f'<th>name</th><th>kind</th><th>attributes</th></tr>{rows}</table>{more}')
    parts.append("</body></html>")
    return "".join(parts)
