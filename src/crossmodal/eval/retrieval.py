"""Cross-modal retrieval metrics, chunked: recall@k, ranks and mAP in both directions.

Recall@k matches CLIP_benchmark; per-query average precision matches scikit-learn's
``average_precision_score``. See :mod:`crossmodal.eval.metrics` for the positives format.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from crossmodal.errors import InputError
from crossmodal.eval.classification import check_ks

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Direction = Literal["text_to_image", "image_to_text"]
_DIRECTIONS: tuple[Direction, ...] = ("text_to_image", "image_to_text")

# Queries with at most this many positives are scored by broadcasting one positive per query at
# a time over the whole chunk; queries with more sort their row once instead.
_SLOT_LIMIT = 16


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
    (k,) = check_ks((max_k,), "max_k")
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
    ks_ = check_ks(ks)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise InputError(f"chunk_size: expected an int, got {type(chunk_size).__name__}")
    if chunk_size < 1:
        raise InputError(f"chunk_size: must be at least 1, got {chunk_size}")
    t2i, i2t = _positives(positive_pairs, texts.shape[0], images.shape[0])
    t_ranks, t_ap = _direction(texts, images, t2i, int(chunk_size))
    i_ranks, i_ap = _direction(images, texts, i2t, int(chunk_size))
    return RetrievalReport(ks_, t_ranks, i_ranks, t_ap, i_ap)
