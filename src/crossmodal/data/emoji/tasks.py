"""Ready-to-use training and evaluation manifests of the emoji dataset.

Every file is a JSONL manifest that :func:`crossmodal.data.sources.open_source` reads as it
is, so each published number is one ``crossmodal train`` or ``crossmodal eval`` command::

    train.jsonl                       one row per train image: {"image", "caption": [every EN
                                      and ZH caption, group and subgroup names], "label": group
                                      key, "hexcode"}
    eval/<split>.<lang>.retrieval.jsonl    one row per emoji: {"image", "caption": [its label
                                      in <lang>], "hexcode", "identical_to"}
    eval/<split>.<lang>.group.jsonl        one row per image: {"image", "label": the group
    eval/<split>.<lang>.subgroup.jsonl     or subgroup name in <lang>, "hexcode"}
    eval/<lang>.group.subclasses.json      Emojibase's hierarchy for hierarchical zero-shot
                                      (``crossmodal eval zeroshot --subclasses``): each group
                                      name → its subgroup names and emoji labels in <lang>

``<split>`` is ``test`` (OpenMoji colour) or ``test-hard`` (OpenMoji black), ``<lang>`` is
``en`` or ``zh``. Image paths are relative to the manifest's own folder (``images/...`` in
``train.jsonl``, ``../images/...`` under ``eval/``), which is how
:class:`~crossmodal.data.manifests.ManifestSource` resolves them, so the dataset folder can be
moved or copied as a whole.

Duplicates in retrieval: some emoji are drawn pixel-identically (``identical_to``; OpenMoji's
black flags are all one empty frame). Kept as separate images, such a group caps the score:
an image query can rank only one of the group's labels first, and which image a label query
finds first is a tie decided by float noise. So every emoji keeps its row (its label stays a
query), but the row of each member names the image of the group's first member: the manifest
reader groups rows by image, which gives one gallery image whose positives are every label of
the group. A model is then not penalised for failing to tell apart what no one could; a
retrieval file has one row per emoji and one image per distinct drawing. The zero-shot files
keep one row and one image per emoji: an image has one label there, and identical drawings
with different labels are a ceiling on accuracy that any model shares.

Group and subgroup names are Emojibase's (``<locale>/messages.json``). A language whose names
do not cover every key, or name two keys alike, gets no zero-shot files (English falls back to
the keys themselves); :class:`TaskManifests` says which files were left out and why.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossmodal.atomic import atomic_write_bytes
from crossmodal.data.emoji.writers import ManifestRow, write_jsonl

__all__ = [
    "EVAL_DIR",
    "HELD_OUT_SPLITS",
    "LABEL_KINDS",
    "LANGUAGES",
    "TRAIN_MANIFEST",
    "TaskManifests",
    "class_names",
    "eval_manifest_name",
    "group_subclasses",
    "retrieval_rows",
    "subclasses_name",
    "write_task_manifests",
]

log = logging.getLogger(__name__)

TRAIN_MANIFEST = "train.jsonl"
"""The training manifest, in the dataset folder."""

EVAL_DIR = "eval"
"""The folder of the evaluation manifests, in the dataset folder."""

HELD_OUT_SPLITS = ("val", "test", "test-hard")
"""The splits that get evaluation manifests."""

LANGUAGES = ("en", "zh")
"""The languages of the evaluation manifests."""

LABEL_KINDS = ("group", "subgroup")
"""The zero-shot label sets: the ManifestRow fields whose keys are the classes."""


@dataclass(frozen=True)
class TaskManifests:
    """What :func:`write_task_manifests` wrote, and what it left out."""

    # path relative to the dataset folder -> {"rows": manifest rows, "images": distinct images}
    written: dict[str, dict[str, int]] = field(default_factory=dict)
    # path relative to the dataset folder -> why it was not written
    not_written: dict[str, str] = field(default_factory=dict)


def eval_manifest_name(split: str, language: str, task: str) -> str:
    """The manifest ``eval/<split>.<language>.<task>.jsonl``, relative to the dataset folder.

    ``task`` is ``retrieval``, ``group`` or ``subgroup``.
    """
    return f"{EVAL_DIR}/{split}.{language}.{task}.jsonl"


def write_task_manifests(
    root: Path, rows: list[ManifestRow], names: Mapping[str, Mapping[str, str]]
) -> TaskManifests:
    """Write ``train.jsonl`` and the ``eval/`` manifests of ``rows`` into the folder ``root``.

    A split without rows gets no files. ``names`` maps a locale to Emojibase's display name of
    each group and subgroup key (:attr:`~crossmodal.data.emoji.labels.EmojibaseData.group_names`).
    """
    result = TaskManifests()
    train = [r for r in rows if r.split == "train"]
    if train:
        _write(root, TRAIN_MANIFEST, (_train_row(r, names) for r in train), result)
    for split in HELD_OUT_SPLITS:
        held = [r for r in rows if r.split == split]
        if not held:
            continue
        for lang in LANGUAGES:
            name = eval_manifest_name(split, lang, "retrieval")
            _write(root, name, retrieval_rows(held, lang), result)
            for kind in LABEL_KINDS:
                name = eval_manifest_name(split, lang, kind)
                label_of = class_names(held, kind, lang, names.get(lang, {}))
                if label_of is None:
                    why = f"emojibase-data has no distinct {lang} name for every {kind}"
                    log.warning("%s not written: %s", name, why)
                    result.not_written[name] = why
                    continue
                _write(root, name, _label_rows(held, kind, label_of), result)
    for lang in LANGUAGES:
        _write_subclasses(root, rows, lang, names.get(lang, {}), result)
    return result


def subclasses_name(language: str) -> str:
    """The hierarchy file ``eval/<language>.group.subclasses.json``, relative to the dataset."""
    return f"{EVAL_DIR}/{language}.group.subclasses.json"


def group_subclasses(
    rows: list[ManifestRow], lang: str, names: Mapping[str, str]
) -> dict[str, list[str]] | None:
    """Each group's name in ``lang`` → its members: subgroup names, then emoji labels.

    The hierarchy is Emojibase's, the same for every split: it names the vocabulary, not which
    picture is which. None when ``lang`` has no usable group or subgroup names.
    """
    groups = class_names(rows, "group", lang, names)
    subgroups = class_names(rows, "subgroup", lang, names)
    if groups is None or subgroups is None:
        return None
    out: dict[str, list[str]] = {groups[k]: [] for k in sorted(groups)}
    for row in sorted(rows, key=lambda r: (r.group, r.subgroup, r.hexcode)):
        label = row.label_en if lang == "en" else row.label_zh
        members = out[groups[row.group]]
        for name in (subgroups[row.subgroup], label):
            if name and name not in members:
                members.append(name)
    return out


def _write_subclasses(
    root: Path, rows: list[ManifestRow], lang: str, names: Mapping[str, str], result: TaskManifests
) -> None:
    name = subclasses_name(lang)
    if not any(r.split in HELD_OUT_SPLITS for r in rows):
        return
    members = group_subclasses(rows, lang, names)
    if members is None:
        result.not_written[name] = f"emojibase-data has no distinct {lang} name for every group"
        return
    data = json.dumps(members, ensure_ascii=False, indent=1).encode("utf-8")
    atomic_write_bytes(root / name, data)
    result.written[name] = {"rows": len(members), "images": 0}


def retrieval_rows(rows: list[ManifestRow], lang: str) -> list[dict[str, Any]]:
    """One row per emoji with a label in ``lang``; identical drawings share one image.

    ``rows`` are the rows of one split (``identical_to`` relates rows of one style).
    """
    index = {(r.style, r.hexcode): i for i, r in enumerate(rows)}
    out = []
    for i, row in enumerate(rows):
        label = row.label_en if lang == "en" else row.label_zh
        if not label:
            continue
        group = [i, *(index[(row.style, h)] for h in row.identical_to if (row.style, h) in index)]
        shown = rows[min(group)]  # the group's first member stands for its drawing
        out.append(
            {"image": f"../{shown.image}", "caption": [label], "hexcode": row.hexcode,
             "identical_to": row.identical_to}
        )  # fmt: skip
    return out


def class_names(
    rows: list[ManifestRow], kind: str, lang: str, names: Mapping[str, str]
) -> dict[str, str] | None:
    """The display name of each ``kind`` key in ``rows``; None if ``lang`` has no usable set.

    Usable: every key has a name, and no two keys share one (they would merge into one class).
    English falls back to the keys themselves.
    """
    keys = sorted({str(getattr(r, kind)) for r in rows})
    named = {k: names[k] for k in keys if names.get(k)}
    if len(named) == len(keys) and len(set(named.values())) == len(keys):
        return named
    return {k: k for k in keys} if lang == "en" else None


def _train_row(row: ManifestRow, names: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """A training row: one image and every caption of it, a random one drawn per step.

    Besides the label, templates and tags, the captions include the emoji's group and
    subgroup names in each language ("food & drink", "食物飲料"): Emojibase's category names
    are human-written text about the concept too, and without them a model never reads the
    words that zero-shot group classification asks about.
    """
    captions: list[str] = []
    for lang, own in (("en", row.captions_en), ("zh", row.captions_zh)):
        shown = names.get(lang, {})
        extra = [shown[k] for k in (row.group, row.subgroup) if shown.get(k)]
        captions += own + [c for c in dict.fromkeys(extra) if c not in own]
    return {"image": row.image, "caption": captions, "label": row.group, "hexcode": row.hexcode}


def _label_rows(
    rows: list[ManifestRow], kind: str, label_of: Mapping[str, str]
) -> Iterable[dict[str, Any]]:
    """Zero-shot rows: each image with the name of its group or subgroup."""
    for row in rows:
        label = label_of[str(getattr(row, kind))]
        yield {"image": f"../{row.image}", "label": label, "hexcode": row.hexcode}


def _write(root: Path, name: str, objects: Iterable[dict[str, Any]], result: TaskManifests) -> None:
    """Write one manifest atomically and record its rows and distinct images (none: skip)."""
    objects = list(objects)
    if not objects:
        result.not_written[name] = "no rows: no image of the split has a label in the language"
        log.warning("%s not written: %s", name, result.not_written[name])
        return
    rows = write_jsonl(root / name, objects)
    result.written[name] = {"rows": rows, "images": len({o["image"] for o in objects})}
