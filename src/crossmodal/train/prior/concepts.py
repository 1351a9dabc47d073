"""Concepts of a captioned image manifest: what the prior's targets are spread over.

A concept is the set of images sharing a label (an emoji's hexcode across drawing styles).
Its **prototype** is the normalised mean of its images' unit vectors from the image tower,
which the prior stage keeps locked; its **label** is its first English caption (what the
teacher reads); its **captions** are every caption of its images, in both languages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crossmodal.data.manifests import ManifestSource
from crossmodal.encoders.embedder import Embedder
from crossmodal.errors import InputError

__all__ = ["Concepts", "concept_prototypes", "is_english", "read_concepts"]


def is_english(text: str) -> bool:
    """True when ``text`` has no CJK ideograph (what an English teacher can read)."""
    return not any("\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" for c in text)


@dataclass(frozen=True)
class Concepts:
    """Concepts in a stable order (sorted by key)."""

    keys: list[str]  # label-column values
    labels: list[str]  # each concept's English label (the teacher's text)
    captions: list[list[str]]  # each concept's distinct captions, English and Chinese
    images: list[list[str]]  # each concept's image paths

    def __len__(self) -> int:
        return len(self.keys)


def read_concepts(manifest: str | Path, label_column: str = "label") -> Concepts:
    """The concepts of a manifest whose rows carry captions and a label.

    Raises:
        InputError: The manifest is unreadable, a row lacks its label, or a concept has no
            English caption (the teacher reads English); the message names the label.
    """
    source = ManifestSource(manifest, label_column=label_column)
    captions: dict[str, list[str]] = {}
    images: dict[str, list[str]] = {}
    for sample in source:
        if sample.label is None:
            raise InputError(
                f"{manifest}: {sample.source} has no {label_column!r}: every row needs the "
                "concept it shows (pass --label-column)"
            )
        seen = captions.setdefault(sample.label, [])
        seen.extend(c for c in sample.captions if c not in seen)
        images.setdefault(sample.label, []).append(str(sample.image))
    keys = sorted(captions)
    labels = []
    for key in keys:
        english = [c for c in captions[key] if is_english(c)]
        if not english:
            raise InputError(
                f"{manifest}: concept {key!r} has no English caption; the teacher reads English"
            )
        labels.append(english[0])
    return Concepts(keys, labels, [captions[k] for k in keys], [images[k] for k in keys])


def concept_prototypes(embedder: Embedder, concepts: Concepts) -> npt.NDArray[np.float32]:
    """(C, D) unit prototypes: each concept's mean image vector, normalised.

    Raises:
        InputError: Every image of some concept failed to decode (the message names one).
    """
    paths: list[str] = [p for own in concepts.images for p in own]
    owner = np.repeat(np.arange(len(concepts)), [len(own) for own in concepts.images])
    embedded = embedder.embed_images(paths, desc="concept images")
    sums = np.zeros((len(concepts), embedded.vectors.shape[1]), np.float64)
    np.add.at(sums, owner[embedded.indices], embedded.vectors)
    empty = np.flatnonzero(~sums.any(axis=1))
    if len(empty):
        first = concepts.keys[int(empty[0])]
        reasons = dict(embedded.failures)
        why = reasons.get(paths.index(concepts.images[int(empty[0])][0]), "")
        raise InputError(
            f"concept {first!r} has no image that decodes ({len(empty)} such concepts; {why}); "
            "clean the manifest (crossmodal prep clean)"
        )
    return _unit(sums)


def _unit(x: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    unit: npt.NDArray[np.float32] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(
        np.float32
    )
    return unit


def unit_rows(x: Sequence[Sequence[float]] | npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Rows scaled to length one."""
    return _unit(np.asarray(x, dtype=np.float64))
