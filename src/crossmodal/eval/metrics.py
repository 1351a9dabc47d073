"""Classification and cross-modal retrieval metrics on plain numpy arrays.

Every number here is defined to match a reference implementation of the field, and the tests
check it against that reference:

* classification metrics match scikit-learn called with ``labels=range(n_classes)`` and
  ``zero_division=0``;
* retrieval recall@k matches CLIP_benchmark's ``image_retrieval_recall@k`` (text queries, image
  gallery) and ``text_retrieval_recall@k`` (image queries, text gallery);
* per-query average precision matches scikit-learn's ``average_precision_score``, ties included.

Retrieval never builds the full similarity matrix: queries are scored ``chunk_size`` rows at a
time, so memory is ``O(chunk_size * gallery)`` whatever the size of the evaluation set.

Positives are given as an integer array of ``(text_idx, image_idx)`` pairs, shape ``(P, 2)``.
One format covers every layout: an image with five captions is five pairs sharing an
``image_idx``; a query with many relevant images is many pairs sharing a ``text_idx``. The
helpers :func:`pairs_from_image_index`, :func:`pairs_from_lists` and :func:`pairs_from_dense`
build it from the other usual layouts. Duplicate pairs count once.
"""

from crossmodal.eval.classification import (
    ClassificationReport,
    classification_report,
    confusion_matrix,
    top_k_accuracy,
)
from crossmodal.eval.retrieval import (
    Direction,
    RetrievalReport,
    pairs_from_dense,
    pairs_from_image_index,
    pairs_from_lists,
    recall_at_k_curve,
    retrieval_metrics,
)

__all__ = [
    "Direction",
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
