"""Generate the two tables of docs/architecture.md from the code: the layers (which module
belongs where) and who imports whom (read from the source with `ast`).

    python tools/architecture.py            # rewrite the tables in docs/architecture.md
    python tools/architecture.py --check    # exit 1 with a diff when the page is stale

Standard library only, and nothing of edgeyard is imported, so no toolchain has to be installed.
`LAYERS` below is the one hand-kept part: each layer names the modules and packages it holds,
the side it runs on and its heavy dependencies. A module that no layer claims, or a name that
claims no module, raises `ArchitectureError`: the page can neither miss a module that was added
nor list one that is gone. Each table sits between two marker comments
(`<!-- generated: NAME ... -->` and `<!-- end generated: NAME -->`); the prose around them is
left as it is. `tests/unit/test_architecture.py` fails when the committed page differs from a
fresh rendering.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import itertools
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "edgeyard"
DOC = ROOT / "docs" / "architecture.md"
COMMAND = "python tools/architecture.py"
PACKAGE = "edgeyard"
LINK_BASE = "../src/edgeyard"  # links are relative to docs/


@dataclass(frozen=True)
class Layer:
    """One row of the Layers table. `units` are module or package names relative to edgeyard
    ("errors", "gating.bench"; "" is the package root, `edgeyard/__init__.py`); a module belongs
    to the unit that is the longest prefix of its name. Each unit is one row of the imports
    table. `files`: data files listed with the layer (paths under src/edgeyard)."""

    name: str
    units: tuple[str, ...]
    side: str
    heavy: str
    files: tuple[str, ...] = ()


# From the bottom up: a layer imports only the layers before it, except where the generated
# list of imports against this order says otherwise.
LAYERS: tuple[Layer, ...] = (
    Layer("helpers", ("errors", "_deps", "_envs", "_child", "_exit", "_files", "_hashing", "_signals"),
          "both",
          "none; `_deps.require()` imports an optional toolchain on first use and, when it is "
          "missing, names the extra to install; `_envs` creates the isolated environments of "
          "converters whose pins conflict with this one (litert-torch); `_child` runs edgeyard's "
          "own modules in child processes (the build's worker, the gate's measurement); `_exit` "
          "holds every command's exit codes, `_files` atomic writes, `_signals` how services and "
          "builds stop"),
    Layer("configuration", ("_toml", "profiles", "config"), "build",
          "none: `tomllib`, frozen dataclasses (`config` also numpy); `_toml` reads and checks "
          "the TOML files users write, with one set of messages"),
    Layer("engines", ("engines",), "device",
          "numpy + one runtime per engine, on first use: onnxruntime, ai-edge-litert, "
          "executorch.runtime, torch (`.ptl`), coremltools (macOS), the TVM runtime, TensorRT; "
          "`registry` also reads the `edgeyard.engines` entry points"),
    Layer("sources", ("data", "model"), "both / build",
          "`data` numpy only; `model` torch / onnx / keras, loaded in the function that needs it"),
    Layer("backends", ("backends",), "build",
          "each converter loaded inside `convert()` / `inspect()` only; `_litert_torch_child` runs "
          "in the litert-torch environment, not this one; `registry` also reads the "
          "`edgeyard.backends` entry points"),
    Layer("release", ("release", "signing"), "both",
          "`jsonschema` to validate, `cryptography` to sign and verify (each on first use)",
          files=("schema/release.schema.json",)),
    Layer("build", ("builder",), "build",
          "the parent loads only the source model's framework (to export and run it); converters "
          "run in `worker` child processes"),
    Layer("measure and decide", ("gating.bench", "gating.runners", "gating"),
          "build / CI; `gating.bench.child` on the device", "scipy for the gate's tests"),
    Layer("device", ("runtime", "telemetry", "gating.agent"), "device",
          "numpy, one runtime per engine, `cryptography` for signatures, `opentelemetry-proto` for "
          "the upload"),
    Layer("server", ("drift", "rollout", "server"), "server",
          "`drift`, `rollout`: numpy, scipy on first use (drift's class-count test, the "
          "rollout's t test); `server`: FastAPI, uvicorn, SQLAlchemy, Alembic, prometheus-client, "
          "opentelemetry-proto; `postgres` extra: psycopg"),
    Layer("public API", ("",), "all",
          "none: re-exports the public names lazily (a module `__getattr__`)"),
    Layer("command", ("__main__", "cli"), "all",
          "typer (the `cli` extra: `__main__` names it when it is missing); every command imports "
          "its layer inside the command"),
)

# third-party packages named in the imports table (the standard library, numpy and small
# helpers are left out); an import through `_deps.require("name")` counts as an import
NOTABLE = frozenset({
    "torch", "tensorflow", "keras", "onnx", "onnxruntime", "ai_edge_litert", "executorch",
    "coremltools", "tvm", "tensorrt", "scipy", "cryptography", "jsonschema", "opentelemetry",
    "fastapi", "sqlalchemy", "alembic", "uvicorn", "typer",
})

# a string naming an edgeyard module and an attribute in it, as an entry point does
# (`"edgeyard.engines.onnx:OnnxEngine"` in a registry's table)
ENTRY = re.compile(r"^edgeyard(?:\.[A-Za-z_]\w*)+:[A-Za-z_]\w*$")


# a package whose imported modules are more than this many is named as a whole
MAX_NAMED = 2


class ArchitectureError(Exception):
    """The hand-kept layer table and the code disagree."""


@dataclass(frozen=True)
class Import:
    """One import of a module: an edgeyard module (relative dotted name, "" for the root) or a
    third-party top-level package; `lazy` when it runs inside a function (or by name)."""

    target: str
    internal: bool
    lazy: bool


# ---------------------------------------------------------------------------- modules and layers

def discover(src: Path = SRC) -> dict[str, Path]:
    """Every Python module under `src`, by dotted name relative to the package: "" is the root's
    `__init__.py`, "builder" a package, "server.migrations.env" a file in a directory without
    `__init__.py` (Alembic loads it by path)."""
    out = {}
    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _covers(unit: str, module: str) -> bool:
    if unit == "":
        return module == ""
    return module == unit or module.startswith(unit + ".")


def unit_of(module: str, units: Iterable[str]) -> str | None:
    """The longest unit that is `module` or a package above it."""
    best = None
    for unit in units:
        if _covers(unit, module) and (best is None or len(unit) > len(best)):
            best = unit
    return best


def assign(modules: Iterable[str], layers: Sequence[Layer] = LAYERS,
           src: Path = SRC) -> dict[str, str]:
    """module -> its unit. Raises `ArchitectureError` when a module belongs to no unit, a unit
    holds no module, a unit is named twice or a layer's data file does not exist."""
    modules = sorted(modules)
    units = [u for layer in layers for u in layer.units]
    problems = []
    twice = sorted({u for u in units if units.count(u) > 1})
    if twice:
        problems.append(f"named by more than one layer: {', '.join(map(_dotted, twice))}")
    owner = {m: unit_of(m, units) for m in modules}
    orphans = [m for m, u in owner.items() if u is None]
    if orphans:
        problems.append(f"modules in no layer: {', '.join(map(_dotted, orphans))} "
                        f"(add them, or a package above them, to a layer)")
    empty = [u for u in units if u not in owner.values()]
    if empty:
        problems.append(f"layer entries that match no module: {', '.join(map(_dotted, empty))} "
                        f"(modules: {', '.join(map(_dotted, modules))})")
    missing = [f for layer in layers for f in layer.files if not (src / f).is_file()]
    if missing:
        problems.append(f"data files that do not exist under {src}: {', '.join(missing)}")
    if problems:
        raise ArchitectureError(f"LAYERS in {Path(__file__).name} does not match the code: "
                                + "; ".join(problems))
    return {m: u for m, u in owner.items() if u is not None}


def _dotted(name: str) -> str:
    return PACKAGE if name == "" else name


# ------------------------------------------------------------------------------------- imports

def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _walk(node: ast.AST, lazy: bool) -> Iterator[tuple[ast.AST, bool]]:
    """Every node below `node`, with whether it runs only when a function is called. Blocks
    under `if TYPE_CHECKING:` never run and are left out."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:
                yield stmt, lazy
                yield from _walk(stmt, lazy)
            continue
        yield child, lazy
        inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _walk(child, inner)


def _absolute(module: str) -> str:
    return PACKAGE if module == "" else f"{PACKAGE}.{module}"


def scan(module: str, path: Path, known: Mapping[str, Path]) -> set[Import]:
    """The imports of one module: edgeyard modules (relative imports resolved; `from pkg import
    mod` names `pkg.mod`) and the NOTABLE third-party packages. `_deps.require("x")` counts as an
    import of `x`, and a string that names an edgeyard module (a registry's
    `"edgeyard.engines.onnx:OnnxEngine"`, `python -m edgeyard.builder.worker`, the root's table
    of exports) as a lazy import of it."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[Import] = set()

    def add(name: str, lazy: bool) -> None:
        top, _, rest = name.partition(".")
        if top == PACKAGE:
            if rest not in known:
                raise ArchitectureError(f"{path}: imports {name}, which is not a module of edgeyard")
            found.add(Import(rest, True, lazy))
        elif top in NOTABLE:
            found.add(Import(top, False, lazy))

    for node, lazy in _walk(tree, False):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, lazy)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _absolute(package).split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source == "__future__":
                continue
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                is_module = candidate.partition(".")[2] in known and source.split(".")[0] == PACKAGE
                add(candidate if is_module else source, lazy)
        elif (isinstance(node, ast.Call) and _call_name(node) == "require" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            add(node.args[0].value, True)
        else:
            for name in _by_name(node, known):
                add(name, True)
    return found


def _by_name(node: ast.AST, known: Mapping[str, Path]) -> list[str]:
    """Edgeyard modules that `node` names in a string where the string can mean nothing else:
    an entry point's `module:attr`, the argument after `-m` (a child process), the values of a
    dict whose values all name modules (the root's table of lazy exports). A string that merely
    looks like a module name (an OTLP attribute `"edgeyard.model"`, a logger's name) is not one."""
    def module(value: object) -> str | None:
        if not isinstance(value, str) or not value.startswith(PACKAGE + "."):
            return None
        name = value.partition(":")[0]
        return name if name.partition(".")[2] in known else None

    if isinstance(node, ast.Constant) and isinstance(node.value, str) and ENTRY.match(node.value):
        return [n for n in [module(node.value)] if n]
    if isinstance(node, ast.List | ast.Tuple):
        values = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
        return [n for flag, v in itertools.pairwise(values) if flag == "-m"
                for n in [module(v)] if n]
    if isinstance(node, ast.Dict) and node.values:
        names = [module(v.value) if isinstance(v, ast.Constant) else None for v in node.values]
        if all(names):
            return [n for n in names if n]
    return []


# ------------------------------------------------------------------------------------ rendering

def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _children(unit: str, modules: Mapping[str, Path], owner: Mapping[str, str]) -> list[str]:
    """What a package unit holds one level down that no other unit claims: its modules by name,
    its sub-packages and plain directories with a trailing slash."""
    prefix = unit + "."
    out = set()
    for module in modules:
        if owner[module] != unit or not module.startswith(prefix):
            continue
        rest = module[len(prefix):].split(".")
        out.add(rest[0] + "/" if len(rest) > 1 or modules[module].name == "__init__.py" else rest[0])
    return sorted(out, key=lambda n: n.lstrip("_"))


def render_layers(layers: Sequence[Layer], modules: Mapping[str, Path],
                  owner: Mapping[str, str]) -> str:
    lines = ["| layer | modules | side | heavy dependencies |", "|---|---|---|---|"]
    for layer in layers:
        cells = []
        for unit in layer.units:
            path = modules.get(unit)
            rel = unit.replace(".", "/")
            if unit == "":
                cells.append(f"[`{PACKAGE}`]({LINK_BASE}/__init__.py)")
            elif path is not None and path.name != "__init__.py":
                cells.append(f"[`{unit}`]({LINK_BASE}/{rel}.py)")
            else:
                inner = ", ".join(f"`{c}`" for c in _children(unit, modules, owner))
                cells.append(f"[`{rel}/`]({LINK_BASE}/{rel}/)" + (f" ({inner})" if inner else ""))
        cells += [f"[`{f}`]({LINK_BASE}/{f})" for f in layer.files]
        lines.append(f"| {layer.name} | {', '.join(cells)} | {_cell(layer.side)} | "
                     f"{_cell(layer.heavy)} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Row:
    """One row of the imports table: what `unit` imports from other units and from NOTABLE
    third-party packages, at the top and (only what is not also imported at the top) lazily."""

    unit: str
    top: tuple[str, ...]
    lazy: tuple[str, ...]
    top_other: tuple[str, ...] = ()
    lazy_other: tuple[str, ...] = ()


def _names(targets: Iterable[str], units: Sequence[str]) -> set[str]:
    """How imported edgeyard modules are named in the table: by their unit, except that one or
    two modules of a package are named themselves (`telemetry.window`) when the package's own
    `__init__` is not among them."""
    by_unit: dict[str, set[str]] = {}
    for target in targets:
        by_unit.setdefault(unit_of(target, units) or target, set()).add(target)
    out = set()
    for unit, modules in by_unit.items():
        if unit in modules or len(modules) > MAX_NAMED:
            out.add(_dotted(unit))
        else:
            out |= modules
    return out


def import_rows(layers: Sequence[Layer], modules: Mapping[str, Path],
                owner: Mapping[str, str]) -> list[Row]:
    """One row per unit, in layer order."""
    units = [u for layer in layers for u in layer.units]
    imports: dict[str, set[Import]] = {u: set() for u in units}
    for module, path in modules.items():
        imports[owner[module]] |= scan(module, path, modules)
    rows = []
    for unit in units:
        found = {imp for imp in imports[unit] if not (imp.internal and unit_of(imp.target, units) == unit)}
        cells = []
        for internal in (True, False):
            top = {i.target for i in found if i.internal is internal and not i.lazy}
            lazy = {i.target for i in found if i.internal is internal and i.lazy} - top
            if internal:
                top, lazy = _names(top, units), _names(lazy, units)
                lazy -= top
            cells.append((sorted(top, key=_sort_key), sorted(lazy, key=_sort_key)))
        (top, lazy), (top_other, lazy_other) = cells
        rows.append(Row(unit, tuple(top), tuple(lazy), tuple(top_other), tuple(lazy_other)))
    return rows


def _sort_key(name: str) -> tuple[str, str]:
    return (name.lstrip("_").lower(), name)


def _imports_cell(ours: Sequence[str], other: Sequence[str], empty: str) -> str:
    """Edgeyard names (or `empty`), then the third-party ones after a semicolon."""
    parts = [", ".join(f"`{n}`" for n in ours) or empty, ", ".join(f"`{n}`" for n in other)]
    return "; ".join(p for p in parts if p)


def render_imports(rows: Sequence[Row]) -> str:
    lines = ["| module | imports at the top | imports lazily |", "|---|---|---|"]
    for row in rows:
        top = _imports_cell(row.top, row.top_other, "nothing of edgeyard")
        lazy = _imports_cell(row.lazy, row.lazy_other, "")
        lines.append(f"| `{_dotted(row.unit)}` | {top} |" + (f" {lazy} |" if lazy else " |"))
    return "\n".join(lines)


def against_the_order(layers: Sequence[Layer], rows: Sequence[Row]) -> list[str]:
    """The imports from a unit to a unit of a later layer, e.g. "`release` -> `telemetry.window`
    (lazy)". Imports of the package root are left out: Python runs it before any submodule."""
    units = [u for layer in layers for u in layer.units]
    rank = {u: i for i, layer in enumerate(layers) for u in layer.units}
    out = []
    for row in rows:
        for kind, names in (("", row.top), (" (lazy)", row.lazy)):
            for name in names:
                unit = None if name == PACKAGE else unit_of(name, units)
                if unit is not None and rank[unit] > rank[row.unit]:
                    out.append(f"`{_dotted(row.unit)}` -> `{name}`{kind}")
    return out


def render(layers: Sequence[Layer] = LAYERS, src: Path = SRC) -> dict[str, str]:
    """The generated blocks by marker name ("layers", "imports")."""
    modules = discover(src)
    owner = assign(modules, layers, src)
    rows = import_rows(layers, modules, owner)
    upward = against_the_order(layers, rows)
    layers_block = render_layers(layers, modules, owner)
    if upward:
        layers_block += ("\n\nImports against this order (read from the code): "
                         + "; ".join(upward) + ".")
    return {"layers": layers_block, "imports": render_imports(rows)}


# ------------------------------------------------------------------------------------- the page

def _markers(name: str) -> tuple[str, str]:
    return f"<!-- generated: {name} ({COMMAND}) -->", f"<!-- end generated: {name} -->"


def rewrite(text: str, blocks: Mapping[str, str]) -> str:
    """`text` with each block between its markers replaced; raises when a marker is missing."""
    for name, body in blocks.items():
        start, end = _markers(name)
        pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end), re.S)
        if not pattern.search(text):
            raise ArchitectureError(f"no `{start}` ... `{end}` block in the page")
        text = pattern.sub(lambda _m, s=start, b=body, e=end: f"{s}\n{b}\n{e}", text, count=1)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 with a diff when the page is stale")
    parser.add_argument("--doc", type=Path, default=DOC, help=f"the page (default {DOC})")
    args = parser.parse_args(argv)
    try:
        old = args.doc.read_text()
        new = rewrite(old, render())
    except ArchitectureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if old == new:
            return 0
        sys.stdout.writelines(difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True),
            str(args.doc), f"{args.doc} (regenerated)"))
        print(f"\n{args.doc} is stale: run `{COMMAND}`", file=sys.stderr)
        return 1
    if old != new:
        args.doc.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
