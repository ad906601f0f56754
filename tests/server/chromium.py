"""Headless chromium (Debian's) for the report tests: a page's DOM after its scripts ran, what
it wrote on the console, and which of its charts vega-embed drew."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_console(*args: str, timeout: int = 120) -> tuple[str, list[str]]:
    """chromium's stdout, and what the page wrote on the console (errors, uncaught exceptions,
    Vega's warnings: chromium logs each as a CONSOLE line on stderr)."""
    assert CHROMIUM is not None
    # a profile of its own: two chromiums on one profile folder (two test runs) fail to start
    with tempfile.TemporaryDirectory(prefix="edgeyard-chromium-") as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", "--no-first-run", f"--user-data-dir={profile}",
               "--enable-logging=stderr", "--v=0", *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    return out.stdout, [ln for ln in out.stderr.splitlines() if ":CONSOLE" in ln]


def drawn_charts(dom: str) -> tuple[list[str], list[str]]:
    """The chart elements of a page after its scripts ran: (ids of all, ids of those that
    vega-embed drew an SVG in)."""
    ids = re.findall(r'<div class="chart[^"]*" id="(chart-\d+)"', dom)
    drawn = re.findall(r'<div class="chart vega-embed[^"]*" id="(chart-\d+)"><div '
                       r'class="chart-wrapper"[^>]*><svg[^>]*class="marks"', dom)
    return ids, drawn


def chart_errors(dom: str) -> list[str]:
    """What each chart that failed to draw says in its place."""
    return re.findall(r'<div class="[^"]*\bchart-error\b[^"]*"[^>]*>([^<]*)', dom)
