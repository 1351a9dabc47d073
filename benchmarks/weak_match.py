"""Calibrate the search "weak match" flag: how well does a hit's relevance tell right from wrong?

A hit's relevance is its score in standard deviations above the query's mean score over the
collection (crossmodal.search.index.Hit). For a captioned gallery (a retrieval manifest),
every caption is a query whose right answer is known; this script takes the top-10 hits of
each query, as a user would see them, and prints, per relevance threshold Z, the precision
of the hits at or above Z (how often a hit *not* flagged weak is right), the share of right
hits kept, and the share of wrong hits flagged weak.

    python benchmarks/weak_match.py --data emoji/eval/test.en.retrieval.jsonl [--model SPEC]

Relevance is computed exactly as search does: against a fixed sample of at most
``NULL_SAMPLE`` gallery vectors, evenly spaced.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from crossmodal.data.manifests import ManifestSource
from crossmodal.encoders import DEFAULT_MODEL, load_encoder
from crossmodal.encoders.embedder import EmbedConfig, Embedder
from crossmodal.search.index import NULL_SAMPLE, WEAK_RELEVANCE

THRESHOLDS = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="retrieval manifest")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--top", type=int, default=10, help="hits looked at per query")
    args = parser.parse_args()

    source = ManifestSource(args.data, on_missing="skip")
    samples = list(source)
    embedder = Embedder(load_encoder(args.model), EmbedConfig(batch_size=64))
    images = embedder.embed_images([str(s.image) for s in samples]).vectors
    captions = [(i, c) for i, s in enumerate(samples) for c in s.captions[:1]]
    texts = embedder.embed_texts([c for _, c in captions])
    answer = np.array([i for i, _ in captions])

    sample = images
    if len(images) > NULL_SAMPLE:
        sample = images[np.linspace(0, len(images) - 1, NULL_SAMPLE).astype(np.int64)]
    scores = texts @ images.T  # (Q, N)
    null = texts @ sample.T
    relevance = (scores - null.mean(1, keepdims=True)) / null.std(1, keepdims=True)
    top = np.argsort(-scores, axis=1)[:, : args.top]
    hit_rel = np.take_along_axis(relevance, top, axis=1).ravel()
    right = (top == answer[:, None]).ravel()
    answer_rel = relevance[np.arange(len(answer)), answer]

    print(f"model {args.model}; {len(texts)} queries over {len(images)} images; top {args.top}")
    print(f"right answer in the top {args.top}: {right.sum()} of {len(texts)}")
    print(
        f"relevance of the right answer: median {np.median(answer_rel):.2f}; of wrong hits "
        f"shown: median {np.median(hit_rel[~right]):.2f}"
    )
    auc = _auc(hit_rel[right], hit_rel[~right])
    print(f"AUC of relevance, right vs wrong hits shown: {auc:.3f} (0.5: no signal)")
    print(f"{'Z':>5} {'precision(rel>=Z)':>18} {'right kept':>11} {'wrong flagged':>14}")
    for z in THRESHOLDS:
        strong = hit_rel >= z
        precision = right[strong].mean() if strong.any() else float("nan")
        kept = (strong & right).sum() / max(1, right.sum())
        flagged = (~strong & ~right).sum() / max(1, (~right).sum())
        mark = "  <- WEAK_RELEVANCE" if z == WEAK_RELEVANCE else ""
        print(f"{z:5.1f} {precision:18.3f} {kept:11.3f} {flagged:14.3f}{mark}")


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a random right hit outranks a random wrong one (ties count half)."""
    both = np.concatenate([positive, negative])
    ranks = np.argsort(np.argsort(both, kind="stable"), kind="stable") + 1.0
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]  # average ranks of ties
    n_pos, n_neg = len(positive), len(negative)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


if __name__ == "__main__":
    main()
