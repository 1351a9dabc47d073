"""Applying a trained classifier head to new data: pictures (and their texts) in, labels out.

    head = load_trained_head("runs/head")        # the head file, or the folder train wrote
    clip = load_clip(head.encoder)
    check_encoder(head, clip, head.encoder)
    run = classify_samples(head, clip, open_source("new/", tree=True), ClassifyConfig())
    run.predictions[0].label, run.predictions[0].probability, run.skipped

The samples go through the same feature path as training (:func:`extract_features`: the
head's encoder, the text of a sample its captions joined with ", ", the empty text when it has
none), so a prediction here is what :func:`crossmodal.heads.task.predict` gives for the same
inputs. A picture that does not decode is skipped and recorded with the reason; the rest of
its batch is classified all the same. The file is read with safetensors only: loading a head
runs no code from it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from crossmodal.data.samples import Sample, Skipped
from crossmodal.errors import CheckpointError, ConfigError, ImageDecodeError
from crossmodal.eval.classification import ClassificationReport, classification_report
from crossmodal.heads.classify import MultimodalClassifier
from crossmodal.heads.features import Features, extract_features
from crossmodal.models.clip import CLIP

__all__ = [
    "HEAD_FILE",
    "ClassifyConfig",
    "ClassifyRun",
    "Prediction",
    "TrainedHead",
    "check_encoder",
    "classify_samples",
    "load_trained_head",
]

HEAD_FILE = "head.safetensors"  # what `crossmodal train --task classify` writes into --out


@dataclass(frozen=True)
class TrainedHead:
    """A classifier head read back from its file, and what it was trained on."""

    model: MultimodalClassifier  # in eval mode
    classes: tuple[str, ...]  # class names, in the order of the head's logits
    encoder: str  # the model spec whose features it was trained on
    path: Path  # the file it was read from

    @property
    def reads_text(self) -> bool:
        """Whether the head's prediction depends on a sample's text."""
        return self.model.kind != "image"


@dataclass(frozen=True)
class ClassifyConfig:
    """How samples are classified."""

    top_k: int = 3  # classes listed per prediction, most probable first (at most all classes)
    batch_size: int = 64  # samples per forward pass
    workers: int = 2  # image decoding threads
    progress: bool = False  # a progress bar on stderr

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.batch_size < 1 or self.workers < 1:
            raise ConfigError(
                f"top_k, batch_size and workers must be at least 1, got {self.top_k}, "
                f"{self.batch_size} and {self.workers}"
            )


@dataclass(frozen=True)
class Prediction:
    """The head's answer for one sample."""

    source: str  # where the sample came from (its path, or "shard.tar:key")
    label: str  # the most probable class
    probability: float  # its softmax probability
    top_k: tuple[tuple[str, float], ...]  # the most probable classes and their probabilities
    truth: str | None  # the sample's own label, when the input gives one
    has_text: bool  # whether the sample had a text (else the head read the empty text)


@dataclass(frozen=True)
class ClassifyRun:
    """Every prediction of a run, in input order, and what was skipped."""

    predictions: list[Prediction]
    skipped: list[Skipped] = field(default_factory=list)

    def labelled(self, classes: Sequence[str]) -> list[Prediction]:
        """The predictions whose sample has a label among ``classes`` (what can be scored)."""
        known = set(classes)
        return [p for p in self.predictions if p.truth is not None and p.truth in known]

    def report(self, classes: Sequence[str]) -> ClassificationReport | None:
        """Accuracy and per-class / macro P, R, F1 on the labelled predictions (``None``
        when no sample has a label among ``classes``)."""
        scored = self.labelled(classes)
        if not scored:
            return None
        index = {name: i for i, name in enumerate(classes)}
        y_true = np.array([index[p.truth] for p in scored if p.truth is not None], np.int64)
        y_pred = np.array([index[p.label] for p in scored], dtype=np.int64)
        return classification_report(y_true, y_pred, len(classes), classes)


def load_trained_head(path: str | os.PathLike[str]) -> TrainedHead:
    """The head in ``path``: a file written by ``crossmodal train --task classify``, or the
    ``--out`` folder holding it (``head.safetensors``).

    Raises:
        CheckpointError: No such file, not safetensors, not a classifier head, or a
            description that does not rebuild the weights (the message names the file).
    """
    from crossmodal.heads.task import load_classifier

    file = Path(path)
    if file.is_dir():
        file = file / HEAD_FILE
    if not file.is_file():
        raise CheckpointError(
            f"{file}: no such head file; pass the {HEAD_FILE} (or the --out folder) that "
            "`crossmodal train --task classify` wrote"
        )
    try:
        model, meta = load_classifier(file)
        names, encoder = meta["classes"], meta["encoder"]
        if not isinstance(names, list) or not isinstance(encoder, str):
            raise TypeError("classes must be a list and encoder a model spec")
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())  # load_state_dict's list of mismatches, on one line
        detail = detail if len(detail) <= 200 else detail[:200] + "…"
        raise CheckpointError(
            f"{file}: its description does not rebuild a classifier head ({detail})"
        ) from exc
    return TrainedHead(model, tuple(str(name) for name in names), encoder, file)


def check_encoder(head: TrainedHead, clip: CLIP, spec: str) -> None:
    """Refuse an encoder whose features the head cannot read.

    Raises:
        ConfigError: ``clip`` (loaded from ``spec``) embeds into another dimension than the
            head was trained on.
    """
    dim = int(clip.config.embed_dim)
    if dim != head.model.dim:
        raise ConfigError(
            f"{head.path}: the head was trained on {head.model.dim}-d features of "
            f"{head.encoder!r}, but {spec!r} gives {dim}-d ones; leave out --model to use the "
            "head's own encoder"
        )


def classify_samples(
    head: TrainedHead, clip: CLIP, samples: Iterable[Sample], config: ClassifyConfig
) -> ClassifyRun:
    """Classify every sample with ``head`` on ``clip``'s frozen features.

    ``samples`` may be a data source: what it skipped is carried over (after those it left
    out, the pictures that did not decode, each with its reason).
    """
    undecoded: list[Skipped] = []
    predictions: list[Prediction] = []
    total = len(samples) if isinstance(samples, Sized) else None
    bar = tqdm(total=total, desc="classify", unit="img", disable=not config.progress)
    for chunk in _chunks(samples, config.batch_size):
        kept, features = _features(clip, chunk, config.workers, undecoded)
        if features is not None:
            predictions.extend(_predict(head, kept, features, config.top_k))
        bar.update(len(chunk))
    bar.close()
    # read after the pass: a data source completes its skipped list while it is iterated
    return ClassifyRun(predictions, [*getattr(samples, "skipped", []), *undecoded])


def _chunks(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    chunk: list[Sample] = []
    for sample in samples:
        chunk.append(sample)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _text(sample: Sample) -> str:
    return ", ".join(sample.captions)  # as in training (crossmodal.heads.task.featurize)


def _features(
    clip: CLIP, chunk: list[Sample], workers: int, skipped: list[Skipped]
) -> tuple[list[Sample], Features | None]:
    """The features of ``chunk``; when a picture does not decode, each sample alone, and
    those that fail recorded in ``skipped``."""

    def run(samples: list[Sample]) -> Features:
        images, texts = [s.image for s in samples], [_text(s) for s in samples]
        return extract_features(clip, images, texts, batch_size=len(samples), workers=workers)

    try:
        return chunk, run(chunk)
    except ImageDecodeError:
        pass  # a bad picture in this batch (rare): find it, classify the others
    kept: list[Sample] = []
    parts: list[Features] = []
    for sample in chunk:
        try:
            parts.append(run([sample]))
            kept.append(sample)
        except ImageDecodeError as exc:
            skipped.append(Skipped(sample.source, f"cannot decode image ({exc.reason})"))
    if not parts:
        return [], None
    joined = Features(
        torch.cat([f.h_i for f in parts]),
        torch.cat([f.h_t for f in parts]),
        torch.cat([f.image_tokens for f in parts]),
    )
    return kept, joined


@torch.inference_mode()
def _predict(
    head: TrainedHead, samples: list[Sample], features: Features, top_k: int
) -> list[Prediction]:
    batch = {"h_i": features.h_i, "h_t": features.h_t, "image_tokens": features.image_tokens}
    probs = torch.softmax(head.model.eval()(batch), dim=-1)  # (B, C)
    p_top, i_top = probs.topk(min(top_k, len(head.classes)), dim=-1)  # (B, k) each
    out = []
    for sample, ps, ids in zip(samples, p_top.tolist(), i_top.tolist(), strict=True):
        ranked = tuple((head.classes[i], float(p)) for i, p in zip(ids, ps, strict=True))
        out.append(
            Prediction(
                source=sample.source,
                label=ranked[0][0],
                probability=ranked[0][1],
                top_k=ranked,
                truth=sample.label,
                has_text=bool(sample.captions),
            )
        )
    return out
