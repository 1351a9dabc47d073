"""The heads' math: cross-modal attention, fusion and joint embedding, checked by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crossmodal.errors import ConfigError, InputError
from crossmodal.heads import (
    CLASSIFIER_KINDS,
    JOINT_KINDS,
    AttentionFusion,
    BilinearAttention,
    CrossAttention,
    GatedFusion,
    JointEmbedding,
    LinearFusion,
    MultimodalClassifier,
)

torch.manual_seed(0)


def _random_attention(dt: int = 6, di: int = 5) -> BilinearAttention:
    attention = BilinearAttention(dt, di)
    with torch.no_grad():
        attention.W.copy_(torch.randn(dt, di))
    return attention


def test_bilinear_attention_is_the_softmax_of_the_design() -> None:
    attention = _random_attention()
    text, images = torch.randn(3, 6), torch.randn(3, 7, 5)
    out = attention(text, images)
    # α_{t,i_j} = exp(h_tᵀ W h_i_j) / Σ_k exp(h_tᵀ W h_i_k), written out
    for b in range(3):
        logits = torch.stack([text[b] @ attention.W @ images[b, j] for j in range(7)])
        expected = torch.exp(logits) / torch.exp(logits).sum()
        assert torch.allclose(out.weights[b], expected, atol=1e-5)
        assert torch.allclose(out.scores[b], logits, atol=1e-5)
        assert torch.allclose(out.pooled[b], (expected[:, None] * images[b]).sum(0), atol=1e-5)
    assert torch.allclose(out.weights.sum(-1), torch.ones(3), atol=1e-6)


def test_bilinear_attention_does_not_depend_on_the_order_of_the_candidates() -> None:
    attention = _random_attention()
    text, images = torch.randn(2, 6), torch.randn(2, 9, 5)
    order = torch.randperm(9)
    a, b = attention(text, images), attention(text, images[:, order])
    assert torch.allclose(b.weights, a.weights[:, order], atol=1e-6)
    assert torch.allclose(b.pooled, a.pooled, atol=1e-5)


def test_masked_candidates_get_no_weight_and_empty_rows_give_zeros() -> None:
    attention = _random_attention()
    text, images = torch.randn(3, 6), torch.randn(3, 5, 5)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    out = attention(text, images, mask)
    assert (out.weights[~mask] == 0).all()
    short = attention(text[:1], images[:1, :3])  # the first row's real candidates only
    assert torch.allclose(out.weights[0, :3], short.weights[0], atol=1e-6)
    assert torch.allclose(out.pooled[0], short.pooled[0], atol=1e-5)
    assert torch.equal(out.weights[2], torch.zeros(5)) and torch.equal(
        out.pooled[2], torch.zeros(5)
    )
    assert not torch.isnan(out.weights).any() and torch.isinf(out.scores[0, 3:]).all()
    with pytest.raises(InputError, match="bool"):
        attention(text, images, mask.int())


def test_one_gallery_is_shared_by_every_text() -> None:
    attention = _random_attention()
    text, gallery = torch.randn(4, 6), torch.randn(11, 5)
    shared = attention(text, gallery)
    each = attention(text, gallery.expand(4, 11, 5))
    assert shared.weights.shape == (4, 11)
    assert torch.allclose(shared.weights, each.weights) and torch.allclose(
        shared.pooled, each.pooled
    )
    eye = BilinearAttention(5, 5)  # W starts as the identity: scores are plain dot products
    assert torch.allclose(eye(gallery[:2], gallery).scores, gallery[:2] @ gallery.T, atol=1e-5)
    with pytest.raises(InputError, match="images"):
        attention(text, torch.randn(3, 11, 5))


def test_cross_attention_weights_per_head_and_padding() -> None:
    layer = CrossAttention(8, 12, heads=2).eval()
    words, patches = torch.randn(2, 4, 8), torch.randn(2, 6, 12)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6], dtype=torch.bool)
    out = layer(words, patches, mask)
    assert out.pooled.shape == (2, 4, 8) and out.weights.shape == (2, 2, 4, 6)
    sums = out.weights.sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-6)
    assert (out.weights[0, :, :, 4:] == 0).all()
    # padding changes nothing: the first sample equals its unpadded self
    alone = layer(words[:1], patches[:1, :4])
    assert torch.allclose(out.pooled[0], alone.pooled[0], atol=1e-5)
    assert torch.allclose(out.weights[0, :, :, :4], alone.weights[0], atol=1e-6)
    # order of the context tokens does not matter either
    order = torch.randperm(6)
    shuffled = layer(words[1:], patches[1:, order])
    assert torch.allclose(shuffled.pooled, out.pooled[1:], atol=1e-5)
    with pytest.raises(InputError, match="CrossAttention"):
        layer(words[0], patches)


def test_linear_fusion_with_w_i_zero_is_the_text_only_head() -> None:
    fusion = LinearFusion(6, 5, 4)
    with torch.no_grad():
        fusion.W_i.weight.zero_()
    text_only = nn.Linear(6, 4)
    text_only.load_state_dict(fusion.W_t.state_dict())
    h_t, h_i = torch.randn(3, 6), torch.randn(3, 5)
    assert torch.allclose(fusion(h_t, h_i), text_only(h_t))
    # and h = W_t h_t + W_i h_i in general
    fusion = LinearFusion(6, 5, 4)
    expected = h_t @ fusion.W_t.weight.T + fusion.W_t.bias + h_i @ fusion.W_i.weight.T
    assert torch.allclose(fusion(h_t, h_i), expected, atol=1e-6)


def test_classifier_with_w_i_zero_equals_the_text_only_classifier() -> None:
    fused = MultimodalClassifier("linear", 8, 5, hidden=16).eval()
    text = MultimodalClassifier("text", 8, 5, hidden=16).eval()
    with torch.no_grad():
        fused.combine.W_i.weight.zero_()  # type: ignore[union-attr]
    text.combine.load_state_dict(fused.combine.W_t.state_dict())  # type: ignore[union-attr]
    text.trunk.load_state_dict(fused.trunk.state_dict())
    batch = {"h_t": torch.randn(4, 8), "h_i": torch.randn(4, 8)}
    assert torch.allclose(fused(batch), text(batch), atol=1e-6)


def test_gated_fusion_interpolates_between_the_modalities() -> None:
    fusion = GatedFusion(6, 6, 4)
    h_t, h_i = torch.randn(3, 6), torch.randn(3, 6)
    g = fusion.gate(h_t, h_i)
    assert ((g > 0) & (g < 1)).all()
    expected = g * fusion.W_t(h_t) + (1 - g) * fusion.W_i(h_i)
    assert torch.allclose(fusion(h_t, h_i), expected)
    with torch.no_grad():  # a gate stuck open keeps only the text side
        fusion.W_g.weight.zero_()
        fusion.W_g.bias.fill_(50.0)
    assert torch.allclose(fusion(h_t, h_i), fusion.W_t(h_t), atol=1e-6)


def test_attention_fusion_pools_the_patches_the_text_points_at() -> None:
    fusion = AttentionFusion(4, 4, 3)
    with torch.no_grad():
        fusion.attention.W.mul_(20.0)  # sharp attention
    patches = torch.eye(4).unsqueeze(0)  # four orthogonal patches
    text = torch.tensor([[0.0, 0.0, 1.0, 0.0]])  # points at patch 2
    fusion(text, patches)
    assert fusion.last is not None and int(fusion.last.weights.argmax()) == 2
    assert torch.allclose(fusion.last.pooled, patches[:, 2], atol=1e-3)


@pytest.mark.parametrize("kind", JOINT_KINDS)
def test_joint_heads(kind: str) -> None:
    head = JointEmbedding(kind, 6, 6, out_dim=3)
    h_t, h_i = torch.randn(5, 6), torch.randn(5, 6)
    out = head(h_t, h_i)
    assert out.shape == (5, head.out_dim)
    if kind == "cosine":
        assert torch.allclose(out[:, 0], nn.functional.cosine_similarity(h_t, h_i))
    if kind == "bilinear":  # out_k = h_tᵀ W_k h_i + b_k
        w, b = head.bilinear.weight, head.bilinear.bias
        expected = torch.einsum("bi,kij,bj->bk", h_t, w, h_i) + b
        assert torch.allclose(out, expected, atol=1e-5)
    if kind == "product":
        assert torch.allclose(out, head.proj_t(h_t) * head.proj_i(h_i))


def test_bad_configurations_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="unknown"):
        JointEmbedding("dot", 4, 4)
    with pytest.raises(ConfigError, match="equal widths"):
        JointEmbedding("cosine", 4, 5)
    with pytest.raises(ConfigError, match="image, text, linear"):
        MultimodalClassifier("late", 4, 3)
    with pytest.raises(ConfigError, match="2 classes"):
        MultimodalClassifier("linear", 4, 1)
    with pytest.raises(InputError, match="needs batch entries"):
        MultimodalClassifier("attention", 4, 3)({"h_t": torch.randn(2, 4)})


@pytest.mark.slow
@pytest.mark.parametrize("kind", CLASSIFIER_KINDS)
def test_every_classifier_learns_a_task_that_needs_both_modalities(kind: str) -> None:
    """Label = (image cluster + text cluster) mod 3: only a head seeing both can learn it."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 3
    n = 768  # the first half trains, the second half measures
    a, b = torch.randint(0, 3, (n,), generator=g), torch.randint(0, 3, (n,), generator=g)
    h_i = centres[a] + 0.3 * torch.randn(n, 8, generator=g)
    h_t = centres[b] + 0.3 * torch.randn(n, 8, generator=g)
    tokens = torch.cat([h_i[:, None], h_i[:, None].expand(n, 4, 8)], dim=1)
    labels = (a + b) % 3
    data = {"h_i": h_i, "h_t": h_t, "image_tokens": tokens}
    train = {k: v[: n // 2] for k, v in data.items()}
    test = {k: v[n // 2 :] for k, v in data.items()}
    torch.manual_seed(0)
    model = MultimodalClassifier(kind, 8, 3, hidden=32, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(train), labels[: n // 2]).backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = float((model(test).argmax(-1) == labels[n // 2 :]).float().mean())
    if kind in ("image", "text"):
        assert accuracy < 0.45  # one modality alone is at chance (1/3) on this task
    else:
        assert accuracy > 0.9, accuracy


def test_modality_dropout_blanks_at_most_one_side_and_only_in_training() -> None:
    model = MultimodalClassifier("linear", 4, 3, hidden=8, modality_dropout=0.5)
    batch = {"h_t": torch.ones(2000, 4), "h_i": torch.ones(2000, 4)}
    blanked = model.train()._blank_one_modality(batch)
    text_on = blanked["h_t"].abs().sum(-1) > 0
    image_on = blanked["h_i"].abs().sum(-1) > 0
    assert (text_on | image_on).all()  # never both
    assert 0.4 < float((~image_on).float().mean()) < 0.6  # p = 0.5 of images blanked
    assert 0.4 < float((~text_on).float().mean()) < 0.6  # and the others lose their text
    model.eval()
    assert torch.equal(model(batch), model(batch))  # no randomness at evaluation
    with pytest.raises(ConfigError, match="modality_dropout"):
        MultimodalClassifier("linear", 4, 3, modality_dropout=0.7)
