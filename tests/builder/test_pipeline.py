"""The build pipeline on a real ONNX model with real crashing, hanging and raising converters."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import edgeyard
from edgeyard.backends import register_backend, unregister_backend
from edgeyard.errors import ModelError, ProfileNotFound
from fault_backends import (
    AbortingBackend,
    HangingBackend,
    MissingToolchainBackend,
    NanBackend,
    RaisingBackend,
)

FAULTS = [AbortingBackend(), HangingBackend(), RaisingBackend(), MissingToolchainBackend(),
          NanBackend()]

PROFILE = """
name = "faulty"
description = "one good target among broken ones"
[hardware]
arch = "x86_64"
os = "linux"
[[targets]]
backend = "onnx"
precision = "fp32"
{extra}
"""


def target(backend, precision="fp32", options=""):
    text = f'[[targets]]\nbackend = "{backend}"\nprecision = "{precision}"\n'
    return text + (f"options = {{ {options} }}\n" if options else "")


@pytest.fixture
def fault_backends():
    for b in FAULTS:
        register_backend(b, replace=True)
    yield
    for b in FAULTS:
        unregister_backend(b.name)


def profile_dir(tmp_path, extra, name="faulty"):
    d = tmp_path / "profiles"
    d.mkdir(exist_ok=True)
    (d / f"{name}.toml").write_text(PROFILE.replace("faulty", name).format(extra=extra))
    return d


def test_each_broken_target_fails_alone(tmp_path, tiny_model, tiny_data, fault_backends):
    extra = "".join(target(b.name) for b in FAULTS)
    extra += target("executorch") + target("coreml", "fp16")
    release = edgeyard.build(
        tiny_model, profiles=["faulty"], evaluation=tiny_data, out=tmp_path / "rel",
        profile_dirs=[profile_dir(tmp_path, extra)], timeout_s=20, log=None,
    )
    chain = {e["backend"]: e for e in release.chain("faulty")}
    assert chain["onnx"]["status"] == "ok"
    assert chain["onnx"]["parity"]["max_abs_error"] < 1e-5
    assert chain["test-abort"]["status"] == "failed"
    assert "crashed with SIGABRT" in chain["test-abort"]["reason"]
    assert "about to abort" in chain["test-abort"]["log_tail"]
    assert chain["test-hang"]["reason"] == "timed out after 20 s (killed)"
    assert "aten::frobnicate" in chain["test-raise"]["reason"]
    assert chain["test-missing"]["status"] == "skipped"
    assert "edgeyard_no_such_toolchain not installed" in chain["test-missing"]["reason"]
    assert chain["test-nan"]["status"] == "failed"
    assert chain["test-nan"]["reason"] == "outputs contain NaN or Inf"
    assert chain["executorch"]["status"] == "skipped"
    assert "converts from torch models; this model is onnx" in chain["executorch"]["reason"]
    assert chain["coreml"]["status"] == "skipped"
    assert "coreml converts from torch models; this model is onnx" in chain["coreml"]["reason"]
    assert not release.ok
    assert {p for p, _ in release.failed} == {"faulty"}
    # the good artifact is intact and hashed; the failed ones left no files behind
    assert release.verify_files() == []
    files = sorted(p.name for p in (release.path / "artifacts").iterdir())
    assert files == ["tiny-onnx-fp32.onnx", "tiny-test-nan-fp32.onnx"]
    summary = release.summary()
    assert "FAILED: converter process crashed with SIGABRT" in summary
    assert "SKIPPED" in summary


def test_int8_without_calibration(tmp_path, tiny_model, tiny_data):
    """No calibration data: int8 is made by the recipe that needs none (dynamic), the static one
    is recorded as left out; a target that pins static fails alone, saying why."""
    release = edgeyard.build(
        tiny_model, profiles=["q"], evaluation=tiny_data, out=tmp_path / "rel",
        profile_dirs=[profile_dir(tmp_path, target("onnx", "int8")
                                  + target("onnx", "int8", 'recipe = "static"'), "q")], log=None,
    )
    plain, dynamic, pinned = release.chain("q")
    assert plain["status"] == "ok"
    assert dynamic["status"] == "ok" and dynamic["recipe"]["name"] == "dynamic"
    assert dynamic["recipes"][0]["recipe"] == "static"
    assert "needs calibration data" in dynamic["recipes"][0]["problems"][0]
    assert pinned["status"] == "failed"
    assert "onnx/int8 needs calibration data" in pinned["reason"]


def test_a_remote_device_builds_recipes_in_the_rule_s_order_until_one_meets_the_budgets(
        tmp_path, tiny_model, tiny_data):
    """For a device the build cannot time on, the rule picks (an MLP prefers dynamic): dynamic
    is built first, meets the budgets and ships, and static is not built, said so; with
    recipe_search = "all" both are built and the same one ships."""
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "phone.toml").write_text(
        'name = "phone"\nrunner = "agent://phone.local:8765"\n'
        '[hardware]\narch = "aarch64"\nos = "android"\n'
        + target("onnx", "int8") + target("onnx", "int8", 'recipe_search = "all"'))
    x = tiny_data[0]
    release = edgeyard.build(tiny_model, profiles=["phone"], calibration=x[:32],
                             evaluation=(x[32:], None), out=tmp_path / "rel",
                             profile_dirs=[tmp_path / "p"], log=None)
    first, every = release.chain("phone")
    assert first["status"] == every["status"] == "ok"
    assert first["recipe"]["name"] == every["recipe"]["name"] == "dynamic"
    assert "first by the rule for a remote device" in first["recipe"]["chosen_by"]
    assert "the others were not built" in first["recipe"]["chosen_by"]
    rows = {r["recipe"]: r for r in first["recipes"]}
    assert rows["dynamic"]["shipped"] and rows["dynamic"]["status"] == "ok"
    assert rows["static"]["status"] == "skipped" and not rows["static"]["shipped"]
    assert rows["static"]["problems"] == ["not built: dynamic, first by the rule for a remote "
                                          "device, met the budgets"]
    assert [(r["recipe"], r["status"]) for r in every["recipes"]] == [("static", "ok"),
                                                                    ("dynamic", "ok")]
    assert "not built" not in every["recipe"]["chosen_by"]
    logs = sorted(p.name for p in (release.path / "logs").iterdir())
    assert sum("~static" in n for n in logs) == 1 and sum("~dynamic" in n for n in logs) == 2


def test_unknown_profile_stops_before_any_work(tmp_path, tiny_model, tiny_data):
    with pytest.raises(ProfileNotFound) as exc:
        edgeyard.build(tiny_model, profiles=["pixel-9"], evaluation=tiny_data,
                       out=tmp_path / "rel", log=None)
    assert "pixel-8" in str(exc.value) and "linux-x86_64" in str(exc.value)
    assert not (tmp_path / "rel").exists()


@pytest.mark.parametrize("content", [b"\x00garbage\xff" * 10, "truncate"])
def test_corrupt_onnx_is_a_clear_model_error(tmp_path, tiny_model, tiny_data, content):
    bad = tmp_path / "bad.onnx"
    if content == "truncate":
        data = tiny_model.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    else:
        bad.write_bytes(content)
    with pytest.raises(ModelError) as exc:
        edgeyard.build(bad, profiles=["linux-x86_64"], evaluation=tiny_data,
                       out=tmp_path / "rel", log=None)
    assert "is not a valid ONNX model" in str(exc.value)
    assert not (tmp_path / "rel").exists()


def test_a_rebuild_replaces_the_release_atomically(tmp_path, tiny_model, tiny_data):
    kw = dict(profiles=["p"], evaluation=tiny_data, out=tmp_path / "rel", log=None,
              profile_dirs=[profile_dir(tmp_path, "", "p")])
    first = edgeyard.build(tiny_model, version="1", **kw)
    second = edgeyard.build(tiny_model, version="2", **kw)
    assert first.path == second.path
    assert edgeyard.load_release(tmp_path / "rel").version == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profiles", "rel", "tiny.onnx"]


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgeyard.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def write_config(tmp_path, model, profiles, calibration=True):
    x = np.random.default_rng(2).normal(size=(32, 16)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", x=x)
    np.savez(tmp_path / "calib.npz", x=x)
    cfg = tmp_path / "build.toml"
    cfg.write_text(
        f'[model]\nname = "tiny"\nversion = "1.0"\nsource = "{model.name}"\n\n'
        f'[data]\nevaluation = "eval.npz"\n'
        + ('calibration = "calib.npz"\n' if calibration else "")
        + f'\n[build]\nprofiles = {json.dumps(profiles)}\nout = "out"\n'
        f'profile_dirs = ["profiles"]\n'
    )
    return cfg


def test_cli_build_exit_codes(tmp_path, tiny_model):
    # skipped targets (wrong source format) do not fail the build: exit 0
    profile_dir(tmp_path, target("coreml", "fp16") + target("executorch"), "skips")
    r = cli("build", str(write_config(tmp_path, tiny_model, ["skips"])))
    assert r.returncode == 0, r.stderr
    assert "SKIPPED" in r.stdout and "converts from torch models" in r.stdout
    # a failed target: exit 1
    profile_dir(tmp_path, target("onnx", "int8", 'recipe = "static"'), "int8")
    r = cli("build", str(write_config(tmp_path, tiny_model, ["int8"], calibration=False)))
    assert r.returncode == 1
    assert "FAILED: onnx/int8 needs calibration data" in r.stdout
    # --json: the result and the manifest, and nothing else, on stdout
    r = cli("build", str(write_config(tmp_path, tiny_model, ["int8"], calibration=False)), "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["ok"] is False and out["exit_code"] == 1
    assert [f["profile"] for f in out["failed"]] == ["int8"]
    assert "needs calibration data" in " ".join(out["failed"][0]["reasons"])
    assert "failed" in {e["status"] for e in out["manifest"]["profiles"]["int8"]["chain"]}
    # bad input stops the command: exit 4 with one clear line, no traceback
    (tmp_path / "tiny.onnx").write_bytes(b"junk")
    r = cli("build", str(write_config(tmp_path, tiny_model, ["skips"])))
    assert r.returncode == 4
    assert "is not a valid ONNX model" in r.stderr and "Traceback" not in r.stderr
    r = cli("build", str(write_config(tmp_path, tiny_model, ["nope"])))
    assert r.returncode == 4 and "no device profile named 'nope'" in r.stderr


BUILD_THAT_HANGS = """
import signal, sys
sys.path[:0] = {paths!r}
# Ctrl-C as in a terminal, whoever started the tests (a background job inherits SIGINT ignored)
signal.signal(signal.SIGINT, signal.default_int_handler)
import edgeyard
from edgeyard.backends import register_backend
from fault_backends import HangingBackend
register_backend(HangingBackend(), replace=True)
print("building", flush=True)
edgeyard.build({model!r}, profiles=["hang"], profile_dirs=[{profiles!r}], evaluation={x!r},
               out={out!r}, log=None, timeout_s=600)
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_stopping_a_build_stops_its_converter_children(tmp_path, tiny_model, sig):
    """A converter child runs in its own session (so a timeout kills its whole group): Ctrl-C or
    SIGTERM of the build must take it down too, not leave it running."""
    import os
    import signal
    import time

    profiles = profile_dir(tmp_path, target("test-hang"), "hang")
    code = BUILD_THAT_HANGS.format(paths=[p for p in sys.path if p], model=str(tiny_model),
                                   profiles=str(profiles), x=[[0.0] * 16], out=str(tmp_path / "r"))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)

    def workers() -> list[int]:
        found = []
        for pid in os.listdir("/proc"):
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            except (OSError, ValueError):
                continue
            if "edgeyard.builder.worker" in cmd and str(tmp_path) in cmd:
                found.append(int(pid))
        return found

    deadline = time.monotonic() + 120
    while not workers() and time.monotonic() < deadline:
        assert proc.poll() is None, "the build ended before its converter started"
        time.sleep(0.2)
    assert workers(), "the hanging converter never started"
    time.sleep(1.0)
    proc.send_signal(getattr(signal, sig))
    assert proc.wait(timeout=60) != 0
    deadline = time.monotonic() + 10
    while workers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers() == [], f"converter children outlived the build after {sig}"
    assert not list(tmp_path.glob(".r.staging-*")), "the staging directory was left behind"
