"""docs/architecture.md's layer and import tables are what `tools/architecture.py` reads from the
code: a module added without a layer, a layer naming a module that is gone, or an import changed
without regenerating the page fails here. Pure `ast` and `pathlib`: nothing of edgeyard is imported."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import architecture  # noqa: E402


def test_the_page_is_a_fresh_rendering():
    committed = architecture.DOC.read_text()
    fresh = architecture.rewrite(committed, architecture.render())
    assert fresh == committed, (
        "docs/architecture.md is stale: run `python tools/architecture.py` and commit the result "
        "(`python tools/architecture.py --check` shows the difference)"
    )


def test_check_mode_exits_1_on_a_stale_page(tmp_path, capsys):
    page = tmp_path / "architecture.md"
    page.write_text(architecture.DOC.read_text().replace("| `errors` |", "| `errors` (gone) |", 1))
    assert architecture.main(["--check", "--doc", str(page)]) == 1
    assert "(gone)" in capsys.readouterr().out
    assert architecture.main(["--doc", str(page)]) == 0
    assert architecture.main(["--check", "--doc", str(page)]) == 0


def test_a_layer_naming_no_module_raises():
    fake = architecture.Layer("fake", ("no_such_module",), "nowhere", "none")
    with pytest.raises(architecture.ArchitectureError, match="match no module: no_such_module"):
        architecture.render([*architecture.LAYERS, fake])


def test_a_module_in_no_layer_raises():
    without_helpers = [layer for layer in architecture.LAYERS if layer.name != "helpers"]
    with pytest.raises(architecture.ArchitectureError, match=r"modules in no layer: .*errors"):
        architecture.render(without_helpers)


def test_imports_are_read_from_the_code(tmp_path):
    pkg = tmp_path / "edgeyard"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('_EXPORTS = {"thing": "edgeyard.sub.impl"}\n')
    (pkg / "base.py").write_text("import scipy\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "impl.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from .. import base\n"
        "if TYPE_CHECKING:\n    from ..top import Never\n"
        "LOG = {'edgeyard.top': 1}\n"
        "def f():\n    from ..top import x\n    require('torch')\n"
    )
    (pkg / "top.py").write_text("from edgeyard.sub.impl import f\n")
    layers = [
        architecture.Layer("bottom", ("base",), "both", "none"),
        architecture.Layer("middle", ("sub",), "both", "none"),
        architecture.Layer("top", ("top", ""), "both", "none"),
    ]
    modules = architecture.discover(pkg)
    rows = architecture.import_rows(layers, modules, architecture.assign(modules, layers, pkg))
    got = {r.unit: (r.top, r.lazy, r.top_other, r.lazy_other) for r in rows}
    assert got == {
        "base": ((), (), ("scipy",), ()),
        "sub": (("base",), ("top",), (), ("torch",)),
        "top": (("sub.impl",), (), (), ()),
        "": ((), ("sub.impl",), (), ()),
    }
    assert architecture.against_the_order(layers, rows) == ["`sub` -> `top` (lazy)"]
