"""Training augmentation, drawn per item and applied per batch with tensor ops.

Each item draws its augmentation numbers from its own generator (:func:`draw_params`, a
small float vector), so an item stays a pure function of its seed; the pixels are then made
for the whole batch at once by :func:`apply_batch`: one ``affine_grid``/``grid_sample`` for
rotation, random-resized crop, zoom-out and flip, then colour jitter, grayscale, drawn
outlines or line art, and the model's normalisation. On a 2-core CPU this costs ~0.1 ms an
image against ~2 ms for the same chain in Pillow, and it runs unchanged on a GPU.

The style augmentations target drawings (emoji, icons, clip art), where a model must
recognise a shape whatever the artist's conventions:

* ``zoom_out`` shrinks the picture onto a padded canvas (styles differ in margins);
* ``outline`` draws black contour lines along colour edges (OpenMoji-like styles);
* ``line_art`` keeps only those contours, black on white (black-and-white line art);
* ``grayscale`` drops colour.

Everything is off by default except a mild crop and rotation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor

from crossmodal.errors import ConfigError

__all__ = ["N_PARAMS", "TrainAugment", "apply_batch", "draw_params"]

# Layout of one item's parameter vector (see draw_params).
_ANGLE, _CX, _CY, _HW, _HH, _ZOOM, _ZX, _ZY, _FLIP = range(9)
_BRIGHT, _CONTRAST, _SATURATION, _GRAY, _OUTLINE, _LINE_ART, _THICK = range(9, 16)
N_PARAMS = 16

EDGE_THRESHOLD = 0.2  # colour step (0..1, max over channels) that counts as a contour


@dataclass(frozen=True)
class TrainAugment:
    """Random image augmentation for training; the defaults are mild and keep handedness."""

    crop_scale: tuple[float, float] = (0.8, 1.0)  # area fraction range of the random crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect-ratio range of the random crop
    rotation: float = 5.0  # max rotation in degrees, drawn uniformly in [-rotation, rotation]
    zoom_out: tuple[float, float] = (1.0, 1.0)  # side fraction of the picture on its canvas
    color_jitter: float = 0.0  # brightness/contrast/saturation factors in [1-j, 1+j]; 0: off
    grayscale: float = 0.0  # probability of dropping colour
    outline: float = 0.0  # probability of drawing black contours along colour edges
    line_art: float = 0.0  # probability of keeping only the contours (black on white)
    hflip: bool = False  # mirror half the images; off: emoji and text have a handedness

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"TrainAugment.crop_scale={self.crop_scale}: need 0 < lo <= hi <= 1")
        r_lo, r_hi = self.crop_ratio
        if not 0 < r_lo <= r_hi:
            raise ConfigError(f"TrainAugment.crop_ratio={self.crop_ratio}: need 0 < lo <= hi")
        z_lo, z_hi = self.zoom_out
        if not 0 < z_lo <= z_hi <= 1:
            raise ConfigError(f"TrainAugment.zoom_out={self.zoom_out}: need 0 < lo <= hi <= 1")
        if not 0 <= self.rotation <= 180:
            raise ConfigError(f"TrainAugment.rotation={self.rotation}: need 0..180 degrees")
        if not 0 <= self.color_jitter < 1:
            raise ConfigError(f"TrainAugment.color_jitter={self.color_jitter}: need [0, 1)")
        for name in ("grayscale", "outline", "line_art"):
            p = getattr(self, name)
            if not 0 <= p <= 1:
                raise ConfigError(f"TrainAugment.{name}={p}: a probability, need [0, 1]")

    @classmethod
    def off(cls) -> TrainAugment:
        """No augmentation: the evaluation transform, nothing random."""
        return cls(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotation=0.0)


def draw_params(augment: TrainAugment, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """One item's augmentation numbers, every one drawn from ``rng`` (layout: ``_ANGLE``…).

    Geometry is in ``grid_sample``'s normalised coordinates, where the source square spans
    ``[-1, 1]`` on both axes. The crop box follows torchvision's ``RandomResizedCrop`` (area
    fraction, log-uniform aspect ratio) inside the square.
    """
    p = np.zeros(N_PARAMS, dtype=np.float32)
    p[_HW] = p[_HH] = p[_ZOOM] = 1.0
    p[_BRIGHT] = p[_CONTRAST] = p[_SATURATION] = 1.0
    if augment.rotation > 0:
        p[_ANGLE] = math.radians(float(rng.uniform(-augment.rotation, augment.rotation)))
    if augment.crop_scale != (1.0, 1.0) or augment.crop_ratio != (1.0, 1.0):
        area = float(rng.uniform(*augment.crop_scale))
        log_lo, log_hi = math.log(augment.crop_ratio[0]), math.log(augment.crop_ratio[1])
        ratio = math.exp(float(rng.uniform(log_lo, log_hi)))
        half_w = min(1.0, math.sqrt(area * ratio))
        half_h = min(1.0, math.sqrt(area / ratio))
        p[_HW], p[_HH] = half_w, half_h
        p[_CX] = float(rng.uniform(-(1 - half_w), 1 - half_w))
        p[_CY] = float(rng.uniform(-(1 - half_h), 1 - half_h))
    if augment.zoom_out != (1.0, 1.0):
        zoom = float(rng.uniform(*augment.zoom_out))
        p[_ZOOM] = zoom
        p[_ZX] = float(rng.uniform(-(1 - zoom), 1 - zoom))
        p[_ZY] = float(rng.uniform(-(1 - zoom), 1 - zoom))
    if augment.hflip:
        p[_FLIP] = float(rng.random() < 0.5)
    j = augment.color_jitter
    if j > 0:
        p[_BRIGHT], p[_CONTRAST], p[_SATURATION] = rng.uniform(1 - j, 1 + j, size=3)
    if augment.grayscale > 0:
        p[_GRAY] = float(rng.random() < augment.grayscale)
    if augment.line_art > 0:
        p[_LINE_ART] = float(rng.random() < augment.line_art)
    if augment.outline > 0 and not p[_LINE_ART]:
        p[_OUTLINE] = float(rng.random() < augment.outline)
    if p[_OUTLINE] or p[_LINE_ART]:
        p[_THICK] = float(rng.random() < 0.5)  # thin (1 px) or thick (3 px) contours
    return p


def apply_batch(
    images: Tensor,
    params: Tensor,
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    background: tuple[int, int, int] = (255, 255, 255),
) -> Tensor:
    """Augment and normalise a batch: ``(B, 3, R, R)`` uint8 → ``(B, 3, size, size)`` float32.

    ``params`` is ``(B, N_PARAMS)`` from :func:`draw_params`. Areas uncovered by rotation or
    zoom-out take ``background`` (the colour transparency is composited onto). With the
    parameters of :meth:`TrainAugment.off` and ``R == size`` the output equals the plain
    normalised input.
    """
    x = images.to(torch.float32) / 255.0
    bg = torch.tensor(background, dtype=torch.float32).view(1, 3, 1, 1) / 255.0
    p = params.to(torch.float32)
    x = _geometry(x - bg, p, size) + bg  # grid_sample pads with 0: shift so padding is bg
    x = _colour(x, p)
    x = _contours(x, p)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def _geometry(x: Tensor, p: Tensor, size: int) -> Tensor:
    """Rotate, crop, zoom out and flip with one sampling per image.

    An output point ``o`` maps to the source point ``R(θ) · (c + H · F · (o − z₀) / z)``:
    undo the zoom (canvas offset ``z₀``, scale ``z``), mirror (``F``), place within the crop
    box (centre ``c``, half-extents ``H``), then rotate into the source square.
    """
    batch = x.shape[0]
    moved = p[:, [_ANGLE, _CX, _CY, _ZX, _ZY, _FLIP]] != 0
    scaled = p[:, [_HW, _HH, _ZOOM]] != 1
    if not torch.any(moved) and not torch.any(scaled) and x.shape[-1] == size:
        return x  # identity: skip the resampling (keeps the input exact)
    cos, sin = torch.cos(p[:, _ANGLE]), torch.sin(p[:, _ANGLE])
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    flip = 1.0 - 2.0 * p[:, _FLIP]
    zoom = p[:, _ZOOM]
    scale = torch.stack([p[:, _HW] * flip / zoom, p[:, _HH] / zoom], -1)  # (B, 2)
    linear = rot * scale.unsqueeze(1)  # R · diag(scale)
    offset = torch.stack([p[:, _ZX], p[:, _ZY]], -1)
    centre = torch.stack([p[:, _CX], p[:, _CY]], -1)
    shift = centre - scale * offset  # c − H·F·z₀/z
    translation = torch.einsum("bij,bj->bi", rot, shift)
    theta = torch.cat([linear, translation.unsqueeze(-1)], -1)  # (B, 2, 3)
    grid = F.affine_grid(theta, [batch, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _grey(x: Tensor) -> Tensor:
    """ITU-R 601 luma, as Pillow's ``convert("L")``: ``(B, 1, H, W)``."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _colour(x: Tensor, p: Tensor) -> Tensor:
    """Brightness, contrast and saturation (Pillow ``ImageEnhance`` order), then grayscale."""
    jitter = p[:, [_BRIGHT, _CONTRAST, _SATURATION]]
    if torch.any(jitter != 1):
        x = (x * p[:, _BRIGHT].view(-1, 1, 1, 1)).clamp(0, 1)
        mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * p[:, _CONTRAST].view(-1, 1, 1, 1) + mean).clamp(0, 1)
        grey = _grey(x)
        x = ((x - grey) * p[:, _SATURATION].view(-1, 1, 1, 1) + grey).clamp(0, 1)
    gray = p[:, _GRAY].view(-1, 1, 1, 1)
    if torch.any(gray > 0):
        x = x * (1 - gray) + _grey(x).expand_as(x) * gray
    return x


def _contours(x: Tensor, p: Tensor) -> Tensor:
    """Black contour lines where colour steps by more than :data:`EDGE_THRESHOLD`."""
    outline = p[:, _OUTLINE].view(-1, 1, 1, 1)
    line_art = p[:, _LINE_ART].view(-1, 1, 1, 1)
    if not torch.any(outline + line_art > 0):
        return x
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().amax(dim=1, keepdim=True)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().amax(dim=1, keepdim=True)
    edge = torch.zeros_like(x[:, :1])
    edge[..., :, 1:] = torch.maximum(edge[..., :, 1:], dx)
    edge[..., 1:, :] = torch.maximum(edge[..., 1:, :], dy)
    mask = (edge > EDGE_THRESHOLD).to(x.dtype)
    thick = p[:, _THICK].view(-1, 1, 1, 1)
    mask = mask * (1 - thick) + F.max_pool2d(mask, 3, stride=1, padding=1) * thick
    drawn = x * (1 - mask)  # colour with black contours
    lines = (1 - mask).expand_as(x)  # black contours on white
    return x * (1 - outline - line_art) + drawn * outline + lines * line_art
