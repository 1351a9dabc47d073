"""Joint embedding heads: ``f(t, i) = g(h_t(t), h_i(i))`` with a pluggable ``g``.

``g`` maps a text vector (B, Dt) and an image vector (B, Di) to a joint vector (B, out):

* ``cosine``: the CLIP score ``cos(h_t, h_i)`` (out = 1, no parameters; widths must agree);
* ``product``: the element-wise product of the two vectors after a linear map each (out);
* ``concat``: an MLP over ``[h_t; h_i; h_t ⊙ h_i; |h_t − h_i|]``, the usual pair features
  (the product and difference terms need equal widths and are dropped otherwise);
* ``bilinear``: ``out`` bilinear forms ``h_tᵀ W_k h_i + b_k``.

Build one by name with :func:`joint_head` (the ``JOINT_KINDS``).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor, nn

from crossmodal.errors import ConfigError

__all__ = ["JOINT_KINDS", "JointEmbedding", "JointKind", "joint_head"]

JointKind = Literal["cosine", "product", "concat", "bilinear"]
JOINT_KINDS: tuple[str, ...] = get_args(JointKind)


class JointEmbedding(nn.Module):
    """g(h_t, h_i) → (B, out_dim); see the module docstring for the kinds."""

    def __init__(
        self, kind: str, text_dim: int, image_dim: int, out_dim: int = 256, hidden: int = 512
    ) -> None:
        super().__init__()
        if kind not in JOINT_KINDS:
            raise ConfigError(f"joint head kind {kind!r} is unknown; use one of {JOINT_KINDS}")
        self.kind = kind
        self.pair_terms = text_dim == image_dim
        if kind == "cosine":
            if text_dim != image_dim:
                raise ConfigError(f"cosine needs equal widths, got {text_dim} and {image_dim}")
            self.out_dim = 1
        elif kind == "product":
            self.proj_t = nn.Linear(text_dim, out_dim)
            self.proj_i = nn.Linear(image_dim, out_dim)
            self.out_dim = out_dim
        elif kind == "concat":
            width = text_dim + image_dim + (2 * text_dim if self.pair_terms else 0)
            self.mlp = nn.Sequential(
                nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, out_dim)
            )
            self.out_dim = out_dim
        else:
            self.bilinear = nn.Bilinear(text_dim, image_dim, out_dim)
            self.out_dim = out_dim

    def forward(self, h_t: Tensor, h_i: Tensor) -> Tensor:
        """(B, Dt), (B, Di) → (B, out_dim)."""
        if self.kind == "cosine":
            return nn.functional.cosine_similarity(h_t, h_i, dim=-1).unsqueeze(-1)
        if self.kind == "product":
            return self.proj_t(h_t) * self.proj_i(h_i)  # type: ignore[no-any-return]
        if self.kind == "concat":
            parts = [h_t, h_i]
            if self.pair_terms:
                parts += [h_t * h_i, (h_t - h_i).abs()]
            return self.mlp(torch.cat(parts, dim=-1))  # type: ignore[no-any-return]
        return self.bilinear(h_t, h_i)  # type: ignore[no-any-return]


def joint_head(kind: str, text_dim: int, image_dim: int, out_dim: int = 256) -> JointEmbedding:
    """The joint head ``g`` named ``kind`` (one of :data:`JOINT_KINDS`)."""
    return JointEmbedding(kind, text_dim, image_dim, out_dim)
