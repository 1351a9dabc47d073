"""What an evaluation run produces: typed results that serialise to ``results.json``.

Keys follow CLIP_benchmark where it has one (``acc1``, ``acc5``, ``mean_per_class_recall``,
``image_retrieval_recall@k``, ``text_retrieval_recall@k``); the rest are ours (precision,
recall and F1 per class and averaged, ranks, mAP).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from crossmodal.data.samples import Skipped
from crossmodal.eval.metrics import ClassificationReport, RetrievalReport

__all__ = [
    "Direction",
    "RetrievalExample",
    "RetrievalResult",
    "Skipped",
    "ZeroShotResult",
]

IntArray = npt.NDArray[np.int64]
Direction = Literal["text_to_image", "image_to_text"]


@dataclass(frozen=True, eq=False)
class ZeroShotResult:
    """Zero-shot classification of a labelled dataset."""

    model: str  # model spec
    dataset: str  # dataset path or name
    language: str  # template language: "en" or "zh"
    templates: tuple[str, ...]  # prompt templates averaged into each class embedding
    report: ClassificationReport  # all classification metrics (class names inside)
    top_k: dict[int, float]  # top-k accuracy for k in (1, 5) (k capped at the class count)
    y_true: IntArray  # (N,) true class index per evaluated sample
    y_pred: IntArray  # (N,) predicted class index per evaluated sample
    images: tuple[str, ...]  # (N,) image source per evaluated sample, for thumbnails
    skipped: tuple[Skipped, ...] = ()  # inputs that could not be used
    seconds: float = 0.0  # wall time of the run
    # hierarchical runs (subclasses named): the plain prompts' top-k, and how many subclasses
    plain_top_k: dict[int, float] | None = None
    n_subclasses: int = 0

    def to_dict(self) -> dict[str, Any]:
        """``results.json`` content: CLIP_benchmark's keys, then ours."""
        metrics: dict[str, Any] = {
            "acc1": self.top_k.get(1, self.report.accuracy),
            "acc5": self.top_k.get(5),
            "mean_per_class_recall": self.report.balanced_accuracy,
        }
        metrics.update(self.report.to_dict())
        return {
            "task": "zeroshot_classification",
            "model": self.model,
            "dataset": self.dataset,
            "language": self.language,
            "templates": list(self.templates),
            "n_samples": int(len(self.y_true)),
            "n_skipped": len(self.skipped),
            "skipped": [{"source": s.source, "reason": s.reason} for s in self.skipped],
            "seconds": round(self.seconds, 3),
            "metrics": metrics,
            **self._hierarchy(),
        }

    def _hierarchy(self) -> dict[str, Any]:
        if self.plain_top_k is None:
            return {}
        plain = {f"acc{k}": v for k, v in sorted(self.plain_top_k.items()) if k in (1, 5)}
        return {"hierarchy": {"subclasses": self.n_subclasses, "plain": plain}}

    def summary(self) -> str:
        """Two lines: the key metrics, then what was evaluated."""
        m = self.to_dict()["metrics"]
        acc5 = "n/a" if m["acc5"] is None else f"{m['acc5']:.4f}"
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        how = ""
        if self.plain_top_k is not None:
            how = (
                f" (hierarchical, {self.n_subclasses} subclasses; plain prompts acc1 "
                f"{self.plain_top_k[1]:.4f})"
            )
        return (
            f"zero-shot{how}: acc1 {m['acc1']:.4f}  acc5 {acc5}  mean per-class recall "
            f"{m['mean_per_class_recall']:.4f}  macro F1 {m['macro']['f1']:.4f}\n"
            f"{len(self.y_true)} images, {len(self.report.class_names)} classes"
            f"{skipped}, {self.seconds:.1f}s"
        )


@dataclass(frozen=True)
class RetrievalExample:
    """One query as the report shows it: its rank and what came back instead."""

    direction: Direction  # which way the query went
    query: str  # the text (text→image) or the image source (image→text)
    rank: int  # 1-based rank of its best positive
    positives: tuple[str, ...]  # the items that should have come first
    retrieved: tuple[str, ...]  # the top items returned, best first


@dataclass(frozen=True, eq=False)
class RetrievalResult:
    """Text↔image retrieval over a captioned dataset."""

    model: str  # model spec
    dataset: str  # dataset path or name
    report: RetrievalReport  # ranks, recall@k and mAP in both directions
    n_texts: int  # captions evaluated
    n_images: int  # images evaluated
    worst: tuple[RetrievalExample, ...] = ()  # worst-ranked queries, for the report
    skipped: tuple[Skipped, ...] = ()  # inputs that could not be used
    seconds: float = 0.0  # wall time of the run
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. {"language": "zh"}

    def to_dict(self) -> dict[str, Any]:
        """``results.json`` content: CLIP_benchmark's keys, then ours."""
        return {
            "task": "zeroshot_retrieval",
            "model": self.model,
            "dataset": self.dataset,
            "n_texts": self.n_texts,
            "n_images": self.n_images,
            "n_skipped": len(self.skipped),
            "skipped": [{"source": s.source, "reason": s.reason} for s in self.skipped],
            "seconds": round(self.seconds, 3),
            **self.extra,
            "metrics": self.report.to_dict(),
        }

    def summary(self) -> str:
        """Two lines of Recall@K (text→image, image→text), then what was evaluated."""
        r = self.report
        t2i = "  ".join(f"R@{k} {r.recall('text_to_image', k):.4f}" for k in r.ks)
        i2t = "  ".join(f"R@{k} {r.recall('image_to_text', k):.4f}" for k in r.ks)
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        return (
            f"text->image: {t2i}\nimage->text: {i2t}\n"
            f"{self.n_images} images, {self.n_texts} texts{skipped}, {self.seconds:.1f}s"
        )
