"""The classification task: train a multimodal head on frozen encoder features, evaluate it.

    data = featurize(clip, open_source("train.jsonl", caption_column="tags", label_column="y"))
    head, result = train_classifier("gated", data, TrainConfig(total_steps=500, ...))
    report = evaluate_classifier(head, featurize(clip, test_source, classes=data.classes))
    save_classifier(head, "head.safetensors", encoder="emoji-mini", classes=data.classes)

Each sample's text is its captions joined with ", " (a tag list reads as one text); samples
without a label, or (for evaluation) with a label the head was not trained on, are skipped
and recorded. Training goes through the common loop (:func:`crossmodal.train.train`) with the
cross-entropy objective, so checkpoints, resume, curves and progress work as for
contrastive training.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from crossmodal.data.samples import Sample, Skipped
from crossmodal.errors import InputError
from crossmodal.eval.classification import ClassificationReport, classification_report
from crossmodal.heads.classify import MultimodalClassifier
from crossmodal.heads.features import Features, extract_features
from crossmodal.heads.io import load_head_file, save_head_file
from crossmodal.models.clip import CLIP
from crossmodal.train.config import TrainConfig
from crossmodal.train.loop import TrainResult

_META_KEY = "crossmodal.head"  # safetensors metadata key of a classifier head

__all__ = [
    "LabelledFeatures",
    "classifier_eval_record",
    "evaluate_classifier",
    "featurize",
    "features_from_extraction",
    "load_classifier",
    "predict",
    "save_classifier",
    "train_classifier",
]


@dataclass(frozen=True)
class LabelledFeatures:
    """Frozen features of labelled samples and their class indices."""

    features: Features
    labels: Tensor  # (N,) int64 indices into classes
    classes: tuple[str, ...]  # class names, sorted unless given
    sources: tuple[str, ...]  # where each row came from
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, rows: Tensor | slice) -> dict[str, Tensor]:
        """Rows as a model batch ``{"h_i", "h_t", "image_tokens", "labels"}``."""
        f = self.features
        return {
            "h_i": f.h_i[rows],
            "h_t": f.h_t[rows],
            "image_tokens": f.image_tokens[rows],
            "labels": self.labels[rows],
        }


class _Rows(torch.utils.data.Dataset[dict[str, Tensor]]):
    def __init__(self, data: LabelledFeatures) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.data.batch(slice(index, index + 1))  # rows of 1, joined by _collate


def _text(sample: Sample) -> str:
    return ", ".join(sample.captions)


def featurize(
    model: CLIP,
    samples: Iterable[Sample],
    classes: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> LabelledFeatures:
    """Embed every labelled sample with the frozen ``model``.

    Args:
        model: The encoder (native CLIP) whose features the head reads.
        samples: A data source; its ``skipped`` entries are carried over.
        classes: The classes of a trained head (evaluation); ``None`` takes the sorted
            labels found (training).

    Raises:
        InputError: No sample has a usable label.
    """
    skipped: list[Skipped] = list(getattr(samples, "skipped", []))
    kept: list[Sample] = []
    known = None if classes is None else set(classes)
    for sample in samples:
        if sample.label is None:
            skipped.append(Skipped(sample.source, "no label"))
        elif known is not None and sample.label not in known:
            skipped.append(Skipped(sample.source, f"label {sample.label!r} is not a class"))
        else:
            kept.append(sample)
    if not kept:
        name = getattr(samples, "name", "the data")
        raise InputError(
            f"{name}: no sample has a usable label ({len(skipped)} skipped); give each row "
            "a label (--label-column) from the classes the head knows"
        )
    names = tuple(sorted({str(s.label) for s in kept})) if classes is None else tuple(classes)
    index = {name: i for i, name in enumerate(names)}
    features = extract_features(
        model,
        [s.image for s in kept],
        [_text(s) for s in kept],
        batch_size=batch_size,
        progress=progress,
    )
    labels = torch.tensor([index[str(s.label)] for s in kept], dtype=torch.int64)
    return LabelledFeatures(features, labels, names, tuple(s.source for s in kept), skipped)


def features_from_extraction(
    folder: str | Path, classes: Sequence[str] | None = None
) -> LabelledFeatures:
    """Labelled features read from a ``crossmodal data extract`` folder, with no model run.

    ``h_i`` and ``h_t`` are the extracted image and (first) caption embeddings. The folder
    holds no patch tokens, so ``image_tokens`` is the class token alone: heads that attend over
    patches (``attention``) need :func:`featurize` on the images instead. Rows without a
    label, with a label that is not a class, or without a caption are skipped and recorded.

    Raises:
        InputError: Not an extraction folder, or no row has a label and a caption.
    """
    from crossmodal.prep.extract import read_feature_shards

    known = None if classes is None else set(classes)
    skipped: list[Skipped] = []
    rows: list[tuple[str, str]] = []  # (source, label)
    h_i: list[np.ndarray] = []
    h_t: list[np.ndarray] = []
    for shard in read_feature_shards(folder):
        for row, image, text in zip(
            shard.rows, shard.image_embeddings, shard.text_embeddings, strict=True
        ):
            label = row["label"]
            if label is None:
                skipped.append(Skipped(row["source"], "no label"))
            elif known is not None and label not in known:
                skipped.append(Skipped(row["source"], f"label {label!r} is not a class"))
            elif np.isnan(text).any():
                skipped.append(Skipped(row["source"], "no caption was embedded"))
            else:
                rows.append((row["source"], label))
                h_i.append(image)
                h_t.append(text)
    if not rows:
        raise InputError(
            f"{folder}: no extracted row has both a label and a caption ({len(skipped)} "
            "skipped); extract a manifest with label and caption columns"
        )
    names = tuple(sorted({label for _, label in rows})) if classes is None else tuple(classes)
    index = {name: i for i, name in enumerate(names)}
    image = torch.from_numpy(np.stack(h_i))
    features = Features(
        h_i=image, h_t=torch.from_numpy(np.stack(h_t)), image_tokens=image[:, None, :].clone()
    )
    labels = torch.tensor([index[label] for _, label in rows], dtype=torch.int64)
    return LabelledFeatures(features, labels, names, tuple(src for src, _ in rows), skipped)


def train_classifier(
    kind: str,
    data: LabelledFeatures,
    config: TrainConfig,
    *,
    hidden: int = 256,
    dropout: float = 0.1,
    modality_dropout: float = 0.0,
    resume: bool = False,
) -> tuple[MultimodalClassifier, TrainResult]:
    """Train a ``kind`` head with cross-entropy on ``data`` through the common loop.

    ``modality_dropout`` blanks one modality of a training sample at random (see
    :class:`~crossmodal.heads.classify.MultimodalClassifier`).
    """
    from crossmodal.train.data_order import build_loader_factory
    from crossmodal.train.loop import train
    from crossmodal.train.objective import ClassificationObjective
    from crossmodal.train.rng import seed_everything

    seed_everything(config.seed)
    dim = int(data.features.h_i.shape[1])
    model = MultimodalClassifier(
        kind,
        dim,
        len(data.classes),
        hidden=hidden,
        dropout=dropout,
        modality_dropout=modality_dropout,
    )
    batch_size = min(config.batch_size, len(data))
    factory = build_loader_factory(_Rows(data), batch_size, collate_fn=_collate)
    objective = ClassificationObjective(input_key=None, label_key="labels")
    result = train(model, objective, factory, config, resume=resume)
    return model.eval(), result


def _collate(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {key: torch.cat([item[key] for item in items]) for key in items[0]}


@torch.inference_mode()
def predict(model: MultimodalClassifier, data: LabelledFeatures, batch_size: int = 512) -> Tensor:
    """Logits (N, C) of every row."""
    model.eval()
    out = [
        model(data.batch(slice(start, start + batch_size)))
        for start in range(0, len(data), batch_size)
    ]
    return torch.cat(out)


def evaluate_classifier(
    model: MultimodalClassifier, data: LabelledFeatures
) -> ClassificationReport:
    """Accuracy and per-class / macro precision, recall and F1 on ``data``.

    ``data`` must be featurized with the head's classes (``featurize(..., classes=)``).
    """
    if len(data.classes) != model.n_classes:
        raise InputError(
            f"the data has {len(data.classes)} classes and the head {model.n_classes}; "
            "featurize the evaluation data with classes= the training classes"
        )
    y_pred = predict(model, data).argmax(dim=-1).numpy()
    y_true = data.labels.numpy()
    return classification_report(y_true, y_pred.astype(np.int64), len(data.classes), data.classes)


def classifier_eval_record(
    kind: str, encoder: str, data: LabelledFeatures, report: ClassificationReport
) -> dict[str, Any]:
    """``eval.json`` of a trained head: what was evaluated, the averages and each class's
    precision, recall, F1 and support ``n`` (plain JSON types)."""
    return {
        "head": kind,
        "encoder": encoder,
        "samples": len(data),
        "skipped": len(data.skipped),
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


def save_classifier(
    model: MultimodalClassifier,
    path: str | Path,
    *,
    encoder: str,
    classes: Sequence[str],
    hidden: int = 256,
) -> Path:
    """Write the head's weights and what it needs to be rebuilt (safetensors metadata)."""
    meta = {
        "kind": model.kind,
        "dim": model.dim,
        "hidden": hidden,
        "classes": list(classes),
        "encoder": encoder,
    }
    return save_head_file(model, path, _META_KEY, meta)


def load_classifier(path: str | Path) -> tuple[MultimodalClassifier, dict[str, object]]:
    """A head saved by :func:`save_classifier`, and its metadata (kind, classes, encoder)."""
    state, meta = load_head_file(path, _META_KEY, "classifier head")
    model = MultimodalClassifier(
        meta["kind"], int(meta["dim"]), len(meta["classes"]), hidden=int(meta["hidden"])
    )
    model.load_state_dict(state)
    return model.eval(), meta
