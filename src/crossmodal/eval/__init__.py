"""Evaluation: classification and cross-modal retrieval metrics on numpy arrays.

The metrics match the field's references (scikit-learn for classification and average
precision, CLIP_benchmark for retrieval recall@k) and retrieval runs in query chunks, so a
100k x 100k similarity matrix never exists in memory:

    >>> from crossmodal.eval import pairs_from_image_index, retrieval_metrics
    >>> report = retrieval_metrics(text_emb, image_emb, pairs_from_image_index(text_image))
    >>> report.to_dict()["image_retrieval_recall@5"]  # doctest: +SKIP

See :mod:`crossmodal.eval.metrics` for the definitions, tie rules and input formats.
"""

from __future__ import annotations

from crossmodal.eval.metrics import (
    ClassificationReport,
    RetrievalReport,
    classification_report,
    confusion_matrix,
    pairs_from_dense,
    pairs_from_image_index,
    pairs_from_lists,
    recall_at_k_curve,
    retrieval_metrics,
    top_k_accuracy,
)

__all__ = [
    "ClassificationReport",
    "RetrievalReport",
    "classification_report",
    "confusion_matrix",
    "pairs_from_dense",
    "pairs_from_image_index",
    "pairs_from_lists",
    "recall_at_k_curve",
    "retrieval_metrics",
    "top_k_accuracy",
]
