"""``crossmodal classify`` (alias ``predict``): apply a trained classifier head to new data.

    crossmodal classify runs/head new_photos/ more.jsonl --text-column tags -o predictions.jsonl

HEAD is the ``head.safetensors`` that ``crossmodal train --task classify`` wrote (or its
``--out`` folder); INPUTs are folders of images (recursively; an image in a sub-folder is
labelled with that sub-folder's name), manifests (.csv / .tsv / .jsonl, with an image column
and optional text and label columns) or WebDataset shards. The work is in
:mod:`crossmodal.heads.apply`; the file format in :mod:`crossmodal.heads.predictions`.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crossmodal.data.samples import DataSource
    from crossmodal.heads.apply import ClassifyRun, TrainedHead

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register ``classify`` (and its alias ``predict``)."""
    from crossmodal.cli.argtypes import count

    p = sub.add_parser(
        "classify",
        aliases=["predict"],
        help="apply a trained classifier head to new images (and texts)",
        description="Classify every image of the INPUTs with a head trained by `crossmodal "
        "train --task classify`, on the encoder it was trained with. Writes --out (.jsonl or "
        ".csv: image, label, probability, top_k, truth) atomically and prints a summary; "
        "when the inputs carry labels (a label column, or sub-folders named after classes) "
        "it also prints accuracy and macro F1. Images that do not decode are skipped and "
        "counted with their reasons.",
    )
    p.add_argument("head", help="head.safetensors, or the --out folder of train --task classify")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="folder of images, manifest (.csv/.tsv/.jsonl) or shards (.tar, glob)",
    )
    p.add_argument("-o", "--out", type=Path, required=True, help="predictions .jsonl or .csv")
    p.add_argument("-m", "--model", default=None, help="encoder spec (default: the head's own)")
    p.add_argument("--top-k", type=count, default=3, help="classes listed per image (3)")
    g = p.add_argument_group("manifest columns")
    g.add_argument("--image-column", help="column of image paths (image, else filepath)")
    g.add_argument("--text-column", help="column of the text (caption, else title, text)")
    g.add_argument("--label-column", help="column of the true class (label), for accuracy")
    p.add_argument("--batch-size", type=count, default=64)
    p.add_argument("--workers", type=count, default=2, help="image decoding threads (2)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run)


def _open_input(path: str, args: argparse.Namespace) -> DataSource:
    """A folder as any tree of images; a manifest with the named columns, missing files
    skipped and recorded; shards as they are."""
    import os

    from crossmodal.data.sources import is_manifest, open_dataset, open_source

    if os.path.isdir(path):
        return open_source(path, tree=True)
    if not is_manifest(path):
        return open_dataset(path)
    columns = {
        "image_column": args.image_column,
        "caption_column": args.text_column,
        "label_column": args.label_column,
    }
    return open_dataset(path, **{k: v for k, v in columns.items() if v})


def run(args: argparse.Namespace) -> int:
    """Load the head and its encoder, classify, write the predictions, print a summary."""
    from crossmodal.heads.apply import (
        ClassifyConfig,
        ClassifyRun,
        check_encoder,
        classify_samples,
        load_trained_head,
    )
    from crossmodal.heads.features import load_clip
    from crossmodal.heads.predictions import check_predictions_path, write_predictions

    out = check_predictions_path(args.out)
    config = ClassifyConfig(
        top_k=args.top_k,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    head = load_trained_head(args.head)
    sources = [_open_input(path, args) for path in args.inputs]  # all checked before the model
    spec = args.model or head.encoder
    clip = load_clip(spec)  # on the CPU, as the head's features were made
    check_encoder(head, clip, spec)
    runs = [classify_samples(head, clip, source, config) for source in sources]
    result = ClassifyRun(
        [p for r in runs for p in r.predictions], [s for r in runs for s in r.skipped]
    )
    write_predictions(result.predictions, out)
    _print_summary(head, result, out)
    return 0


def _print_summary(head: TrainedHead, result: ClassifyRun, out: Path) -> None:
    n = len(result.predictions)
    print(
        f"classified {n:,} images with the {head.model.kind!r} head ({len(head.classes)} "
        f"classes, encoder {head.encoder}); {len(result.skipped):,} skipped"
    )
    counts = Counter(p.label for p in result.predictions)
    print("  predicted: " + ", ".join(f"{name} {k:,}" for name, k in counts.most_common()))
    report = result.report(head.classes)
    if report is not None:
        scored = len(result.labelled(head.classes))
        unknown = sum(p.truth is not None for p in result.predictions) - scored
        other = f"; {unknown:,} with a label the head does not know left out" if unknown else ""
        print(
            f"  accuracy {report.accuracy:.4f}, macro F1 {report.macro_f1:.4f} on {scored:,} "
            f"labelled images{other}"
        )
    textless = sum(not p.has_text for p in result.predictions)
    if textless and head.reads_text:
        print(
            f"  note: {textless:,} images had no text, and the {head.model.kind!r} head reads "
            "text too: it saw the empty text (pass a manifest with --text-column)"
        )
    for skipped in result.skipped[:5]:
        print(f"  skipped {skipped.source}: {skipped.reason}", file=sys.stderr)
    if len(result.skipped) > 5:
        print(f"  ... and {len(result.skipped) - 5:,} more skipped", file=sys.stderr)
    print(f"wrote {out}")
