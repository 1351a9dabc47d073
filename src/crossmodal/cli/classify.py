"""``crossmodal train --task classify``: a multimodal classifier head on frozen features.

    crossmodal train --task classify --data train.jsonl --text-column tags_en \\
        --label-column subgroup --head gated --eval-data test.jsonl --out runs/head

Embeds the training manifest once with the frozen encoder (``--model``, default the embedded
emoji-mini), trains the ``--head`` (image, text, linear, gated, attention, concat, product,
bilinear; see :mod:`crossmodal.heads.classify`) with cross-entropy through the common
training loop, and writes ``OUT/head.safetensors`` (weights, classes and encoder in its
metadata), ``OUT/metrics.csv`` and ``OUT/curves.png``. With ``--eval-data`` it also writes
``OUT/eval.json``: accuracy, balanced accuracy, macro precision / recall / F1 and the
per-class numbers on that data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_classify_arguments", "run_classify"]


def add_classify_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``--task classify`` (on the ``train`` parser)."""
    from crossmodal.heads.classify import CLASSIFIER_KINDS

    g = p.add_argument_group("--task classify")
    g.add_argument(
        "--head",
        choices=CLASSIFIER_KINDS,
        default="gated",
        help="how image and text are combined (default gated)",
    )
    g.add_argument("--hidden", type=int, default=256, help="width of the head (256)")
    g.add_argument(
        "--modality-dropout",
        type=float,
        default=0.0,
        help="blank a training sample's image side with this probability, else its text side "
        "(0: off; e.g. 0.3 keeps a fusion head from trusting one modality alone)",
    )
    g.add_argument("--image-column", help="manifest column of image paths (default image)")
    g.add_argument("--text-column", help="manifest column of the text (default caption)")
    g.add_argument("--label-column", help="manifest column of the class (default label)")


def _source(path: str, args: argparse.Namespace) -> Any:
    from crossmodal.cli.train import _open_dataset

    columns = {
        "image_column": args.image_column,
        "caption_column": args.text_column,
        "label_column": args.label_column,
    }
    return _open_dataset(path, **{k: v for k, v in columns.items() if v is not None})


def run_classify(args: argparse.Namespace) -> int:
    """Featurize, train, save, evaluate, print a summary."""
    from crossmodal.encoders import DEFAULT_MODEL
    from crossmodal.heads.features import load_clip
    from crossmodal.heads.task import (
        evaluate_classifier,
        featurize,
        save_classifier,
        train_classifier,
    )
    from crossmodal.train.config import TrainConfig

    progress = not args.no_progress and sys.stderr.isatty()
    encoder_spec = args.model or DEFAULT_MODEL
    train_source = _source(args.data, args)
    eval_source = _source(args.eval_data, args) if args.eval_data else None
    encoder = load_clip(encoder_spec, device="cpu" if args.device == "auto" else args.device)
    data = featurize(encoder, train_source, progress=progress)
    no_length = args.steps is None and args.epochs is None
    config = TrainConfig(
        model=encoder_spec,
        objective="classification",
        batch_size=min(args.batch_size, len(data)),
        lr=args.lr,
        min_lr=args.min_lr,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        total_steps=args.steps,
        epochs=20 if no_length else args.epochs,
        device=args.device,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        out_dir=str(args.out),
        progress=progress,
    )
    head, result = train_classifier(args.head, data, config, hidden=args.hidden, resume=args.resume)
    path = save_classifier(
        head,
        Path(args.out) / "head.safetensors",
        encoder=encoder_spec,
        classes=data.classes,
        hidden=args.hidden,
    )
    print(
        f"data: {len(data)} labelled samples in {len(data.classes)} classes, "
        f"{len(data.skipped)} skipped\n"
        f"trained the {args.head!r} head {result.steps} steps, final loss {result.loss:.4f}\n"
        f"head: {path}; metrics: {result.metrics_path}"
    )
    if eval_source is not None:
        test = featurize(encoder, eval_source, classes=data.classes, progress=progress)
        report = evaluate_classifier(head, test)
        out = {
            "head": args.head,
            "encoder": encoder_spec,
            "samples": len(test),
            "skipped": len(test.skipped),
            "accuracy": report.accuracy,
            "balanced_accuracy": report.balanced_accuracy,
            "macro_precision": report.macro_precision,
            "macro_recall": report.macro_recall,
            "macro_f1": report.macro_f1,
            "per_class": {
                name: {"precision": float(p), "recall": float(r), "f1": float(f), "n": int(n)}
                for name, p, r, f, n in zip(
                    report.class_names,
                    report.precision,
                    report.recall,
                    report.f1,
                    report.support,
                    strict=True,
                )
            },
        }
        eval_path = Path(args.out) / "eval.json"
        eval_path.write_text(json.dumps(out, indent=2, ensure_ascii=False), encoding="utf-8")
        print(
            f"eval on {len(test)} samples ({len(test.skipped)} skipped): accuracy "
            f"{report.accuracy:.4f}, macro P/R/F1 {report.macro_precision:.4f} / "
            f"{report.macro_recall:.4f} / {report.macro_f1:.4f}; {eval_path}"
        )
    return 0
