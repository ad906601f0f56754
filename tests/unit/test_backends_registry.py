from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from edgeyard.backends import Backend, backend_names, get_backend, register_backend
from edgeyard.backends.registry import check_target
from edgeyard.errors import BackendNotFound, EdgeyardError
from edgeyard.profiles import Target

SEVEN = {"onnx", "tflite", "executorch", "coreml", "torchscript", "tvm", "tensorrt"}


def test_all_seven_targets_are_registered_with_declared_contracts():
    assert SEVEN <= set(backend_names())
    for name in SEVEN:
        b = get_backend(name)
        assert isinstance(b, Backend)
        assert b.artifact_suffix.startswith(".")
        assert b.precisions and b.source_formats


def test_unknown_backend_lists_the_available_ones():
    with pytest.raises(BackendNotFound) as exc:
        get_backend("onyx")
    assert "available: coreml, executorch, onnx" in str(exc.value)


def test_registering_twice_needs_replace():
    with pytest.raises(EdgeyardError, match="already registered"):
        register_backend(get_backend("onnx"))


def test_hosts_that_cannot_run_an_artifact_say_why():
    reason = get_backend("coreml").cannot_run_here()
    assert reason is None or "only on macOS" in reason
    reason = get_backend("tensorrt").cannot_run_here()
    assert reason is None or "needs an NVIDIA GPU" in reason


def test_missing_toolchain_reason_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    hidden = {"tensorflow", "ai_edge_litert", "tf_keras"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in hidden else real(name, *a))
    reason = get_backend("tflite").unavailable("keras")
    assert reason == ("tensorflow, ai_edge_litert not installed: pip install 'edgeyard[tflite]'")
    reason = get_backend("tflite").unavailable("onnx")
    assert "pip install --no-deps 'tf_keras==2.21.0'" in reason


def test_source_format_mismatch():
    assert get_backend("executorch").unavailable("onnx") == (
        "executorch converts from torch models; this model is onnx"
    )


def test_check_target():
    assert check_target(Target("onnx", "int8")) is None
    assert "no option 'x'" in check_target(Target("onnx", "int8", {"x": 1}))
    assert "must be int" in check_target(Target("onnx", "fp32", {"opset": "17"}))
    assert check_target(Target("onnx", "int8", {"recipe_search": "all"})) is None
    assert "'recipe_search' must be \"first\" or \"all\" (got 'every')" in check_target(
        Target("onnx", "int8", {"recipe_search": "every"}))
    # a precision with one way only has no recipe search
    assert "no option 'recipe_search'" in check_target(
        Target("onnx", "fp32", {"recipe_search": "all"}))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "edgeyard.cli", *args], capture_output=True,
                          text=True)


def test_cli_profiles_lists_and_validates(tmp_path):
    r = cli("profiles")
    assert r.returncode == 0, r.stderr
    for name in ("linux-x86_64", "pixel-8", "iphone-15", "raspberry-pi-5", "jetson-orin-nano"):
        assert name in r.stdout
    assert "tensorrt/fp16 -> onnx/fp32" in r.stdout
    (tmp_path / "bad.toml").write_text('name = "bad"\n[hardware]\narch = "x"\nos = "y"\n'
                                       '[[targets]]\nbackend = "onyx"\nprecision = "fp32"\n')
    r = cli("profiles", "--profile-dir", str(tmp_path))
    assert r.returncode == 1
    assert "bad" in r.stdout and "INVALID" in r.stdout and "no backend named 'onyx'" in r.stdout
    r = cli("profiles", "pixel-9")
    assert r.returncode == 4 and "available: iphone-15" in r.stderr


def test_cli_inspect_on_a_non_release(tmp_path):
    r = cli("inspect", str(tmp_path))
    assert r.returncode == 4 and "not a release" in r.stderr and "Traceback" not in r.stderr
