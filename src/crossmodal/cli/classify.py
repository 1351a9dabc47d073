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

``--data`` and ``--eval-data`` may also be ``crossmodal data extract`` folders: the head then
trains on the extracted image and caption embeddings with no model run (any head but
``attention``, which needs patch tokens).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crossmodal.heads.task import LabelledFeatures
    from crossmodal.train.config import TrainConfig

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


def _is_extraction(path: str) -> bool:
    """Whether ``path`` is a ``crossmodal data extract`` folder (features, not images)."""
    from crossmodal.prep.extract import STATE_NAME

    return (Path(path) / STATE_NAME).is_file()


def _extraction_model(folders: list[str]) -> str | None:
    from crossmodal.prep.extract import read_state

    return str(read_state(folders[0])["model"]) if folders else None


def _check_extraction(folder: str, encoder_spec: str, head: str) -> None:
    """The features of ``folder`` fit the head: same encoder, no patch tokens needed."""
    from crossmodal.errors import ConfigError
    from crossmodal.prep.extract import read_state

    model = read_state(folder)["model"]
    if model != encoder_spec:
        raise ConfigError(
            f"{folder}: features were extracted with {model!r}, not {encoder_spec!r}; "
            "pass -m with that model, or extract again"
        )
    if head == "attention":
        raise ConfigError(
            f"{folder}: the attention head attends over patch tokens, which `crossmodal data "
            "extract` does not store; train it from the images (a manifest) instead"
        )


def _train_config(
    args: argparse.Namespace, encoder_spec: str, samples: int, progress: bool
) -> TrainConfig:
    """The head's training settings from the command line (20 epochs unless told)."""
    from crossmodal.train.config import TrainConfig

    no_length = args.steps is None and args.epochs is None
    return TrainConfig(
        model=encoder_spec,
        objective="classification",
        batch_size=min(args.batch_size, samples),
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


def run_classify(args: argparse.Namespace) -> int:
    """Featurize, train, save, evaluate, print a summary."""
    from crossmodal.cli.columns import open_with_columns
    from crossmodal.encoders import DEFAULT_MODEL
    from crossmodal.heads.features import load_clip
    from crossmodal.heads.task import (
        classifier_eval_record,
        evaluate_classifier,
        features_from_extraction,
        featurize,
        save_classifier,
        train_classifier,
    )

    progress = not args.no_progress and sys.stderr.isatty()
    extracted = [p for p in (args.data, args.eval_data) if p and _is_extraction(p)]
    encoder_spec = args.model or _extraction_model(extracted) or DEFAULT_MODEL
    for folder in extracted:
        _check_extraction(folder, encoder_spec, args.head)
    encoder = None
    if len(extracted) < len([p for p in (args.data, args.eval_data) if p]):
        device = "cpu" if args.device == "auto" else args.device
        encoder = load_clip(encoder_spec, device=device)

    def labelled(path: str, classes: Sequence[str] | None = None) -> LabelledFeatures:
        if _is_extraction(path):
            return features_from_extraction(path, classes)
        assert encoder is not None
        return featurize(encoder, open_with_columns(path, args), classes=classes, progress=progress)

    data = labelled(args.data)
    config = _train_config(args, encoder_spec, len(data), progress)
    head, result = train_classifier(
        args.head,
        data,
        config,
        hidden=args.hidden,
        modality_dropout=args.modality_dropout,
        resume=args.resume,
    )
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
    if args.eval_data:
        test = labelled(args.eval_data, data.classes)
        report = evaluate_classifier(head, test)
        out = classifier_eval_record(args.head, encoder_spec, test, report)
        eval_path = Path(args.out) / "eval.json"
        eval_path.write_text(json.dumps(out, indent=2, ensure_ascii=False), encoding="utf-8")
        print(
            f"eval on {len(test)} samples ({len(test.skipped)} skipped): accuracy "
            f"{report.accuracy:.4f}, macro P/R/F1 {report.macro_precision:.4f} / "
            f"{report.macro_recall:.4f} / {report.macro_f1:.4f}; {eval_path}"
        )
    return 0
