"""The HTML report: one self-contained page, rendered from Jinja2 templates (`templates/`, every
value HTML-escaped) with interactive Vega-Lite charts (`charts.py`) drawn by the Vega JavaScript
inlined in the page: it opens offline, from a file, with no CDN.

Per model and release: the verdict of the latest window, the drift table (each signal's
statistics against its calibrated threshold, and the rule checks), the label-free accuracy
estimate, the findings, each signal's reference vs production histogram, the drift statistics
over the last day, and the fallback and latency panels, then one row per segment (profile), the
rollouts' timelines, and the series the app stores. The reference is the registered release's;
for an app without one (plain OpenTelemetry metrics), or with `baseline`, the app's own data of
the period before the window (7 days unless said otherwise).
"""

from __future__ import annotations

import functools
import time
import urllib.parse
from typing import Any

from .._deps import require
from . import charts
from .watch import Watch, histogram

DEFAULT_BASELINE_S = 7 * 86400.0
SERIES_SHOWN = 500
ROLLOUTS_SHOWN = 10
FALLBACKS_SHOWN = 20


def _num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def link(**params: str) -> str:
    """A link to the report for `params`: every key and value percent-encoded (a model or
    release name may hold '/', '?', '&', '#', spaces...); the template HTML-escapes the link."""
    return "/?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="")


class Figures:
    """The page's charts: each Vega-Lite spec under the id of the element it is drawn in."""

    def __init__(self) -> None:
        self.specs: dict[str, dict[str, Any]] = {}

    def add(self, spec: dict[str, Any] | None) -> str | None:
        """The element id for `spec`; None (no chart, the page says "no data") for None."""
        if spec is None:
            return None
        key = f"chart-{len(self.specs)}"
        self.specs[key] = spec
        return key


def _require() -> None:
    """Fail early, naming the extra, when a module the page needs is not installed."""
    for module in ("jinja2", "altair", "vl_convert"):
        require(module, extra="server", purpose="the HTML report")


@functools.cache
def _environment() -> Any:
    """The templates' environment: autoescaped HTML, unknown names an error (not blanks)."""
    jinja2 = require("jinja2", extra="server", purpose="the HTML report")
    env = jinja2.Environment(loader=jinja2.PackageLoader("edgeyard.server", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    env.globals["colors"] = {"ref": charts.REF, "cur": charts.CUR}
    # a NaN would make the charts' JSON unreadable to the browser: refuse it here
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "allow_nan": False,
                                         "separators": (",", ":")}
    return env


def _ratio(sig: dict[str, Any] | None) -> float | None:
    """KS over its calibrated threshold (None where the step was not tested)."""
    if not sig or sig.get("ks") is None or not sig.get("threshold"):
        return None
    return float(sig["ks"]) / float(sig["threshold"])


def _verdict_class(verdict: Any) -> str:
    return "drift" if verdict == "drift" else ("ok" if verdict == "ok" else "na")


def _verdict_text(verdict: Any) -> str:
    return "DRIFT" if verdict == "drift" else str(verdict)


def _drift_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per signal of the drift table: its statistics, verdict and failed rules."""
    rows = []
    for s in report.get("signals", []):
        rules = ", ".join(f"{r['name']} fail" for r in s.get("rules") or []
                          if r.get("status") == "fail") or "pass"
        rows.append({"name": s["name"], "cls": _verdict_class(s.get("verdict")),
                     "cells": [s.get(k) for k in ("n", "ks", "ks_bound", "threshold", "p_value",
                                                  "psi", "js")],
                     "verdict": _verdict_text(s.get("verdict")), "rules": rules})
    return rows


def _fields(d: dict[str, Any] | None, *names: str) -> dict[str, Any] | None:
    """`d`'s `names` (None where absent: the page shows "–"), or None for no `d`."""
    return {n: d.get(n) for n in names} if d else None


def _overall(ov: dict[str, Any]) -> dict[str, Any]:
    """The whole fleet's drift table, the class-count test, accuracy estimate and findings."""
    classes = _fields(ov.get("classes"), "n", "statistic", "p_value", "verdict")
    if classes:
        classes["cls"] = "drift" if classes["verdict"] == "drift" else "ok"
        classes["verdict"] = _verdict_text(classes["verdict"])
    accuracy = _fields(ov.get("expected_accuracy"), "current", "reference", "difference",
                       "ci_low", "ci_high", "reference_accuracy", "note")
    findings = [_fields(f, "kind", "signal", "message") for f in ov.get("findings") or []]
    return {"rows": _drift_rows(ov), "classes": classes, "expected_accuracy": accuracy,
            "findings": findings}


def _histograms(rec: Any, wins: dict[str, Any], figs: Figures) -> list[dict[str, Any]]:
    """Each signal of the reference: its reference vs production chart."""
    out = []
    for name in sorted(rec.reference.sketches):
        if rec.reference.sketches[name].count == 0:
            continue
        sig = histogram(rec, name, wins["all"].sketches.get(name))
        out.append({"name": name, "chart": figs.add(charts.histogram(sig)),
                    "note": sig.get("note", "")})
    return out


def _timeline(watch: Watch, rec: Any, span_s: float, step_s: float, end: float,
              figs: Figures, live: bool = False) -> dict[str, Any]:
    """Drift (KS / threshold per signal), latency and fallbacks per step of the last span
    (`live`: the page shows the present, so the leader's precomputed timeline may serve)."""
    steps = watch.timeline(rec, span_s, step_s, end=end, ready=live)["steps"]
    unit, per = ("h", 3600.0) if span_s >= 7200 else ("s", 1.0)
    kw: dict[str, Any] = {"xs": [(s["end"] - end) / per for s in steps],
                          "when": [_utc(s["end"]) for s in steps],
                          "x_title": f"{unit} before {_utc(end)}"}
    names = sorted({n for s in steps for n in s["signals"]})
    ratio = {n: [_ratio(s["signals"].get(n)) for s in steps] for n in names}
    lat = {q: [s["runtime"]["latency_ms"][q] for s in steps] for q in ("p50", "p90")}
    fbs = {"fallbacks": [float(sum(f["count"] for f in s["runtime"]["fallbacks"]))
                         for s in steps],
           "calls / 100": [s["runtime"]["calls"] / 100 for s in steps]}
    return {"when": f"the last {_num(span_s / per)} {unit}, per {_num(step_s / per)} {unit}",
            "drift": figs.add(charts.lines(ratio, title="KS / threshold", hline=1.0, **kw)),
            "latency": figs.add(charts.lines(lat, title="latency ms", **kw)),
            "fallbacks": figs.add(charts.lines(fbs, title="per step", **kw))}


def _runtime(rt: dict[str, Any]) -> dict[str, Any]:
    """Calls, latency quantiles, the engines that served and the fallbacks of the window."""
    by = rt.get("latency_ms_by_engine", {})
    engines = [{"engine": k, "calls": v, "p50": (by.get(k) or {}).get("p50"),
                "p90": (by.get(k) or {}).get("p90")} for k, v in rt["engines"].items()]
    fallbacks = [{**f, "reason": f["reason"][:120]} for f in rt["fallbacks"][:FALLBACKS_SHOWN]]
    return {"calls": rt["calls"], "sampled": rt["sampled"], "dropped": rt["dropped"],
            "latency": rt["latency_ms"], "engines": engines, "fallbacks": fallbacks}


def _segments(segments: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per segment (profile): verdict, drifted signals, calls, fallbacks, p90."""
    return [{"profile": k, "cls": "drift" if v["verdict"] == "drift" else "ok",
             "verdict": v["verdict"], "drifted": ", ".join(v.get("drifted") or []) or "–",
             "calls": v["runtime"]["calls"],
             "fallbacks": sum(f["count"] for f in v["runtime"]["fallbacks"]),
             "p90": v["runtime"]["latency_ms"]["p90"]} for k, v in segments.items()]


def _figures_text(figures: list[dict[str, Any]]) -> str:
    """What decided: the figures found worse, else how many were not."""
    worse = [f for f in figures if f.get("outcome") == "worse"]
    if worse:
        return "; ".join(f'{f["figure"]} {_num(f.get("estimate"))}' for f in worse)
    return f"{len(figures)} figures not worse" if figures else "–"


def _decisions(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    t0 = decisions[0]["time"] if decisions else 0.0
    return [{"when": f"+{d['time'] - t0:.0f} s", "action": d["action"],
             "share": f"{d['percent']:g}%", "why": d["why"],
             "figures": _figures_text(d["figures"])} for d in decisions]


def _rollouts(watch: Watch, model: str, figs: Figures) -> list[dict[str, Any]]:
    """Each rollout of the model, newest first: its timeline of decisions and what decided."""
    from . import rollouts

    out = []
    for rid in reversed(rollouts.list_ids(watch.engine, model)[-ROLLOUTS_SHOWN:]):
        st = rollouts.get(watch.engine, rid)
        if st is None:
            continue
        out.append({"release": st.release, "previous": st.previous,
                    "state": st.state.replace("_", " "),
                    "cls": {"rolled_back": "drift", "completed": "ok"}.get(st.state, ""),
                    "percent": f"{st.percent:g}", "decisions": _decisions(st.decisions),
                    "chart": figs.add(charts.rollout(st.decisions))})
    return out


def _series(watch: Watch, model: str) -> dict[str, Any] | None:
    """The series the app stores (the first `SERIES_SHOWN`)."""
    from . import store

    series = store.series_list(watch.engine, model)
    if not series:
        return None
    return {"count": len(series), "rows": series[:SERIES_SHOWN],
            "more": max(0, len(series) - SERIES_SHOWN)}


def _reference(watch: Watch, model: str, release: str | None, window_s: float, end: float,
               baseline_s: float | None) -> tuple[Any, str]:
    """What the window is checked against, and how the page says so: the release's build-time
    reference, or (`baseline_s`, or no registered release) the app's own earlier data."""
    from . import store

    found = store.release(watch.engine, model, release) if release is not None else None
    if found is not None and baseline_s is None:
        return found, "against the release's build-time reference"
    baseline_s = DEFAULT_BASELINE_S if baseline_s is None else baseline_s
    ref_end = end - window_s
    rec = store.baseline_record(watch.engine, model, release, ref_end - baseline_s, ref_end)
    return rec, f"against its own data of the {_num(baseline_s / 3600)} h before"


def _view(watch: Watch, model: str, release: str | None, window_s: float, end: float,
          span_s: float, step_s: float, baseline_s: float | None, figs: Figures,
          live: bool = False) -> dict[str, Any]:
    """Everything the page shows of one model (and release)."""
    rec, against = _reference(watch, model, release, window_s, end, baseline_s)
    wins = watch.windows(rec, end - window_s, end)  # read once: the check and the plots
    res = watch.check(rec, window_s, end=end, windows=wins, ready=live)
    ov = res["overall"]
    return {"model": rec.model, "release": rec.release or "(every release)",
            "window": _num(window_s), "until": _utc(end), "against": against,
            "verdict": res["verdict"], "devices": res["devices"],
            "overall": _overall(ov) if ov else None,
            "histograms": _histograms(rec, wins, figs),
            "timeline": _timeline(watch, rec, span_s, step_s, end, figs, live),
            "runtime": _runtime(ov["runtime"]) if ov else None,
            "segments": _segments(res["segments"]),
            "rollouts": _rollouts(watch, rec.model, figs),
            "series": _series(watch, rec.model)}


def _navigation(watch: Watch) -> dict[str, Any]:
    """The registered releases and the apps without one, each with its link."""
    from . import store

    rels = store.releases(watch.engine)
    registered = {r["model"] for r in rels}
    unregistered = sorted(set(store.models(watch.engine)) - registered)
    return {"registered": rels, "unregistered": unregistered,
            "releases": [{**r, "href": link(model=r["model"], release=r["release"])}
                         for r in rels],
            "apps": [{"model": m, "href": link(model=m, baseline="7d")} for m in unregistered]}


def render(watch: Watch, model: str | None, release: str | None, window_s: float,
           end: float | None = None, span_s: float = 86400.0, step_s: float = 3600.0,
           baseline_s: float | None = None) -> str:
    """The report page of `model` (else the newest registered release, else the first app)
    over the `window_s` until `end` (now), its time series over `span_s` in `step_s` steps."""
    _require()
    nav = _navigation(watch)
    rels, unregistered = nav.pop("registered"), nav.pop("unregistered")
    if model is None and rels:
        model, release = rels[-1]["model"], rels[-1]["release"]
    elif model is None and unregistered:
        model = unregistered[0]
    figs = Figures()
    view = None
    if model is not None:
        live, end = end is None, time.time() if end is None else end
        view = _view(watch, model, release, window_s, end, span_s, step_s, baseline_s, figs,
                     live)
    return _environment().get_template("report.html.j2").render(
        **nav, view=view, charts=figs.specs,
        javascript=charts.javascript() if figs.specs else "")
