"""Re-scoring the top hits of a text search with a trained re-ranker (:mod:`~crossmodal.heads`).

Shared by ``crossmodal search --rerank N`` and the service's ``"rerank": N``. The re-ranker
reads vectors only: the query's and the hits' stored ones, so no picture is decoded again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from crossmodal.errors import InputError

if TYPE_CHECKING:
    from crossmodal.heads.rerank import Reranker
    from crossmodal.search.index import Index
    from crossmodal.search.results import Hit

__all__ = ["SHIPPED", "default_reranker", "find_reranker", "load_for_index", "rerank_hits"]


SHIPPED = {"native:emoji-mini": "emoji-mini.reranker.safetensors"}  # in crossmodal/assets/


def default_reranker(model: str) -> Path | None:
    """The re-ranker shipped for ``model`` (emoji-mini's), or None when none ships."""
    name = SHIPPED.get(model)
    if name is None:
        return None
    path = Path(__file__).resolve().parents[1] / "assets" / name
    return path if path.is_file() else None


def find_reranker(index: Index, weights: str | Path | None = None) -> Reranker | None:
    """The re-ranker at ``weights``, else the one shipped for the index's model, else None;
    checked to fit ``index``'s model.

    Raises:
        InputError: It was trained on another model's vectors.
        CheckpointError: The file is not a re-ranker.
    """
    from crossmodal.heads.rerank import load_reranker

    weights = weights if weights is not None else default_reranker(index.model)
    if weights is None:
        return None
    reranker, trained_on = load_reranker(weights)
    if trained_on != index.model:
        raise InputError(
            f"{weights} was trained on {trained_on!r} features; this index uses "
            f"{index.model!r}: train a re-ranker for that model"
        )
    if reranker.config["dim"] != index.encoder.dim:
        raise InputError(
            f"{weights} holds {reranker.config['dim']}-d vectors; {index.model} makes "
            f"{index.encoder.dim}-d ones"
        )
    return reranker


def load_for_index(index: Index, weights: str | Path | None = None) -> Reranker:
    """:func:`find_reranker`, for a caller that needs one.

    Raises:
        InputError: None is given and none ships for the model (the message says how to
            train one), or it does not fit the index.
        CheckpointError: The file is not a re-ranker.
    """
    reranker = find_reranker(index, weights)
    if reranker is None:
        raise InputError(
            f"no re-ranker ships for {index.model}: train one (crossmodal train --task "
            "rerank -d CAPTIONED_DATA -o OUT) and pass it with --reranker OUT/"
            "reranker.safetensors"
        )
    return reranker


def rerank_hits(
    index: Index,
    reranker: Reranker,
    vector: npt.NDArray[np.float32],
    hits: list[Hit],
    n: int,
) -> list[Hit]:
    """The top ``n`` hits re-scored for the query ``vector`` (``Hit.rerank``) and re-ordered;
    the rest as they were. A hit whose vector went meanwhile (another process removed its
    file) keeps its place, unscored, after the others.
    """
    import torch

    top = hits[:n]
    stored = [index.store.vector_of_file(h.path, h.time) for h in top]
    found = [(i, v) for i, v in enumerate(stored) if v is not None]
    if not found:
        return hits
    pictures = torch.from_numpy(np.stack([v for _, v in found]))
    scores = reranker.score(torch.from_numpy(vector), pictures).tolist()
    order = sorted(range(len(found)), key=lambda j: -scores[j])
    rescored = [dataclasses.replace(top[found[j][0]], rerank=float(scores[j])) for j in order]
    gone = [h for i, h in enumerate(top) if stored[i] is None]
    return rescored + gone + hits[n:]
