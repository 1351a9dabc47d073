"""Image decoding (crossmodal.data.images.load_image) and preprocessing (ImagePreprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from crossmodal.data.images import (
    BACKGROUND,
    ImagePreprocess,
    PreprocessConfig,
    load_image,
    to_rgb,
)
from crossmodal.errors import ImageDecodeError, InputError

SIZES = [(300, 200), (200, 300), (224, 224), (1000, 50), (31, 47), (225, 301), (50, 1000)]


def _random_rgb(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random content upscaled 10x: smooth detail that compresses like a photo, made fast."""
    small = _random_rgb(max(1, width // 10), max(1, height // 10), seed)
    return small.resize((width, height), Image.Resampling.BILINEAR)


@pytest.fixture(scope="module")
def openclip_val_transform() -> Callable[[Image.Image], Any]:
    open_clip = pytest.importorskip("open_clip")
    torch = pytest.importorskip("torch")
    # Only the transform is wanted: build the model on the meta device, skipping weight init.
    with torch.device("meta"):
        _, _, val_transform = open_clip.create_model_and_transforms("ViT-B-32", device="meta")
    return val_transform  # type: ignore[no-any-return]


# --- (a) preprocessing matches OpenCLIP --------------------------------------------------


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_preprocess_matches_openclip(
    openclip_val_transform: Callable[[Image.Image], Any], width: int, height: int
) -> None:
    image = _random_rgb(width, height, seed=width * 7 + height)
    ours = ImagePreprocess(PreprocessConfig())(image)
    want = openclip_val_transform(image).numpy()
    assert ours.dtype == np.float32
    assert ours.shape == want.shape == (3, 224, 224)
    assert float(np.abs(ours - want).max()) <= 1e-5


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("resize_mode", ["shortest", "squash"])
def test_preprocess_modes_match_openclip_image_transform(
    resize_mode: Any, interpolation: Any
) -> None:
    open_clip = pytest.importorskip("open_clip")
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    want_t = open_clip.image_transform(
        64, is_train=False, mean=mean, std=std, resize_mode=resize_mode, interpolation=interpolation
    )
    ours_t = ImagePreprocess(
        PreprocessConfig(64, mean, std, resize_mode=resize_mode, interpolation=interpolation)
    )
    for width, height in [(150, 97), (33, 80), (64, 64)]:
        image = _random_rgb(width, height, seed=height)
        assert float(np.abs(ours_t(image) - want_t(image).numpy()).max()) <= 1e-5


def test_preprocess_batch_and_draft_size() -> None:
    preprocess = ImagePreprocess(PreprocessConfig(image_size=32))
    assert preprocess.image_size == preprocess.draft_size == 32
    images = [_random_rgb(40, 50, seed=i) for i in range(3)]
    batch = preprocess.batch(images)
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == np.float32
    assert np.array_equal(batch[1], preprocess(images[1]))
    assert preprocess.batch([]).shape == (0, 3, 32, 32)


def test_images_module_needs_no_torch() -> None:
    code = "import sys, crossmodal.data.images; sys.exit('torch' in sys.modules)"
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


# --- (b) bad files -----------------------------------------------------------------------


def test_truncated_jpeg_raises_naming_path(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    _photo_like(400, 300).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError) as info:
        load_image(path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    assert "truncated" in info.value.reason
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_random_bytes_raise(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ImageDecodeError) as info:
        load_image(str(path))
    assert info.value.path == str(path)


def test_missing_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageDecodeError) as info:
        load_image(path)
    assert info.value.path == str(path)
    assert info.value.reason == "file not found"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)  # warning zone: 1x..2x the limit
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        load_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's own error: over 2x
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        load_image(path)


def test_other_input_type_raises() -> None:
    with pytest.raises(InputError, match="int"):
        load_image(3)  # type: ignore[arg-type]


# --- (c) EXIF orientation ----------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((40, 80, 3), dtype=np.uint8)  # 80 wide, 40 tall
    pixels[:20, :20] = (255, 0, 0)  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    image = load_image(path)
    assert image.size == (40, 80)
    assert image.getpixel((30, 10))[0] > 200  # now top-right
    assert image.getpixel((10, 10))[0] < 50


# --- (d) mode normalisation --------------------------------------------------------------


def test_transparent_rgba_png_gets_background(tmp_path: Path) -> None:
    pixels = np.zeros((10, 10, 4), dtype=np.uint8)
    pixels[:, :5] = (10, 20, 30, 255)  # opaque left half; right half fully transparent
    path = tmp_path / "emoji.png"
    Image.fromarray(pixels, mode="RGBA").save(path)
    image = load_image(path)
    assert image.mode == "RGB"
    out = np.asarray(image)
    assert (out[:, 5:] == BACKGROUND).all()
    assert (out[:, :5] == (10, 20, 30)).all()


def _palette_with_transparency() -> Image.Image:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    image.paste(1, (0, 0, 4, 8))
    image.info["transparency"] = 0
    return image


@pytest.mark.parametrize(
    ("name", "make", "expect_left", "expect_right"),
    [
        ("pal.png", _palette_with_transparency, (200, 10, 10), BACKGROUND),
        ("la.png", lambda: Image.new("LA", (8, 8), (50, 0)), BACKGROUND, BACKGROUND),
        (
            "gray16.png",
            lambda: Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)),
            (156, 156, 156),
            (156, 156, 156),
        ),
        ("cmyk.jpg", lambda: Image.new("CMYK", (8, 8), (0, 0, 0, 0)), (255, 255, 255), None),
        ("one.png", lambda: Image.new("1", (8, 8), 1), (255, 255, 255), (255, 255, 255)),
        ("gray.png", lambda: Image.new("L", (8, 8), 77), (77, 77, 77), (77, 77, 77)),
    ],
)
def test_modes_come_back_rgb(
    tmp_path: Path,
    name: str,
    make: Callable[[], Image.Image],
    expect_left: tuple[int, int, int],
    expect_right: tuple[int, int, int] | None,
) -> None:
    path = tmp_path / name
    source = make()
    source.save(path, **({"transparency": 0} if source.mode == "P" else {}))
    with Image.open(path) as reopened:
        assert reopened.mode == source.mode or (name == "gray16.png" and "I" in reopened.mode)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (8, 8)
    px = np.asarray(image).astype(int)
    assert np.abs(px[4, 1] - expect_left).max() <= 2
    if expect_right is not None:
        assert np.abs(px[4, 6] - expect_right).max() <= 2


def test_gif_with_transparency_is_detached_from_file(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [_palette_with_transparency(), Image.new("P", (8, 8), 1)]
    frames[1].putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    frames[0].save(path, save_all=True, append_images=frames[1:], transparency=0)
    image = load_image(path)
    assert image.mode == "RGB"
    assert tuple(np.asarray(image)[4, 6]) == BACKGROUND
    path.unlink()  # the file is no longer needed (nor held open)
    assert np.asarray(image).shape == (8, 8, 3)


def test_pillow_input_is_converted_and_oriented() -> None:
    rgba = Image.new("RGBA", (4, 2), (1, 2, 3, 0))
    assert tuple(np.asarray(load_image(rgba))[0, 0]) == BACKGROUND
    rgb = Image.new("RGB", (4, 2), (9, 9, 9))
    assert load_image(rgb) is rgb
    assert to_rgb(Image.new("L", (3, 3), 5)).mode == "RGB"


# --- (e) JPEG draft mode -----------------------------------------------------------------


def test_draft_mode_decodes_smaller_and_preprocesses_close(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    _photo_like(4000, 3000).save(path, quality=85)
    preprocess = ImagePreprocess(PreprocessConfig())
    draft = load_image(path, draft_size=preprocess.draft_size)
    full = load_image(path)
    assert full.size == (4000, 3000)
    assert draft.mode == "RGB"
    assert preprocess.draft_size <= min(draft.size) < 3000
    a = preprocess(draft).ravel().astype(np.float64)
    b = preprocess(full).ravel().astype(np.float64)
    assert float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) > 0.99


def test_draft_size_is_ignored_for_png(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    _random_rgb(500, 300).save(path)
    assert load_image(path, draft_size=64).size == (500, 300)


# --- (f) numpy input ---------------------------------------------------------------------


def test_numpy_inputs() -> None:
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(load_image(rgb)), rgb)

    rgba = np.concatenate([rgb, np.zeros((6, 9, 1), dtype=np.uint8)], axis=2)
    assert (np.asarray(load_image(rgba)) == BACKGROUND).all()

    as_float = rgb.astype(np.float32) / 255.0
    assert np.array_equal(np.asarray(load_image(as_float)), rgb)

    gray = rng.integers(0, 256, (6, 9), dtype=np.uint8)
    out = np.asarray(load_image(gray))
    assert out.shape == (6, 9, 3) and all(np.array_equal(out[..., c], gray) for c in range(3))

    gray_float = np.asarray(load_image(np.full((4, 4), 1.0, dtype=np.float64)))
    assert (gray_float == 255).all()


@pytest.mark.parametrize(
    ("array", "needle"),
    [
        (np.zeros((4, 4, 2), dtype=np.uint8), r"\(4, 4, 2\)"),
        (np.zeros((2, 4, 4, 3), dtype=np.uint8), r"\(2, 4, 4, 3\)"),
        (np.zeros((0, 4, 3), dtype=np.uint8), r"\(0, 4, 3\)"),
        (np.zeros((4, 4, 3), dtype=np.int32), "int32"),
        (np.full((4, 4, 3), 255.0, dtype=np.float32), r"\[0, 1\]"),
        (np.full((4, 4), np.nan, dtype=np.float32), "finite"),
    ],
)
def test_bad_numpy_input_raises(array: np.ndarray[Any, Any], needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        load_image(array)
