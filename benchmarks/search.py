"""Search benchmarks, as ratios measured in one run.

1. Indexing throughput: ``Index.add`` on a folder of 3000×2000 JPEGs (decode, hash, embed,
   commit) in files/s, against the model-only throughput (pixels already in memory) of the
   same model. Target ≥ 0.8: decoding must not be the bottleneck.
2. Query latency against an exact scan for 10k / 100k / 1M stored 512-d vectors: delegated
   to ``benchmarks/search_vectors.py`` (``--sizes``), which prints p50/p95, Recall@10 and
   resident memory.

    python benchmarks/search.py                         # ViT-B-32 (random weights), 64 JPEGs
    python benchmarks/search.py --model emoji-mini --images 128 --sizes 10000 100000
    python benchmarks/search.py --skip-latency
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def photo(width: int, height: int, seed: int) -> Image.Image:
    """A smooth photo-like RGB image (JPEG-compressible like a real photo, unlike noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (12, 18, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    grain = rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    pixels = np.clip(np.asarray(image, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def model_only(spec: str, images: int, batch: int) -> float:
    """Images/s of the encoder on preprocessed pixels already in memory."""
    from crossmodal.encoders import load_encoder

    encoder = load_encoder(spec)
    size = encoder.preprocess.image_size
    pixels = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    encoder.encode_pixels(pixels)  # warm-up
    start = time.perf_counter()
    done = 0
    while done < images:
        encoder.encode_pixels(pixels)
        done += batch
    return done / (time.perf_counter() - start)


def indexing(spec: str, folder: Path, db: Path, batch: int, workers: int) -> float:
    """Files/s of a first ``Index.add`` of ``folder`` (model loaded beforehand)."""
    from crossmodal.search.index import Index, IndexConfig

    config = IndexConfig(model=spec, batch_size=batch, workers=workers)
    with Index.open(db, config) as index:
        _ = index.encoder  # load the model outside the timing
        report = index.add([folder])
    assert not report.problems, report.problems
    return report.embedded / report.seconds


def main() -> None:
    """Run both parts and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="native:ViT-B-32", help="model spec")
    parser.add_argument("--images", type=int, default=64, help="3000×2000 JPEGs to index")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="decoding threads")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for i in range(args.images):
            photo(3000, 2000, i).save(folder / f"photo{i:04d}.jpg", quality=90)
        model_rate = model_only(args.model, max(args.images, 2 * args.batch_size), args.batch_size)
        index_rate = indexing(args.model, folder, Path(tmp) / "db", args.batch_size, args.workers)
    ratio = index_rate / model_rate
    print(f"model {args.model}; {args.images} JPEGs of 3000x2000; {args.workers} decode threads")
    print(f"  model only      {model_rate:8.1f} images/s")
    print(f"  index (files)   {index_rate:8.1f} files/s   ratio {ratio:.2f}  (target >= 0.8)")
    if not args.skip_latency:
        here = Path(__file__).with_name("search_vectors.py")
        sizes = [str(n) for n in args.sizes]
        subprocess.run([sys.executable, str(here), "--sizes", *sizes], check=True)


if __name__ == "__main__":
    main()
