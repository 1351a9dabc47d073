"""Finding image files under the paths a user names (folders walked by data.walk)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from crossmodal.errors import InputError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif", ".avif"}
)  # lower-case file suffixes treated as images


def is_image_path(path: Path) -> bool:
    """True when the suffix is one of :data:`IMAGE_SUFFIXES` (case-insensitive)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def find_images(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Image files named directly, or found under folders by :func:`walk` (sorted, hidden
    entries skipped, symlinked folders walked once and loop-checked); each path as given,
    joined with what lies under it (not made absolute).

    A named file is yielded whatever its suffix, so that a bad file gives a decode error
    naming it rather than being skipped in silence; a folder's unreadable corners are left
    out (logged by the walk).

    Raises:
        InputError: A path does not exist.
    """
    from crossmodal.data.walk import FoundFile, WalkConfig, walk  # walk reads IMAGE_SUFFIXES here

    config = WalkConfig(exclude=(), image_extensions=IMAGE_SUFFIXES, video_extensions=frozenset())
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            yield path
        elif path.is_dir():
            top = Path(os.path.abspath(path))
            for found in walk([path], config):
                if isinstance(found, FoundFile) and found.kind == "image":
                    yield path / found.path.relative_to(top)
        else:
            raise InputError(f"{path}: no such file or directory")
