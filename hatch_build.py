"""Build hook (hatchling): compiles the ingestion service's fast paths with this Python's C
compiler:

- `src/edgeyard/server/_otlp.c`: collector uploads read from the wire (see
  `edgeyard/server/fastdecode.py`);
- `src/edgeyard/server/_expmerge.c`: exponential histograms merged from their parts, in the
  group commit and the compactor (see `edgeyard/server/partsmerge.py`).

- a wheel gets the compiled modules and a platform tag;
- an editable install (`pip install -e .`, what `make install` does) gets them next to their
  sources, where the package is imported from (`src/edgeyard/server/_*.so`, ignored by git);
- without a C compiler the build goes on, pure Python, and says so: the service then decodes
  every upload with the protobuf runtime (about 3x the CPU per upload) and merges with numpy,
  and says that at start. `EDGEYARD_NO_NATIVE=1` builds without them on purpose.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

# (source, module) of each extension
EXTENSIONS = [(Path("src/edgeyard/server/_otlp.c"), "edgeyard/server/_otlp"),
              (Path("src/edgeyard/server/_expmerge.c"), "edgeyard/server/_expmerge")]


def compile_extension(source: Path, out: Path) -> str | None:
    """Compile `source` into the extension module `out`; None when it worked, else why not."""
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    if not cc or shutil.which(cc[0]) is None:
        return f"no C compiler ({cc[0] if cc else 'CC is empty'})"
    include = sysconfig.get_paths()["include"]
    cmd = [*cc, "-O2", "-shared", "-fPIC", "-std=c11", "-Wall", f"-I{include}", str(source),
           "-o", str(out), "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        return f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}"
    return None


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel" or os.environ.get("EDGEYARD_NO_NATIVE") == "1":
            return
        root = Path(self.root)
        built = False
        for source, module in EXTENSIONS:
            name = module.rsplit("/", 1)[1] + sysconfig.get_config_var("EXT_SUFFIX")
            if version == "editable":
                out = root / source.parent / name
            else:
                out = Path(tempfile.mkdtemp(prefix="edgeyard-native-")) / name
            why = compile_extension(root / source, out)
            if why:
                print(f"edgeyard: the native module {module} was not built: {why}\n"
                      "edgeyard: the service will do its work in Python (see its module's "
                      "docstring)", file=sys.stderr)
                continue
            if version != "editable":
                build_data["force_include"][str(out)] = f"{module.rsplit('/', 1)[0]}/{name}"
            built = True
        if built:
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
