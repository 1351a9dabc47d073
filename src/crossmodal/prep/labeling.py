"""Zero-shot auto-labels: each image gets the classes closest to its embedding, with a confidence.

    result = auto_label(open_source("photos/", tree=True), ["cat", "dog"], encoder, LabelConfig())
    result.items[0].labels, result.items[0].confidences, result.items[0].needs_review

The classes are embedded through prompt ensembles (CLIP's recipe:
:func:`crossmodal.eval.zeroshot.build_classifier`), images are embedded once, and the
confidence of a class is its softmax probability over all classes at the temperature
``scale`` (CLIP's trained exp(τ) is 100).

- **Single-label** (default): the label is the most probable class; an item whose
  confidence is under ``threshold`` is flagged ``needs_review``.
- **Multi-label**: every class with probability at least ``multi_threshold`` (up to ``top_k``)
  is a label, the best one always. Probabilities are shares of one softmax, so classes that
  are all present split the mass: set ``multi_threshold`` below 1 / (labels expected).

When the source has labels of its own (class folders, a label column) they are kept as
``truth``, and :class:`LabelResult` measures accuracy on the confident and the flagged items
apart, which says whether the confidence means something.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossmodal.data.samples import DataSource, Sample
from crossmodal.encoders.base import Encoder
from crossmodal.encoders.embedder import EmbedConfig, Embedder
from crossmodal.errors import ConfigError, InputError
from crossmodal.eval.zeroshot import (
    TEMPLATES,
    build_classifier,
    check_templates,
    predict,
    softmax,
)

__all__ = ["LabelConfig", "LabelResult", "LabelledItem", "auto_label", "read_classes"]


@dataclass(frozen=True)
class LabelConfig:
    """How images are labelled."""

    templates: tuple[str, ...] = TEMPLATES["en"]  # prompts with "{}" for the class name
    threshold: float = 0.5  # confidence under this: "needs review"
    multi_label: bool = False  # several labels per image
    multi_threshold: float = 0.2  # multi-label: each class with at least this probability
    scale: float = 100.0  # softmax temperature on the cosines (CLIP's exp(τ))
    top_k: int = 3  # candidates kept per item (and the most labels in multi-label mode)
    batch_size: int = 32  # images per forward pass
    workers: int = 2  # image decoding threads
    progress: bool = False  # progress bars on stderr

    def __post_init__(self) -> None:
        check_templates(self.templates)
        for name in ("threshold", "multi_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1], not {value}")
        if self.scale <= 0 or self.top_k < 1:
            raise ConfigError("scale must be positive and top_k at least 1")


@dataclass(frozen=True)
class LabelledItem:
    """One image and its labels."""

    source: str  # the image's source string
    image: str | None  # its path, when it is a file
    labels: tuple[str, ...]  # the chosen classes, most probable first
    confidences: tuple[float, ...]  # probability of each label
    candidates: tuple[tuple[str, float], ...]  # the top_k classes and their probabilities
    needs_review: bool  # the best probability is under the threshold
    truth: str | None = None  # the source's own label, when it has one

    @property
    def confidence(self) -> float:
        """Probability of the best label."""
        return self.confidences[0]

    @property
    def correct(self) -> bool | None:
        """Whether the best label is the source's own (None without one)."""
        return None if self.truth is None else self.labels[0] == self.truth


@dataclass(frozen=True)
class LabelResult:
    """Labels of every image that decoded, and the images that did not."""

    items: list[LabelledItem]
    class_names: tuple[str, ...]
    config: LabelConfig
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)

    @property
    def counts(self) -> dict[str, int]:
        """Images per best label, in class order (0 for a class no image got)."""
        counts = dict.fromkeys(self.class_names, 0)
        for item in self.items:
            counts[item.labels[0]] += 1
        return counts

    def accuracy(self) -> dict[str, float | int | None]:
        """Accuracy of the best label against ``truth``: all, confident and needs-review apart."""
        judged = [item for item in self.items if item.truth is not None]
        out: dict[str, float | int | None] = {"judged": len(judged)}
        for name, group in (
            ("all", judged),
            ("confident", [i for i in judged if not i.needs_review]),
            ("needs_review", [i for i in judged if i.needs_review]),
        ):
            out[f"{name}_n"] = len(group)
            out[name] = sum(bool(i.correct) for i in group) / len(group) if group else None
        return out


def read_classes(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a UTF-8 text file: one per line; blank lines and ``#`` comments skipped.

    Raises:
        InputError: The file cannot be read, holds no class, or names one twice (the message
            gives the line).
    """
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: cannot read the classes ({exc}); one class per line") from exc
    names: list[str] = []
    for number, line in enumerate(lines, start=1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if name in names:
            raise InputError(f"{file}:{number}: class {name!r} is listed twice")
        names.append(name)
    if not names:
        raise InputError(f"{file}: holds no class names; write one class per line")
    return names


def auto_label(
    source: DataSource, class_names: Sequence[str], encoder: Encoder, config: LabelConfig
) -> LabelResult:
    """Label every image of ``source`` with ``class_names`` (see the module docstring).

    Images that do not decode are listed in ``failures``, never raised.

    Raises:
        InputError: Fewer than two classes, or no image decodes.
    """
    names = tuple(class_names)
    if len(names) < 2:
        raise InputError(f"auto-labelling needs at least two classes, got {list(names)}")
    embedder = Embedder(
        encoder,
        EmbedConfig(
            batch_size=config.batch_size,
            workers=config.workers,
            progress=config.progress,
            on_error="skip",
        ),
    )
    samples = list(source)
    classifier = build_classifier(embedder, names, config.templates)  # (C, D)
    embedded = embedder.embed_images([s.image for s in samples], desc="label")
    failures = [(s.source, s.reason) for s in getattr(source, "skipped", [])]
    failures += [(samples[i].source, reason) for i, reason in embedded.failures]
    if len(embedded.vectors) == 0:
        first = f"; first: {failures[0][0]}: {failures[0][1]}" if failures else ""
        raise InputError(f"{source.name}: no image could be labelled{first}")
    probs = softmax(predict(embedded.vectors, classifier) * config.scale)  # (N, C)
    items = [
        _item(samples[i], row, names, config)
        for i, row in zip(embedded.indices.tolist(), probs, strict=True)
    ]
    return LabelResult(items, names, config, failures)


def _item(
    sample: Sample, probs: np.ndarray, names: tuple[str, ...], config: LabelConfig
) -> LabelledItem:
    order = np.argsort(-probs, kind="stable")[: config.top_k]
    candidates = tuple((names[c], round(float(probs[c]), 6)) for c in order)
    if config.multi_label:
        chosen = [c for c in order if probs[c] >= config.multi_threshold] or [order[0]]
    else:
        chosen = [order[0]]
    image = sample.image
    path = os.path.abspath(image) if isinstance(image, str | os.PathLike) else None
    return LabelledItem(
        source=sample.source,
        image=path,
        labels=tuple(names[c] for c in chosen),
        confidences=tuple(round(float(probs[c]), 6) for c in chosen),
        candidates=candidates,
        needs_review=bool(probs[order[0]] < config.threshold),
        truth=sample.label,
    )
