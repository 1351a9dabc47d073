"""Datasets for evaluation and training, read lazily: class folders, manifests, WebDataset shards.

Every source yields :class:`Sample` records and keeps a ``skipped`` list of what it left out
and why. No source decodes pixels: a sample carries a file path or, for a shard member, a
Pillow image whose header has been read but whose pixels are decoded later by the embedder's
worker threads, so each image is decoded once, in parallel, and a bad one is recorded by
whoever decodes it instead of stopping the run.

:func:`open_source` picks the source from the path: a directory is a :class:`FolderSource`,
a ``.csv`` / ``.tsv`` / ``.jsonl`` file a :class:`ManifestSource`, and a ``.tar`` path, glob
or brace list (``shards/{000..009}.tar``) a :class:`WebDatasetSource`.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crossmodal.data.files import find_images, is_image_path
from crossmodal.data.manifests import ManifestSource
from crossmodal.data.samples import DataSource, PathLike, Sample, Skipped
from crossmodal.data.shards import WebDatasetSource, expand_braces, expand_shards, is_url
from crossmodal.errors import ConfigError, InputError

__all__ = [
    "DataSource",
    "PathLike",
    "Skipped",
    "FolderSource",
    "ImageTreeSource",
    "ManifestSource",
    "Sample",
    "WebDatasetSource",
    "MANIFEST_SUFFIXES",
    "expand_shards",
    "is_manifest",
    "open_dataset",
    "open_source",
]

log = logging.getLogger(__name__)


class FolderSource:
    """``root/<class>/**/<image>``: the label of an image is the name of its class folder.

    Images are found recursively in each class folder, sorted, hidden entries skipped; an image
    lying directly in ``root`` belongs to no class and is recorded in ``skipped``.
    """

    def __init__(self, root: PathLike) -> None:
        """List the class folders and their image files (no image is opened).

        Raises:
            InputError: ``root`` is not a directory, has no class folders, or no images.
        """
        self.root = Path(root)
        self.name = str(self.root)
        self.skipped: list[Skipped] = []
        if not self.root.is_dir():
            raise InputError(f"{self.root}: not a directory; pass a folder of class sub-folders")
        entries = sorted(p for p in self.root.iterdir() if not p.name.startswith("."))
        self._class_names = tuple(p.name for p in entries if p.is_dir())
        if not self._class_names:
            raise InputError(
                f"{self.root}: has no class sub-folders; expected {self.root}/<class>/<image>"
            )
        self._items = [
            (path, label)
            for label in self._class_names
            for path in find_images([self.root / label])
        ]
        for path in entries:
            if path.is_file() and is_image_path(path):
                self.skipped.append(Skipped(str(path), "not inside a class folder"))
        if not self._items:
            raise InputError(
                f"{self.root}: is empty: its {len(self._class_names)} class folders hold no images"
            )

    @property
    def class_names(self) -> tuple[str, ...]:
        """The class folder names, sorted (a class folder without images included)."""
        return self._class_names

    def __len__(self) -> int:
        """Number of images."""
        return len(self._items)

    def __iter__(self) -> Iterator[Sample]:
        """Samples class by class, images sorted by path within a class."""
        for path, label in self._items:
            yield Sample(image=path, source=str(path), label=label)


class ImageTreeSource:
    """Every image under ``root``, recursively and sorted, captionless: a photo library.

    An image inside a sub-folder is labelled with the name of its top-level folder (so a
    class-folder dataset keeps its labels); one lying in ``root`` itself has no label.
    """

    def __init__(self, root: PathLike) -> None:
        """List the image files (none is opened).

        Raises:
            InputError: ``root`` is not a directory or holds no image files.
        """
        self.root = Path(root)
        self.name = str(self.root)
        self.skipped: list[Skipped] = []
        if not self.root.is_dir():
            raise InputError(f"{self.root}: not a directory; pass a folder of images")
        self._paths = list(find_images([self.root]))
        if not self._paths:
            raise InputError(f"{self.root}: holds no image files (searched recursively)")

    @property
    def class_names(self) -> tuple[str, ...]:
        """The top-level folder names that hold images, sorted."""
        return tuple(sorted({label for p in self._paths if (label := self._label(p))}))

    def __len__(self) -> int:
        """Number of images."""
        return len(self._paths)

    def __iter__(self) -> Iterator[Sample]:
        """Samples in path order."""
        for path in self._paths:
            yield Sample(image=path, source=str(path), label=self._label(path))

    def _label(self, path: Path) -> str | None:
        parts = path.relative_to(self.root).parts
        return parts[0] if len(parts) > 1 else None


# ------------------------------------------------------------------------------ manifests

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl")  # files opened as a ManifestSource


def is_manifest(path: PathLike) -> bool:
    """Whether ``path`` names a manifest (``.csv`` / ``.tsv`` / ``.jsonl``) by its suffix."""
    return Path(os.fspath(path)).suffix.lower() in MANIFEST_SUFFIXES


def open_source(path: PathLike, *, tree: Any = False, **options: Any) -> DataSource:
    """The source for ``path``: a folder, a manifest, or WebDataset shards.

    A directory opens as a :class:`FolderSource`; a ``.csv`` / ``.tsv`` / ``.jsonl`` file as a
    :class:`ManifestSource`; a ``.tar`` path, glob or brace list as a
    :class:`WebDatasetSource`. ``options`` go to that class. With ``tree=True`` a directory
    opens as an :class:`ImageTreeSource` (any folder of images, class folders or not).

    Raises:
        InputError: ``path`` is none of these (the message says what is accepted), or the
            source itself rejects it.
        ConfigError: An option that the chosen source does not take.
    """
    text = os.fspath(path)
    if is_url(text) and Path(text).suffix.lower() in MANIFEST_SUFFIXES:
        raise InputError(
            f"{text}: manifests are read from local files; copy it here (WebDataset .tar "
            "shards, by contrast, are streamed from URLs)"
        )
    kind: type[FolderSource] | type[ImageTreeSource] | type[ManifestSource] | type[WebDatasetSource]
    if os.path.isdir(text):
        kind = ImageTreeSource if tree else FolderSource
    elif Path(text).suffix.lower() in MANIFEST_SUFFIXES:
        kind = ManifestSource
    elif all(p.lower().endswith(".tar") for p in expand_braces(text)):
        kind = WebDatasetSource
    else:
        missing = "" if os.path.exists(text) else " (no such file or directory)"
        raise InputError(
            f"{text}: not a dataset crossmodal can read{missing}; pass a folder of class "
            "sub-folders, a .csv / .tsv / .jsonl manifest, or WebDataset .tar shards (a path, "
            "a glob such as 'shards/*.tar' or a brace list such as 'shards/{000..009}.tar')"
        )
    try:
        inspect.signature(kind).bind(text, **options)
    except TypeError as exc:
        raise ConfigError(f"{kind.__name__} for {text}: {exc}") from None
    return kind(text, **options)


def open_dataset(path: PathLike, *, strict: bool = False, **columns: str) -> DataSource:
    """A dataset to train or evaluate on: :func:`open_source` with a manifest's missing images
    skipped (each recorded in ``skipped``) unless ``strict``.

    ``columns`` (``image_column``, ``caption_column``, ``label_column``) name a manifest's
    columns; for any other kind of dataset they are an error.

    Raises:
        InputError: As :func:`open_source`.
        ConfigError: ``columns`` given for a dataset that is not a manifest.
    """
    if is_manifest(path):
        return open_source(path, on_missing="raise" if strict else "skip", **columns)
    if columns:
        raise ConfigError(
            f"{os.fspath(path)}: {', '.join(sorted(columns))} only apply to a .csv / .tsv / "
            ".jsonl manifest; drop them or pass a manifest"
        )
    return open_source(path)
