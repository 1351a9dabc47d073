"""What to index: the files under folder roots and in manifests, as :class:`Entry` records."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from crossmodal.data.sources import is_manifest
from crossmodal.data.walk import WalkConfig, WalkProblem, content_hash, walk
from crossmodal.errors import CrossmodalError
from crossmodal.index.store import FileRecord, Problem

__all__ = [
    "Entry",
    "find_entries",
    "hash_or_reason",
    "is_manifest_file",
    "problem_of",
    "record_of",
]


@dataclass(frozen=True)
class Entry:
    """A file to index: from a folder walk, or a manifest row (with its caption)."""

    path: str
    root: str  # the folder or manifest it was found through
    kind: Literal["image", "video"]
    size: int
    mtime_ns: int
    caption: str | None


def is_manifest_file(path: str) -> bool:
    """Whether ``path`` is a manifest file (an existing ``.csv`` / ``.tsv`` / ``.jsonl``)."""
    return os.path.isfile(path) and is_manifest(path)


def manifest_entries(manifest: str) -> Iterator[Entry | Problem]:
    """The images a manifest lists (caption: its captions joined by " / "; an image with no
    caption but a label, such as ``crossmodal data label``'s ``labels.jsonl``, has its label)."""
    from crossmodal.data.manifests import ManifestSource
    from crossmodal.data.walk import classify

    source = ManifestSource(manifest, on_missing="skip")
    for skipped in source.skipped:
        yield Problem(skipped.source, manifest, skipped.reason)
    for sample in source:
        path = os.path.abspath(str(sample.image))
        kind = classify(path) or "image"
        try:
            stat = os.stat(path)
        except OSError as exc:
            yield Problem(path, manifest, f"cannot read: {exc.strerror}")
            continue
        caption = " / ".join(sample.captions) or sample.label
        yield Entry(path, manifest, kind, stat.st_size, stat.st_mtime_ns, caption)


def root_of(path: str, roots: list[str]) -> str:
    for candidate in roots:
        if path == candidate or path.startswith(candidate.rstrip(os.sep) + os.sep):
            return candidate
    return roots[0]


def hash_or_reason(entry: Entry) -> tuple[str | None, str]:
    try:
        return content_hash(entry.path), ""
    except CrossmodalError as exc:
        return None, str(exc)


def problem_of(entry: Entry, reason: str) -> tuple[Problem, int | None, int | None]:
    return Problem(entry.path, entry.root, reason), entry.size, entry.mtime_ns


def record_of(entry: Entry, digest: str) -> FileRecord:
    return FileRecord(
        path=entry.path,
        root=entry.root,
        kind=entry.kind,
        size=entry.size,
        mtime_ns=entry.mtime_ns,
        hash=digest,
        caption=entry.caption,
    )


def find_entries(
    roots: list[str], manifests: set[str], config: WalkConfig
) -> Iterator[Entry | Problem]:
    """Every file under the folder roots (by :func:`walk`) and in the manifests."""
    folders = [r for r in roots if r not in manifests]
    if folders:
        for found in walk(folders, config):
            root = root_of(str(found.path), folders)
            if isinstance(found, WalkProblem):
                yield Problem(str(found.path), root, found.reason)
            else:
                yield Entry(str(found.path), root, found.kind, found.size, found.mtime_ns, None)
    for manifest in sorted(manifests):
        yield from manifest_entries(manifest)
