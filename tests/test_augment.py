"""Batched training augmentation (crossmodal.train.augment) on hand-made images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from crossmodal.errors import ConfigError
from crossmodal.train.augment import (
    N_PARAMS,
    TrainAugment,
    apply_batch,
    draw_params,
)

IDENTITY = (0.0, 0.0, 0.0)  # mean
UNIT = (1.0, 1.0, 1.0)  # std: outputs stay in [0, 1]


def _params(**values: float) -> torch.Tensor:
    """One item's parameter vector: the identity, with named entries replaced."""
    p = torch.from_numpy(draw_params(TrainAugment.off(), np.random.default_rng(0)))
    names = ["angle", "cx", "cy", "hw", "hh", "zoom", "zx", "zy", "flip"]
    names += ["bright", "contrast", "saturation", "gray", "outline", "line_art", "thick"]
    assert len(names) == N_PARAMS
    for name, value in values.items():
        p[names.index(name)] = value
    return p.unsqueeze(0)


def _run(image: torch.Tensor, params: torch.Tensor, size: int | None = None) -> torch.Tensor:
    side = image.shape[-1] if size is None else size
    return apply_batch(image.unsqueeze(0), params, side, IDENTITY, UNIT)[0]


def _square(side: int = 16) -> torch.Tensor:
    """White canvas with a red square in the middle half (uint8, 3×side×side)."""
    image = torch.full((3, side, side), 255, dtype=torch.uint8)
    q = side // 4
    image[:, q : side - q, q : side - q] = torch.tensor([200, 20, 20]).view(3, 1, 1)
    return image


def test_off_is_the_plain_normalised_image() -> None:
    image = torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.3, 0.4)
    params = _params()
    out = apply_batch(image.unsqueeze(0), params, 12, mean, std)[0]
    expected = (image.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(
        3, 1, 1
    )
    assert torch.allclose(out, expected, atol=1e-6)


def test_flip_and_quarter_turn_are_exact() -> None:
    image = torch.randint(0, 256, (3, 10, 10), dtype=torch.uint8)
    as_float = image.float() / 255
    flipped = _run(image, _params(flip=1.0))
    assert torch.allclose(flipped, as_float.flip(-1), atol=1e-5)
    turned = _run(image, _params(angle=math.pi / 2))
    # an output point o samples the source at R(θ)·o: counter-clockwise, as Pillow turns
    assert torch.allclose(turned, torch.rot90(as_float, k=1, dims=(1, 2)), atol=1e-5)


def test_crop_box_selects_its_region() -> None:
    image = torch.full((3, 16, 16), 255, dtype=torch.uint8)
    image[:, :, :8] = torch.tensor([0, 0, 255]).view(3, 1, 1)  # left half blue
    left = _run(image, _params(cx=-0.5, hw=0.4, hh=0.4))
    blue = torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1).expand(3, 16, 16)
    assert torch.allclose(left, blue, atol=1e-6)
    right = _run(image, _params(cx=0.5, hw=0.4, hh=0.4))
    assert torch.allclose(right, torch.ones(3, 16, 16), atol=1e-6)


def test_zoom_out_pads_with_the_background() -> None:
    image = torch.zeros((3, 16, 16), dtype=torch.uint8)  # black picture
    out = _run(image, _params(zoom=0.5, zx=0.5, zy=-0.5))  # top-right quarter of the canvas
    assert torch.all(out[:, 8:, :] == 1) and torch.all(out[:, :, :8] == 1)  # white elsewhere
    assert torch.all(out[:, 1:7, 9:15] == 0)  # the shrunken picture, away from its edge


def test_outline_and_line_art_draw_black_contours() -> None:
    image = _square(16)
    outlined = _run(image, _params(outline=1.0))
    black = (outlined.sum(0) == 0).nonzero().tolist()
    assert black, "no contour drawn"
    assert all(r in (3, 4, 11, 12) or c in (3, 4, 11, 12) for r, c in black)  # on the edge
    assert torch.allclose(outlined[:, 8, 8], torch.tensor([200, 20, 20]) / 255)  # fill kept
    assert torch.all(outlined[:, 0, 0] == 1)  # background kept
    lines = _run(image, _params(line_art=1.0, thick=1.0))
    assert set(lines.unique().tolist()) == {0.0, 1.0}  # black on white only
    assert torch.all(lines[:, 8, 8] == 1) and torch.all(lines[:, 4, 8] == 0)
    assert (lines.sum(0) == 0).sum() > (outlined.sum(0) == 0).sum()  # thick > thin


def test_grayscale_and_jitter() -> None:
    image = _square(8)
    grey = _run(image, _params(gray=1.0))
    assert torch.allclose(grey[0], grey[1]) and torch.allclose(grey[1], grey[2])
    darker = _run(image, _params(bright=0.5))
    assert torch.allclose(darker[:, 0, 0], torch.full((3,), 0.5))
    flat = _run(image, _params(saturation=0.0))
    assert torch.allclose(flat[0], flat[2], atol=1e-6)


def test_draw_params_are_seeded_and_respect_the_config() -> None:
    strong = TrainAugment(
        crop_scale=(0.3, 0.6),
        rotation=30,
        zoom_out=(0.5, 0.9),
        color_jitter=0.4,
        grayscale=0.5,
        outline=0.5,
        line_art=0.2,
        hflip=True,
    )
    once = draw_params(strong, np.random.default_rng(7))
    assert np.array_equal(once, draw_params(strong, np.random.default_rng(7)))
    draws = np.stack([draw_params(strong, np.random.default_rng(s)) for s in range(400)])
    angle, hw, hh, zoom = draws[:, 0], draws[:, 3], draws[:, 4], draws[:, 5]
    assert np.all(np.abs(angle) <= math.radians(30) + 1e-6) and angle.std() > 0.2
    area = hw * hh
    assert np.all((area >= 0.3 - 1e-5) & (area <= 0.6 + 1e-5))
    assert np.all((zoom >= 0.5) & (zoom <= 0.9))
    assert np.all(np.abs(draws[:, 6]) <= 1 - zoom + 1e-6)  # the picture stays on the canvas
    for column, p in ((12, 0.5), (14, 0.2)):
        assert abs(draws[:, column].mean() - p) < 0.08
    assert not np.any((draws[:, 13] == 1) & (draws[:, 14] == 1))  # outline xor line art
    images = torch.randint(0, 256, (400, 3, 8, 8), dtype=torch.uint8)
    out = apply_batch(images, torch.from_numpy(draws), 8, IDENTITY, UNIT)
    assert out.shape == (400, 3, 8, 8) and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize(
    "bad",
    [
        {"zoom_out": (0.0, 1.0)},
        {"zoom_out": (0.9, 0.5)},
        {"outline": 1.5},
        {"line_art": -0.1},
        {"grayscale": 2.0},
        {"crop_scale": (0.0, 1.0)},
        {"rotation": 200.0},
    ],
)
def test_bad_config_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="TrainAugment"):
        TrainAugment(**bad)  # type: ignore[arg-type]
