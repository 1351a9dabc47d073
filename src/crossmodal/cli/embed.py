"""``crossmodal embed``: images and texts to an ``.npy`` or Parquet file of unit vectors."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from crossmodal.errors import InputError

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    """Register the command."""
    from crossmodal.encoders import DEFAULT_MODEL

    p = sub.add_parser(
        "embed",
        help="embed images and texts into the joint space",
        description="Embed image files (or folders of them) and texts. Writes an (N, D) float32 "
        "matrix of unit vectors: .npy with a <name>.items.jsonl sidecar naming each row, or "
        ".parquet with kind/source/embedding columns.",
    )
    p.add_argument("paths", nargs="*", help="image files or folders (searched recursively)")
    p.add_argument("-t", "--text", action="append", default=[], help="a text (repeatable)")
    p.add_argument("--texts-file", type=Path, help="a UTF-8 file with one text per line")
    p.add_argument("-o", "--out", type=Path, required=True, help="output .npy or .parquet")
    p.add_argument("-m", "--model", default=DEFAULT_MODEL, help=f"model spec ({DEFAULT_MODEL})")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", default="auto", help="auto, fp32, bf16, fp16 (onnx: int8)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="image decoding threads")
    p.add_argument(
        "--skip-bad", action="store_true", help="skip undecodable images instead of stopping"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Embed and write."""
    import numpy as np

    from crossmodal.data.files import find_images
    from crossmodal.encoders import load_encoder
    from crossmodal.encoders.embedder import EmbedConfig, Embedder
    from crossmodal.prep.embedding_files import EmbeddedItem, write_embeddings

    texts = list(args.text)
    if args.texts_file is not None:
        try:
            lines = args.texts_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{args.texts_file}: cannot read texts ({exc})") from exc
        texts.extend(line for line in lines if line.strip())
    images = list(find_images(args.paths))
    if not images and not texts:
        raise InputError("nothing to embed: give image paths, --text or --texts-file")
    config = EmbedConfig(
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.no_progress and sys.stderr.isatty(),
        on_error="skip" if args.skip_bad else "raise",
    )
    started = time.perf_counter()
    encoder = load_encoder(args.model, device=args.device, precision=args.precision)
    embedder = Embedder(encoder, config)
    vectors: list[np.ndarray] = []
    items: list[EmbeddedItem] = []
    failures: list[tuple[int, str]] = []
    if images:
        result = embedder.embed_images([str(p) for p in images])
        vectors.append(result.vectors)
        items.extend(EmbeddedItem("image", str(images[i])) for i in result.indices)
        failures = result.failures
    if texts:
        vectors.append(embedder.embed_texts(texts))
        items.extend(EmbeddedItem("text", t) for t in texts)
    matrix = np.concatenate(vectors) if vectors else np.empty((0, encoder.dim), np.float32)
    written = write_embeddings(args.out, matrix, items, model=encoder.spec)
    elapsed = time.perf_counter() - started
    n_img = len(items) - len(texts)
    print(
        f"embedded {n_img} image(s) and {len(texts)} text(s) with {encoder.spec} "
        f"(dim {encoder.dim}) in {elapsed:.1f}s -> {', '.join(str(p) for p in written)}"
    )
    for _index, reason in failures:
        print(f"skipped: {reason}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} image(s) skipped", file=sys.stderr)
    return 0
