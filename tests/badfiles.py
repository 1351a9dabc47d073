"""A folder of hard-to-decode files, for tests of every reader of user folders.

:func:`make_bad_folder` writes one file per way an image can go wrong (and a few good ones)
and says what :func:`crossmodal.data.images.load_image` must do with each. Plain functions, not
a test module: the image, walk and indexer tests all reuse it.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from crossmodal.data.images import BACKGROUND

__all__ = ["EXPECTED_PIXELS", "NOT_REGULAR_FILES", "make_bad_folder"]

NOT_REGULAR_FILES = frozenset({"a_directory.jpg", "fifo.jpg", "loop", "broken_link.jpg"})
"""Names :func:`make_bad_folder` may create that a walker must not yield as files."""

EXPECTED_PIXELS: dict[str, tuple[int, int, int]] = {
    "cmyk.jpg": (0, 255, 255),  # pure cyan
    "gray16.png": (156, 156, 156),  # 40000 / 256
    "palette_transparent.png": BACKGROUND,  # the transparent palette entry
    "animated.gif": (200, 10, 10),  # frame 0 is red, frame 1 green
    "png_named.jpg": (10, 20, 30),
}
"""The RGB value at pixel (x=1, y=1) of some files that must decode, after ``load_image``."""


def make_bad_folder(root: Path) -> dict[str, str | None]:
    """Write the bad (and a few good) image files into ``root``.

    Returns:
        ``{file name: a substring of the ImageDecodeError reason}``, or ``None`` for a file
        that must decode to RGB. The names include non-files (see :data:`NOT_REGULAR_FILES`):
        ``loop``, a symlink to ``root`` itself, and ``broken_link.jpg``, a dangling symlink.

    Notes:
        ``unreadable.jpg`` is a good JPEG with mode 000. Where that does not stop reads (the
        tests running as root, or a file system that ignores modes) it is expected to decode
        (``None``); otherwise "permission denied". ``fifo.jpg`` is left out where there is no
        ``os.mkfifo``. Call ``restore_permissions(root)`` before deleting the folder by hand.
    """
    root.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str | None] = {}

    _photo(64, 48).save(root / "good.jpg", quality=90)
    _photo(40, 30, seed=1).save(root / "good.png")
    expected.update({"good.jpg": None, "good.png": None})

    (root / "empty.jpg").write_bytes(b"")
    expected["empty.jpg"] = "empty file"

    whole = io.BytesIO()
    _photo(400, 300).save(whole, "JPEG", quality=90)
    (root / "truncated.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    (root / "truncated_header.jpg").write_bytes(whole.getvalue()[:200])
    expected.update({"truncated.jpg": "truncated", "truncated_header.jpg": "truncated"})

    (root / "bomb.png").write_bytes(_png_header_only(30000, 30000))  # over 2x Pillow's limit
    (root / "bomb_warning_zone.png").write_bytes(_png_header_only(10000, 10000))  # 1x..2x
    expected.update({"bomb.png": "decompression bomb", "bomb_warning_zone.png": "100000000"})

    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(root / "cmyk.jpg", quality=95)
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(root / "gray16.png")
    _palette_transparent().save(root / "palette_transparent.png", transparency=0)
    frames = [Image.new("RGB", (8, 8), (200, 10, 10)), Image.new("RGB", (8, 8), (10, 200, 10))]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=50)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(root / "png_named.jpg", format="PNG")
    expected.update(dict.fromkeys(EXPECTED_PIXELS))

    (root / "text_named.jpg").write_text("not a picture, just words\n" * 20)
    expected["text_named.jpg"] = "not an image"

    corrupt = bytearray((root / "good.png").read_bytes())
    corrupt[60:200] = bytes(b ^ 0x5A for b in corrupt[60:200])  # scramble the pixel stream
    (root / "corrupt.png").write_bytes(bytes(corrupt))
    expected["corrupt.png"] = "corrupt.png"  # the reason varies with zlib; the name must show

    unreadable = root / "unreadable.jpg"
    _photo(16, 16).save(unreadable)
    unreadable.chmod(0)
    expected["unreadable.jpg"] = None if os.access(unreadable, os.R_OK) else "permission denied"

    (root / "a_directory.jpg").mkdir()
    expected["a_directory.jpg"] = "is a directory"
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "fifo.jpg")  # opening it for reading would block forever
        expected["fifo.jpg"] = "not a regular file"
    (root / "loop").symlink_to(root, target_is_directory=True)
    expected["loop"] = "is a directory"
    (root / "broken_link.jpg").symlink_to(root / "no_such_target.jpg")
    expected["broken_link.jpg"] = "broken symlink"
    return expected


def restore_permissions(root: Path) -> None:
    """Make every file under ``root`` readable again (for cleanup)."""
    for path in root.rglob("*"):
        if not path.is_symlink() and not path.is_dir():
            path.chmod(0o644)


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth random content, compressing like a photo."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)


def _palette_transparent() -> Image.Image:
    """8×8 palette image: entry 0 (transparent) in the top-left quarter, entry 1 red elsewhere."""
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    image.paste(0, (0, 0, 4, 4))
    return image


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header declaring ``width × height`` grey pixels, with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
