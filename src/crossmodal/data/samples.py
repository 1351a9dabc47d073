"""The records every dataset yields: samples, what was skipped, and the source protocol."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from crossmodal.data.images import ImageInput

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Skipped:
    """An input left out of a run, and why."""

    source: str  # file path, shard member ("shard.tar:key") or manifest row ("m.csv:row 12")
    reason: str  # the error message


@dataclass(frozen=True, eq=False)
class Sample:
    """One image of a dataset and what the dataset says about it (compared by identity)."""

    image: ImageInput  # a file path, or a Pillow image opened (not yet decoded) from a shard
    source: str  # where it came from: the path, "shard.tar:key", or the manifest's image path
    captions: tuple[str, ...] = ()  # texts describing the image, in dataset order
    label: str | None = None  # class name, or None when the dataset gives none


@runtime_checkable
class DataSource(Protocol):
    """What every dataset offers: samples in a stable order, a name, and what it left out."""

    name: str  # the path, glob or brace list it was opened from
    skipped: list[Skipped]  # inputs left out; complete once an iteration has finished

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """Every label of the dataset, sorted; ``None`` when only a full pass could tell."""
        ...

    def __iter__(self) -> Iterator[Sample]:
        """Yield the samples."""
        ...
