"""Which files are images, by suffix (the folder walk is :mod:`crossmodal.data.walk`)."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif", ".avif"}
)  # lower-case file suffixes treated as images


def is_image_path(path: Path) -> bool:
    """True when the suffix is one of :data:`IMAGE_SUFFIXES` (case-insensitive)."""
    return path.suffix.lower() in IMAGE_SUFFIXES
