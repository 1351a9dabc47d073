"""Soft targets: how a teacher spreads a text over the concepts.

For a text with teacher vector ``t`` and concept label vectors ``c_j`` (all unit), the target
is ``softmax_j(t·c_j / temperature)`` over the ``top_k`` most similar concepts (zero
elsewhere). ``best`` (the largest cosine) says whether the teacher finds the text near any
concept at all; vocabulary below ``min_similarity`` is left out of training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crossmodal.errors import ConfigError, InputError

__all__ = ["SoftTargets", "TargetConfig", "soft_targets"]


@dataclass(frozen=True)
class TargetConfig:
    """How teacher similarities become targets (defaults measured on the emoji concepts)."""

    temperature: float = 0.05  # softmax temperature on the teacher's cosines
    top_k: int = 10  # concepts a target spreads over
    min_similarity: float = 0.5  # vocabulary nearer no concept than this is left out

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"temperature={self.temperature}: must be > 0")
        if self.top_k < 1:
            raise ConfigError(f"top_k={self.top_k}: must be >= 1")
        if not -1 <= self.min_similarity <= 1:
            raise ConfigError(f"min_similarity={self.min_similarity}: a cosine, in [-1, 1]")


@dataclass(frozen=True)
class SoftTargets:
    """Sparse rows: ``probs[n]`` over concepts ``indices[n]``; ``best[n]`` the top cosine."""

    indices: npt.NDArray[np.int64]  # (N, k)
    probs: npt.NDArray[np.float32]  # (N, k), rows sum to 1
    best: npt.NDArray[np.float32]  # (N,)


def soft_targets(
    texts: npt.NDArray[np.float32],
    concepts: npt.NDArray[np.float32],
    config: TargetConfig | None = None,
    chunk: int = 4096,
) -> SoftTargets:
    """The teacher's distribution of each text over the concepts (see the module doc).

    Raises:
        InputError: The vectors are not (N, d) and (C, d) with the same d, or C is 0.
    """
    config = config or TargetConfig()
    if texts.ndim != 2 or concepts.ndim != 2 or texts.shape[1] != concepts.shape[1]:
        raise InputError(
            f"texts {texts.shape} and concepts {concepts.shape} must be (N, d), (C, d)"
        )
    if not len(concepts):
        raise InputError("no concepts to spread the targets over")
    k = min(config.top_k, len(concepts))
    indices = np.zeros((len(texts), k), np.int64)
    probs = np.zeros((len(texts), k), np.float32)
    best = np.zeros(len(texts), np.float32)
    for start in range(0, len(texts), chunk):
        sims = texts[start : start + chunk] @ concepts.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sims, axis=1)  # most similar first
        top, top_sims = np.take_along_axis(top, order, 1), np.take_along_axis(top_sims, order, 1)
        logits = (top_sims - top_sims[:, :1]) / config.temperature
        weights = np.exp(logits)
        end = start + len(sims)
        indices[start:end] = top
        probs[start:end] = weights / weights.sum(axis=1, keepdims=True)
        best[start:end] = top_sims[:, 0]
    return SoftTargets(indices, probs, best)
