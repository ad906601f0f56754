"""Each exit code of `edgeyard gate`, produced for real: real releases, real measurements."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def gate(*args, env=None):
    return subprocess.run([sys.executable, "-m", "edgeyard.cli", "gate", *map(str, args)],
                          capture_output=True, text=True, env=env)


def test_exit_0_same_release_passes(gate_releases, tmp_path):
    # generous floors: an A/A comparison must pass, not wait on this machine's p90 noise
    r = gate(gate_releases["base"], "--baseline", gate_releases["base"], "--runner", "local",
             "--latency-floor", "0.3", "--latency-p90-floor", "0.5",
             "--junit", tmp_path / "g.xml", "--json-out", tmp_path / "g.json",
             "--markdown", tmp_path / "g.md")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((tmp_path / "g.json").read_text())
    assert report["verdict"] == "pass"
    figures = {f["figure"] for f in report["findings"]}
    assert {"size", "accuracy", "latency_p50", "latency_p90", "peak_memory",
            "budget_latency_p90", "budget_peak_memory"} <= figures
    lat = report["samples"]["host"]["onnx-fp32"]["latency"]
    assert len(lat["baseline"]) == len(lat["candidate"]) >= 6
    assert all(len(m["samples_ns"]) >= 50 for m in lat["candidate"])
    assert "## edgeyard gate: ✅ pass" in (tmp_path / "g.md").read_text()


def test_exit_1_real_regression(gate_releases, tmp_path):
    summary = tmp_path / "summary.md"
    env = {**__import__("os").environ, "GITHUB_STEP_SUMMARY": str(summary)}
    r = gate(gate_releases["wide"], "--baseline", gate_releases["base"], "--runner", "local",
             "--json-out", tmp_path / "g.json", env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    found = {f["figure"]: f for f in json.loads((tmp_path / "g.json").read_text())["findings"]}
    assert found["size"]["verdict"] == "fail" and found["size"]["ratio"] > 2
    assert found["latency_p50"]["verdict"] == "fail"
    assert found["latency_p50"]["ci"][0] > 1.5
    assert "❌ FAIL" in summary.read_text()


def test_exit_3_inconclusive_at_the_round_cap(gate_releases, tmp_path):
    # two rounds cannot give significance, and a 2-3x slowdown is no pass either
    r = gate(gate_releases["wide"], "--baseline", gate_releases["base"], "--runner", "local",
             "--min-rounds", "2", "--max-rounds", "2", "--size-tolerance", "10",
             "--json-out", tmp_path / "g.json", "--json")
    assert r.returncode == 3, r.stdout + r.stderr
    printed = json.loads(r.stdout)  # --json: the report, not the Markdown, on stdout
    assert (printed["verdict"], printed["exit_code"]) == ("inconclusive", 3)
    found = {f["figure"]: f for f in json.loads((tmp_path / "g.json").read_text())["findings"]}
    assert found["latency_p50"]["verdict"] == "inconclusive"
    assert "after 2 rounds (the cap)" in found["latency_p50"]["message"]


def test_exit_4_gate_cannot_run(gate_releases, tmp_path):
    r = gate(gate_releases["base"], "--baseline", tmp_path / "nowhere", "--runner", "local")
    assert r.returncode == 4 and "baseline" in r.stderr and "not a release" in r.stderr
    r = gate(gate_releases["base"], "--baseline", gate_releases["base"],
             "--runner", "agent://127.0.0.1:9", "--runner-token", "t")
    assert r.returncode == 4 and "unreachable" in r.stderr
    r = gate(gate_releases["base"], "--baseline", gate_releases["base"], "--profile", "pixel-8")
    assert r.returncode == 4 and "has no profile 'pixel-8'" in r.stderr
    r = gate(gate_releases["base"], "--baseline", gate_releases["base"], "--runner", "ssh://x")
    assert r.returncode == 4 and "unsupported runner URL" in r.stderr


def test_the_profiles_budget_is_checked(gate_releases, tmp_path):
    import shutil

    tight = tmp_path / "tight"
    shutil.copytree(gate_releases["base"], tight)
    manifest = json.loads((tight / "release.json").read_text())
    manifest["profiles"]["host"]["budgets"]["max_latency_p90_ms"] = 0.0001
    (tight / "release.json").write_text(json.dumps(manifest))
    r = gate(tight, "--baseline", gate_releases["base"], "--runner", "local",
             "--latency-floor", "0.3", "--latency-p90-floor", "0.5", "--json-out", tmp_path / "g.json")
    assert r.returncode == 1
    found = {f["figure"]: f for f in json.loads((tmp_path / "g.json").read_text())["findings"]}
    assert found["budget_latency_p90"]["verdict"] == "fail"
    assert "vs budget 0.0001 ms" in found["budget_latency_p90"]["message"]


def test_failed_target_and_changed_fallback_ops_are_reported(gate_releases, tmp_path):
    import shutil

    import edgeyard
    from edgeyard.gating import GatePolicy

    cand = tmp_path / "cand"
    shutil.copytree(gate_releases["base"], cand)
    manifest = json.loads((cand / "release.json").read_text())
    manifest["artifacts"]["onnx-fp32"]["details"]["fallback_ops"] = ["aten.gelu.default"]
    # a second target that the baseline lacks and the candidate failed to build
    manifest["artifacts"]["onnx-int8"] = {**manifest["artifacts"]["onnx-fp32"], "status": "failed",
                                          "precision": "int8", "path": None, "sha256": None}
    manifest["profiles"]["host"]["chain"].append(
        {"target": "onnx-int8", "backend": "onnx", "precision": "int8", "status": "failed",
         "reasons": ["conversion failed: RuntimeError: boom"]})
    (cand / "release.json").write_text(json.dumps(manifest))
    report = edgeyard.gate(cand, gate_releases["base"], profile="host", runner="local",
                           policy=GatePolicy(min_rounds=2, max_rounds=2, latency_floor=5.0,
                                             latency_p90_floor=5.0, memory_floor=5.0), log=None)
    found = {(f.figure, f.target): f for f in report.findings}
    status = found[("status", "onnx-int8")]
    assert status.verdict == "fail" and "FAILED at build: conversion failed" in status.message
    ops = found[("fallback_ops", "onnx-fp32")]
    assert ops.verdict == "warn" and "aten.gelu.default" in ops.message
    assert report.exit_code == 1
