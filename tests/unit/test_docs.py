"""The documentation pages stay true: the manifest page is regenerated from the schema, every
relative link resolves, the profile page covers every key and its example loads, and the
benchmark aggregator rebuilds RESULTS.md without running anything."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+).*?\1", re.S)
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def test_manifest_page_matches_the_schema(tmp_path):
    out = tmp_path / "manifest.md"
    subprocess.run([sys.executable, str(DOCS / "gen_manifest.py"), "--out", str(out)],
                   check=True, capture_output=True, text=True)
    committed = (DOCS / "manifest.md").read_text()
    assert out.read_text() == committed, (
        "docs/manifest.md does not match src/edgeyard/schema/release.schema.json: "
        "run `python docs/gen_manifest.py` and commit the result"
    )


def relative_links(page: Path) -> list[str]:
    """Link targets of a Markdown page, outside code blocks and code spans, that are neither
    URLs nor anchors within the page."""
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text()))
    out = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue
        out.append(target)
    return out


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_relative_links_point_to_existing_files(page):
    broken = []
    for target in relative_links(page):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path and not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_the_link_checker_sees_links():
    assert len(relative_links(DOCS / "architecture.md")) > 10
    assert relative_links(DOCS / "manifest.md") == ["../src/edgeyard/schema/release.schema.json"]


def test_profile_page_lists_every_key_and_its_example_loads(tmp_path):
    from edgeyard import profiles

    page = (DOCS / "device-profiles.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", page, re.M))
    for table in (profiles._TOP, profiles._HARDWARE, profiles._BUDGETS, profiles._TARGET):
        assert set(table) <= documented, f"undocumented profile keys: {set(table) - documented}"
    for name in sorted(f.stem for f in profiles.builtin_profile_dir().glob("*.toml")):
        assert f"[`{name}`](../device_profiles/{name}.toml)" in page, f"{name} is not listed"

    example = re.search(r"```toml\n(.*?)```", page, re.S)
    assert example is not None
    (tmp_path / "my-board.toml").write_text(example.group(1))
    loaded = profiles.load_profile_file(tmp_path / "my-board.toml")
    assert [t.describe() for t in loaded.targets] == ["tflite/int8", "onnx/int8", "executorch/fp32"]
    documented_example_keys = set(re.findall(r"^([a-z_0-9]+) = ", example.group(1), re.M))
    every_key = set(profiles._TOP) | set(profiles._HARDWARE) | set(profiles._BUDGETS) | set(profiles._TARGET)
    assert every_key - {"hardware", "budgets", "targets"} <= documented_example_keys


def test_run_all_rebuilds_results_without_running(tmp_path):
    out = tmp_path / "RESULTS.md"
    bench = ROOT / "benchmarks"
    subprocess.run([sys.executable, str(bench / "run_all.py"), "--no-run", "--out", str(out),
                    "--python", sys.executable], check=True, capture_output=True, text=True,
                   timeout=120)
    text = out.read_text()
    names = [p.stem for p in sorted(bench.glob("*.py")) if p.name != "run_all.py"]
    assert names, "no benchmark scripts found"
    for name in names:
        assert f"## {name}" in text, f"{name} is missing from RESULTS.md"
    assert "| CPUs (os.cpu_count) |" in text and "| numpy |" in text
    assert "run_all" not in {line.removeprefix("## ") for line in text.splitlines()}


def test_run_all_rejects_an_unknown_benchmark(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--only", "nope",
                           "--out", str(tmp_path / "R.md")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no benchmark named nope" in proc.stderr and "gate_calibration" in proc.stderr
    assert not (tmp_path / "R.md").exists()
