"""What a trained re-ranker does to a search: Recall@K before and after it re-scores the top.

    report = evaluate_reranker(reranker, embedder, open_dataset("test.en.retrieval.jsonl"))
    print(report.summary()); json.dump(report.to_dict(), f)

The evaluation set is a captioned retrieval set: caption ``i``'s right picture is picture
``i`` (each sample's first caption is its query).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

    from crossmodal.data.samples import Sample
    from crossmodal.encoders.embedder import Embedder
    from crossmodal.heads.rerank import Reranker

__all__ = ["RerankEvaluation", "embed_samples", "evaluate_reranker"]

KS = (1, 5, 10)  # the Recall@K an evaluation reports


@dataclass(frozen=True)
class RerankEvaluation:
    """Recall@K of the embedding search, then of it with the top ``top_n`` re-scored."""

    queries: int  # captions evaluated (one per readable picture)
    skipped: int  # pictures that could not be read (their captions are left out too)
    top_n: int  # hits re-scored per query
    before: dict[int, float]  # K -> Recall@K of the embedding search
    after: dict[int, float]  # K -> Recall@K with the top re-scored

    def to_dict(self) -> dict[str, Any]:
        """``eval.json``: ``R@K`` and ``reranked R@K`` beside the counts."""
        out: dict[str, Any] = {"queries": self.queries, "skipped": self.skipped}
        out["top_n"] = self.top_n
        for k in self.before:
            out[f"R@{k}"] = self.before[k]
            out[f"reranked R@{k}"] = self.after[k]
        return out

    def summary(self) -> str:
        """One line: each Recall@K before -> after."""
        recalls = ", ".join(
            f"R@{k} {self.before[k]:.4f} -> {self.after[k]:.4f}" for k in self.before
        )
        return f"eval on {self.queries} captions ({self.skipped} skipped): {recalls}"


def embed_samples(
    embedder: Embedder, samples: Iterable[Sample]
) -> tuple[Tensor, list[Sample], int]:
    """(unit picture vectors, the samples they belong to, how many could not be read)."""
    import torch

    listed = list(samples)
    result = embedder.embed_images([s.image for s in listed])
    kept = [listed[int(i)] for i in result.indices]
    return torch.from_numpy(result.vectors), kept, len(listed) - len(kept)


def evaluate_reranker(
    reranker: Reranker, embedder: Embedder, samples: Iterable[Sample], top_n: int = 20
) -> RerankEvaluation:
    """Search each sample's first caption among all the samples' pictures, with and without
    ``reranker`` re-scoring the top ``top_n``; ``embedder`` must wrap the encoder the
    re-ranker was trained on."""
    import torch

    from crossmodal.heads.rerank_train import rerank_ranks

    gallery, kept, skipped = embed_samples(embedder, samples)
    queries = torch.from_numpy(
        embedder.embed_texts([s.captions[0] if s.captions else "" for s in kept])
    )
    base, new = rerank_ranks(reranker, queries, gallery, torch.arange(len(kept)), top_n)
    return RerankEvaluation(
        queries=len(kept),
        skipped=skipped,
        top_n=top_n,
        before={k: float(np.mean(base < k)) for k in KS},
        after={k: float(np.mean(new < k)) for k in KS},
    )
