"""Cross-modal attention: a text vector attending over a set of image vectors, and its
multi-head, token-level generalisation.

:class:`BilinearAttention` is the design's formula, term for term::

    α_{t,i_j} = exp(h_t(t)ᵀ W h_i(i_j)) / Σ_k exp(h_t(t)ᵀ W h_i(i_k))

over a set ``{i_j}`` that may be an image's patches, a video's frames or a gallery of images.
It returns the weights (to be shown: heat maps, timelines), the scores before the softmax and
the attended summary ``Σ_j α_j h_i(i_j)``.

:class:`CrossAttention` is the token-level form: each token of one modality (text words, say)
attends over the tokens of the other (image patches) in ``heads`` heads. Head ``h`` scores a
pair with ``(W_q^h x)ᵀ (W_k^h y) / √d_h``: a bilinear form ``xᵀ W_q^hᵀ W_k^h y`` of rank
``d_h``, the formula above with a factorised ``W``. Its weights come back per head.

Masks are boolean, ``True`` where a candidate is real (padding tokens, videos with fewer
frames): masked candidates get weight exactly 0, and a row with no real candidate gets all
zero weights and a zero summary instead of NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from crossmodal.errors import ConfigError, InputError

__all__ = ["AttentionOutput", "BilinearAttention", "CrossAttention", "masked_softmax"]


@dataclass(frozen=True)
class AttentionOutput:
    """What an attention computes: the summary, the weights and the scores behind them."""

    pooled: Tensor  # (B, D) Σ_j α_j v_j   [CrossAttention: (B, Tq, D)]
    weights: Tensor  # (B, J) α, each row sums to 1 over its real candidates (0 if none)
    scores: Tensor  # (B, J) the logits before the softmax (-inf where masked)


def masked_softmax(scores: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """Softmax over ``dim`` where ``mask`` is True; masked entries and empty rows get 0."""
    if mask is None:
        return torch.softmax(scores, dim=dim)
    if mask.dtype != torch.bool:
        raise InputError(f"mask: expected a bool tensor, got {mask.dtype}")
    filled = scores.masked_fill(~mask, float("-inf"))
    any_real = mask.any(dim=dim, keepdim=True)
    safe = torch.where(any_real, filled, torch.zeros_like(filled))  # no all -inf rows
    weights = torch.softmax(safe, dim=dim)
    return torch.where(mask, weights, torch.zeros_like(weights))


class BilinearAttention(nn.Module):
    """α = softmax_j(h_tᵀ W h_i_j): a text vector over a set of image vectors.

    ``W`` starts as the identity when the widths agree (so that in a CLIP joint space the
    attention begins as the model's own similarity) and as a small random matrix otherwise.
    """

    def __init__(self, text_dim: int, image_dim: int, *, init_scale: float = 1.0) -> None:
        super().__init__()
        if text_dim < 1 or image_dim < 1:
            raise ConfigError(
                f"BilinearAttention: widths must be >= 1, got {text_dim} and {image_dim}"
            )
        if text_dim == image_dim:
            weight = init_scale * torch.eye(text_dim)
        else:
            weight = torch.randn(text_dim, image_dim) / math.sqrt(text_dim * image_dim)
        self.W = nn.Parameter(weight)  # (text_dim, image_dim)

    def forward(self, text: Tensor, images: Tensor, mask: Tensor | None = None) -> AttentionOutput:
        """Attend from each text over its set of images.

        Args:
            text: (B, Dt) text vectors h_t(t).
            images: (B, J, Di) a set per text, or (J, Di) one set shared by every text
                (a gallery).
            mask: (B, J) or (J,) bool, True for real candidates; None when all are.

        Returns:
            weights (B, J), scores (B, J) and pooled (B, Di) = Σ_j α_j h_i(i_j).
        """
        if text.dim() != 2:
            raise InputError(f"text: expected (B, {self.W.shape[0]}), got {tuple(text.shape)}")
        if images.dim() == 2:
            images = images.unsqueeze(0).expand(text.shape[0], -1, -1)
        if mask is not None and mask.dim() == 1:
            mask = mask.unsqueeze(0).expand(text.shape[0], -1)
        if images.dim() != 3 or images.shape[0] != text.shape[0]:
            raise InputError(
                f"images: expected (B, J, Di) with B={text.shape[0]}, got {tuple(images.shape)}"
            )
        scores = torch.einsum("bd,de,bje->bj", text, self.W, images)
        weights = masked_softmax(scores, mask)
        pooled = torch.einsum("bj,bje->be", weights, images)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return AttentionOutput(pooled=pooled, weights=weights, scores=scores)


class CrossAttention(nn.Module):
    """Multi-head attention of one modality's tokens over the other's, weights per head.

    ``query_dim`` tokens (e.g. text words) attend over ``context_dim`` tokens (e.g. image
    patches); the output has ``query_dim`` channels, added to the queries (a residual) when
    ``residual`` is set.
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int,
        heads: int = 4,
        head_dim: int | None = None,
        *,
        residual: bool = True,
    ) -> None:
        super().__init__()
        head_dim = head_dim or max(1, query_dim // heads)
        if heads < 1 or head_dim < 1:
            raise ConfigError(
                f"CrossAttention: heads and head_dim must be >= 1, got {heads} and {head_dim}"
            )
        self.heads, self.head_dim, self.residual = heads, head_dim, residual
        inner = heads * head_dim
        self.norm_q = nn.LayerNorm(query_dim)
        self.norm_kv = nn.LayerNorm(context_dim)
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.out = nn.Linear(inner, query_dim)

    def forward(
        self, queries: Tensor, context: Tensor, context_mask: Tensor | None = None
    ) -> AttentionOutput:
        """queries (B, Tq, Dq) over context (B, Tk, Dk) with context_mask (B, Tk).

        Returns pooled (B, Tq, Dq), weights and scores (B, heads, Tq, Tk).
        """
        if queries.dim() != 3 or context.dim() != 3 or queries.shape[0] != context.shape[0]:
            raise InputError(
                f"CrossAttention: expected queries (B, Tq, Dq) and context (B, Tk, Dk), got "
                f"{tuple(queries.shape)} and {tuple(context.shape)}"
            )
        b, tq, _ = queries.shape
        tk = context.shape[1]
        q = self.to_q(self.norm_q(queries)).view(b, tq, self.heads, self.head_dim).transpose(1, 2)
        kv = self.norm_kv(context)
        k = self.to_k(kv).view(b, tk, self.heads, self.head_dim).transpose(1, 2)
        v = self.to_v(kv).view(b, tk, self.heads, self.head_dim).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, H, Tq, Tk)
        mask = None if context_mask is None else context_mask[:, None, None, :]
        if mask is not None:
            mask = mask.expand_as(scores)
        weights = masked_softmax(scores, mask)
        mixed = (weights @ v).transpose(1, 2).reshape(b, tq, self.heads * self.head_dim)
        out = self.out(mixed)
        if self.residual:
            out = out + queries
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return AttentionOutput(pooled=out, weights=weights, scores=scores)
