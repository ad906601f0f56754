"""Reading the TOML files users write (device profiles, build configs) and checking their tables,
with one set of messages: the file and table, the key, what was expected and what was found,
and the closest known key for a typo."""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# key -> (accepted python type or types, required)
Spec = Mapping[str, tuple[type | tuple[type, ...], bool]]


def read_toml(path: str | os.PathLike[str], error: type[Exception], what: str) -> dict[str, Any]:
    """The TOML document at `path`; a missing file or bad TOML raises `error` saying which
    `what` (e.g. "profile file", "build config") it was."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path.name}: not valid TOML: {exc}") from None


def check_table(where: str, table: Mapping[str, Any], spec: Spec,
                error: type[Exception]) -> None:
    """Unknown keys (with the closest known one), missing required keys and wrong types raise
    `error` prefixed with `where` (e.g. "pixel-8.toml [hardware]")."""
    for key in table:
        if key not in spec:
            close = difflib.get_close_matches(key, list(spec), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise error(f"{where}: unknown key {key!r}{hint}; known keys: {', '.join(spec)}")
    for key, (types, required) in spec.items():
        if key not in table:
            if required:
                raise error(f"{where}: missing required key {key!r}")
            continue
        value = table[key]
        accepted = types if isinstance(types, tuple) else (types,)
        # bool is an int in Python, but `threads = true` is a mistake, not a count
        if (isinstance(value, bool) and bool not in accepted) or not isinstance(value, accepted):
            names = " or ".join(t.__name__ for t in accepted)
            raise error(f"{where}: {key!r} must be {names} (got {value!r} that is a "
                        f"{type(value).__name__})")
