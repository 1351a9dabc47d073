"""Calibrate the search "weak match" flag: how well does a hit's relevance tell right from wrong?

A text query's hits are scored against the query bank (each picture's scores for a fixed set
of everyday texts; crossmodal.search.relevance), an image query's against a sample of the
collection. For a captioned gallery (a retrieval manifest), every caption is a query whose
right answer is known. This script takes the top-10 hits of each query, as a user would see
them, and prints for both references the AUC (right vs wrong hits) and, per relevance
threshold Z, the precision of the hits at or above Z (how often a hit *not* flagged weak is
right), the share of right hits kept and the share of wrong hits flagged weak.

It then draws small collections (``--tiny``, default 1, 5 and 20 pictures), each holding a
query's right picture half of the time, and asks of the top hit: right or not? The
collection reference cannot judge these (its spread comes from a handful of pictures); the
bank can.

With ``--image-queries MANIFEST`` it also calibrates image queries: each picture of that
manifest queries the gallery, and its right answer is the gallery picture whose first caption
equals its own (for emoji: the same emoji drawn in another style). Those hits are judged
against the collection, as the search judges image queries.

    python benchmarks/weak_match.py --data emoji/eval/test.en.retrieval.jsonl [--model SPEC]
        [--image-queries emoji/train.jsonl]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crossmodal.data.manifests import ManifestSource
from crossmodal.encoders import DEFAULT_MODEL, load_encoder
from crossmodal.encoders.embedder import EmbedConfig, Embedder
from crossmodal.index.sync import NULL_SAMPLE
from crossmodal.search.relevance import (
    WEAK_RELEVANCE,
    WEAK_RELEVANCE_COLLECTION,
    bank_relevance,
    bank_texts,
    query_language,
    sample_relevance,
)

THRESHOLDS = (1.0, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.5, 4.0)
Array = npt.NDArray[np.float64]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="retrieval manifest")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--top", type=int, default=10, help="hits looked at per query")
    parser.add_argument("--tiny", type=int, nargs="*", default=[1, 5, 20])
    parser.add_argument("--draws", type=int, default=1000, help="small collections per size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--image-queries", type=Path, help="manifest of query pictures (matched by caption)"
    )
    args = parser.parse_args()

    samples = list(ManifestSource(args.data, on_missing="skip"))
    embedder = Embedder(load_encoder(args.model), EmbedConfig(batch_size=64))
    images = embedder.embed_images([str(s.image) for s in samples]).vectors
    captions = [(i, c) for i, s in enumerate(samples) for c in s.captions[:1]]
    texts = embedder.embed_texts([c for _, c in captions])
    answer = np.array([i for i, _ in captions])
    language = query_language([c for _, c in captions])
    bank = embedder.embed_texts(list(bank_texts(language)))

    scores = texts.astype(np.float64) @ images.T  # (Q, N)
    sample = images
    if len(images) > NULL_SAMPLE:
        sample = images[np.linspace(0, len(images) - 1, NULL_SAMPLE).astype(np.int64)]
    null = texts @ sample.T
    references = {
        "query bank": np.stack([bank_relevance(row, images, bank) for row in scores]),
        "collection": np.stack(
            [sample_relevance(row, n) for row, n in zip(scores, null, strict=True)]
        ),
    }
    top = np.argsort(-scores, axis=1)[:, : args.top]
    right = (top == answer[:, None]).ravel()
    print(f"model {args.model}; {len(texts)} {language} queries over {len(images)} images")
    print(f"right answer in the top {args.top}: {right.sum()} of {len(texts)}")
    for name, relevance in references.items():
        hit_rel = np.take_along_axis(relevance, top, axis=1).ravel()
        print(
            f"\n[{name}] AUC right vs wrong hits shown: {_auc(hit_rel[right], hit_rel[~right]):.3f}"
            f" (0.5: no signal); median relevance right {np.median(hit_rel[right]):.2f}, "
            f"wrong {np.median(hit_rel[~right]):.2f}"
        )
        threshold = WEAK_RELEVANCE if name == "query bank" else WEAK_RELEVANCE_COLLECTION
        _table(hit_rel, right, threshold)

    if args.image_queries is not None:
        _image_queries(args.image_queries, samples, images, embedder, args.top)

    rng = np.random.default_rng(args.seed)
    relevance = references["query bank"]
    for n in args.tiny:
        top_rel, top_right = [], []
        for q in rng.integers(0, len(texts), args.draws):
            others = rng.choice(np.flatnonzero(np.arange(len(images)) != answer[q]), n, False)
            gallery = others if rng.random() < 0.5 else np.append(others[: n - 1], answer[q])
            best = gallery[np.argmax(scores[q, gallery])]
            top_rel.append(relevance[q, best])
            top_right.append(best == answer[q])
        rel, ok = np.array(top_rel), np.array(top_right)
        print(
            f"\n[query bank, collections of {n}] top hit right in {ok.sum()} of {len(ok)}; "
            f"AUC {_auc(rel[ok], rel[~ok]):.3f}"
        )
        _table(rel, ok, WEAK_RELEVANCE)


def _image_queries(
    manifest: Path,
    samples: list,
    images: Array,
    embedder: Embedder,
    top: int,  # type: ignore[type-arg]
) -> None:
    """Pictures of ``manifest`` as queries; right = the gallery picture with their caption."""
    by_caption = {s.captions[0]: i for i, s in enumerate(samples) if s.captions}
    queries = [q for q in ManifestSource(manifest, on_missing="skip") if q.captions]
    queries = [q for q in queries if q.captions[0] in by_caption]
    vectors = embedder.embed_images([str(q.image) for q in queries]).vectors
    answer = np.array([by_caption[q.captions[0]] for q in queries])
    scores = vectors.astype(np.float64) @ images.T
    sample = images
    if len(images) > NULL_SAMPLE:
        sample = images[np.linspace(0, len(images) - 1, NULL_SAMPLE).astype(np.int64)]
    null = vectors @ sample.T
    relevance = np.stack([sample_relevance(row, n) for row, n in zip(scores, null, strict=True)])
    hits = np.argsort(-scores, axis=1)[:, :top]
    right = (hits == answer[:, None]).ravel()
    hit_rel = np.take_along_axis(relevance, hits, axis=1).ravel()
    print(
        f"\n[collection, image queries] {len(queries)} pictures of {manifest.name} over "
        f"{len(images)} images; right answer in the top {top}: {right.sum()}; AUC right vs "
        f"wrong {_auc(hit_rel[right], hit_rel[~right]):.3f}; median relevance right "
        f"{np.median(hit_rel[right]):.2f}, wrong {np.median(hit_rel[~right]):.2f}"
    )
    _table(hit_rel, right, WEAK_RELEVANCE_COLLECTION)


def _table(relevance: Array, right: npt.NDArray[np.bool_], threshold: float) -> None:
    print(f"{'Z':>5} {'precision(rel>=Z)':>18} {'right kept':>11} {'wrong flagged':>14}")
    for z in THRESHOLDS:
        strong = relevance >= z
        precision = right[strong].mean() if strong.any() else float("nan")
        kept = (strong & right).sum() / max(1, right.sum())
        flagged = (~strong & ~right).sum() / max(1, (~right).sum())
        mark = "  <- the default threshold" if z == threshold else ""
        print(f"{z:5.2f} {precision:18.3f} {kept:11.3f} {flagged:14.3f}{mark}")


def _auc(positive: Array, negative: Array) -> float:
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
