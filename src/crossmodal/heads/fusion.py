"""Modality fusion: one vector from a text vector and an image vector (or image tokens).

* :class:`LinearFusion` is the design's ``h = W_t h_t + W_i h_i`` (one bias);
* :class:`GatedFusion` learns, per channel and per sample, how much of each modality to
  keep: ``g = σ(W_g [h_t; h_i] + b_g)``, ``h = g ⊙ W_t h_t + (1 - g) ⊙ W_i h_i``;
* :class:`AttentionFusion` lets the text pick what it needs from the image's tokens first:
  ``c = Σ_j α_j h_i(i_j)`` with the bilinear cross-modal attention, then
  ``h = W_t h_t + W_i c``; its weights are returned for heat maps.

Every fusion maps ``(h_t (B, Dt), h_i (B, Di))`` to ``(B, D)``. :class:`AttentionFusion`
takes the image tokens ``(B, J, Di)`` (and their mask) instead of the pooled image vector.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from crossmodal.heads.attention import AttentionOutput, BilinearAttention

__all__ = ["AttentionFusion", "GatedFusion", "LinearFusion"]


class LinearFusion(nn.Module):
    """h = W_t h_t + W_i h_i + b."""

    def __init__(self, text_dim: int, image_dim: int, out_dim: int) -> None:
        super().__init__()
        self.W_t = nn.Linear(text_dim, out_dim)  # carries the one bias
        self.W_i = nn.Linear(image_dim, out_dim, bias=False)

    def forward(self, h_t: Tensor, h_i: Tensor) -> Tensor:
        """(B, Dt), (B, Di) → (B, out_dim)."""
        return self.W_t(h_t) + self.W_i(h_i)  # type: ignore[no-any-return]


class GatedFusion(nn.Module):
    """h = g ⊙ W_t h_t + (1 − g) ⊙ W_i h_i, with g = σ(W_g [h_t; h_i] + b_g)."""

    def __init__(self, text_dim: int, image_dim: int, out_dim: int) -> None:
        super().__init__()
        self.W_t = nn.Linear(text_dim, out_dim)
        self.W_i = nn.Linear(image_dim, out_dim)
        self.W_g = nn.Linear(text_dim + image_dim, out_dim)

    def gate(self, h_t: Tensor, h_i: Tensor) -> Tensor:
        """g (B, out_dim) in (0, 1): the share of the text side, per channel."""
        return torch.sigmoid(self.W_g(torch.cat([h_t, h_i], dim=-1)))

    def forward(self, h_t: Tensor, h_i: Tensor) -> Tensor:
        """(B, Dt), (B, Di) → (B, out_dim)."""
        g = self.gate(h_t, h_i)
        return g * self.W_t(h_t) + (1 - g) * self.W_i(h_i)  # type: ignore[no-any-return]


class AttentionFusion(nn.Module):
    """h = W_t h_t + W_i Σ_j α_j h_i(i_j): the text attends over the image's tokens first."""

    def __init__(self, text_dim: int, image_dim: int, out_dim: int) -> None:
        super().__init__()
        self.attention = BilinearAttention(text_dim, image_dim)
        self.fuse = LinearFusion(text_dim, image_dim, out_dim)
        self.last: AttentionOutput | None = None  # the last forward's weights, for display

    def forward(self, h_t: Tensor, image_tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, Dt), (B, J, Di) [, (B, J) bool] → (B, out_dim)."""
        self.last = self.attention(h_t, image_tokens, mask)
        return self.fuse(h_t, self.last.pooled)  # type: ignore[no-any-return]
