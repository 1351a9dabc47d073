"""Emojibase's labels in English and Chinese, joined into emoji concepts with captions.

The join key of an emoji is its normalised hexcode: upper case, ``-`` separated, with the
variation selectors ``FE0F`` / ``FE0E`` dropped, so the fully qualified ``2764-FE0F`` of
Emojibase and emoji-datasource and the ``2764`` of another package name one emoji.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossmodal.data.emoji.sources import SourceLayoutError, read_tar_files

__all__ = [
    "Concept",
    "EmojibaseData",
    "LabelEntry",
    "captions_en",
    "captions_zh",
    "generic_tags",
    "join_labels",
    "normalise_hexcode",
    "read_emojibase",
]

_HEXCODE = re.compile(r"^[0-9A-F]{2,6}(-[0-9A-F]{2,6})*$")  # a normalised hexcode


@dataclass(frozen=True)
class LabelEntry:
    """One emoji of Emojibase in one language; skin-tone variants are flattened in."""

    hexcode: str  # fully qualified code points, e.g. "2764-FE0F"
    emoji: str  # the emoji itself
    label: str  # its CLDR short name in this language
    tags: tuple[str, ...]  # CLDR keywords in this language
    group: str | None  # group key, e.g. "smileys-emotion"; None for regional indicators
    subgroup: str | None  # subgroup key, e.g. "face-smiling"
    order: int  # Emojibase's sort order (large for unordered entries)
    base: str | None = None  # for a skin-tone variant, the hexcode of its base emoji


@dataclass(frozen=True)
class EmojibaseData:
    """Emojibase's labels in each language, and its group names."""

    version: str  # the emojibase-data version that was read
    labels: dict[str, list[LabelEntry]]  # locale ("en", "zh") -> entries
    group_names: dict[str, dict[str, str]]  # locale -> group/subgroup key -> display name
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count


def read_emojibase(path: Path, locales: tuple[str, ...] = ("en", "zh")) -> EmojibaseData:
    """Labels, tags and group names of ``locales`` from an ``emojibase-data`` npm tarball.

    Raises:
        SourceLayoutError: A locale's ``data.json`` or ``messages.json`` is missing or malformed.
    """
    skipped: dict[str, int] = {}
    wanted = {"package/package.json"}
    wanted |= {f"package/{loc}/{name}.json" for loc in locales for name in ("data", "messages")}
    files = dict(read_tar_files(path, wanted.__contains__, skipped))
    labels: dict[str, list[LabelEntry]] = {}
    names: dict[str, dict[str, str]] = {}
    try:
        version = str(json.loads(files["package/package.json"])["version"])
        for loc in locales:
            messages = json.loads(files[f"package/{loc}/messages.json"])
            groups = {int(g["order"]): str(g["key"]) for g in messages["groups"]}
            subgroups = {int(g["order"]): str(g["key"]) for g in messages["subgroups"]}
            names[loc] = {str(g["key"]): str(g["message"]) for g in messages["groups"]}
            names[loc].update({str(g["key"]): str(g["message"]) for g in messages["subgroups"]})
            data = json.loads(files[f"package/{loc}/data.json"])
            labels[loc] = list(_label_entries(data, groups, subgroups))
    except (KeyError, ValueError, TypeError) as exc:
        raise SourceLayoutError(
            f"{path}: missing or malformed emojibase data ({exc!r}); the emojibase-data layout "
            "changed: pin the major version in SOURCE_PACKAGES"
        ) from exc
    return EmojibaseData(version, labels, names, skipped)


def _label_entries(
    data: list[dict[str, Any]], groups: dict[int, str], subgroups: dict[int, str]
) -> Iterator[LabelEntry]:
    """Each entry of an Emojibase ``data.json``, then its skin-tone variants."""
    for item in data:
        yield _label_entry(item, groups, subgroups, None)
        for skin in item.get("skins") or []:
            yield _label_entry(skin, groups, subgroups, str(item["hexcode"]), item)


def _label_entry(
    item: dict[str, Any],
    groups: dict[int, str],
    subgroups: dict[int, str],
    base: str | None,
    parent: dict[str, Any] | None = None,
) -> LabelEntry:
    """One Emojibase record; a variant without tags borrows its base emoji's."""
    tags = item.get("tags") or (parent or {}).get("tags") or []
    group, subgroup = item.get("group"), item.get("subgroup")
    return LabelEntry(
        hexcode=str(item["hexcode"]),
        emoji=str(item.get("emoji", "")),
        label=str(item.get("label", "")).strip(),
        tags=tuple(str(t).strip() for t in tags if str(t).strip()),
        group=groups.get(int(group)) if group is not None else None,
        subgroup=subgroups.get(int(subgroup)) if subgroup is not None else None,
        order=int(item.get("order", 1_000_000)),
        base=base,
    )


@dataclass(frozen=True)
class Concept:
    """One emoji with its labels in both languages."""

    key: str  # normalised hexcode: the join key
    hexcode: str  # Emojibase's fully qualified hexcode, e.g. "2764-FE0F"
    emoji: str  # the emoji character(s)
    label_en: str  # CLDR short name in English
    label_zh: str  # CLDR short name in Chinese; "" when Emojibase has none
    tags_en: tuple[str, ...]  # CLDR keywords in English
    tags_zh: tuple[str, ...]  # CLDR keywords in Chinese
    group: str  # Emojibase group key, e.g. "smileys-emotion"
    subgroup: str  # Emojibase subgroup key, e.g. "face-smiling"
    order: int  # Emojibase sort order


def normalise_hexcode(hexcode: str) -> str:
    """The join key of a hexcode: upper case, ``-`` separated, no ``FE0F``/``FE0E``.

    Returns ``""`` for a name that is not a hexcode (such as an image of another name).
    """
    parts = [p for p in hexcode.strip().upper().replace("_", "-").split("-") if p]
    key = "-".join(p for p in parts if p not in ("FE0F", "FE0E"))
    return key if _HEXCODE.match(key) else ""


def captions_en(concept: Concept, generic: Collection[str] = ()) -> list[str]:
    """English captions: the label, two templates, then each tag not in ``generic``."""
    label = concept.label_en
    tags = [t for t in concept.tags_en if t not in generic]
    return _unique([label, f"an emoji of {label}", f"{label} emoji", *tags])


def captions_zh(concept: Concept, generic: Collection[str] = ()) -> list[str]:
    """Chinese captions: the label, two templates, then each tag not in ``generic``.

    An emoji without a Chinese label has no Chinese captions.
    """
    label = concept.label_zh
    if not label:
        return []
    tags = [t for t in concept.tags_zh if t not in generic]
    return _unique([label, f"{label}的表情符号", f"{label}表情", *tags])


def generic_tags(concepts: Iterable[Concept], max_emoji: int | None) -> dict[str, frozenset[str]]:
    """Per language, the tags that more than ``max_emoji`` emoji carry (``flag``, ``face``).

    Such a tag describes a category, not an emoji: as a caption it would match hundreds of
    images, so it stays in ``tags_*`` but is not made a caption.
    """
    counts: dict[str, Counter[str]] = {"en": Counter(), "zh": Counter()}
    for concept in concepts:
        counts["en"].update(set(concept.tags_en))
        counts["zh"].update(set(concept.tags_zh))
    if max_emoji is None:
        return {lang: frozenset() for lang in counts}
    return {lang: frozenset(t for t, n in c.items() if n > max_emoji) for lang, c in counts.items()}


def _unique(texts: Iterable[str]) -> list[str]:
    """Non-empty texts in order, without case-insensitive repeats."""
    seen: set[str] = set()
    out = []
    for text in texts:
        text = " ".join(text.split())
        if text and text.casefold() not in seen:
            seen.add(text.casefold())
            out.append(text)
    return out


def join_labels(
    data: EmojibaseData, include_skin_tones: bool = False
) -> tuple[dict[str, Concept], dict[str, int]]:
    """Concepts by join key from Emojibase's English entries, with their Chinese labels.

    Entries without a group (the 26 regional indicator letters) are left out, and skin-tone
    variants unless ``include_skin_tones``. Returns the concepts and counts of what was left
    out or lacks a translation.
    """
    zh = {normalise_hexcode(e.hexcode): e for e in data.labels.get("zh", [])}
    counts: Counter[str] = Counter()
    concepts: dict[str, Concept] = {}
    for entry in data.labels["en"]:
        key = normalise_hexcode(entry.hexcode)
        if entry.base is not None and not include_skin_tones:
            counts["skin_tone_variants_excluded"] += 1
        elif entry.group is None or entry.subgroup is None or not entry.label or not key:
            counts["ungrouped_excluded"] += 1
        elif key not in concepts:
            other = zh.get(key)
            counts["missing_zh_label"] += other is None or not other.label
            counts["missing_en_tags"] += not entry.tags
            counts["missing_zh_tags"] += other is None or not other.tags
            concepts[key] = Concept(
                key, entry.hexcode, entry.emoji, entry.label, other.label if other else "",
                entry.tags, other.tags if other else (), entry.group, entry.subgroup, entry.order,
            )  # fmt: skip
    return concepts, dict(counts)
