"""Every shell command in README.md runs as written.

The ```sh blocks are joined, in order, into one bash script (`set -euo pipefail`) that runs in a
scratch directory holding links to the checkout's `examples/` and `Makefile` inputs, with this
venv's `python` and `edgeyard` first on PATH. `make test` is the one line not run: it is what CI
runs, this test included (running it here would recurse)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
NOT_RUN = {"make test": "this test is part of `make test`: running it here would recurse"}


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [ln for ln in lines if ln.strip()]


def test_the_readme_has_runnable_blocks():
    cmds = readme_commands()
    assert any(c.startswith("make demo") for c in cmds)
    assert any(c.startswith("edgeyard drift") for c in cmds)


def test_every_readme_command_runs(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("fastapi")
    script = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    for cmd in readme_commands():
        key = next((k for k in NOT_RUN if cmd.split("#")[0].strip() == k), None)
        script.append(f"echo '# skipped: {key}: {NOT_RUN[key]}'" if key else
                      f"echo '$ {cmd}'\n{cmd}")
    work = tmp_path / "checkout"
    work.mkdir()
    for name in ("examples", "Makefile", "pyproject.toml", "src", "device_profiles", "README.md"):
        (work / name).symlink_to(ROOT / name)
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    # this venv is installed already: make must not reinstall it from the scratch directory
    # (pip would point its scripts at the scratch path, which is deleted after the test)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "OUT": str(tmp_path / "demo-out"), "INSTALL_INPUTS": ""}
    out = subprocess.run(["bash", "-c", "\n".join(script)], cwd=work, env=env,
                         capture_output=True, text=True, timeout=1500)
    log = out.stdout[-6000:] + "\n--- stderr ---\n" + out.stderr[-4000:]
    assert out.returncode == 0, log
    assert "drift exit code 3" in out.stdout or "OK" in out.stdout, log
    assert (work / "build" / "digits-1.0" / "release.json").exists()
    assert (work / "gate.xml").exists() and (work / "keys" / "release.pub.pem").exists()
    assert "HTML report:" in out.stdout  # the demo ran to its end
