"""A small captioned corpus with planted problems, for the tests of ``crossmodal data clean``.

:func:`make_planted_corpus` draws flat coloured circles and squares (shapes the embedded
emoji-mini model knows: 🔴 🟦 🟢 ...) with their names as captions, then plants one problem
per kind next to them: copies, resized and recompressed copies, corrupt files, decompression
bombs, tiny and banner-shaped images, empty, symbolic, over-long and foreign-language
captions, captions of something else entirely, and a manifest row whose file is missing.
Clean items are also saved in awkward modes (CMYK, 16-bit grey, palette, alpha), which must
be normalised and kept, not refused. Plain functions, not a test module.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tests.badfiles import _png_header_only

__all__ = [
    "COLOURS",
    "THREE_SHAPES",
    "PlantedCorpus",
    "make_planted_corpus",
    "shape_gallery",
    "shape_image",
]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (221, 46, 68),
    "orange": (244, 144, 12),
    "yellow": (253, 203, 88),
    "green": (120, 177, 89),
    "blue": (85, 172, 238),
    "purple": (170, 142, 214),
    "brown": (193, 105, 79),
}
"""Twemoji's colours for its circle and square emoji."""


def shape_image(colour: str, shape: str, size: int = 96) -> Image.Image:
    """A flat ``colour`` circle or square on white, drawn like an emoji."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    box = (size // 16, size // 16, size - size // 16, size - size // 16)
    if shape == "circle":
        draw.ellipse(box, fill=COLOURS[colour])
    else:
        draw.rounded_rectangle(box, radius=size // 12, fill=COLOURS[colour])
    return image


THREE_SHAPES = [("red", "circle"), ("blue", "square"), ("green", "circle")]


def shape_gallery(folder: Path, pairs: list[tuple[str, str]]) -> Path:
    """``folder`` (made) holding ``{colour}_{shape}.png`` for each (colour, shape) pair."""
    folder.mkdir(parents=True, exist_ok=True)
    for colour, shape in pairs:
        shape_image(colour, shape).save(folder / f"{colour}_{shape}.png")
    return folder


def _save_in_mode(picture: Image.Image, path: Path, mode: str) -> None:
    if mode == "CMYK":
        picture.convert("CMYK").save(path, quality=95)
    elif mode == "P":
        picture.quantize(8).save(path)
    else:  # RGBA: the white made transparent, the shape opaque
        rgba = picture.convert("RGBA")
        pixels = np.asarray(rgba).copy()
        pixels[(pixels[..., :3] == 255).all(axis=-1), 3] = 0
        Image.fromarray(pixels).save(path)


@dataclass(frozen=True)
class PlantedCorpus:
    """The manifest, and what cleaning must make of each of its images."""

    manifest: Path
    expected: dict[str, str | None]  # source path → the rule it must leave by, None: kept
    missing_row: str  # the image path of the row whose file does not exist
    dropped_captions: dict[str, str]  # caption text → rule (captions cut from kept items)
    modes: dict[str, str]  # source path → the mode it was saved in (normalised and kept)


def make_planted_corpus(root: Path) -> PlantedCorpus:
    """Write images and ``manifest.jsonl`` into ``root`` (see the module docstring)."""
    images = root / "images"
    images.mkdir(parents=True)
    rows: list[dict[str, object]] = []
    expected: dict[str, str | None] = {}
    modes: dict[str, str] = {}

    def add(path: Path, captions: list[str], rule: str | None) -> None:
        rows.append({"image": str(path), "caption": captions})
        expected[str(path)] = rule

    # The clean pictures; three are saved in awkward modes, normalised to RGB and kept.
    odd_modes = {
        ("yellow", "circle"): ("yellow_circle_cmyk.jpg", "CMYK"),
        ("green", "circle"): ("green_circle_alpha.png", "RGBA"),
        ("purple", "square"): ("purple_square_palette.png", "P"),
    }
    for colour in COLOURS:
        for shape in ("circle", "square"):
            picture = shape_image(colour, shape)
            if (colour, shape) not in odd_modes:
                path = images / f"{colour}_{shape}.png"
                picture.save(path)
            else:
                name, mode = odd_modes[colour, shape]
                path = images / name
                _save_in_mode(picture, path, mode)
                modes[str(path)] = mode
            add(path, [f"{colour} {shape}", f"a {colour} {shape}"], None)
    grey16 = images / "black_circle_16bit.png"
    disc = np.full((72, 72), 65535, dtype=np.uint16)
    yy, xx = np.mgrid[:72, :72]
    disc[(yy - 36) ** 2 + (xx - 36) ** 2 < 32**2] = 2000
    Image.fromarray(disc).save(grey16)
    add(grey16, ["black circle"], None)
    modes[str(grey16)] = "I;16"

    # Duplicates: a byte copy, the same pixels re-encoded, a resized and recompressed copy.
    red = images / "red_circle.png"
    copy = images / "copies" / "red_circle_copy.png"
    copy.parent.mkdir()
    shutil.copyfile(red, copy)
    add(copy, ["red circle"], "duplicate_exact")
    reencoded = images / "copies" / "orange_square_level9.png"
    Image.open(images / "orange_square.png").save(reencoded, compress_level=9)
    add(reencoded, ["orange square emoji"], "duplicate_exact")
    for colour, shape, side, quality in (("blue", "square", 72, 70), ("green", "square", 64, 60)):
        small = images / "copies" / f"{colour}_{shape}_small.jpg"
        Image.open(images / f"{colour}_{shape}.png").resize((side, side)).save(
            small, quality=quality
        )
        add(small, [f"{colour} {shape}"], "duplicate_near")

    # Files that must not decode, or must not be decoded.
    bad = images / "bad"
    bad.mkdir()
    whole = io.BytesIO()
    shape_image("red", "square").save(whole, format="PNG")
    (bad / "truncated.png").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    (bad / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(2000))
    (bad / "empty.png").write_bytes(b"")
    for name in ("truncated.png", "noise.jpg", "empty.png"):
        add(bad / name, ["red square"], "image_corrupt")
    (bad / "bomb.png").write_bytes(_png_header_only(9000, 9000))  # 81 M pixels > 64 M
    (bad / "huge_bomb.png").write_bytes(_png_header_only(30000, 30000))  # past Pillow's limit
    add(bad / "bomb.png", ["blue circle"], "image_bomb")
    add(bad / "huge_bomb.png", ["blue circle"], "image_bomb")
    tiny = bad / "tiny.png"
    shape_image("brown", "circle", 16).save(tiny)
    add(tiny, ["brown circle"], "image_size")
    banner = bad / "banner.png"
    Image.new("RGB", (400, 40), COLOURS["blue"]).save(banner)
    add(banner, ["blue rectangle"], "image_aspect")

    # Captions that are not captions. Each image is a clean, new picture (a larger circle),
    # so only its caption can send it away.
    def fresh(name: str, colour: str) -> Path:
        path = images / "captions" / name
        path.parent.mkdir(exist_ok=True)
        shape_image(colour, "circle", 112).rotate(0).save(path)
        return path

    add(fresh("empty_caption.png", "red"), ["   "], "caption_empty")
    add(fresh("symbols.png", "orange"), ["#### 1234 !!!! ----"], "caption_non_text")
    add(fresh("essay.png", "yellow"), ["a yellow circle " * 80], "caption_length")
    add(fresh("russian.png", "green"), ["зелёный круг"], "caption_language")

    # Captions of something else entirely: the agreement rule must cut them.
    for name, colour, caption in (
        ("airplane.png", "blue", "an airplane taking off"),
        ("pizza.png", "purple", "a slice of pizza"),
        ("tree.png", "brown", "a christmas tree"),
    ):
        add(fresh(name, colour), [caption], "mismatch")

    # A kept item whose second caption is Japanese, and one with a symbol-only caption.
    dropped = {"赤い丸": "caption_language", "%%%% 99": "caption_non_text"}
    rows[0]["caption"] = [*rows[0]["caption"], "赤い丸"]  # type: ignore[misc]
    rows[1]["caption"] = [*rows[1]["caption"], "%%%% 99"]  # type: ignore[misc]

    missing = str(images / "not_there.png")
    rows.append({"image": missing, "caption": ["a red circle"]})

    manifest = root / "manifest.jsonl"
    manifest.write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
    )
    return PlantedCorpus(manifest, expected, missing, dropped, modes)
