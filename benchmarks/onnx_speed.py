"""Quick speed check of the ONNX Runtime backend against the native fp32 encoder.

Exports a seeded, randomly initialised model (ViT-B-32 by default) to a temporary directory
with int8 towers, then prints images/s and texts/s for native fp32, ONNX fp32 and ONNX int8,
with the cosine of each path's embeddings to the native fp32 ones. Inputs are synthetic
images (gradients and noise) run through the model's own preprocessing, and English and
Chinese captions through its tokenizer. Takes about a minute on 2 CPU cores.

    PYTHONPATH=src python benchmarks/onnx_speed.py
    PYTHONPATH=src python benchmarks/onnx_speed.py --model test-tiny --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

Array = npt.NDArray[np.float32]

WORDS = ("a photo of a {} on a {}", "two {} next to the {}", "一张{}在{}上的照片")
NOUNS = ("cat", "dog", "red car", "bicycle", "table", "beach", "tree", "猫", "狗", "桌子")


def synthetic_images(n: int, size: int, seed: int) -> list[Image.Image]:
    """Smooth colour gradients with noise and a block: closer to photos than white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        a, b, c = rng.uniform(-1, 1, (3, 3))
        rgb = np.stack([a[i] * xx + b[i] * yy + c[i] for i in range(3)], axis=-1)
        rgb = 0.5 + 0.25 * rgb + rng.normal(0, 0.05, rgb.shape)
        y0, x0 = rng.integers(0, size // 2, 2)
        rgb[y0 : y0 + size // 3, x0 : x0 + size // 3] = rng.uniform(0, 1, 3)
        images.append(Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)))
    return images


def captions(n: int, seed: int) -> list[str]:
    """Short English and Chinese captions."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a, b = rng.choice(len(NOUNS), 2, replace=False)
        out.append(WORDS[i % len(WORDS)].format(NOUNS[a], NOUNS[b]))
    return out


def rate(fn: Callable[[], Array], n: int, repeats: int) -> tuple[float, Array]:
    """Items per second (median of ``repeats`` timed calls after one warm-up) and the output."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return n / statistics.median(times), out


def row_cosine(a: Array, b: Array) -> Array:
    """Cosine of matching rows."""
    num = (a * b).sum(axis=1)
    return np.asarray(num / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)), np.float32)


def main() -> None:
    """Export, measure, print a table (and a JSON line with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-B-32", help="registered native architecture")
    parser.add_argument("--batch-size", type=int, default=16, help="images and texts per call")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement")
    parser.add_argument("--seed", type=int, default=0, help="seeds weights and inputs")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads for the native path (ONNX uses os.cpu_count())",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="keep the export in this directory (default: a temporary one)",
    )
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()

    from crossmodal.encoders.native import NativeEncoder
    from crossmodal.encoders.onnx import OnnxEncoder
    from crossmodal.encoders.onnx_export import export_onnx
    from crossmodal.models.registry import create_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = create_model(args.model)
    native = NativeEncoder(model, f"native:{args.model}", device="cpu", precision="fp32")

    with tempfile.TemporaryDirectory(prefix="crossmodal-onnx-speed-") as tmp:
        out_dir = args.out or Path(tmp) / "export"
        start = time.perf_counter()
        result = export_onnx(model, out_dir, quantize="int8", source=f"native:{args.model}")
        export_s = time.perf_counter() - start
        print(
            f"exported {args.model} ({result.exporter} exporter) in {export_s:.1f} s -> {out_dir}"
        )

        size = model.config.vision.image_size
        pixels = np.stack(
            [native.preprocess(im) for im in synthetic_images(args.batch_size, size, args.seed)]
        ).astype(np.float32)
        texts = captions(args.batch_size, args.seed)
        tokens = native.tokenizer(texts)

        encoders: list[tuple[str, NativeEncoder | OnnxEncoder]] = [
            ("native fp32", native),
            ("onnx fp32", OnnxEncoder(out_dir, device="cpu", precision="fp32")),
            ("onnx int8", OnnxEncoder(out_dir, device="cpu", precision="int8")),
        ]
        rows = []
        ref_i: Array | None = None
        ref_t: Array | None = None
        for name, enc in encoders:
            img_rate, h_i = rate(lambda e=enc: e.encode_pixels(pixels), len(pixels), args.repeats)
            txt_rate, h_t = rate(lambda e=enc: e.encode_tokens(tokens), len(texts), args.repeats)
            if ref_i is None or ref_t is None:
                ref_i, ref_t = h_i, h_t
            rows.append(
                {
                    "path": name,
                    "images_per_s": round(img_rate, 2),
                    "texts_per_s": round(txt_rate, 2),
                    "image_cos_min": round(float(row_cosine(h_i, ref_i).min()), 5),
                    "image_cos_mean": round(float(row_cosine(h_i, ref_i).mean()), 5),
                    "text_cos_min": round(float(row_cosine(h_t, ref_t).min()), 5),
                    "text_cos_mean": round(float(row_cosine(h_t, ref_t).mean()), 5),
                }
            )

    base = rows[0]
    print(
        f"\n{args.model}, batch {args.batch_size}, {os.cpu_count()} CPUs, "
        f"median of {args.repeats}; cosine to native fp32 (min / mean)"
    )
    print(
        f"{'path':<12} {'images/s':>9} {'x':>6} {'texts/s':>9} {'x':>6}  "
        f"{'image cos':>17}  {'text cos':>17}"
    )
    for r in rows:
        print(
            f"{r['path']:<12} {r['images_per_s']:>9.1f} "
            f"{r['images_per_s'] / base['images_per_s']:>5.2f}x "
            f"{r['texts_per_s']:>9.1f} {r['texts_per_s'] / base['texts_per_s']:>5.2f}x  "
            f"{r['image_cos_min']:>8.4f} / {r['image_cos_mean']:.4f}  "
            f"{r['text_cos_min']:>8.4f} / {r['text_cos_mean']:.4f}"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "batch_size": args.batch_size,
                    "exporter": result.exporter,
                    "export_s": round(export_s, 1),
                    "rows": rows,
                }
            )
        )


if __name__ == "__main__":
    main()
