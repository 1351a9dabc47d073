"""The native CLIP: registry, every config forward + backward, token features, shapes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from crossmodal.errors import ConfigError, UnknownModelError
from crossmodal.models.clip import CLIP, attend, count_parameters
from crossmodal.models.config import config_from_dict, config_to_dict, estimate_parameters
from crossmodal.models.registry import create_model, get_model_config, list_models, register_model
from tests.conftest import random_ids


def test_registry_lists_the_standard_architectures() -> None:
    names = list_models()
    for expected in ("ViT-B-32", "ViT-B-16", "ViT-L-14", "test-tiny"):
        assert expected in names


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(UnknownModelError, match="ViT-B-32"):
        get_model_config("ViT-X-99")


def _tiny_input(name: str) -> CLIP:
    """The registered architecture at its real depth and width, on a small input size."""
    cfg = get_model_config(name)
    vision = dataclasses.replace(cfg.vision, image_size=cfg.vision.patch_size * 2)
    text = dataclasses.replace(cfg.text, context_length=8)
    return CLIP(dataclasses.replace(cfg, vision=vision, text=text))


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if "-L-" in n else n for n in list_models()],
)
def test_every_config_runs_forward_and_backward(name: str) -> None:
    model = _tiny_input(name)
    cfg = model.config
    pixels = torch.randn(2, 3, cfg.vision.image_size, cfg.vision.image_size)
    ids = random_ids(2, cfg.text.context_length)
    out = model(pixels, ids)
    assert out.h_i.shape == out.h_t.shape == (2, cfg.embed_dim)
    assert torch.allclose(out.h_i.norm(dim=-1), torch.ones(2), atol=1e-5)
    logits = out.logit_scale * out.h_i @ out.h_t.T
    labels = torch.arange(2)
    loss = (
        torch.nn.functional.cross_entropy(logits, labels)
        + torch.nn.functional.cross_entropy(logits.T, labels)
    ) / 2
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.logit_scale.grad is not None and model.logit_scale.grad != 0


@pytest.mark.parametrize("name", ["test-tiny", "ViT-B-32", "ViT-L-14"])
def test_parameter_estimate_matches_the_built_model(name: str) -> None:
    cfg = get_model_config(name)
    model = _tiny_input(name) if name != "test-tiny" else create_model(name)
    real = count_parameters(model)
    small = model.config
    assert estimate_parameters(small) == real
    if name == "ViT-B-32":
        assert abs(estimate_parameters(cfg) - 151_277_313) == 0  # OpenCLIP's ViT-B-32 count


def test_token_features_are_exposed() -> None:
    model = create_model("test-tiny").eval()
    cfg = model.config
    pixels = torch.randn(3, 3, cfg.vision.image_size, cfg.vision.image_size)
    ids = random_ids(3, cfg.text.context_length)
    img = model.visual(pixels)
    txt = model.text(ids)
    n_patches = cfg.vision.grid_size**2
    assert img.tokens.shape == (3, 1 + n_patches, cfg.vision.width)  # class token + patches
    assert img.mask.all()
    assert txt.tokens.shape == (3, cfg.text.context_length, cfg.text.width)
    # The text mask covers start token to end token, and nothing after it.
    eot = ids.argmax(dim=-1)
    for row in range(3):
        assert txt.mask[row, : eot[row] + 1].all() and not txt.mask[row, eot[row] + 1 :].any()
    # The pooled embedding is the end token's feature, projected.
    expected = txt.tokens[torch.arange(3), eot] @ model.text.text_projection
    assert torch.allclose(txt.embedding, expected, atol=1e-6)


def test_text_is_causal_padding_does_not_change_the_embedding() -> None:
    model = create_model("test-tiny").eval()
    ids = random_ids(1, model.config.text.context_length)
    eot = int(ids.argmax())
    noisy = ids.clone()
    noisy[0, eot + 1 :] = 5  # tokens after the end token must not matter
    with torch.no_grad():
        assert torch.allclose(model.encode_text(ids), model.encode_text(noisy), atol=1e-6)


def test_bf16_weights_agree_with_fp32() -> None:
    model = create_model("test-tiny").eval()
    pixels = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = model.encode_image(pixels)
        low = model.to(torch.bfloat16).encode_image(pixels.bfloat16()).float()
    assert torch.nn.functional.cosine_similarity(ref, low).min() > 0.99


@pytest.mark.parametrize("causal", [False, True])
def test_bf16_training_attention_runs_in_fp32_and_matches_it(causal: bool) -> None:
    """With gradients on bf16 CPU inputs, attention is the fp32 kernel's, rounded to bf16.

    The output and the input gradients equal plain fp32 attention on the same bf16 numbers
    (to bf16 rounding), and come back in bf16 so the autocast graph around them is unchanged.
    """
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 8, generator=g).bfloat16() for _ in range(3))
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    y = attend(*leaves, causal)
    assert y.dtype == torch.bfloat16
    y.float().square().sum().backward()

    ref_leaves = [t.float().requires_grad_(True) for t in (q, k, v)]
    ref = torch.nn.functional.scaled_dot_product_attention(*ref_leaves, is_causal=causal)
    ref.square().sum().backward()
    assert torch.equal(y, ref.detach().bfloat16())
    for got, want in zip(leaves, ref_leaves, strict=True):
        assert got.grad is not None and want.grad is not None and got.grad.dtype == torch.bfloat16
        assert torch.allclose(got.grad.float(), want.grad, rtol=2e-2, atol=2e-2)


def test_bf16_autocast_training_step_tracks_fp32() -> None:
    """A bf16-autocast forward and backward of the whole model stays close to fp32's."""
    torch.manual_seed(0)
    model = create_model("test-tiny")
    pixels = torch.randn(4, 3, 32, 32)
    ids = random_ids(4, model.config.text.context_length, model.config.text.vocab_size)

    def grads(bf16: bool) -> torch.Tensor:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model.similarity(pixels, ids)
        logits.float().logsumexp(dim=1).sum().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    full, low = grads(False), grads(True)
    assert torch.nn.functional.cosine_similarity(full, low, dim=0) > 0.98


def test_config_round_trips_and_validates() -> None:
    cfg = get_model_config("ViT-B-16")
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="patch_size"):
        config_from_dict({"vision": {"image_size": 30, "patch_size": 8}})
    with pytest.raises(ConfigError, match="unknown field"):
        config_from_dict({"vision": {"image_sise": 224}})
    with pytest.raises(ConfigError, match="heads"):
        config_from_dict({"text": {"width": 100, "heads": 8}})


def test_register_model_adds_an_architecture() -> None:
    cfg = dataclasses.replace(get_model_config("test-tiny"), embed_dim=16)
    register_model("test-tiny-16", cfg)
    assert "test-tiny-16" in list_models()
    assert create_model("test-tiny-16").encode_image(torch.randn(1, 3, 32, 32)).shape == (1, 16)


def test_conv_stem_gives_the_patch_grid_and_round_trips(tmp_path: Path) -> None:
    from crossmodal.models.weights import load_checkpoint, load_weights, save_weights

    base = get_model_config("test-tiny")
    cfg = dataclasses.replace(base, vision=dataclasses.replace(base.vision, stem="conv"))
    model = create_model(cfg).eval()
    assert cfg.vision.stem_channels == (16, 32, 64)  # three stride-2 convs for 8 px patches
    pixels = torch.randn(2, 3, 32, 32)
    tokens = model.visual(pixels).tokens
    assert tokens.shape == create_model(base).visual(pixels).tokens.shape == (2, 1 + 16, 64)
    assert estimate_parameters(cfg) == count_parameters(model)
    path = save_weights(model, tmp_path / "conv.safetensors")
    config, sd = load_checkpoint(path)
    assert config.vision.stem == "conv"
    again = CLIP(config).eval()
    load_weights(again, sd, source=str(path))
    assert torch.equal(again.encode_image(pixels), model.encode_image(pixels))
    with pytest.raises(ConfigError, match="power-of-two"):
        config_from_dict({"vision": {"image_size": 36, "patch_size": 12, "stem": "conv"}})
    with pytest.raises(ConfigError, match="stem"):
        config_from_dict({"vision": {"stem": "pyramid"}})
