"""The gate's result: findings per profile and figure, as Markdown, JUnit XML and JSON."""

from __future__ import annotations

import json
import platform
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from .._exit import ExitCode

# the gate's exit codes (the same on every edgeyard command: see _exit.py)
PASS, FAIL, INCONCLUSIVE, ERROR = ExitCode.OK, ExitCode.FAILED, ExitCode.UNDECIDED, ExitCode.ERROR
VERDICTS = ("pass", "fail", "inconclusive", "warn", "info")


@dataclass
class Finding:
    profile: str
    figure: str  # size, latency_p50, latency_p90, peak_memory, accuracy, status, fallback_ops...
    verdict: str  # pass | fail | inconclusive | warn | info
    message: str
    target: str | None = None
    baseline: float | None = None
    candidate: float | None = None
    unit: str = ""
    ratio: float | None = None
    ci: tuple[float, float] | None = None
    p_value: float | None = None

    @property
    def name(self) -> str:
        return f"{self.figure} [{self.target}]" if self.target else self.figure


@dataclass
class GateReport:
    candidate: str
    baseline: str
    findings: list[Finding] = field(default_factory=list)
    runners: dict[str, str] = field(default_factory=dict)
    rounds: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict, repr=False)  # raw, per profile
    policy: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def verdict(self) -> str:
        verdicts = {f.verdict for f in self.findings}
        if "fail" in verdicts:
            return "fail"
        if "inconclusive" in verdicts:
            return "inconclusive"
        return "pass"

    @property
    def exit_code(self) -> int:
        return int({"pass": PASS, "fail": FAIL, "inconclusive": INCONCLUSIVE}[self.verdict])

    def profiles(self) -> list[str]:
        return list(dict.fromkeys(f.profile for f in self.findings))

    # --- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "baseline": self.baseline,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "created": self.created,
            "policy": self.policy,
            "runners": self.runners,
            "rounds": self.rounds,
            "seconds": self.seconds,
            "findings": [asdict(f) for f in self.findings],
            "samples": self.samples,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    # --- Markdown -----------------------------------------------------------------------------

    def to_markdown(self) -> str:
        icon = {"pass": "✅ pass", "fail": "❌ FAIL", "inconclusive": "⚠️ inconclusive",
                "warn": "⚠️ warn", "info": "ℹ️ info"}
        lines = [
            f"## edgeyard gate: {icon[self.verdict]}",
            "",
            f"Candidate **{self.candidate}** against baseline **{self.baseline}**.",
            "",
        ]
        for profile in self.profiles():
            rounds = self.rounds.get(profile)
            took = self.seconds.get(profile)
            lines.append(f"### {profile}")
            lines.append("")
            meta = [f"runner `{self.runners.get(profile, '?')}`"]
            if rounds:
                meta.append(f"{rounds} interleaved rounds")
            if took is not None:
                meta.append(f"{took:.0f} s of measurement")
            lines.append(", ".join(meta))
            lines.append("")
            lines.append("| figure | target | baseline | candidate | ratio (CI) | verdict |")
            lines.append("|---|---|---:|---:|---:|---|")
            notes = []
            for f in (x for x in self.findings if x.profile == profile):
                ratio = "" if f.ratio is None else f"{f.ratio:.3f}"
                if f.ci:
                    ratio += f" ({f.ci[0]:.3f}-{f.ci[1]:.3f})"
                lines.append(
                    f"| {f.figure} | {f.target or ''} | {_fmt(f.baseline, f.unit)} | "
                    f"{_fmt(f.candidate, f.unit)} | {ratio} | {icon[f.verdict]} |"
                )
                if f.verdict != "pass":
                    notes.append(f"- **{f.figure}** {f.target or ''}: {f.message}")
            lines.append("")
            lines.extend(notes)
            if notes:
                lines.append("")
        return "\n".join(lines)

    # --- JUnit XML ----------------------------------------------------------------------------

    def to_junit(self) -> str:
        """One <testsuite> per profile, one <testcase> per profile x figure: fail -> <failure>,
        inconclusive -> <skipped> (the exit code carries it), warn/info -> <system-out>."""
        root = ET.Element("testsuites", name="edgeyard gate")
        totals: dict[str, int] = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        host = platform.node() or "localhost"
        for profile in self.profiles():
            found = [f for f in self.findings if f.profile == profile]
            counts: dict[str, int] = {
                "tests": len(found),
                "failures": sum(f.verdict == "fail" for f in found),
                "errors": 0,
                "skipped": sum(f.verdict == "inconclusive" for f in found),
            }
            attrs = {"name": profile, "timestamp": self.created[:19], "hostname": host,
                     "time": f"{self.seconds.get(profile, 0.0):.3f}"}
            attrs.update({k: str(v) for k, v in counts.items()})
            suite = ET.SubElement(root, "testsuite", attrs)
            props = ET.SubElement(suite, "properties")
            for k, v in (("candidate", self.candidate), ("baseline", self.baseline),
                         ("runner", self.runners.get(profile, "")),
                         ("rounds", str(self.rounds.get(profile, 0)))):
                ET.SubElement(props, "property", name=k, value=v)
            for f in found:
                case = ET.SubElement(suite, "testcase", name=f.name,
                                     classname=f"edgeyard.gate.{profile}", time="0")
                if f.verdict == "fail":
                    ET.SubElement(case, "failure", message=f.message, type="regression").text = \
                        f.message
                elif f.verdict == "inconclusive":
                    ET.SubElement(case, "skipped", message=f"inconclusive: {f.message}")
                elif f.verdict in ("warn", "info"):
                    ET.SubElement(case, "system-out").text = f"{f.verdict}: {f.message}"
            for k in totals:
                totals[k] += counts[k]
        for key, total in totals.items():
            root.set(key, str(total))
        root.set("time", f"{sum(self.seconds.values()):.3f}")
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return ""
    if unit == "bytes":
        return f"{int(v):,} B"
    if unit == "ms":
        return f"{v:.4f} ms"
    if unit == "MB":
        return f"{v:.1f} MB"
    if unit == "%":
        return f"{100 * v:.2f}%"
    return f"{v:g}"
