"""Time and peak memory of chunked retrieval metrics against the full-matrix computation.

Both runs use :func:`crossmodal.eval.retrieval_metrics` on the same random unit embeddings; the
full-matrix run sets ``chunk_size`` to the number of queries, so the whole ``Nt x Ni`` score
matrix (and its boolean temporaries) exists at once. Both runs score each direction separately
(``T @ I.T`` then ``I @ T.T``), so the time ratio isolates the cost of chunking. Peak memory is
the peak of numpy allocations traced by :mod:`tracemalloc` during the call (embeddings
excluded). The two runs must produce identical metrics.

    python benchmarks/retrieval_metrics.py                       # 20k texts x 20k images
    python benchmarks/retrieval_metrics.py --images 4000 --captions 5 --chunk-size 512
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

from crossmodal.eval import pairs_from_image_index, retrieval_metrics


@dataclass
class Measure:
    """One measured run."""

    name: str
    seconds: float
    peak_mib: float
    metrics: dict[str, float]


def _measure(
    name: str, texts: np.ndarray, images: np.ndarray, pairs: np.ndarray, chunk: int
) -> Measure:
    tracemalloc.start()
    tracemalloc.reset_peak()
    start = time.perf_counter()
    report = retrieval_metrics(texts, images, pairs, ks=(1, 5, 10), chunk_size=chunk)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return Measure(name, seconds, peak / 2**20, report.to_dict())


def _data(
    n_images: int, captions: int, dim: int, seed: int, noise: float = 2.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, ``captions`` noisy captions per image, and their (text, image) pairs."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n_images, dim), dtype=np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    texts = np.repeat(images, captions, axis=0)
    texts += noise * rng.standard_normal(texts.shape, dtype=np.float32) / np.sqrt(dim)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    pairs = pairs_from_image_index(np.repeat(np.arange(n_images), captions))
    return texts, images, pairs


def main() -> None:
    """Run both variants and print a table, the ratios and a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--captions", type=int, default=1, help="captions (texts) per image")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    texts, images, pairs = _data(args.images, args.captions, args.dim, args.seed)
    full_chunk = max(len(texts), len(images))
    chunked = _measure(f"chunked ({args.chunk_size})", texts, images, pairs, args.chunk_size)
    full = _measure("full matrix", texts, images, pairs, full_chunk)
    if chunked.metrics != full.metrics:
        raise SystemExit(f"metrics differ:\n{chunked.metrics}\n{full.metrics}")

    print(f"{len(texts)} texts x {len(images)} images, dim {args.dim}")
    print(f"{'variant':<18}{'seconds':>10}{'peak MiB':>12}")
    for m in (chunked, full):
        print(f"{m.name:<18}{m.seconds:>10.2f}{m.peak_mib:>12.1f}")
    time_ratio = chunked.seconds / full.seconds
    mem_ratio = full.peak_mib / chunked.peak_mib
    print(f"chunked/full time: {time_ratio:.2f}x   full/chunked peak memory: {mem_ratio:.1f}x")
    print(f"image_retrieval_recall@1 {chunked.metrics['image_retrieval_recall@1']:.4f}")
    summary = {
        "texts": len(texts),
        "images": len(images),
        "dim": args.dim,
        "chunk_size": args.chunk_size,
        "chunked_s": round(chunked.seconds, 3),
        "full_s": round(full.seconds, 3),
        "chunked_peak_mib": round(chunked.peak_mib, 1),
        "full_peak_mib": round(full.peak_mib, 1),
        "time_ratio": round(time_ratio, 3),
        "memory_ratio": round(mem_ratio, 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
