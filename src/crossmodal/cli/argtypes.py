"""Argument types shared by the subcommands: counts that argparse checks, with one-line errors."""

from __future__ import annotations

import argparse

__all__ = ["MAX_COUNT", "count", "port"]

MAX_COUNT = 1_000_000_000  # more hits than any index holds; larger is a typo


def count(text: str) -> int:
    """A whole number from 1 to :data:`MAX_COUNT` (``--top``, ``--rerank``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_COUNT:,}, not {text}")
    return value


def port(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, not {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535 (0: any free port), not {text}")
    return value
