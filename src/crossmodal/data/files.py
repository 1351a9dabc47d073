"""Finding image files under the paths a user names."""

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
    """Image files named directly, or found recursively (sorted, hidden entries skipped).

    A named file is yielded whatever its suffix, so that a bad file gives a decode error
    naming it rather than being skipped in silence. Directory symlinks are not followed, so
    a symlink loop cannot trap the walk.
    """
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            yield path
        elif path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    candidate = Path(root) / name
                    if not name.startswith(".") and is_image_path(candidate):
                        yield candidate
        else:
            raise InputError(f"{path}: no such file or directory")
