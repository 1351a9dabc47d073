"""Embedding throughput of every backend and precision, as ratios to OpenCLIP fp32.

All backends run the same random ViT weights (created by OpenCLIP, seeded), measured in one
run on the same inputs, so the ratios hold on any machine. Accuracy is the cosine of each
path's embeddings to the native fp32 ones.

    python benchmarks/embed.py                      # ViT-B-32, batch 16
    python benchmarks/embed.py --model test-tiny --images 64 --quick
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class Row:
    """One measured path."""

    name: str
    images_per_s: float
    texts_per_s: float
    image_cosine: float  # minimum row cosine to native fp32 image embeddings
    text_cosine: float  # minimum row cosine to native fp32 text embeddings


def _rate(fn: Callable[[], np.ndarray], n: int, repeats: int) -> tuple[float, np.ndarray]:
    out = fn()  # warm-up (graph build, allocator, thread pool)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return n / best, out


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def _texts(encoder: Any, texts: list[str], batch: int = 64) -> np.ndarray:
    chunks = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    return np.concatenate([encoder.encode_tokens(encoder.tokenizer(c)) for c in chunks])


def main() -> None:
    """Run the benchmark and print a table and a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="ViT-B-32", help="architecture (native and OpenCLIP)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=2, help="image batches per measurement")
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--bf16",
        choices=["auto", "on", "off"],
        default="auto",
        help="measure native bf16 (auto: only where the CPU has bf16 units)",
    )
    args = parser.parse_args()

    import open_clip

    from crossmodal.encoders import load_encoder
    from crossmodal.encoders.onnx_export import export_onnx
    from crossmodal.encoders.runtime import cpu_has_fast_bf16

    torch.manual_seed(0)
    reference = open_clip.create_model(args.model).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    work = Path(tempfile.mkdtemp(prefix="crossmodal-bench-"))
    from safetensors.torch import save_file

    weights = work / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(weights))

    size = reference.visual.image_size[0]
    n_img = args.batch_size * args.batches
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((n_img, 3, size, size)).astype(np.float32)
    words = ["red", "car", "一只", "猫", "on", "the", "beach", "at", "night", "photo", "dog"]
    texts = [" ".join(rng.choice(words, size=rng.integers(2, 12))) for _ in range(args.texts)]

    def batched(fn: Callable[[np.ndarray], np.ndarray], data: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [fn(data[i : i + args.batch_size]) for i in range(0, len(data), args.batch_size)]
        )

    rows: list[Row] = []
    tokenizer = open_clip.get_tokenizer(args.model)

    def oc_images(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return reference.encode_image(torch.from_numpy(x), normalize=True).numpy()

    def oc_texts() -> np.ndarray:
        with torch.no_grad():
            out = [
                reference.encode_text(tokenizer(texts[i : i + 64]), normalize=True)
                for i in range(0, len(texts), 64)
            ]
        return torch.cat(out).numpy()

    torch.set_num_threads(torch.get_num_threads())
    oc_ips, oc_i = _rate(lambda: batched(oc_images, pixels), n_img, args.repeats)
    oc_tps, oc_t = _rate(oc_texts, len(texts), args.repeats)

    native = load_encoder(f"native:{args.model}@{weights}", device="cpu", precision="fp32")
    ref_i = batched(native.encode_pixels, pixels)
    ref_t = np.concatenate(
        [
            native.encode_tokens(native.tokenizer(texts[i : i + 64]))
            for i in range(0, len(texts), 64)
        ]
    )
    rows.append(
        Row(
            "openclip fp32 (baseline)", oc_ips, oc_tps, _min_cos(oc_i, ref_i), _min_cos(oc_t, ref_t)
        )
    )

    paths: list[tuple[str, str, str]] = [(f"native:{args.model}@{weights}", "fp32", "native fp32")]
    if args.bf16 == "on" or (args.bf16 == "auto" and cpu_has_fast_bf16()):
        paths.append((f"native:{args.model}@{weights}", "bf16", "native bf16"))
    onnx_dir = work / "onnx"
    export_onnx(native.model, onnx_dir, quantize="int8")  # type: ignore[attr-defined]
    paths += [(f"onnx:{onnx_dir}", "fp32", "onnx fp32"), (f"onnx:{onnx_dir}", "int8", "onnx int8")]
    paths.append((f"openclip:{args.model}@{weights}", "fp32", "openclip backend fp32"))

    for spec, precision, label in paths:
        enc = load_encoder(spec, device="cpu", precision=precision)
        ips, got_i = _rate(lambda enc=enc: batched(enc.encode_pixels, pixels), n_img, args.repeats)
        tps, got_t = _rate(
            lambda enc=enc: np.concatenate(
                [
                    enc.encode_tokens(enc.tokenizer(texts[i : i + 64]))
                    for i in range(0, len(texts), 64)
                ]
            ),
            len(texts),
            args.repeats,
        )
        rows.append(Row(label, ips, tps, _min_cos(got_i, ref_i), _min_cos(got_t, ref_t)))

    print(
        f"model {args.model}, batch {args.batch_size}, {torch.get_num_threads()} threads, "
        f"{n_img} images, {len(texts)} texts; ratios to OpenCLIP fp32 measured in this run"
    )
    print(f"{'path':<26}{'img/s':>8}{'x':>7}{'txt/s':>9}{'x':>7}{'cos img':>9}{'cos txt':>9}")
    for r in rows:
        print(
            f"{r.name:<26}{r.images_per_s:>8.1f}{r.images_per_s / oc_ips:>7.2f}"
            f"{r.texts_per_s:>9.1f}{r.texts_per_s / oc_tps:>7.2f}"
            f"{r.image_cosine:>9.5f}{r.text_cosine:>9.5f}"
        )
    print(json.dumps({"model": args.model, "rows": [r.__dict__ for r in rows]}))


if __name__ == "__main__":
    main()
