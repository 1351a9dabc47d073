"""Heat maps of cross-modal attention line up with the model's patch grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from crossmodal.encoders.native import build_preprocess
from crossmodal.heads.attention import BilinearAttention
from crossmodal.heads.features import load_clip, patch_tokens
from crossmodal.heads.heatmap import patch_heatmap, render_heatmap, vector_heatmap
from crossmodal.models.clip import CLIP
from crossmodal.models.registry import create_model

RED = (230, 20, 20)


def _patch_local_model() -> CLIP:
    """test-tiny with identity transformer blocks and no positions: a patch's token depends
    on that patch's pixels only, so only the patch that carries the signal can light up."""
    torch.manual_seed(0)
    model = create_model("test-tiny").eval()
    with torch.no_grad():
        for name, param in model.visual.named_parameters():
            if name == "positional_embedding" or name.endswith(
                (
                    "attn.out_proj.weight",
                    "attn.out_proj.bias",
                    "mlp.c_proj.weight",
                    "mlp.c_proj.bias",
                )
            ):
                param.zero_()
    return model


@pytest.mark.parametrize("cell", [(0, 0), (2, 1), (3, 3), (1, 3)])
def test_only_the_patch_carrying_the_signal_lights_up(
    tmp_path: Path, cell: tuple[int, int]
) -> None:
    model = _patch_local_model()
    side, patch = model.config.vision.image_size, model.config.vision.patch_size  # 32, 8
    grid = side // patch
    row, col = cell
    picture = Image.new("RGB", (side, side), "white")
    picture.paste(Image.new("RGB", (patch, patch), RED), (col * patch, row * patch))
    # the query is what a red patch looks like to the model
    pixels = torch.from_numpy(build_preprocess(model.config)(Image.new("RGB", (side, side), RED)))
    with torch.inference_mode():
        _, tokens = patch_tokens(model, pixels[None])
    heat = vector_heatmap(model, picture, tokens[0, 1])
    assert heat.weights.shape == (grid, grid)
    assert heat.weights.sum() == pytest.approx(1.0, abs=1e-5)
    assert heat.peak == cell
    others = np.delete(heat.weights.reshape(-1), row * grid + col)
    assert np.allclose(others, others[0], atol=1e-6)  # every white patch scores the same
    # rendered: the hottest pixels are exactly that patch's square, scaled to the output size
    size = 128
    render_heatmap(heat, tmp_path / "heat.png", size=size)
    assert Image.open(tmp_path / "heat.png").size == (size, size)
    pure = render_heatmap(heat, size=size, alpha=1.0)  # the heat layer alone
    rendered = np.asarray(pure, dtype=float)
    colour = rendered[..., 0] - rendered[..., 2]  # red minus blue: heat
    hot = colour >= colour.max() - 1
    scale = size // grid
    expected = np.zeros((size, size), bool)
    expected[row * scale : (row + 1) * scale, col * scale : (col + 1) * scale] = True
    assert np.array_equal(hot, expected)


def test_a_trained_attention_can_replace_the_cosine(tmp_path: Path) -> None:
    model = _patch_local_model()
    picture = Image.new("RGB", (32, 32), "white")
    picture.paste(Image.new("RGB", (8, 8), RED), (16, 8))
    query = torch.randn(model.config.embed_dim)
    attention = BilinearAttention(model.config.embed_dim, model.config.embed_dim)
    with torch.no_grad():
        attention.W.zero_()  # scores all equal: uniform weights
    heat = vector_heatmap(model, picture, query, attention)
    assert np.allclose(heat.weights, 1 / 16, atol=1e-6)


def test_heat_map_of_a_text_on_the_embedded_model(tmp_path: Path) -> None:
    model = load_clip()
    picture = Image.new("RGB", (128, 128), "white")
    picture.paste(Image.new("RGB", (64, 64), RED), (64, 0))
    heat = patch_heatmap(model, picture, "a red square")
    grid = model.config.vision.image_size // model.config.vision.patch_size
    assert heat.weights.shape == (grid, grid) and heat.text == "a red square"
    assert heat.weights.sum() == pytest.approx(1.0, abs=1e-4) and (heat.weights >= 0).all()
    assert render_heatmap(heat, size=64).size == (64, 64)
