"""An image-text matching re-ranker: text tokens attend over image patches, then a score.

The embedding search compares one vector per side; the re-ranker reads the tokens. For a
caption and a candidate image it projects the caption's word tokens and the image's
joint-space patch tokens to ``dim`` channels, lets the words attend over the patches
(:class:`~crossmodal.heads.attention.CrossAttention`, weights per head), pools the words and
maps them to a correction added to the embedding score::

    score(t, i) = s · cos(h_t, h_i) + MLP(mean_words CrossAttn(words(t), patches(i)))

``s`` starts at the encoder's logit scale and the correction at zero (the last layer is
zero-initialised), so an untrained re-ranker ranks exactly like the embedding search and
training can only move it from there.

Training is cross-entropy over each caption's positive image and its hard negatives: the
images the embedding search ranks highest for that caption among the wrong ones
(:func:`mine_hard_negatives`); the model reads a batch mapping, so it trains under the common
loop with :class:`~crossmodal.train.objective.ClassificationObjective` (``input_key=None``,
label 0: the positive comes first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from crossmodal.data.images import ImageInput
from crossmodal.errors import CheckpointError, InputError
from crossmodal.heads.attention import CrossAttention
from crossmodal.heads.io import load_head_file, save_head_file
from crossmodal.models.clip import CLIP

_META_KEY = "crossmodal.reranker"  # safetensors metadata key of a re-ranker

__all__ = [
    "RERANK_KEYS",
    "Reranker",
    "load_reranker",
    "mine_hard_negatives",
    "rerank_images",
    "save_reranker",
]


RERANK_KEYS = ("words", "word_mask", "h_t", "patches", "h_i")
"""A re-ranker batch maps these names to tensors:

- ``words`` (B, T, Wt): the text tokens of each caption; ``word_mask`` (B, T) bool, True for
  real tokens; ``h_t`` (B, D): unit caption embeddings;
- ``patches`` (B, K, P, D): joint-space patch tokens of K candidate images per caption;
  ``h_i`` (B, K, D): their unit embeddings.
"""


class Reranker(nn.Module):
    """score(t, i) = s·cos(h_t, h_i) + MLP(pooled cross-attention of words over patches)."""

    def __init__(
        self,
        text_width: int,
        image_dim: int,
        *,
        dim: int = 128,
        heads: int = 4,
        logit_scale: float = 100.0,
    ) -> None:
        super().__init__()
        self.words = nn.Linear(text_width, dim)
        self.patches = nn.Linear(image_dim, dim)
        self.attention = CrossAttention(dim, dim, heads=heads)
        self.mlp = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 1)
        )
        nn.init.zeros_(self.mlp[-1].weight)  # type: ignore[arg-type]
        nn.init.zeros_(self.mlp[-1].bias)  # type: ignore[arg-type]
        self.scale = nn.Parameter(torch.tensor(float(logit_scale)))

    @property
    def config(self) -> dict[str, int | float]:
        """What rebuilds this module (saved with its weights)."""
        return {
            "text_width": self.words.in_features,
            "image_dim": self.patches.in_features,
            "dim": self.words.out_features,
            "heads": self.attention.heads,
        }

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Scores (B, K) of each caption's K candidates (batch keys: :data:`RERANK_KEYS`)."""
        missing = [key for key in RERANK_KEYS if key not in batch]
        if missing:
            raise InputError(f"re-ranker batch lacks {missing}")
        b, k, p, d = batch["patches"].shape
        if batch["words"].shape[0] != b or batch["h_i"].shape[:2] != (b, k):
            raise InputError(
                f"re-ranker batch: {batch['words'].shape[0]} captions, patches "
                f"{tuple(batch['patches'].shape)}, h_i {tuple(batch['h_i'].shape)} disagree"
            )
        t = batch["words"].shape[1]
        words = self.words(batch["words"]).unsqueeze(1).expand(b, k, t, -1).reshape(b * k, t, -1)
        patches = self.patches(batch["patches"].reshape(b * k, p, d))
        mixed = self.attention(words, patches).pooled  # (B*K, T, dim)
        mask = batch["word_mask"].unsqueeze(1).expand(b, k, t).reshape(b * k, t, 1)
        weights = mask.to(mixed.dtype)
        pooled = (mixed * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        correction = self.mlp(pooled).reshape(b, k)
        cosine = torch.einsum("bd,bkd->bk", batch["h_t"], batch["h_i"])
        return self.scale * cosine + correction  # type: ignore[no-any-return]


def mine_hard_negatives(
    h_t: Tensor,
    h_i: Tensor,
    positives: Tensor,
    k: int,
    *,
    text_groups: Tensor | None = None,
    image_groups: Tensor | None = None,
) -> Tensor:
    """For each caption, its positive image first, then the ``k - 1`` highest-scoring others.

    Args:
        h_t: (Nt, D) unit caption embeddings.
        h_i: (Ni, D) unit image embeddings (the gallery).
        positives: (Nt,) the index of each caption's image.
        k: candidates per caption (positive included).
        text_groups, image_groups: (Nt,), (Ni,) ids of what each caption and image shows
            (an emoji's code in several styles): an image of the caption's own group is
            never taken as a negative.

    Returns:
        (Nt, k) image indices; column 0 is the positive.
    """
    if k < 2 or k > h_i.shape[0]:
        raise InputError(f"k={k}: need 2 <= k <= {h_i.shape[0]} gallery images")
    scores = h_t @ h_i.T
    if text_groups is not None and image_groups is not None:
        scores = scores.masked_fill(text_groups[:, None] == image_groups[None, :], float("-inf"))
    scores[torch.arange(len(positives)), positives] = float("-inf")  # not a negative
    negatives = scores.topk(k - 1, dim=1).indices
    return torch.cat([positives[:, None], negatives], dim=1)


def save_reranker(model: Reranker, path: str | Path, *, encoder: str) -> Path:
    """Weights and config (safetensors metadata, with the encoder it reads) to ``path``."""
    return save_head_file(model, path, _META_KEY, {**model.config, "encoder": encoder})


def load_reranker(path: str | Path) -> tuple[Reranker, str]:
    """A re-ranker saved by :func:`save_reranker` and the encoder spec it was trained on."""
    state, meta = load_head_file(path, _META_KEY, "re-ranker")
    try:
        model = Reranker(
            int(meta["text_width"]),
            int(meta["image_dim"]),
            dim=int(meta["dim"]),
            heads=int(meta["heads"]),
        )
        model.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a crossmodal re-ranker ({exc})") from exc
    return model.eval(), str(meta["encoder"])


@torch.inference_mode()
def rerank_images(
    reranker: Reranker, model: CLIP, text: str, images: Sequence[ImageInput]
) -> Tensor:
    """Re-ranker scores (N,) of ``images`` for ``text``, features from the frozen ``model``."""
    from crossmodal.data.images import load_image
    from crossmodal.encoders.native import build_preprocess
    from crossmodal.heads.features import patch_tokens, text_tokens

    if not images:
        return torch.zeros(0)
    preprocess = build_preprocess(model.config)
    pixels = torch.from_numpy(
        np.stack([preprocess(load_image(i, draft_size=preprocess.draft_size)) for i in images])
    )
    h_i, tokens = patch_tokens(model, pixels)
    words, mask, h_t = text_tokens(model, [text])
    batch = {
        "words": words,
        "word_mask": mask,
        "h_t": h_t,
        "patches": tokens[None, :, 1:],
        "h_i": h_i[None],
    }
    return reranker.eval()(batch)[0]  # type: ignore[no-any-return]
