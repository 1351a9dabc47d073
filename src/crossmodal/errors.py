"""The exception tree of crossmodal.

Library code raises these; only the CLI turns them into messages and exit codes, and only the
HTTP layer into status codes. Every message names the file, field or value at fault and says
what to do about it.

    CrossmodalError
    ├── ConfigError            a bad setting, model spec or architecture config
    │   └── UnknownModelError  a name that no registry holds (lists the valid ones)
    ├── CheckpointError        a weights file that is missing, malformed, refused or mismatched
    │   └── UnsafeCheckpointError  a checkpoint that would run code when loaded
    ├── InputError             bad user data
    │   ├── ImageDecodeError   an image file that cannot be decoded
    │   └── NotFoundError      a named thing (an id, a job, a path) that does not exist
    ├── RefusedError           refused by policy (a path outside the roots, a feature off)
    └── BackendUnavailableError  an optional dependency that is not installed
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "CheckpointError",
    "ConfigError",
    "CrossmodalError",
    "ImageDecodeError",
    "InputError",
    "NotFoundError",
    "RefusedError",
    "StaleWeightsError",
    "UnknownModelError",
    "UnsafeCheckpointError",
    "short_message",
]


class CrossmodalError(Exception):
    """Base class of every error that crossmodal raises on purpose."""


class ConfigError(CrossmodalError, ValueError):
    """A setting, model spec or architecture config is invalid."""


class StaleWeightsError(ConfigError):
    """An index's vectors were made by other weights than its model name loads now."""


class UnknownModelError(ConfigError, KeyError):
    """A model, backend or tokenizer name is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


class CheckpointError(CrossmodalError):
    """A weights file is missing, malformed, or does not fit the model."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint was refused because loading it could execute code."""


class InputError(CrossmodalError, ValueError):
    """User data (a file, a row, a text) is unusable."""


class ImageDecodeError(InputError):
    """An image file cannot be opened or decoded."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: cannot decode image ({reason}); check or remove the file")
        self.path = path
        self.reason = reason


class NotFoundError(InputError):
    """A named thing (an id, a job, a path) does not exist."""


class RefusedError(CrossmodalError):
    """Refused by policy: a path outside the allowed roots, a feature that is switched off."""


class BackendUnavailableError(CrossmodalError, ImportError):
    """An optional dependency needed by the requested backend is not installed."""

    def __init__(self, backend: str, extra: str, missing: str) -> None:
        super().__init__(
            f"backend {backend!r} needs the {missing!r} package: pip install 'crossmodal[{extra}]'"
        )
        self.backend = backend
        self.extra = extra
        self.missing = missing


def short_message(exc: BaseException, limit: int = 400) -> str:
    """An exception's message on one line, cut to ``limit`` characters (key lists can run to
    pages; libraries' messages can run over several lines)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + " ..."
