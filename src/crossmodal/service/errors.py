"""The one place the library's errors become HTTP status codes.

The core (:mod:`crossmodal.service.core`, the search library) raises crossmodal's typed
errors; the app's single handler answers each with ``{"error": message}`` and the status
:func:`status_of` gives it.
"""

from __future__ import annotations

from crossmodal.errors import (
    BackendUnavailableError,
    CrossmodalError,
    NotFoundError,
    RefusedError,
)

__all__ = ["status_of"]


def status_of(exc: CrossmodalError) -> int:
    """The HTTP status of a library error: its own ``status`` when it carries one (a fetch
    that failed: 403, 413, 502, 504), 404 not found, 403 refused, 501 a missing optional
    backend, else 400 (bad input or settings in the request)."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return status
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, RefusedError):
        return 403
    if isinstance(exc, BackendUnavailableError):
        return 501
    return 400
