"""Exact and near-duplicate groups, and the one item of each group that is kept.

Exact duplicates share a pixel digest. Near duplicates (a resized, recompressed or lightly
edited copy) have image embeddings with cosine at or above a threshold. Up to
:data:`EXACT_LIMIT` images every pair above it is found, with a FAISS range search (an exact
inner-product scan in blocks without FAISS, with the same result). Above it, an exact scan is
quadratic, so each image's :data:`NEIGHBOURS` nearest neighbours are found with a FAISS HNSW
graph and those above the threshold kept: approximate, but a copy is almost always among its
original's nearest neighbours. Groups are the connected components of the pairs.

The kept representative of a group is its largest image (most pixels), the earliest one on
ties, so the choice depends on nothing but the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from crossmodal.errors import BackendUnavailableError, ConfigError

__all__ = ["exact_duplicate_groups", "near_duplicate_pairs", "group_pairs", "pick_representatives"]

FloatArray = npt.NDArray[np.float32]

_BLOCK = 4096  # rows per block of the numpy scan: a 4096 × N similarity slab at a time
EXACT_LIMIT = 200_000  # every pair checked up to this many (100k: 62 s exact, 156 s HNSW)
NEIGHBOURS = 32  # neighbours looked at per vector above EXACT_LIMIT


def exact_duplicate_groups(digests: Sequence[str]) -> list[list[int]]:
    """Groups (of 2 or more positions, ascending) of equal non-empty digests, by first position."""
    by_digest: dict[str, list[int]] = {}
    for i, digest in enumerate(digests):
        if digest:
            by_digest.setdefault(digest, []).append(i)
    return [group for group in by_digest.values() if len(group) > 1]


def near_duplicate_pairs(
    vectors: FloatArray, threshold: float, exact_limit: int = EXACT_LIMIT
) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of unit vectors with cosine ≥ ``threshold``, sorted.

    Every such pair up to ``exact_limit`` vectors; above it, those among each vector's
    :data:`NEIGHBOURS` approximate nearest neighbours (needs FAISS).
    """
    if not -1.0 <= threshold <= 1.0:
        raise ConfigError(f"near-duplicate threshold must be a cosine in [-1, 1], not {threshold}")
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(x) < 2:
        return []
    try:
        import faiss
    except ImportError:
        if len(x) > exact_limit:
            raise BackendUnavailableError(
                f"near duplicates among {len(x):,} images", "search", "faiss-cpu"
            ) from None
        return _pairs_numpy(x, threshold)
    if len(x) > exact_limit:
        return _pairs_hnsw(faiss, x, threshold)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    # range_search returns scores > radius; nudge it down so that == threshold counts too.
    lims, scores, ids = index.range_search(x, float(np.nextafter(np.float32(threshold), -2)))
    pairs: set[tuple[int, int]] = set()
    for i in range(len(x)):
        for j, score in zip(ids[lims[i] : lims[i + 1]], scores[lims[i] : lims[i + 1]], strict=True):
            if int(j) > i and score >= threshold:
                pairs.add((i, int(j)))
    return sorted(pairs)


def _pairs_hnsw(faiss: Any, x: FloatArray, threshold: float) -> list[tuple[int, int]]:
    index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.hnsw.efSearch = 2 * NEIGHBOURS
    index.add(x)
    k = min(NEIGHBOURS + 1, len(x))
    scores, ids = index.search(x, k)  # (N, k) each
    pairs: set[tuple[int, int]] = set()
    for i, (row_ids, row_scores) in enumerate(zip(ids, scores, strict=True)):
        for j, score in zip(row_ids.tolist(), row_scores.tolist(), strict=True):
            if j >= 0 and j != i and score >= threshold:
                pairs.add((min(i, j), max(i, j)))
    return sorted(pairs)


def _pairs_numpy(x: FloatArray, threshold: float) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(x), _BLOCK):
        sims = x[start : start + _BLOCK] @ x.T  # (block, N)
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if c > start + r:
                pairs.append((start + r, c))
    return sorted(pairs)


def group_pairs(n: int, pairs: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Connected components (of 2 or more of ``range(n)``) of the graph given by ``pairs``."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return [group for group in groups.values() if len(group) > 1]


def pick_representatives(groups: Sequence[Sequence[int]], sizes: Sequence[int]) -> dict[int, int]:
    """For each grouped item that is not kept, the item kept in its place.

    The kept one has the largest ``sizes`` (pixels), the smallest position on ties.
    """
    replaced: dict[int, int] = {}
    for group in groups:
        keep = min(group, key=lambda i: (-sizes[i], i))
        for i in group:
            if i != keep:
                replaced[i] = keep
    return replaced
