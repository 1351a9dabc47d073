"""Seeing why: where in a picture a text falls, as a heat map. Two readings:

**Occlusion** (:func:`occlusion_heatmap`, what the search pages draw, any encoder): how much
the match ``h_t(t)ᵀ h_i(i)`` drops when each part of the picture is hidden. It asks
the model's output, so it points where the model looks; measured on held-out emoji it finds
the named one of two emoji 0.52 of the time (centre prior 0.31, random 0.25).

**Attention over patch tokens** (:func:`vector_heatmap`, for the heads): for a text ``t``
and an image split into a ``g × g`` grid of patches, the weights are the
bilinear cross-modal attention of the text over the image's patch tokens,

    α_j = exp(s · h_t(t)ᵀ W p_j) / Σ_k exp(s · h_t(t)ᵀ W p_k),

with ``p_j`` the joint-space token of patch ``j`` (:func:`crossmodal.heads.features.
patch_tokens`), unit-normalised. Without a trained attention ``W`` is the identity, so
``h_tᵀ p_j`` is the cosine between the text and the patch (as MaskCLIP reads CLIP's patch
tokens), and ``s`` is the model's own logit scale. A trained
:class:`~crossmodal.heads.attention.BilinearAttention` can be passed instead. Untrained, on
emoji-mini's 4 × 4 grid, the cosine's hottest patch is background more often than chance
(0.09 on the task above): the last layer's patch tokens carry the whole picture, not their
own square.

Patches are numbered row by row from the top left, as the ViT flattens them; the grid is
drawn over the picture as the model saw it (the centre square crop at the model's input
size, scaled up to ``size``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from crossmodal.data.images import ImageInput, load_image
from crossmodal.heads.attention import BilinearAttention
from crossmodal.heads.features import patch_tokens
from crossmodal.models.clip import CLIP

__all__ = [
    "HeatMap",
    "occlusion_heatmap",
    "occlusion_weights",
    "patch_heatmap",
    "query_heatmap",
    "render_heatmap",
    "vector_heatmap",
]


@dataclass(frozen=True)
class HeatMap:
    """Attention weights over an image's patch grid, and the picture they belong to."""

    weights: npt.NDArray[np.float32]  # (g, g), sums to 1, row 0 at the top
    image: Image.Image  # the model's view: the centre square at its input size
    text: str

    @property
    def peak(self) -> tuple[int, int]:
        """(row, column) of the patch with the most weight."""
        row, col = np.unravel_index(int(np.argmax(self.weights)), self.weights.shape)
        return int(row), int(col)


@torch.inference_mode()
def patch_heatmap(
    model: CLIP,
    image: ImageInput,
    text: str,
    attention: BilinearAttention | None = None,
) -> HeatMap:
    """The attention of ``text`` over the patches of ``image`` (see the module docstring)."""
    from crossmodal.encoders.native import build_tokenizer

    ids = torch.from_numpy(build_tokenizer(model.config)([text]).ids)
    h_t = model.eval().encode_text(ids)[0]  # (D,) unit
    return vector_heatmap(model, image, h_t, attention, label=text)


@torch.inference_mode()
def vector_heatmap(
    model: CLIP,
    image: ImageInput,
    query: torch.Tensor,
    attention: BilinearAttention | None = None,
    *,
    label: str = "",
) -> HeatMap:
    """The attention of a joint-space ``query`` vector (D,) over the patches of ``image``."""
    from crossmodal.encoders.native import build_preprocess

    model = model.eval()
    preprocess = build_preprocess(model.config)
    picture = load_image(image, draft_size=preprocess.draft_size)
    pixels = torch.from_numpy(preprocess(picture)).unsqueeze(0)
    h_t = torch.nn.functional.normalize(query.reshape(1, -1).float(), dim=-1)
    _, tokens = patch_tokens(model, pixels)
    patches = torch.nn.functional.normalize(tokens[:, 1:], dim=-1)  # (1, P, D)
    if attention is None:
        scale = model.logit_scale.exp().clamp(max=100)
        weights = torch.softmax(scale * torch.einsum("bd,bpd->bp", h_t, patches), dim=-1)
    else:
        weights = attention(h_t, patches).weights
    grid = int(round(weights.shape[1] ** 0.5))
    square = Image.fromarray(preprocess.square(picture).transpose(1, 2, 0))
    out = weights[0].reshape(grid, grid).float().numpy().astype(np.float32)
    return HeatMap(weights=out, image=square, text=label)


def occlusion_weights(
    encoder: Any,
    pixels: npt.NDArray[np.float32],
    query: npt.NDArray[np.float32],
    *,
    cells: int = 8,
    window: int = 1,
    fill: Literal["mean", "grey"] = "mean",
) -> npt.NDArray[np.float32]:
    """How much the picture's match to ``query`` drops when each part of it is hidden.

    ``pixels`` (3, S, S) is cut into a ``cells × cells`` grid; a square of ``window × window``
    cells slides over it one cell at a time and every placement is embedded (one batch). A
    cell's weight is the mean drop of ``h_t(t)ᵀ h_i(i)`` over the placements that hide it,
    clipped at zero and normalised to sum to 1 (uniform when hiding nothing lowers the match).
    Any encoder works: this asks the model's output, not its internals.

    ``fill="mean"`` hides a square under its own mean colour: the shape goes, an empty
    square stays as it was (so blank background never lights up). ``"grey"`` paints the
    normalisation's mean colour, which on a white background is itself a new shape: measured
    on emoji-mini, its hottest cell was background more often than not. A one-cell window
    keeps each drop to the cell that caused it; wider windows smear heat onto neighbours.
    """
    if pixels.ndim != 3 or pixels.shape[1] != pixels.shape[2]:
        raise ValueError(f"pixels: expected (3, S, S), got {pixels.shape}")
    if fill not in ("mean", "grey"):
        raise ValueError(f"fill: expected 'mean' or 'grey', got {fill!r}")
    side = pixels.shape[1]
    edges = np.linspace(0, side, cells + 1).round().astype(int)
    places = cells - window + 1
    batch = np.repeat(pixels[None], places * places + 1, axis=0)  # (1 + places², 3, S, S)
    for n in range(places * places):
        r, c = divmod(n, places)
        rows, cols = slice(edges[r], edges[r + window]), slice(edges[c], edges[c + window])
        if fill == "mean":  # the window's own mean colour: shape gone, colour and blank kept
            batch[n + 1, :, rows, cols] = pixels[:, rows, cols].mean(axis=(1, 2), keepdims=True)
        else:  # the normalisation's mean colour
            batch[n + 1, :, rows, cols] = 0.0
    scores = encoder.encode_pixels(batch) @ query.astype(np.float32)  # (1 + places²,)
    drops = (scores[0] - scores[1:]).reshape(places, places)
    heat = np.zeros((cells, cells), dtype=np.float64)
    count = np.zeros((cells, cells), dtype=np.float64)
    for r in range(places):
        for c in range(places):
            heat[r : r + window, c : c + window] += drops[r, c]
            count[r : r + window, c : c + window] += 1
    weights = np.clip(heat / count, 0.0, None)
    total = float(weights.sum())
    if total <= 0.0:
        return np.full((cells, cells), 1.0 / cells**2, dtype=np.float32)
    return (weights / total).astype(np.float32)


def render_heatmap(
    heatmap: HeatMap, path: str | Path | None = None, *, size: int = 224, alpha: float = 0.55
) -> Image.Image:
    """The picture with the weights over it (red = most attention); saved to ``path`` if given.

    Each patch's weight fills exactly that patch's square (nearest-neighbour upscaling), so
    the colours line up with the grid the model used.
    """
    w = heatmap.weights
    scaled = (w - w.min()) / max(float(w.max() - w.min()), 1e-12)
    cells = Image.fromarray((scaled * 255).astype(np.uint8), mode="L")
    cells = cells.resize((size, size), Image.Resampling.NEAREST)
    heat = np.asarray(cells, dtype=np.float32) / 255.0
    colour = np.stack([heat, np.zeros_like(heat), 1.0 - heat], axis=-1) * 255  # blue → red
    base = np.asarray(heatmap.image.convert("RGB").resize((size, size)), dtype=np.float32)
    blended = (1 - alpha) * base + alpha * colour
    picture = Image.fromarray(blended.clip(0, 255).astype(np.uint8), mode="RGB")
    if path is not None:
        picture.save(path)
    return picture


def occlusion_heatmap(
    encoder: Any, image: ImageInput, query: npt.NDArray[np.float32], *, label: str = ""
) -> HeatMap:
    """Where hiding the picture costs the match to ``query`` most (:func:`occlusion_weights`).

    What the search pages draw: measured on held-out emoji (benchmarks/heatmap_pointing.py,
    two emoji in a picture, the query naming one), its hottest cell falls on the named one 0.52
    of the time against 0.31 for a centre prior and 0.09 for the patch-token cosine of
    :func:`vector_heatmap`, which lights up background.
    """
    side = int(encoder.preprocess.image_size)
    picture = load_image(image, draft_size=getattr(encoder.preprocess, "draft_size", None))
    weights = occlusion_weights(encoder, encoder.preprocess(picture), query)
    return HeatMap(weights=weights, image=_model_view(encoder, picture, side), text=label)


def _model_view(encoder: Any, picture: Image.Image, side: int) -> Image.Image:
    """The centre square of ``picture`` at the model's input size, as the model saw it."""
    square = getattr(encoder.preprocess, "square", None)
    if square is not None:  # native: the exact crop, background and all
        return Image.fromarray(square(picture).transpose(1, 2, 0))
    rgb = picture.convert("RGB")
    short = min(rgb.size)
    left, top = (rgb.width - short) // 2, (rgb.height - short) // 2
    return rgb.crop((left, top, left + short, top + short)).resize((side, side))


def query_heatmap(
    encoder: Any,
    image: ImageInput,
    query: npt.NDArray[np.float32],
    *,
    time: float | None = None,
    size: int = 224,
) -> Image.Image:
    """``image`` (a video's frame at ``time`` seconds) under the occlusion heat map of a query
    vector: what search pages show for "where does the query fall in this hit". Any encoder.

    Raises:
        CrossmodalError: The file does not decode.
    """
    if time is not None:
        from crossmodal.data.video import frame_at

        image = frame_at(str(image), time).image
    return render_heatmap(occlusion_heatmap(encoder, image, query), size=size)
