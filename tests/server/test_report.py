"""The HTML report on demo-like data (`report_data`: no model build): links percent-encoded and
HTML-escaped for names such as `a b/c?d&e<x>`, one self-contained file (the Vega JavaScript
inlined once, no script from the network), every chart a valid Vega-Lite spec that headless
chromium draws from a file with the network cut, and the missing extra named."""

from __future__ import annotations

import json
import re
import sys
import urllib.parse

import pytest

from . import report_data
from .chromium import CHROMIUM
from .report_data import MODEL, OTHER_APP

pytest.importorskip("altair", reason="the server extra: pip install 'edgeyard[server]'")
pytest.importorskip("vl_convert", reason="the server extra: pip install 'edgeyard[server]'")
pytest.importorskip("jinja2", reason="the server extra: pip install 'edgeyard[server]'")

CHARTS = re.compile(r'<script type="application/json" id="edgeyard-charts">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A database with the whole scene, and its page (rendered once: the first render bundles
    the JavaScript)."""
    from edgeyard.server import db, report
    from edgeyard.server.watch import Watch

    path = tmp_path_factory.mktemp("report") / "edgeyard.db"
    engine = db.make_engine(f"sqlite:///{path}")
    db.migrate(engine)
    end = report_data.populate(engine)
    page = report.render(Watch(engine), MODEL, "1.0", 3600.0, end)
    yield engine, end, page
    engine.dispose()


def html_part(page: str) -> str:
    """The page without its scripts (the markup a reader sees)."""
    return re.sub(r"<script\b.*?</script>", "", page, flags=re.S)


def test_links_are_percent_encoded_and_html_escaped(scene):
    from edgeyard.server.report import link

    url = link(model=MODEL, release="1/2 #3")
    assert url == "/?model=a%20b%2Fc%3Fd%26e%3Cx%3E&release=1%2F2%20%233"
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(url).query) == {
        "model": [MODEL], "release": ["1/2 #3"]}
    _, _, page = scene
    hrefs = re.findall(r'<a href="([^"]*)"', html_part(page))
    assert hrefs == ["/?model=a%20b%2Fc%3Fd%26e%3Cx%3E&amp;release=1.0",
                     "/?model=a%20b%2Fc%3Fd%26e%3Cx%3E&amp;release=1.1",
                     "/?model=shop%20%26%20%3Cco%3E%2Fx%3Fy&amp;baseline=7d"]
    markup = html_part(page)
    assert "a b/c?d&amp;e&lt;x&gt;" in markup and "shop &amp; &lt;co&gt;/x?y" in markup
    assert "<x>" not in markup and "<co>" not in markup  # nothing of a name as markup
    assert "&lt;b&gt;bad&lt;/b&gt; output &amp; more" in markup and "<b>" not in markup
    # names inside the charts' JSON cannot end its script element either
    assert "</" not in CHARTS.search(page).group(1) and "<" not in CHARTS.search(page).group(1)
    assert OTHER_APP not in page and MODEL not in markup


def test_one_self_contained_file(scene):
    _, _, page = scene
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)  # no script from anywhere
    assert not re.search(r"<link\b|@import|<iframe\b", page, re.I)
    assert page.count("window.vegaEmbed=") == 1  # the bundle, once
    assert len(re.findall(r"<script\b", page)) == 3  # the charts' JSON, the bundle, the embed


def test_every_section_and_chart(scene):
    _, _, page = scene
    for marker in ('id="verdict"', "verdict: drift", 'id="drift-table"', 'id="expected-accuracy"',
                   'id="findings"', "<h2>Reference vs production</h2>", 'id="engines"',
                   'id="fallbacks"', 'id="segments"', "<h2>Rollouts</h2>", 'class="rollout"',
                   "rolled back", "p90 latency &lt;onnx&gt; 1.4", 'id="series"'):
        assert marker in page, marker
    specs = json.loads(CHARTS.search(page).group(1))
    ids = re.findall(r'<div class="chart" id="([^"]+)"></div>', page)
    # 4 histograms, drift / latency / fallbacks over time, the rollout's timeline
    assert sorted(ids) == sorted(specs) and len(specs) == 8
    for spec in specs.values():
        assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
        assert spec["datasets"]["rows"]
    hist = [s for s in specs.values() if s.get("mark", {}).get("type") == "bar"]
    assert len(hist) == 4 and all(s["encoding"]["tooltip"] for s in hist)
    series = [s for s in specs.values()
              if {p.get("bind") for p in s.get("params", [])} == {"scales", "legend"}]
    assert len(series) == 3  # the time series zoom and pan, and pick series on the legend
    drift = next(s for s in series if s["layer"][0]["encoding"]["y"]["title"] ==
                 "KS / threshold")
    gap = [r for r in drift["datasets"]["rows"] if r["value"] is None]
    assert gap and {r["series"] for r in gap} == {"input.mean", "input.std", "output.confidence"}


def test_a_page_without_any_release_or_app(tmp_path):
    from edgeyard.server import db, report
    from edgeyard.server.watch import Watch

    engine = db.make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    db.migrate(engine)
    page = report.render(Watch(engine), None, None, 3600.0)
    engine.dispose()
    assert "No registered release selected." in page and "none yet" in page
    assert "<script" not in page  # no chart, no JavaScript


@pytest.mark.parametrize("module", ["altair", "vl_convert", "jinja2"])
def test_a_missing_module_names_the_server_extra(scene, monkeypatch, module):
    from edgeyard.errors import MissingExtra
    from edgeyard.server import report
    from edgeyard.server.watch import Watch

    engine, end, _ = scene
    monkeypatch.setitem(sys.modules, module, None)  # what an import of a missing one does
    with pytest.raises(MissingExtra, match=r"pip install 'edgeyard\[server\]'") as exc:
        report.render(Watch(engine), MODEL, "1.0", 3600.0, end)
    assert exc.value.extra == "server" and exc.value.module == module


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed "
                    "(apt install chromium; .ci/run installs it)")
def test_chromium_draws_every_chart_from_the_file_offline(scene, tmp_path):
    from .chromium import chart_errors, chromium_console, drawn_charts

    _, _, page = scene
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    # every host name fails to resolve: the page must need nothing from the network
    dom, console = chromium_console("--host-resolver-rules=MAP * ~NOTFOUND",
                                    "--virtual-time-budget=10000", "--dump-dom",
                                    path.as_uri())
    assert not console, console
    ids, drawn = drawn_charts(dom)
    assert len(ids) == 8 and drawn == ids, chart_errors(dom)
    assert dom.count('aria-roledescription="bar"') > 100
    assert dom.count('aria-roledescription="line mark"') >= 6  # a path per series
