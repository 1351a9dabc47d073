"""Image checks: it decodes to the end, is not a decompression bomb, has a usable size and shape.

    verdict = check_image("photo.jpg", ImageRules(min_side=64))
    verdict.image       # the decoded RGB image (upright, alpha composited), or None
    verdict.reason      # None, or "image too small (32×40 < 64 px on the short side)"

The file is opened once for its header (size, mode, format) and decoded once, fully, with
:func:`crossmodal.data.images.load_image`, which refuses truncated files, applies the EXIF
orientation and normalises every mode (CMYK, 16-bit, palette, alpha) to RGB. The digest is
taken over the decoded pixels, so the same picture saved twice, or re-encoded losslessly, is
an exact duplicate whatever its file bytes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from PIL import Image

from crossmodal.data.images import ImageInput, load_image
from crossmodal.errors import ConfigError, InputError

__all__ = ["ImageRules", "ImageVerdict", "check_image", "pixel_digest"]


@dataclass(frozen=True)
class ImageRules:
    """What a usable image looks like."""

    min_side: int = 32  # the shorter side must have at least this many pixels
    max_aspect: float = 4.0  # long side / short side at most this (panoramas, banners, strips)
    max_pixels: int = 64_000_000  # a header declaring more is a decompression bomb, not decoded

    def __post_init__(self) -> None:
        if self.min_side < 1:
            raise ConfigError(f"min_side must be at least 1, not {self.min_side}")
        if self.max_aspect < 1.0:
            raise ConfigError(f"max_aspect must be at least 1, not {self.max_aspect}")
        if self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be at least 1, not {self.max_pixels}")


@dataclass(frozen=True)
class ImageVerdict:
    """What the checks made of one image."""

    width: int  # as decoded and oriented (0 when the header could not be read)
    height: int
    mode: str  # the file's own mode before normalisation ("RGB", "CMYK", "I;16", "P", ...)
    format: str  # "JPEG", "PNG", ... ("" when unknown)
    digest: str  # sha256 of the decoded RGB pixels and size ("" when not decoded)
    reason: str | None  # why it is refused, or None
    rule: str | None  # "image_corrupt", "image_bomb", "image_size" or "image_aspect"
    image: Image.Image | None  # the decoded RGB image when accepted


def pixel_digest(image: Image.Image) -> str:
    """sha256 over the size and the RGB pixel bytes of a decoded image."""
    digest = hashlib.sha256(f"{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def check_image(source: ImageInput, rules: ImageRules) -> ImageVerdict:
    """Decode ``source`` fully and check it against ``rules``; never raises for bad data."""
    mode, fmt, size = _header(source)
    if size is None or size[0] * size[1] > rules.max_pixels:
        w, h = size if size is not None else (0, 0)
        declared = f"{w}×{h} = {w * h:,} pixels" if size else "more pixels than Pillow opens"
        reason = (
            f"decompression bomb: the header declares {declared}, over the limit of "
            f"{rules.max_pixels:,} (raise --max-pixels if such images are expected)"
        )
        return ImageVerdict(w, h, mode, fmt, "", reason, "image_bomb", None)
    try:
        image = load_image(source, max_pixels=rules.max_pixels)
    except InputError as exc:
        w, h = size
        return ImageVerdict(w, h, mode, fmt, "", str(exc), "image_corrupt", None)
    w, h = image.size
    failure = _shape_failure(w, h, rules)
    if failure is not None:
        return ImageVerdict(w, h, mode, fmt, "", failure[0], failure[1], None)
    return ImageVerdict(w, h, mode, fmt, pixel_digest(image), None, None, image)


def _shape_failure(w: int, h: int, rules: ImageRules) -> tuple[str, str] | None:
    """(reason, rule) for a size or shape out of bounds, else None."""
    short, long = min(w, h), max(w, h)
    if short < rules.min_side:
        return f"image too small ({w}×{h} < {rules.min_side} px on the short side)", "image_size"
    if long / short > rules.max_aspect:
        return (
            f"aspect ratio {long / short:.1f}:1 ({w}×{h}) is over {rules.max_aspect:g}:1",
            "image_aspect",
        )
    return None


def _header(source: ImageInput) -> tuple[str, str, tuple[int, int] | None]:
    """Mode, format and declared size, read without decoding.

    The size is ``None`` only for a header past Pillow's own bomb limit; an unreadable
    header gives ``(0, 0)`` and is left for :func:`load_image` to describe.
    """
    if isinstance(source, Image.Image):
        return source.mode, source.format or "", source.size
    if not isinstance(source, str | os.PathLike):
        return "", "", (0, 0)
    try:
        with Image.open(os.fspath(source)) as image:
            return image.mode, image.format or "", image.size
    except Image.DecompressionBombError:
        return "", "", None
    except Exception:  # Pillow raises many types on a bad header; load_image says which
        return "", "", (0, 0)
