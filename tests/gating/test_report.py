"""Report formats: JUnit XML against the CI systems' schema, Markdown, JSON."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edgeyard.gating import Finding, GateReport, write_reports

XSD = Path(__file__).with_name("junit.xsd")


def sample_report() -> GateReport:
    r = GateReport(candidate="digits 1.1", baseline="digits 1.0")
    r.runners = {"linux-x86_64": "local", "pixel-8": "agent://pixel:8765"}
    r.rounds = {"linux-x86_64": 9, "pixel-8": 30}
    r.seconds = {"linux-x86_64": 12.5, "pixel-8": 80.0}
    r.findings = [
        Finding("linux-x86_64", "size", "pass", "ok", "onnx-int8", 100, 101, "bytes", 1.01),
        Finding("linux-x86_64", "latency_p50", "fail", "12% slower <&> \"quoted\"", "onnx-int8",
                0.03, 0.0336, "ms", 1.12, (1.08, 1.16), 0.002),
        Finding("pixel-8", "latency_p90", "inconclusive", "CI too wide", "tflite-int8", 1.0, 1.06,
                "ms", 1.06, (0.97, 1.15), 0.2),
        Finding("pixel-8", "fallback_ops", "warn", "ops changed", "executorch-int8"),
    ]
    return r


def test_junit_validates_against_the_schema_and_counts_right():
    xmlschema = pytest.importorskip("xmlschema")
    text = sample_report().to_junit()
    xmlschema.XMLSchema(str(XSD)).validate(text)
    root = ET.fromstring(text)
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("4", "1", "1")
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"linux-x86_64", "pixel-8"}
    case = suites["linux-x86_64"].find("testcase[@name='latency_p50 [onnx-int8]']")
    assert case.find("failure").get("message") == '12% slower <&> "quoted"'
    assert suites["pixel-8"].find("testcase/skipped").get("message").startswith("inconclusive")


def test_broken_junit_is_rejected_by_the_schema():
    xmlschema = pytest.importorskip("xmlschema")
    bad = '<testsuites><testsuite name="x"><testcase/></testsuite></testsuites>'
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        xmlschema.XMLSchema(str(XSD)).validate(bad)


def test_markdown_and_json(tmp_path, monkeypatch):
    r = sample_report()
    assert r.verdict == "fail" and r.exit_code == 1
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    write_reports(r, tmp_path / "g.xml", tmp_path / "g.json", tmp_path / "g.md")
    md = (tmp_path / "g.md").read_text()
    assert "## edgeyard gate: ❌ FAIL" in md
    assert "| latency_p50 | onnx-int8 | 0.0300 ms | 0.0336 ms | 1.120 (1.080-1.160) | ❌ FAIL |" in md
    assert "### pixel-8" in md and "30 interleaved rounds" in md
    assert summary.read_text().startswith("earlier step\n## edgeyard gate")
    data = json.loads((tmp_path / "g.json").read_text())
    assert data["verdict"] == "fail" and len(data["findings"]) == 4


def test_verdict_precedence():
    r = GateReport("c", "b", findings=[Finding("p", "size", "pass", "")])
    assert (r.verdict, r.exit_code) == ("pass", 0)
    r.findings.append(Finding("p", "latency_p90", "inconclusive", ""))
    assert (r.verdict, r.exit_code) == ("inconclusive", 3)
    r.findings.append(Finding("p", "latency_p50", "fail", ""))
    assert (r.verdict, r.exit_code) == ("fail", 1)
