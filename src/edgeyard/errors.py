"""The one error hierarchy of edgeyard.

User errors say what was expected, what was found and how to fix it; `InternalError` asks for a
bug report. Where a builtin fits, the error also subclasses it (`ProfileNotFound` is a
`KeyError`, `MissingExtra` an `ImportError`) so that callers can catch either.
"""

from __future__ import annotations

BUG_REPORT = "this is a bug in edgeyard: please report it with the command you ran"


class EdgeyardError(Exception):
    """Root of every error edgeyard raises on purpose."""


class MissingExtra(EdgeyardError, ImportError):
    """An optional toolchain is not installed; the message names the install command."""

    def __init__(self, module: str, extra: str, purpose: str = "",
                 install_command: str | None = None) -> None:
        self.module = module
        self.extra = extra
        self.install_command = install_command or f"pip install 'edgeyard[{extra}]'"
        what = f" for {purpose}" if purpose else ""
        super().__init__(f"'{module}' is needed{what} but is not installed: {self.install_command}")
        self.name = module


class ProfileError(EdgeyardError, ValueError):
    """A device profile file is malformed."""


class ProfileNotFound(EdgeyardError, KeyError):
    """A profile name that no profile directory holds."""

    def __init__(self, name: str, available: list[str], searched: list[str]) -> None:
        self.profile = name
        self.available = available
        super().__init__(
            f"no device profile named {name!r}; available: {', '.join(available) or '(none)'} "
            f"(searched {', '.join(searched)})"
        )

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class NotFound(EdgeyardError, KeyError):
    """A named thing (a release, a rollout, a signal) that does not exist; the message says what
    exists or how to create it."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class ModelError(EdgeyardError, ValueError):
    """The source model cannot be read, exported or run."""


class DataError(EdgeyardError, ValueError):
    """Calibration or evaluation data does not match the model's inputs."""


class BackendNotFound(EdgeyardError, KeyError):
    def __init__(self, name: str, available: list[str]) -> None:
        super().__init__(
            f"no backend named {name!r}; available: {', '.join(available)}"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class ConversionError(EdgeyardError):
    """A converter rejected the model (unsupported op, bad option...)."""


class ManifestError(EdgeyardError, ValueError):
    """A release manifest is missing, malformed, or does not match its files."""


class ConfigError(EdgeyardError, ValueError):
    """A build configuration file is malformed."""


class InternalError(EdgeyardError, RuntimeError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} ({BUG_REPORT})")
