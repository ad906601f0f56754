"""Converters that cannot share this environment get one of their own.

litert-torch (torch -> LiteRT directly) pins `typing_extensions<4.13` through xdsl, which breaks
`import tvm` next to it, and adds about 1.3 GB (jax, transformers, litert-converter). So it lives
in its own virtual environment, created once with the same torch version as this one, and the
build's per-target child process runs a small script there (see `backends/litert_torch.py`).
The model crosses over as a `torch.export` file: both environments have the same torch, so the
program loads unchanged.

    edgeyard envs                      # what exists, where, and the install command
    edgeyard envs install litert-torch # python -m venv + pip install torch==<this one> litert-torch

Environments live in `$EDGEYARD_ENVS/<name>` (default: `<this environment's prefix>/edgeyard-envs`,
so deleting the environment deletes them too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import EdgeyardError

ENVS_VAR = "EDGEYARD_ENVS"
MARKER = "edgeyard-env.json"


@dataclass(frozen=True)
class IsolatedEnv:
    name: str
    requirements: tuple[str, ...]  # besides torch, which is pinned to this environment's
    probe: str  # a module that must import there
    why: str

    @property
    def install_command(self) -> str:
        return f"edgeyard envs install {self.name}"


ENVS: dict[str, IsolatedEnv] = {
    "litert-torch": IsolatedEnv(
        "litert-torch", ("litert-torch==0.10.0",), "litert_torch",
        "torch -> LiteRT directly (the fastest int8 transformers); pins typing_extensions<4.13, "
        "which breaks TVM in the main environment"),
}


def envs_root() -> Path:
    return Path(os.environ.get(ENVS_VAR) or Path(sys.prefix) / "edgeyard-envs")


def _env(name: str) -> IsolatedEnv:
    if name not in ENVS:
        raise EdgeyardError(f"no isolated environment {name!r}; known: {', '.join(ENVS)}")
    return ENVS[name]


def env_python(name: str) -> Path | None:
    """The interpreter of environment `name` when it is installed and complete, else None."""
    _env(name)
    root = envs_root() / name
    py = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    return py if py.exists() and (root / MARKER).exists() else None


def missing_reason(name: str) -> str:
    env = _env(name)
    return (f"the {name} environment is not installed ({envs_root() / name}): "
            f"{env.install_command}")


def _torch_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        raise EdgeyardError("the isolated converter environments pin the torch of this one, and "
                            "torch is not installed here: pip install 'edgeyard[torch]'") from None


def install(name: str, log: Callable[[str], None] = print) -> Path:
    """Create (or complete) environment `name`; returns its interpreter."""
    env = _env(name)
    root = envs_root() / name
    torch = _torch_version().split("+")[0]
    if not (root / "bin" / "python").exists() and not (root / "Scripts").exists():
        log(f"creating {root}")
        subprocess.run([sys.executable, "-m", "venv", os.fspath(root)], check=True)
    py = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # torch pinned exactly: any other requirement can pull a multi-GB CUDA build
    reqs = [f"torch=={torch}", *env.requirements]
    log(f"installing {' '.join(reqs)} into {root}")
    r = subprocess.run([os.fspath(py), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", *reqs], capture_output=True, text=True)
    if r.returncode != 0:
        raise EdgeyardError(f"pip could not install {' '.join(reqs)} into {root}:\n"
                            + (r.stderr or r.stdout)[-3000:])
    probe = subprocess.run([os.fspath(py), "-c", f"import {env.probe}, torch; "
                            "print(torch.__version__)"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise EdgeyardError(f"{env.probe} does not import in {root}:\n{probe.stderr[-2000:]}")
    if probe.stdout.strip().split("+")[0] != torch:
        raise EdgeyardError(f"{root} got torch {probe.stdout.strip()}, this environment has "
                            f"{torch}: a program exported here may not load there")
    (root / MARKER).write_text(json.dumps({"name": name, "torch": torch,
                                           "requirements": reqs}) + "\n")
    log(f"{name}: ready ({py})")
    return py


def status() -> list[dict[str, object]]:
    """Each known environment: name, path, installed, why, install command."""
    return [{"name": e.name, "path": os.fspath(envs_root() / e.name),
             "installed": env_python(e.name) is not None, "why": e.why,
             "install": e.install_command} for e in ENVS.values()]
