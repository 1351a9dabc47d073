"""An image-text matching re-ranker that remembers: the query attends over captioned pictures.

The embedding search compares the query's vector with each picture's. On a drawing style the
encoder never saw, that comparison is weak, yet the same concept drawn in the styles it was
trained on is close at hand: the re-ranker keeps a **memory** of captioned pictures (its
training pairs: a key per caption, the picture's vector as the value). A query attends over
the memory's captions, the design's cross-modal attention with ``W = τ I`` over keys::

    α_j = exp(τ h_tᵀ k_j) / Σ_m exp(τ h_tᵀ k_m)          p(t) = Σ_j α_j v_j

and the attended picture ``p`` (what the query's concept looks like in the remembered
styles) is a second opinion on each candidate::

    score(t, i) = s · [cos(h_t, h_i) + λ · g(t) · cos(p(t), h_i)]
    g(t) = sigmoid(a · (max_j cos(h_t, k_j) − b))

The gate ``g`` turns the memory off for a query whose concept it does not hold (its best
key is far). ``s`` is the encoder's logit scale; ``λ`` starts at zero, so an untrained
re-ranker ranks exactly like the embedding search. Four numbers are learnt (``τ``, ``λ``,
``a``, ``b``) by cross-entropy over each caption's picture and hard negatives mined by the
embedding search (:mod:`crossmodal.heads.rerank_train`, ``crossmodal train --task rerank``);
the memory is data, not weights.

Re-ranking reads only vectors, the candidates' stored ones and the query's, so it costs well
under a millisecond a query and never decodes a picture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from crossmodal.errors import CheckpointError, InputError
from crossmodal.heads.attention import AttentionOutput, masked_softmax
from crossmodal.heads.io import load_head_file, save_head_file

_META_KEY = "crossmodal.reranker"  # safetensors metadata key of a re-ranker
_KIND = "memory"

__all__ = [
    "RERANK_KEYS",
    "RerankMemory",
    "Reranker",
    "load_reranker",
    "mine_hard_negatives",
    "save_reranker",
]

RERANK_KEYS = ("h_t", "h_i")
"""A re-ranker batch maps ``h_t`` (B, D), unit query vectors, and ``h_i`` (B, K, D), unit
vectors of each query's K candidates, to tensors. Training batches may add, each (B,) long
with -1 for none, memory entries the query must not see: ``exclude_picture`` (its own
picture), ``exclude_gallery`` (every picture of its own gallery) and ``exclude_group`` (every
picture of its concept, to teach the gate)."""


@dataclass(frozen=True)
class RerankMemory:
    """Captioned pictures: keys (caption vectors) pointing at values (picture vectors).

    Attributes:
        keys: (M, D) unit caption vectors.
        key_picture: (M,) long, the picture each caption describes.
        pictures: (V, D) unit picture vectors.
        groups: (V,) long, what each picture shows (pictures of one concept share a group).
        galleries: (V,) long, where each picture comes from (a drawing style, a source).
    """

    keys: Tensor
    key_picture: Tensor
    pictures: Tensor
    groups: Tensor
    galleries: Tensor

    def __post_init__(self) -> None:
        m, v = len(self.keys), len(self.pictures)
        if m == 0 or v == 0:
            raise InputError("a re-ranker memory needs at least one captioned picture")
        if self.keys.shape[1:] != self.pictures.shape[1:] or self.keys.dim() != 2:
            raise InputError(
                f"memory keys {tuple(self.keys.shape)} and pictures "
                f"{tuple(self.pictures.shape)} must be (M, D) and (V, D) in one space"
            )
        if self.key_picture.shape != (m,) or not int(self.key_picture.min()) >= 0:
            raise InputError(f"memory key_picture: expected {m} picture indices")
        if int(self.key_picture.max()) >= v:
            raise InputError(f"memory key_picture points past the {v} pictures")
        if self.groups.shape != (v,) or self.galleries.shape != (v,):
            raise InputError(f"memory groups and galleries: expected ({v},) each")


class Reranker(nn.Module):
    """score(t, i) = s·[cos(h_t, h_i) + λ·g(t)·cos(p(t), h_i)], p(t) attended from memory."""

    memory_keys: Tensor
    memory_key_picture: Tensor
    memory_pictures: Tensor
    memory_groups: Tensor
    memory_galleries: Tensor
    memory_values: Tensor
    scale: Tensor

    def __init__(
        self, memory: RerankMemory, *, logit_scale: float = 100.0, temperature: float = 50.0
    ) -> None:
        super().__init__()
        self.register_buffer("memory_keys", memory.keys.float().contiguous())
        self.register_buffer("memory_key_picture", memory.key_picture.long())
        self.register_buffer("memory_pictures", memory.pictures.float().contiguous())
        self.register_buffer("memory_groups", memory.groups.long())
        self.register_buffer("memory_galleries", memory.galleries.long())
        self.register_buffer("scale", torch.tensor(float(logit_scale)))
        # each caption's picture, gathered once (not saved: it follows from the two above)
        values = memory.pictures.float()[memory.key_picture.long()].contiguous()
        self.register_buffer("memory_values", values, persistent=False)
        self.log_temperature = nn.Parameter(torch.tensor(float(temperature)).log())
        self.weight = nn.Parameter(torch.zeros(()))  # λ: zero, the embedding ranking
        self.gate_slope = nn.Parameter(torch.tensor(10.0))
        self.gate_bias = nn.Parameter(torch.tensor(0.7))

    @property
    def config(self) -> dict[str, int | float]:
        """What rebuilds this module (saved with its weights)."""
        return {
            "dim": int(self.memory_keys.shape[1]),
            "keys": int(self.memory_keys.shape[0]),
            "pictures": int(self.memory_pictures.shape[0]),
        }

    def attend(self, h_t: Tensor, mask: Tensor | None = None) -> AttentionOutput:
        """α over the memory's captions (B, M) and the attended picture ``pooled`` (B, D)."""
        return self._attend(h_t @ self.memory_keys.T, mask)

    def gate(self, h_t: Tensor, mask: Tensor | None = None) -> Tensor:
        """g(t) (B,): near 1 when the memory holds a caption like the query, else near 0."""
        return self._gate(h_t @ self.memory_keys.T, mask)

    def _attend(self, similarity: Tensor, mask: Tensor | None) -> AttentionOutput:
        scores = self.log_temperature.exp() * similarity
        weights = masked_softmax(scores, mask)
        pooled = weights @ self.memory_values
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return AttentionOutput(pooled=pooled, weights=weights, scores=scores)

    def _gate(self, similarity: Tensor, mask: Tensor | None) -> Tensor:
        if mask is not None:
            similarity = similarity.masked_fill(~mask, -1.0)
        return torch.sigmoid(self.gate_slope * (similarity.amax(dim=1) - self.gate_bias))

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Scores (B, K) of each query's K candidates (batch keys: :data:`RERANK_KEYS`)."""
        missing = [key for key in RERANK_KEYS if key not in batch]
        if missing:
            raise InputError(f"re-ranker batch lacks {missing}")
        h_t, h_i = batch["h_t"], batch["h_i"]
        if h_t.dim() != 2 or h_i.dim() != 3 or h_i.shape[0] != h_t.shape[0]:
            raise InputError(
                f"re-ranker batch: h_t {tuple(h_t.shape)} and h_i {tuple(h_i.shape)} must be "
                "(B, D) and (B, K, D)"
            )
        mask = self._mask(batch)
        similarity = h_t @ self.memory_keys.T  # (B, M) cosines with the memory's captions
        prototype = nn.functional.normalize(self._attend(similarity, mask).pooled, dim=-1)
        cosine = torch.einsum("bd,bkd->bk", h_t, h_i)
        remembered = torch.einsum("bd,bkd->bk", prototype, h_i)
        gate = self._gate(similarity, mask)[:, None]
        return self.scale * (cosine + self.weight * gate * remembered)

    @torch.inference_mode()
    def score(self, h_t: Tensor, h_i: Tensor) -> Tensor:
        """Scores (N,) of N candidates ``h_i`` (N, D) for one query ``h_t`` (D,)."""
        scores: Tensor = self.eval()({"h_t": h_t[None].float(), "h_i": h_i[None].float()})
        return scores[0]

    def _mask(self, batch: Mapping[str, Tensor]) -> Tensor | None:
        """(B, M) True where a query may see a memory entry; None when it sees them all."""
        names = ("exclude_picture", "exclude_gallery", "exclude_group")
        if not any(name in batch for name in names):
            return None
        picture = self.memory_key_picture
        of_key = {
            "exclude_picture": picture,
            "exclude_gallery": self.memory_galleries[picture],
            "exclude_group": self.memory_groups[picture],
        }
        mask = torch.ones(len(batch["h_t"]), len(picture), dtype=torch.bool)
        for name in names:
            if name in batch:
                mask &= of_key[name][None, :] != batch[name][:, None]
        return mask


def mine_hard_negatives(
    h_t: Tensor,
    h_i: Tensor,
    positives: Tensor,
    k: int,
    *,
    text_groups: Tensor | None = None,
    image_groups: Tensor | None = None,
    galleries: Tensor | None = None,
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
        galleries: (Ni,) where each image comes from: negatives come from the positive's
            own gallery only, as a search over one collection sees them.

    Returns:
        (Nt, k) image indices; column 0 is the positive.

    Raises:
        InputError: ``k`` is below 2 or above what a gallery offers.
    """
    pool = h_i.shape[0] if galleries is None else int(torch.bincount(galleries).min())
    if k < 2 or k > pool:
        raise InputError(f"k={k}: need 2 <= k <= {pool} images (per gallery)")
    scores = h_t @ h_i.T
    if text_groups is not None and image_groups is not None:
        scores = scores.masked_fill(text_groups[:, None] == image_groups[None, :], float("-inf"))
    if galleries is not None:
        other = galleries[positives][:, None] != galleries[None, :]
        scores = scores.masked_fill(other, float("-inf"))
    scores[torch.arange(len(positives)), positives] = float("-inf")  # not a negative
    negatives = scores.topk(k - 1, dim=1).indices
    return torch.cat([positives[:, None], negatives], dim=1)


def save_reranker(model: Reranker, path: str | Path, *, encoder: str) -> Path:
    """Weights, memory (float16) and config to ``path``, with the encoder it reads."""
    meta = {"kind": _KIND, **model.config, "encoder": encoder}
    return save_head_file(model, path, _META_KEY, meta, half=("memory_keys", "memory_pictures"))


def load_reranker(path: str | Path) -> tuple[Reranker, str]:
    """A re-ranker saved by :func:`save_reranker` and the encoder spec it was trained on.

    Raises:
        CheckpointError: The file is not a re-ranker, or one of an older kind (the message
            says to train it again).
    """
    state, meta = load_head_file(path, _META_KEY, "re-ranker")
    if meta.get("kind") != _KIND:
        raise CheckpointError(
            f"{path}: a re-ranker of an older kind (token cross-attention); train a new one "
            "with crossmodal train --task rerank"
        )
    try:
        memory = RerankMemory(
            keys=state["memory_keys"].float(),
            key_picture=state["memory_key_picture"],
            pictures=state["memory_pictures"].float(),
            groups=state["memory_groups"],
            galleries=state["memory_galleries"],
        )
        model = Reranker(memory)
        model.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError, InputError) as exc:
        raise CheckpointError(f"{path}: not a crossmodal re-ranker ({exc})") from exc
    return model.eval().requires_grad_(False), str(meta["encoder"])
