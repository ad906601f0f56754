"""`import edgeyard` and the device-side engines load no heavy toolchain; the public API is small."""

from __future__ import annotations

import json
import subprocess
import sys

import edgeyard

HEAVY = ["torch", "tensorflow", "onnxruntime", "executorch", "coremltools", "tvm", "keras",
         "onnx", "ai_edge_litert", "jax"]


def _loaded_after(code: str) -> list[str]:
    probe = (
        f"{code}\nimport sys, json\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_edgeyard_loads_no_toolchain():
    assert _loaded_after("import edgeyard") == []


def test_touching_the_public_api_loads_no_toolchain():
    code = "import edgeyard\n" + "\n".join(f"edgeyard.{n}" for n in edgeyard.__all__)
    code += "\nimport edgeyard.cli, edgeyard.engines, edgeyard.backends\n"
    code += "from edgeyard.backends import backend_names, get_backend\n"
    code += "[get_backend(n) for n in backend_names()]\n"
    code += "edgeyard.load_profile('pixel-8')\n"
    assert _loaded_after(code) == []


DEVICE_HEAVY = ["torch", "tensorflow", "coremltools", "tvm", "keras", "onnx", "jax", "scipy",
                "onnx2tf", "executorch"]


def test_device_side_modules_load_no_converter():
    code = ("import edgeyard.runtime, edgeyard.engines, edgeyard.gating.agent, edgeyard.gating.bench.child\n"
            "import edgeyard.telemetry, edgeyard.telemetry.otlp\n"
            "from edgeyard.runtime import Runtime, BreakerPolicy, RemoteModel\n"
            "import edgeyard.signing\n")
    probe = (f"{code}import sys, json\n"
             f"print(json.dumps([m for m in {DEVICE_HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_public_names_resolve_and_are_listed():
    assert edgeyard.__version__
    for name in edgeyard.__all__:
        assert getattr(edgeyard, name) is not None, name
    assert set(dir(edgeyard)) == set(edgeyard.__all__)


def test_public_functions_show_their_signatures():
    """No package shadows a public function (edgeyard.build, edgeyard.gate): importing the
    packages behind them changes nothing, and inspect and IDEs see the real parameters."""
    import inspect

    import edgeyard.builder.worker
    import edgeyard.gating.run

    for name in edgeyard.__all__:
        obj = getattr(edgeyard, name)
        if inspect.isfunction(obj):
            params = inspect.signature(obj).parameters
            assert [p.kind for p in params.values()] != [
                inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD], name
    assert "profiles" in inspect.signature(edgeyard.build).parameters
    assert "baseline" in inspect.signature(edgeyard.gate).parameters
    assert inspect.isfunction(edgeyard.build) and inspect.isfunction(edgeyard.gate)
