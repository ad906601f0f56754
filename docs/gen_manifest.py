"""Write docs/manifest.md, the release manifest reference, from the manifest's JSON Schema.

    python docs/gen_manifest.py [--schema PATH] [--out PATH]

Standard library only. The schema (`src/edgeyard/schema/release.schema.json`) is the single
source of truth: every object it describes (the top level, each nested object, each `$defs`
entry) becomes one Markdown table with the columns field / type / required / description, in
the schema's own order. `tests/unit/test_docs.py` regenerates the page and fails when the
committed one differs, so the page cannot drift from the schema.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "src" / "edgeyard" / "schema" / "release.schema.json"
OUT = ROOT / "docs" / "manifest.md"
COMMAND = "python docs/gen_manifest.py"

Schema = dict[str, Any]


def _anchor(name: str) -> str:
    """A stable HTML id for a section: lower case, dots and brackets turned into dashes."""
    out = "".join(c if c.isalnum() else "-" for c in name.lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.replace("|", "\\|").split())


def _is_object_section(s: Schema) -> bool:
    """An inline object whose fields are described (or at least named) by the schema."""
    return "properties" in s or ("required" in s and s.get("type") == "object")


class Generator:
    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.defs: Schema = schema.get("$defs", {})
        self.queue: deque[tuple[str, Schema]] = deque()
        self.titles: dict[str, str] = {}  # section title -> anchor (each section once)

    # --- types ------------------------------------------------------------------------------

    def _section(self, title: str, s: Schema) -> str:
        """Register an inline object as its own section; a link to it."""
        if title not in self.titles:
            self.titles[title] = _anchor(title)
            self.queue.append((title, s))
        return f"[{title}](#{self.titles[title]})"

    def _ref(self, ref: str) -> str:
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or ref[len(prefix):] not in self.defs:
            raise ValueError(f"unsupported $ref {ref!r}: only {prefix}<name> of this schema")
        name = ref[len(prefix):]
        return f"[{name}](#{_anchor('def-' + name)})"

    def type_of(self, s: Schema, path: str) -> str:
        """The type column: Markdown for what `s` accepts; inline objects get a section at `path`."""
        if "$ref" in s:
            return self._ref(s["$ref"])
        if "const" in s:
            return f"constant {_code(s['const'])}"
        if "enum" in s:
            return "one of " + ", ".join(_code(v) for v in s["enum"])
        for key in ("oneOf", "anyOf"):
            if key in s:
                return " or ".join(self.type_of(alt, path) for alt in s[key])
        t = s.get("type")
        if isinstance(t, list):
            return " or ".join(self.type_of({**s, "type": one}, path) for one in t)
        if t == "array":
            items = s.get("items")
            return "array" if items is None else f"array of {self.type_of(items, path + '[]')}"
        if t == "object" or (t is None and ("properties" in s or "additionalProperties" in s)):
            if _is_object_section(s):
                return "object: " + self._section(path, s)
            extra = s.get("additionalProperties")
            if isinstance(extra, dict):
                return f"object: map of string to {self.type_of(extra, path + '.*')}"
            return "object (contents not constrained)"
        if t is None:
            return "any"
        return str(t)

    # --- constraints --------------------------------------------------------------------------

    @staticmethod
    def constraints(s: Schema) -> list[str]:
        out = []
        for key, word in (("minimum", ">="), ("maximum", "<="), ("exclusiveMinimum", ">"),
                          ("exclusiveMaximum", "<")):
            if key in s:
                out.append(f"{word} {s[key]}")
        if s.get("minLength") == 1:
            out.append("non-empty")
        elif "minLength" in s:
            out.append(f"at least {s['minLength']} characters")
        if "maxLength" in s:
            out.append(f"at most {s['maxLength']} characters")
        if "minItems" in s:
            out.append("at least one item" if s["minItems"] == 1 else f"at least {s['minItems']} items")
        if "maxItems" in s:
            out.append(f"at most {s['maxItems']} items")
        if "pattern" in s:
            out.append(f"matches {_code(s['pattern'])}")
        if "format" in s:
            out.append(f"format {_code(s['format'])}")
        return out

    def description(self, s: Schema) -> str:
        text = s.get("description", "").strip()
        rules = self.constraints(s)
        items = s.get("items")
        if isinstance(items, dict) and "$ref" not in items:
            rules += [f"each item {r}" for r in self.constraints(items)]
        if rules:
            text = (text + " " if text else "") + "(" + "; ".join(rules) + ")"
        return text

    # --- tables -------------------------------------------------------------------------------

    def table(self, title: str, s: Schema) -> list[str]:
        """`title` is the object's path ("" for the top level): nested objects are named under it."""
        props: Schema = s.get("properties", {})
        required = list(s.get("required", []))
        fields = list(props) + [r for r in required if r not in props]
        lines = ["| field | type | required | description |", "|---|---|---|---|"]
        for name in fields:
            sub = props.get(name)
            if sub is None:
                typ, desc = "any", "Named as required; its content is not constrained."
            else:
                path = f"{title}.{name}" if title else name
                typ, desc = self.type_of(sub, path), self.description(sub)
            lines.append(f"| `{name}` | {_cell(typ)} | {'yes' if name in required else 'no'} "
                         f"| {_cell(desc)} |")
        extra = s.get("additionalProperties")
        if extra is False:
            note = "No other fields are allowed."
        elif isinstance(extra, dict):
            note = f"Other fields are allowed, each of type {self.type_of(extra, (title or '') + '.*')}."
        else:
            note = "Other fields are allowed."
        return [*lines, "", note]

    def section(self, title: str, s: Schema, level: str, anchor: str) -> list[str]:
        out = [f'<a id="{anchor}"></a>', "", f"{level} `{title}`", ""]
        if s.get("description"):
            out += [s["description"].strip(), ""]
        return [*out, *self.table(title, s), ""]

    def drain(self, level: str) -> list[str]:
        """Render the registered sections depth first: each nested object right after its parent."""
        out: list[str] = []
        while self.queue:
            title, s = self.queue.popleft()
            before = len(self.queue)
            out += self.section(title, s, level, self.titles[title])
            children = [self.queue.pop() for _ in range(len(self.queue) - before)]
            self.queue.extendleft(children)  # popped last-first, so extendleft restores the order
        return out

    # --- the page -----------------------------------------------------------------------------

    def render(self, schema_path: str) -> str:
        s = self.schema
        lines = [
            "# The release manifest (`release.json`)",
            "",
            f"> Generated from [`{schema_path}`](../{schema_path}) by `{COMMAND}`: "
            "do not edit by hand; change the schema and run the command again.",
            "",
            f"Schema: **{s.get('title', '')}**, `$id` `{s.get('$id', '')}`, JSON Schema "
            f"`{s.get('$schema', '')}`.",
            "",
        ]
        if s.get("description"):
            lines += [s["description"].strip(), ""]
        lines += [
            "Each object is one table. A linked name in the type column leads to that object's "
            "table; the names under [Definitions](#definitions) are the schema's shared `$defs`. "
            "Section names give the path from the top: `a.b` is field `b` of object `a`, `a[]` "
            "an item of array `a`. \"Other fields are allowed\" means the schema does not set "
            "`additionalProperties: false` for that object.",
            "",
            '<a id="top-level"></a>',
            "",
            "## Top level",
            "",
            *self.table("", s),
            "",
        ]
        lines += self.drain("##")
        scalars: list[tuple[str, Schema]] = []
        def_lines: list[str] = []
        for name, d in self.defs.items():
            if _is_object_section(d) or d.get("type") == "object":
                anchor = _anchor("def-" + name)
                def_lines += self.section(name, d, "###", anchor)
                def_lines += self.drain("###")
            else:
                scalars.append((name, d))
        lines += ['<a id="definitions"></a>', "", "## Definitions", ""]
        if scalars:
            lines += ["Value types used by the tables above and below:", "",
                      "| definition | type | description |", "|---|---|---|"]
            for name, d in scalars:
                anchor = _anchor("def-" + name)
                lines.append(f'| <a id="{anchor}"></a>`{name}` | {_cell(self.type_of(d, name))} '
                             f"| {_cell(self.description(d))} |")
            lines.append("")
        lines += def_lines
        while lines and lines[-1] == "":
            lines.pop()
        return "\n".join(lines) + "\n"


def generate(schema_path: Path = SCHEMA) -> str:
    schema = json.loads(schema_path.read_text())
    try:
        shown = schema_path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        shown = schema_path.as_posix()
    return Generator(schema).render(shown)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schema", type=Path, default=SCHEMA, help="the JSON Schema to document")
    ap.add_argument("--out", type=Path, default=OUT, help="where to write the Markdown page")
    args = ap.parse_args(argv)
    text = generate(args.schema)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
