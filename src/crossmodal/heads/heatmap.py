"""Seeing why: where in a picture a text's cross-modal attention falls, as a heat map.

For a text ``t`` and an image split into a ``g × g`` grid of patches, the weights are the
bilinear cross-modal attention of the text over the image's patch tokens,

    α_j = exp(s · h_t(t)ᵀ W p_j) / Σ_k exp(s · h_t(t)ᵀ W p_k),

with ``p_j`` the joint-space token of patch ``j`` (:func:`crossmodal.heads.features.
patch_tokens`), unit-normalised. Without a trained attention ``W`` is the identity, so
``h_tᵀ p_j`` is the cosine between the text and the patch (as MaskCLIP reads CLIP's patch
tokens), and ``s`` is the model's own logit scale. A trained
:class:`~crossmodal.heads.attention.BilinearAttention` can be passed instead.

Patches are numbered row by row from the top left, as the ViT flattens them; the grid is
drawn over the picture as the model saw it (the centre square crop at the model's input
size, scaled up to ``size``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from crossmodal.data.images import ImageInput, load_image
from crossmodal.heads.attention import BilinearAttention
from crossmodal.heads.features import patch_tokens
from crossmodal.models.clip import CLIP

__all__ = ["HeatMap", "patch_heatmap", "query_heatmap", "render_heatmap", "vector_heatmap"]


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


def query_heatmap(
    encoder: Any,
    image: ImageInput,
    query: npt.NDArray[np.float32],
    *,
    time: float | None = None,
    size: int = 224,
) -> Image.Image:
    """``image`` (a video's frame at ``time`` seconds) under the attention of a query vector.

    What search pages show for "where does the query fall in this hit".

    Raises:
        ConfigError: ``encoder`` is not a native model (no patch tokens to attend over).
        CrossmodalError: The file does not decode.
    """
    from crossmodal.encoders.native import NativeEncoder
    from crossmodal.errors import ConfigError

    if not isinstance(encoder, NativeEncoder):
        raise ConfigError(
            f"heat maps need a native model's patch tokens; {encoder.spec} is not one"
        )
    if time is not None:
        from crossmodal.data.video import frame_at

        image = frame_at(str(image), time).image
    model = encoder.model.float()
    return render_heatmap(vector_heatmap(model, image, torch.from_numpy(query)), size=size)
