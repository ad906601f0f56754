"""The command line's contract: one exit code per meaning on every command, `--json` on stdout,
one-line errors, and the extras that keep typer off devices and psycopg off SQLite servers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from test_release import make_release

from edgeyard._exit import ExitCode

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, block=()):
    """`edgeyard ARGS` through the console script's entry point, with the modules in `block`
    made unimportable (as if their extra were not installed)."""
    code = ("import sys\n"
            f"for m in {list(block)!r}: sys.modules[m] = None\n"
            f"sys.argv = ['edgeyard', *{list(map(str, args))!r}]\n"
            "from edgeyard.__main__ import main\nmain()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_exit_codes_are_distinct_and_only_click_uses_2():
    assert len({int(c) for c in ExitCode}) == len(ExitCode)
    assert ExitCode.USAGE == 2
    assert {int(c) for c in ExitCode} == set(range(6))
    for src in (ROOT / "src" / "edgeyard").rglob("*.py"):
        text = src.read_text()
        assert not re.search(r"Exit\(2\)|exit\(2\)", text), f"{src}: exit 2 is click's (usage)"


def test_the_exit_codes_are_documented():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Exit codes"):]
    for c in ExitCode:
        assert re.search(rf"^\| {int(c)} \|", table, re.M), f"README: no row for {c.name}"
    gate_doc = (ROOT / "docs" / "gate.md").read_text()
    for code in (0, 1, 2, 3, 4, 5):
        assert re.search(rf"^\| {code} \|", gate_doc, re.M), code


def test_without_typer_the_script_names_the_cli_extra():
    r = cli("--help", block=["typer"])
    assert r.returncode == ExitCode.MISSING_EXTRA, r.stderr
    assert "pip install 'edgeyard[cli]'" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert cli("--help").returncode == 0


def test_extras():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [d.split(">")[0] for d in meta["dependencies"]] == ["numpy"]
    extras = meta["optional-dependencies"]

    def names(extra):
        return {re.split(r"[\[<>=~! ]", d)[0].lower() for d in extras[extra]}

    assert {"typer", "rich"} <= names("cli")
    assert {"numpy", "onnxruntime", "cryptography", "opentelemetry-proto"} <= names("runtime")
    assert "psycopg" not in names("server") and names("postgres") == {"psycopg"}
    listed = re.fullmatch(r"edgeyard\[(.*)\]", extras["all"][0]).group(1).split(",")
    assert set(listed) == set(extras) - {"all"}, "`all` must hold every extra"
    assert meta["scripts"]["edgeyard"] == "edgeyard.__main__:main"
    from edgeyard._deps import EXTRA_OF

    assert set(EXTRA_OF.values()) <= set(extras), set(EXTRA_OF.values()) - set(extras)
    assert EXTRA_OF["psycopg"] == "postgres" and EXTRA_OF["typer"] == "cli"


def test_a_postgres_url_without_psycopg_names_the_postgres_extra(monkeypatch):
    pytest.importorskip("sqlalchemy")
    from edgeyard.errors import MissingExtra
    from edgeyard.server import db

    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingExtra) as exc:
        db.make_engine("postgresql://edgeyard@localhost/edgeyard")
    assert exc.value.extra == "postgres" and "pip install 'edgeyard[postgres]'" in str(exc.value)
    db.make_engine("sqlite://").dispose()  # SQLite needs no driver beyond the standard library


def test_usage_errors_exit_2():
    # the gate's report file is --json-out now: the old `--json FILE` is a usage error
    r = cli("gate", "a", "--baseline", "b", "--json", "g.json")
    assert r.returncode == ExitCode.USAGE and "g.json" in r.stderr
    r = cli("gate", "a", "--baseline", "b", "--targets", "some")
    assert r.returncode == ExitCode.USAGE and "'primary' or 'all'" in r.stderr
    r = cli("gate", "a", "--baseline", "b", "--min-rounds", "1")
    assert r.returncode == ExitCode.USAGE
    r = cli("drift", "--model", "m")
    assert r.returncode == ExitCode.USAGE and "--baseline-window" in r.stderr


def test_an_unreadable_token_file_is_one_line(tmp_path):
    for path in (tmp_path / "missing.txt", tmp_path):
        r = cli("agent", "--port", "0", "--token-file", path)
        assert r.returncode == ExitCode.ERROR, r.stderr
        assert r.stderr.startswith("error: cannot read --token-file") and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").write_text("\n")
    r = cli("agent", "--port", "0", "--token-file", tmp_path / "empty")
    assert r.returncode == ExitCode.ERROR and "is empty" in r.stderr


def test_inspect_tells_a_mismatch_from_a_missing_extra(tmp_path):
    pytest.importorskip("jsonschema")
    root = make_release(tmp_path)
    r = cli("inspect", root, "--json")
    assert r.returncode == ExitCode.OK, r.stderr
    out = json.loads(r.stdout)
    assert out["problems"] == [] and out["exit_code"] == 0 and out["manifest"]["model"]["name"] == "m"
    # the schema cannot be checked without its extra: 5, not 1
    r = cli("inspect", root, block=["jsonschema"])
    assert r.returncode == ExitCode.MISSING_EXTRA, r.stderr
    assert "pip install 'edgeyard[schema]'" in r.stderr and "Traceback" not in r.stderr
    # an unreadable key file: 4, one line
    r = cli("inspect", root, "--public-key", tmp_path / "nope.pem")
    assert r.returncode == ExitCode.ERROR and "cannot read --public-key" in r.stderr
    assert "Traceback" not in r.stderr
    # a sha256 mismatch is 1, with or without the schema extra
    (root / "artifacts" / "m-onnx-fp32.onnx").write_bytes(b"evil")
    r = cli("inspect", root)
    assert r.returncode == ExitCode.FAILED and "does not match its sha256" in r.stderr
    r = cli("inspect", root, "--json", block=["jsonschema"])
    assert r.returncode == ExitCode.FAILED
    out = json.loads(r.stdout)
    assert out["exit_code"] == 1 and out["problems"] and out["unchecked"]
    r = cli("inspect", tmp_path / "nowhere")
    assert r.returncode == ExitCode.ERROR and "not a release" in r.stderr


def test_profiles_json():
    r = cli("profiles", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pixel-8"]["targets"]
    r = cli("profiles", "pixel-8", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["name"] == "pixel-8"
    r = cli("envs", "--json")
    assert r.returncode == 0 and {e["name"] for e in json.loads(r.stdout)} >= {"litert-torch"}


def test_verdicts_map_to_the_shared_codes():
    pytest.importorskip("typer")
    from edgeyard.gating.report import GateReport
    from edgeyard.rollout.plan import STATES
    from edgeyard.server.cli import DRIFT_EXIT
    from edgeyard.server.rollout_cli import EXIT

    assert set(EXIT) == set(STATES)
    assert (EXIT["completed"], EXIT["rolled_back"], EXIT["running"], EXIT["paused"]) == (
        ExitCode.OK, ExitCode.FAILED, ExitCode.UNDECIDED, ExitCode.UNDECIDED)
    assert DRIFT_EXIT == {"ok": ExitCode.OK, "drift": ExitCode.FAILED}  # else UNDECIDED
    assert GateReport("c", "b").exit_code == ExitCode.OK
