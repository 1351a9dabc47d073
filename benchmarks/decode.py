"""Decode + preprocess throughput of large JPEGs, with and without JPEG draft mode.

Writes a few photo-sized JPEGs (3000x2000 = 6 megapixels) to a temporary directory, then
times ``load_image`` + ``ImagePreprocess`` on one thread, decoding at full size and in draft
mode (the decoder downscales by 1/2, 1/4 or 1/8 while both sides stay >= the model input).
Also reports how close the draft-mode inputs are to the full-size ones (cosine).

    PYTHONPATH=src python benchmarks/decode.py
    PYTHONPATH=src python benchmarks/decode.py --images 8 --repeat 5 --image-size 336
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from crossmodal.data.images import ImagePreprocess, PreprocessConfig, load_image


def make_jpegs(folder: Path, count: int, width: int, height: int, quality: int) -> list[Path]:
    """``count`` photo-like JPEGs: smooth random content with fine noise on top."""
    paths = []
    for i in range(count):
        rng = np.random.default_rng(i)
        coarse = rng.integers(0, 256, (height // 50, width // 50, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
        noise = rng.integers(-8, 9, (height, width, 1), dtype=np.int16)
        pixels = np.clip(base.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        path = folder / f"photo_{i}.jpg"
        Image.fromarray(pixels).save(path, quality=quality)
        paths.append(path)
    return paths


def measure(
    paths: list[Path], preprocess: ImagePreprocess, draft: bool, repeat: int
) -> tuple[float, list[np.ndarray]]:
    """Images per second over ``repeat`` passes, and the last pass's inputs."""
    draft_size = preprocess.draft_size if draft else None
    outputs: list[np.ndarray] = []
    start = time.perf_counter()
    for _ in range(repeat):
        outputs = [preprocess(load_image(p, draft_size=draft_size)) for p in paths]
    elapsed = time.perf_counter() - start
    return len(paths) * repeat / elapsed, outputs


def main() -> None:
    """Parse arguments, make the JPEGs, time both paths, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4, help="number of JPEGs (default 4)")
    parser.add_argument("--repeat", type=int, default=3, help="passes over them (default 3)")
    parser.add_argument("--width", type=int, default=3000, help="JPEG width (default 3000)")
    parser.add_argument("--height", type=int, default=2000, help="JPEG height (default 2000)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    parser.add_argument("--image-size", type=int, default=224, help="model input side")
    args = parser.parse_args()

    preprocess = ImagePreprocess(PreprocessConfig(image_size=args.image_size))
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs(Path(tmp), args.images, args.width, args.height, args.quality)
        decoded = load_image(paths[0], draft_size=preprocess.draft_size).size
        measure(paths[:1], preprocess, draft=True, repeat=1)  # warm-up
        full_rate, full_out = measure(paths, preprocess, draft=False, repeat=args.repeat)
        draft_rate, draft_out = measure(paths, preprocess, draft=True, repeat=args.repeat)

    cosines = [
        float(a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b)))
        for a, b in zip(full_out, draft_out, strict=True)
    ]
    print(
        f"{args.images} JPEGs of {args.width}x{args.height}, {args.repeat} passes, "
        f"input {args.image_size}; draft decodes at {decoded[0]}x{decoded[1]}"
    )
    print(f"full decode   {full_rate:8.1f} images/s")
    print(f"draft decode  {draft_rate:8.1f} images/s")
    print(f"speed-up      {draft_rate / full_rate:8.2f}x")
    print(f"min cosine of draft vs full inputs: {min(cosines):.5f}")


if __name__ == "__main__":
    main()
