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

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from crossmodal.errors import InputError

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

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Direction = Literal["text_to_image", "image_to_text"]
_DIRECTIONS: tuple[Direction, ...] = ("text_to_image", "image_to_text")

# Queries with at most this many positives are scored by broadcasting one positive per query at
# a time over the whole chunk; queries with more sort their row once instead.
_SLOT_LIMIT = 16


# --------------------------------------------------------------------------------------------
# validation helpers


def _labels(name: str, values: npt.ArrayLike, n_classes: int) -> IntArray:
    """Return ``values`` as a 1-D int64 array of class indices in ``[0, n_classes)``."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InputError(f"{name}: expected a 1-D array of class indices, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name}: is empty; pass at least one sample")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)):
        raise InputError(f"{name}: expected integer class indices, got dtype {arr.dtype}")
    out = arr.astype(np.int64)
    bad = np.flatnonzero((out < 0) | (out >= n_classes))
    if bad.size:
        raise InputError(
            f"{name}[{bad[0]}] = {out[bad[0]]} is not a class index in [0, {n_classes}); "
            "check the labels or n_classes"
        )
    return out


def _check_n_classes(n_classes: int) -> None:
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise InputError(f"n_classes: expected an int, got {type(n_classes).__name__}")
    if n_classes < 1:
        raise InputError(f"n_classes: must be at least 1, got {n_classes}")


def _check_ks(ks: Iterable[int], name: str = "ks") -> tuple[int, ...]:
    out = tuple(ks)
    if not out:
        raise InputError(f"{name}: is empty; pass at least one k, e.g. (1, 5)")
    for k in out:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"{name}: every k must be a positive int, got {k!r}")
    return tuple(int(k) for k in out)


def _safe_div(num: npt.ArrayLike, den: npt.ArrayLike) -> FloatArray:
    """``num / den`` elementwise, 0.0 where ``den == 0`` (scikit-learn's ``zero_division=0``)."""
    n = np.asarray(num, dtype=np.float64)
    d = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(n, d).shape, dtype=np.float64)
    np.divide(n, d, out=out, where=d != 0)
    return out


# --------------------------------------------------------------------------------------------
# classification


def confusion_matrix(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int) -> IntArray:
    """Count samples per (true class, predicted class).

    Args:
        y_true: ``(N,)`` true class indices in ``[0, n_classes)``.
        y_pred: ``(N,)`` predicted class indices in ``[0, n_classes)``.
        n_classes: number of classes ``C``; classes absent from both arrays get zero rows/cols.

    Returns:
        ``(C, C)`` int64 matrix, rows = true class, columns = predicted class; equal to
        ``sklearn.metrics.confusion_matrix(y_true, y_pred, labels=range(C))``.

    Raises:
        InputError: on shape mismatch, empty input or an index outside ``[0, n_classes)``.
    """
    _check_n_classes(n_classes)
    t = _labels("y_true", y_true, n_classes)
    p = _labels("y_pred", y_pred, n_classes)
    if t.shape != p.shape:
        raise InputError(f"y_pred: has {p.size} samples but y_true has {t.size}; pass one each")
    counts = np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return counts.astype(np.int64).reshape(n_classes, n_classes)


def top_k_accuracy(
    scores: npt.ArrayLike, y_true: npt.ArrayLike, ks: Iterable[int] = (1, 5)
) -> dict[int, float]:
    """Fraction of samples whose true class is among the ``k`` highest scores.

    Ties follow scikit-learn's ``top_k_accuracy_score``: among equal scores the class with the
    higher index ranks first. So the true class ``y`` has rank
    ``#{c: s_c > s_y} + #{c > y: s_c == s_y}`` (0-based) and is a hit when that is below ``k``.
    A ``k`` of at least the number of classes is always a hit (scikit-learn warns, same value).

    Args:
        scores: ``(N, C)`` class scores (logits, probabilities, similarities), finite.
        y_true: ``(N,)`` true class indices in ``[0, C)``.
        ks: the values of ``k``, each a positive int.

    Returns:
        ``{k: accuracy}`` for each ``k`` in ``ks``.

    Raises:
        InputError: on bad shapes, empty input, non-finite scores, bad ``ks`` or labels.
    """
    s = np.asarray(scores)
    if s.ndim != 2:
        raise InputError(f"scores: expected shape (N, n_classes), got {s.shape}")
    if s.shape[0] == 0 or s.shape[1] == 0:
        raise InputError(f"scores: is empty (shape {s.shape}); pass at least one sample and class")
    if not np.issubdtype(s.dtype, np.number) or not np.isfinite(s).all():
        raise InputError("scores: must be finite numbers (found NaN, inf or non-numeric values)")
    t = _labels("y_true", y_true, s.shape[1])
    if t.shape[0] != s.shape[0]:
        raise InputError(f"y_true: has {t.shape[0]} samples but scores has {s.shape[0]} rows")
    ks_ = _check_ks(ks)
    true_score = s[np.arange(s.shape[0]), t][:, None]
    later = np.arange(s.shape[1])[None, :] > t[:, None]
    rank = (s > true_score).sum(axis=1) + ((s == true_score) & later).sum(axis=1)
    return {k: float(np.mean(rank < k)) for k in ks_}


@dataclass(frozen=True, eq=False)
class ClassificationReport:
    """Classification metrics for ``C`` classes, as scikit-learn computes them.

    Per-class arrays have shape ``(C,)`` in class-index order. Averages follow
    ``precision_recall_fscore_support(..., labels=range(C), zero_division=0)``: a class with no
    predictions has precision 0, a class with no true samples has recall 0, and the macro
    average includes every one of the ``C`` classes. ``balanced_accuracy`` is the mean recall
    over the classes present in ``y_true`` (scikit-learn's ``balanced_accuracy_score``).
    Instances compare by identity (arrays make value equality ambiguous).
    """

    class_names: tuple[str, ...]
    accuracy: float
    balanced_accuracy: float
    precision: FloatArray
    recall: FloatArray
    f1: FloatArray
    support: IntArray
    macro_precision: float
    macro_recall: float
    macro_f1: float
    micro_precision: float
    micro_recall: float
    micro_f1: float
    weighted_precision: float
    weighted_recall: float
    weighted_f1: float
    confusion: IntArray

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON types (floats, ints, strings, lists, dicts)."""
        per_class = {
            name: {
                "precision": float(self.precision[i]),
                "recall": float(self.recall[i]),
                "f1": float(self.f1[i]),
                "support": int(self.support[i]),
            }
            for i, name in enumerate(self.class_names)
        }
        averages = {
            kind: {
                "precision": float(getattr(self, f"{kind}_precision")),
                "recall": float(getattr(self, f"{kind}_recall")),
                "f1": float(getattr(self, f"{kind}_f1")),
            }
            for kind in ("macro", "micro", "weighted")
        }
        return {
            "accuracy": float(self.accuracy),
            "balanced_accuracy": float(self.balanced_accuracy),
            **averages,
            "per_class": per_class,
            "class_names": list(self.class_names),
            "confusion_matrix": self.confusion.tolist(),
        }


def _class_names(class_names: Sequence[str] | None, n_classes: int) -> tuple[str, ...]:
    if class_names is None:
        return tuple(str(i) for i in range(n_classes))
    names = tuple(str(n) for n in class_names)
    if len(names) != n_classes:
        raise InputError(f"class_names: has {len(names)} names but n_classes is {n_classes}")
    if len(set(names)) != len(names):
        raise InputError("class_names: names must be unique (they key the per-class results)")
    return names


def classification_report(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    n_classes: int,
    class_names: Sequence[str] | None = None,
) -> ClassificationReport:
    """Compute accuracy, balanced accuracy, per-class and averaged precision/recall/F1.

    Args:
        y_true: ``(N,)`` true class indices in ``[0, n_classes)``.
        y_pred: ``(N,)`` predicted class indices in ``[0, n_classes)``.
        n_classes: number of classes ``C``.
        class_names: optional ``C`` unique display names (default ``"0"``, ``"1"``, ...).

    Returns:
        A :class:`ClassificationReport`; zero divisions give 0.0 as with scikit-learn's
        ``zero_division=0``.

    Raises:
        InputError: on shape mismatch, empty input, out-of-range labels or bad ``class_names``.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    names = _class_names(class_names, n_classes)
    tp = np.diag(cm).astype(np.int64)
    support = cm.sum(axis=1).astype(np.int64)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, support + predicted)
    total = int(support.sum())
    weights = support / total
    micro_p = float(_safe_div(tp.sum(), predicted.sum()))
    micro_r = float(_safe_div(tp.sum(), support.sum()))
    return ClassificationReport(
        class_names=names,
        accuracy=float(tp.sum() / total),
        balanced_accuracy=float(recall[support > 0].mean()),
        precision=precision,
        recall=recall,
        f1=f1,
        support=support,
        macro_precision=float(precision.mean()),
        macro_recall=float(recall.mean()),
        macro_f1=float(f1.mean()),
        micro_precision=micro_p,
        micro_recall=micro_r,
        micro_f1=float(_safe_div(np.float64(2 * tp.sum()), support.sum() + predicted.sum())),
        weighted_precision=float(precision @ weights),
        weighted_recall=float(recall @ weights),
        weighted_f1=float(f1 @ weights),
        confusion=cm,
    )


# --------------------------------------------------------------------------------------------
# positives


def pairs_from_image_index(text_image_index: npt.ArrayLike) -> IntArray:
    """Pairs for the usual captioning layout: text ``t`` describes image ``text_image_index[t]``.

    This is CLIP_benchmark's ``texts_image_index`` (e.g. five captions per image).

    Returns:
        ``(Nt, 2)`` int64 array of ``(text_idx, image_idx)`` pairs.
    """
    idx = np.asarray(text_image_index)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise InputError(
            f"text_image_index: expected a 1-D integer array, got shape {idx.shape} "
            f"and dtype {idx.dtype}"
        )
    return np.stack([np.arange(idx.size, dtype=np.int64), idx.astype(np.int64)], axis=1)


def pairs_from_lists(text_to_image: Sequence[Sequence[int]]) -> IntArray:
    """Pairs from per-text lists of relevant images: ``text_to_image[t]`` lists ``t``'s images.

    Returns:
        ``(P, 2)`` int64 array of ``(text_idx, image_idx)`` pairs.
    """
    texts = [t for t, images in enumerate(text_to_image) for _ in images]
    images = [int(i) for row in text_to_image for i in row]
    return np.stack(
        [np.asarray(texts, dtype=np.int64), np.asarray(images, dtype=np.int64)], axis=1
    ).reshape(-1, 2)


def pairs_from_dense(mask: npt.ArrayLike) -> IntArray:
    """Pairs from a dense ``(Nt, Ni)`` boolean matrix (CLIP_benchmark's ``positive_pairs``).

    Only sensible for small sets: the matrix itself is ``Nt * Ni`` bytes.

    Returns:
        ``(P, 2)`` int64 array of ``(text_idx, image_idx)`` pairs.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise InputError(f"mask: expected a 2-D (n_texts, n_images) matrix, got shape {m.shape}")
    return np.argwhere(m.astype(bool)).astype(np.int64).reshape(-1, 2)


class _Csr(NamedTuple):
    """Positives of each query as a CSR row structure: ``indices[indptr[q]:indptr[q + 1]]``."""

    indptr: IntArray
    indices: IntArray


def _csr(queries: IntArray, targets: IntArray, n_queries: int) -> _Csr:
    order = np.lexsort((targets, queries))
    counts = np.bincount(queries, minlength=n_queries)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return _Csr(indptr, targets[order].astype(np.int64))


def _positives(pairs: npt.ArrayLike, n_texts: int, n_images: int) -> tuple[_Csr, _Csr]:
    """Validate the pairs and index them both ways: (text -> images, image -> texts)."""
    arr = np.asarray(pairs)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InputError(
            f"positive_pairs: expected shape (P, 2) of (text_idx, image_idx), got {arr.shape}; "
            "see pairs_from_image_index / pairs_from_lists / pairs_from_dense"
        )
    if arr.shape[0] == 0:
        raise InputError("positive_pairs: is empty; every query needs at least one positive")
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"positive_pairs: expected integer indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    for col, name, n in ((0, "text_idx", n_texts), (1, "image_idx", n_images)):
        bad = np.flatnonzero((arr[:, col] < 0) | (arr[:, col] >= n))
        if bad.size:
            raise InputError(
                f"positive_pairs[{bad[0]}]: {name} {arr[bad[0], col]} is out of range [0, {n})"
            )
    arr = np.unique(arr, axis=0)
    for col, what, n in ((0, "text", n_texts), (1, "image", n_images)):
        missing = np.flatnonzero(np.bincount(arr[:, col], minlength=n) == 0)
        if missing.size:
            raise InputError(
                f"positive_pairs: {what} {missing[0]} has no positive ({missing.size} "
                f"{what}s in all); every query needs at least one, drop those {what}s"
            )
    t2i = _csr(arr[:, 0], arr[:, 1], n_texts)
    i2t = _csr(arr[:, 1], arr[:, 0], n_images)
    return t2i, i2t


# --------------------------------------------------------------------------------------------
# retrieval


def _embeddings(name: str, emb: npt.ArrayLike, dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    arr = np.asarray(emb)
    if arr.ndim != 2:
        raise InputError(f"{name}: expected shape (N, D), got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{name}: is empty (shape {arr.shape}); pass at least one vector")
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{name}: expected numbers, got dtype {arr.dtype}")
    out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all():
        raise InputError(f"{name}: contains NaN or inf; check the encoder output")
    return out


def _count_at_least(
    sims: npt.NDArray[Any], rows: IntArray, slots: IntArray, values: npt.NDArray[Any]
) -> IntArray:
    """For each positive ``p``, count the entries of row ``rows[p]`` of ``sims`` ``>= values[p]``.

    ``slots[p]`` is the position of ``p`` among its row's positives; rows with many positives
    (flagged by ``slots`` of ``-1``) are handled by the caller's sort path.
    """
    out = np.zeros(rows.size, dtype=np.int64)
    n_rows = sims.shape[0]
    for j in range(int(slots.max(initial=-1)) + 1):
        sel = np.flatnonzero(slots == j)
        block = sims if sel.size == n_rows else sims[rows[sel]]
        out[sel] = (block >= values[sel, None]).sum(axis=1)
    return out


def _chunk_stats(
    sims: npt.NDArray[Any], ptr: IntArray, cols: IntArray
) -> tuple[IntArray, FloatArray]:
    """First-positive ranks and average precisions of the queries (rows) of one chunk."""
    n_rows, n_gallery = sims.shape
    counts = np.diff(ptr)
    rows = np.repeat(np.arange(n_rows), counts)
    slots = np.arange(cols.size) - ptr[rows]
    values = sims[rows, cols]
    best = np.maximum.reduceat(values, ptr[:-1])
    first_rank = 1 + (sims > best[:, None]).sum(axis=1)

    many = counts[rows] > _SLOT_LIMIT
    n_ge = _count_at_least(sims, rows, np.where(many, -1, slots), values)
    # Positives scoring at least as high, from a padded (rows, slots) table of positive scores.
    pad = np.full((n_rows, _SLOT_LIMIT), -np.inf, dtype=values.dtype)
    pad[rows[~many], slots[~many]] = values[~many]
    tp_ge = np.zeros(cols.size, dtype=np.int64)
    few = np.flatnonzero(~many)
    tp_ge[few] = (pad[rows[few]] >= values[few, None]).sum(axis=1)
    for r in np.unique(rows[many]):
        sel = np.arange(ptr[r], ptr[r + 1])
        ordered = np.sort(sims[r])
        n_ge[sel] = n_gallery - np.searchsorted(ordered, values[sel], side="left")
        pos_sorted = np.sort(values[sel])
        tp_ge[sel] = sel.size - np.searchsorted(pos_sorted, values[sel], side="left")
    precision = tp_ge / n_ge
    ap = np.add.reduceat(precision, ptr[:-1]) / counts
    return first_rank.astype(np.int64), ap.astype(np.float64)


def _direction(
    queries: npt.NDArray[Any], gallery: npt.NDArray[Any], pos: _Csr, chunk_size: int
) -> tuple[IntArray, FloatArray]:
    """Score queries against the gallery ``chunk_size`` rows at a time; return ranks and APs."""
    n = queries.shape[0]
    ranks = np.empty(n, dtype=np.int64)
    aps = np.empty(n, dtype=np.float64)
    gallery_t = np.ascontiguousarray(gallery.T)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sims = queries[start:stop] @ gallery_t
        ptr = pos.indptr[start : stop + 1] - pos.indptr[start]
        cols = pos.indices[pos.indptr[start] : pos.indptr[stop]]
        ranks[start:stop], aps[start:stop] = _chunk_stats(sims, ptr, cols)
    return ranks, aps


def recall_at_k_curve(first_positive_ranks: npt.ArrayLike, max_k: int) -> FloatArray:
    """Recall@k for every ``k = 1..max_k`` from 1-based first-positive ranks (for plotting).

    Args:
        first_positive_ranks: ``(Nq,)`` 1-based rank of each query's best positive, as in
            ``RetrievalReport.text_to_image_ranks`` / ``RetrievalReport.image_to_text_ranks``.
        max_k: the largest ``k``.

    Returns:
        ``(max_k,)`` float64 array; entry ``k - 1`` is the fraction of queries with rank ``<= k``.
    """
    ranks = np.asarray(first_positive_ranks)
    if ranks.ndim != 1 or ranks.size == 0 or not np.issubdtype(ranks.dtype, np.integer):
        raise InputError(
            f"first_positive_ranks: expected a non-empty 1-D integer array, got shape "
            f"{ranks.shape} and dtype {ranks.dtype}"
        )
    if ranks.min() < 1:
        raise InputError("first_positive_ranks: ranks are 1-based; found a value below 1")
    (k,) = _check_ks((max_k,), "max_k")
    hist = np.bincount(np.minimum(ranks, k + 1), minlength=k + 2)
    return (np.cumsum(hist)[1 : k + 1] / ranks.size).astype(np.float64)


@dataclass(frozen=True, eq=False)
class RetrievalReport:
    """Text-to-image and image-to-text retrieval metrics.

    Per-query arrays hold, for each query, the 1-based rank of its best-scoring positive
    (``1 +`` the number of gallery items scoring strictly higher, so ties with non-positives go
    in the query's favour) and its average precision over the full ranking (scikit-learn's
    ``average_precision_score``; tied scores form one threshold). Recall@k is the fraction of
    queries with rank ``<= k``: at least one positive in the top ``k``, as in CLIP_benchmark.
    Instances compare by identity.
    """

    ks: tuple[int, ...]
    text_to_image_ranks: IntArray
    image_to_text_ranks: IntArray
    text_to_image_ap: FloatArray
    image_to_text_ap: FloatArray

    def recall(self, direction: Direction, k: int) -> float:
        """Fraction of queries of ``direction`` with a positive in the top ``k``."""
        return float(np.mean(self._ranks(direction) <= k))

    def mean_rank(self, direction: Direction) -> float:
        """Mean 1-based rank of the first positive."""
        return float(np.mean(self._ranks(direction)))

    def median_rank(self, direction: Direction) -> float:
        """Median 1-based rank of the first positive (may end in .5)."""
        return float(np.median(self._ranks(direction)))

    def mean_average_precision(self, direction: Direction) -> float:
        """Mean over queries of the per-query average precision."""
        aps = self.text_to_image_ap if direction == "text_to_image" else self.image_to_text_ap
        return float(np.mean(aps))

    def recall_curve(self, direction: Direction, max_k: int) -> FloatArray:
        """Recall@k for ``k = 1..max_k`` (see :func:`recall_at_k_curve`)."""
        return recall_at_k_curve(self._ranks(direction), max_k)

    def _ranks(self, direction: Direction) -> IntArray:
        if direction == "text_to_image":
            return self.text_to_image_ranks
        if direction == "image_to_text":
            return self.image_to_text_ranks
        raise InputError(
            f"direction: expected 'text_to_image' or 'image_to_text', got {direction!r}"
        )

    def to_dict(self) -> dict[str, float]:
        """Flat ``{name: value}`` with CLIP_benchmark's key names where they exist.

        ``image_retrieval_recall@k`` is text-to-image (images retrieved for a text),
        ``text_retrieval_recall@k`` is image-to-text; then ``{direction}_mean_rank``,
        ``{direction}_median_rank`` and ``{direction}_map`` for both directions.
        """
        out: dict[str, float] = {}
        for k in self.ks:
            out[f"image_retrieval_recall@{k}"] = self.recall("text_to_image", k)
            out[f"text_retrieval_recall@{k}"] = self.recall("image_to_text", k)
        for d in _DIRECTIONS:
            out[f"{d}_mean_rank"] = self.mean_rank(d)
            out[f"{d}_median_rank"] = self.median_rank(d)
            out[f"{d}_map"] = self.mean_average_precision(d)
        return out


def retrieval_metrics(
    text_emb: npt.ArrayLike,
    image_emb: npt.ArrayLike,
    positive_pairs: npt.ArrayLike,
    ks: Iterable[int] = (1, 5, 10),
    chunk_size: int = 1024,
    dtype: npt.DTypeLike = np.float32,
) -> RetrievalReport:
    """Recall@k, first-positive ranks and mAP in both directions, without the full score matrix.

    Scores are dot products (cosine similarities for unit vectors; nothing is normalised here).
    At most ``chunk_size`` query rows are scored at once, so peak memory is about
    ``chunk_size * max(Nt, Ni) * itemsize`` plus the embeddings.

    Args:
        text_emb: ``(Nt, D)`` text embeddings.
        image_emb: ``(Ni, D)`` image embeddings.
        positive_pairs: ``(P, 2)`` integer ``(text_idx, image_idx)`` pairs; every text and every
            image needs at least one. Duplicates count once.
        ks: the ``k`` of recall@k, positive ints (a ``k`` beyond the gallery size gives 1.0).
        chunk_size: query rows scored at a time.
        dtype: the dtype scores are computed in (float32 by default).

    Returns:
        A :class:`RetrievalReport`.

    Raises:
        InputError: on shape mismatches, empty inputs, non-finite values, out-of-range pairs,
            a text or image without positives, or bad ``ks`` / ``chunk_size``.
    """
    texts = _embeddings("text_emb", text_emb, dtype)
    images = _embeddings("image_emb", image_emb, dtype)
    if texts.shape[1] != images.shape[1]:
        raise InputError(
            f"image_emb: dimension {images.shape[1]} differs from text_emb's {texts.shape[1]}"
        )
    ks_ = _check_ks(ks)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise InputError(f"chunk_size: expected an int, got {type(chunk_size).__name__}")
    if chunk_size < 1:
        raise InputError(f"chunk_size: must be at least 1, got {chunk_size}")
    t2i, i2t = _positives(positive_pairs, texts.shape[0], images.shape[0])
    t_ranks, t_ap = _direction(texts, images, t2i, int(chunk_size))
    i_ranks, i_ap = _direction(images, texts, i2t, int(chunk_size))
    return RetrievalReport(ks_, t_ranks, i_ranks, t_ap, i_ap)
