"""Re-scoring the top hits of a text search with a trained re-ranker (:mod:`~crossmodal.heads`).

Shared by ``crossmodal search --rerank N`` and the service's ``"rerank": N``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from crossmodal.errors import InputError

if TYPE_CHECKING:
    from crossmodal.heads.rerank import Reranker
    from crossmodal.search.index import Index
    from crossmodal.search.results import Hit

__all__ = ["load_for_index", "rerank_hits"]


def load_for_index(index: Index, weights: str | Path) -> Reranker:
    """The re-ranker at ``weights``, checked to fit ``index``'s model.

    Raises:
        InputError: It was trained on another model's features, or the index's model is not
            a native one (the re-ranker reads its word and patch tokens).
        CheckpointError: The file is not a re-ranker.
    """
    from crossmodal.encoders.native import NativeEncoder
    from crossmodal.heads.rerank import load_reranker

    reranker, trained_on = load_reranker(weights)
    if trained_on != index.model:
        raise InputError(
            f"{weights} was trained on {trained_on!r} features; this index uses "
            f"{index.model!r}: train a re-ranker for that model"
        )
    if not isinstance(index.encoder, NativeEncoder):
        raise InputError(f"re-ranking reads a native model's tokens; {index.model} is not one")
    return reranker


def rerank_hits(index: Index, reranker: Reranker, text: str, hits: list[Hit], n: int) -> list[Hit]:
    """The top ``n`` hits re-scored for ``text`` (``Hit.rerank``) and re-ordered; the rest as
    they were."""
    from crossmodal.encoders.native import NativeEncoder
    from crossmodal.heads.rerank import rerank_images
    from crossmodal.search.video import frame_at

    encoder = index.encoder
    assert isinstance(encoder, NativeEncoder)  # load_for_index checked it
    top = hits[:n]
    pictures = [frame_at(h.path, h.time).image if h.time is not None else h.path for h in top]
    scores = rerank_images(reranker, encoder.model.float(), text, pictures).tolist()
    order = sorted(range(len(top)), key=lambda i: -scores[i])
    return [dataclasses.replace(top[i], rerank=float(scores[i])) for i in order] + hits[n:]
