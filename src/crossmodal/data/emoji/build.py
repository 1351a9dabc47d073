"""Build the bilingual emoji image-text dataset: fetch, join images to labels, render, write.

Images of each style are joined to Emojibase's English and Chinese labels on the normalised
hexcode (:func:`~crossmodal.data.emoji.labels.normalise_hexcode`). Every image is composited
onto :data:`~crossmodal.data.images.BACKGROUND` by :func:`~crossmodal.data.images.load_image`,
as training, evaluation and search do, and saved as an RGB PNG of ``size`` × ``size`` pixels.

The dataset is written into a hidden folder beside ``out_dir`` and renamed into place at the
end, so a failed or killed build leaves the previous dataset as it was::

    out_dir/
      images/<style>/<hexcode>.png     RGB, size × size, transparency on BACKGROUND
      manifest.jsonl                   one ManifestRow per (style, emoji) image
      shards/<split>-000000.tar        WebDataset: key.png, key.json (the row), key.txt
      train.csv, train_en.csv          OpenCLIP CSV (tab, filepath/title): (image, caption) rows
      train.jsonl                      crossmodal train --data: train image, all EN+ZH captions
      eval/<split>.<lang>.retrieval.jsonl   crossmodal eval retrieval: image, [label in <lang>]
      eval/<split>.<lang>.group.jsonl       crossmodal eval zeroshot: image, group name
      eval/<split>.<lang>.subgroup.jsonl    crossmodal eval zeroshot: image, subgroup name
      ATTRIBUTION.md  stats.json

``<split>`` is ``test`` or ``test-hard`` and ``<lang>`` is ``en`` or ``zh``; image paths in
every manifest are relative to its own folder. :mod:`~crossmodal.data.emoji.tasks` describes
these task manifests, and how retrieval treats emoji drawn identically. ``stats.json`` lists
the manifests written (``manifests``) and any left out with the reason
(``manifests_not_written``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from crossmodal.data.emoji.iconify import read_emoji_names, read_iconify_emoji
from crossmodal.data.emoji.labels import (
    Concept,
    EmojibaseData,
    captions_en,
    captions_zh,
    generic_tags,
    join_labels,
    normalise_hexcode,
    read_emojibase,
)
from crossmodal.data.emoji.render import render_image
from crossmodal.data.emoji.sources import (
    HELD_OUT_PACKAGES,
    SOURCE_PACKAGES,
    STYLES,
    RawImage,
    SourceImages,
    default_cache_dir,
    fetch_package,
    read_datasource_images,
    read_openmoji_svgs,
)
from crossmodal.data.emoji.tasks import write_task_manifests
from crossmodal.data.emoji.writers import (
    DATASET_NAME,
    SPLITS,
    ManifestRow,
    attribution_text,
    check_replaceable,
    folder_bytes,
    staging,
    write_csv,
    write_jsonl,
    write_shards,
)
from crossmodal.data.images import BACKGROUND
from crossmodal.errors import ConfigError, CrossmodalError

__all__ = ["BuildResult", "EmojiBuildConfig", "build_emoji_dataset", "split_of"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmojiBuildConfig:
    """What ``crossmodal data emoji`` builds, and where."""

    out_dir: Path  # the dataset folder; replaced as a whole when the build succeeds
    cache_dir: Path | None = None  # where source archives are cached; None: default_cache_dir()
    styles: tuple[str, ...] = tuple(STYLES)  # image styles to include, names from STYLES
    size: int = 64  # side of every output image in pixels (the npm PNGs are 64 px)
    limit: int | None = None  # keep only the first N emoji in Emojibase order (quick runs)
    include_skin_tones: bool = False  # also the skin-tone variants of people emoji
    max_tag_emoji: int | None = 10  # a tag carried by more emoji is no caption; None: no limit
    require_all_styles: bool = True  # keep only emoji every selected complete style draws
    val_style: str | None = None  # a training style whose images form the val split instead
    shard_size: int = 1000  # samples per WebDataset shard
    seed: int = 0  # shard order and the caption each shard sample carries
    offline: bool = False  # never run npm or pip; fail if a source is not cached
    progress: bool = False  # show a tqdm bar while rendering


@dataclass(frozen=True)
class BuildResult:
    """What a build wrote."""

    out_dir: Path  # the dataset folder
    rows: int  # images in the manifest
    stats: dict[str, Any]  # the content of stats.json
    manifests: tuple[Path, ...] = ()  # train.jsonl and the eval/ manifests written, in out_dir


def build_emoji_dataset(config: EmojiBuildConfig) -> BuildResult:
    """Fetch (or reuse) the sources, join, render and write the dataset into ``out_dir``.

    Raises:
        ConfigError: An unknown style or a bad size, limit or shard size.
        InputError: ``out_dir`` exists and is not an emoji dataset (nothing is replaced).
        SourceFetchError: A source is not cached and cannot be fetched.
        SourceLayoutError: A source archive is unreadable or laid out differently.
        BackendUnavailableError: An OpenMoji style without ``resvg-py`` installed.
    """
    started = time.perf_counter()
    _check_config(config)
    check_replaceable(config.out_dir)
    emojibase, images, versions = _load_sources(config)
    concepts, label_counts = join_labels(emojibase, config.include_skin_tones)
    variants = {normalise_hexcode(e.hexcode) for e in emojibase.labels["en"] if e.base}
    matched, join_stats = _match_images(images, concepts, variants)
    kept, in_all = _select_concepts(matched, concepts, config)
    generic = generic_tags(concepts.values(), config.max_tag_emoji)
    label_counts.update({f"generic_tags_not_captions_{k}": len(v) for k, v in generic.items()})
    with staging(config.out_dir) as tmp:
        rows, failures = _write_images(tmp, kept, matched, generic, config)
        rows = _mark_identical(rows, tmp)
        write_jsonl(tmp / "manifest.jsonl", (row.to_json() for row in rows))
        shards = write_shards(tmp / "shards", rows, shard_size=config.shard_size, seed=config.seed)
        csv_rows = write_csv(tmp, rows, config.out_dir.resolve())
        tasks = write_task_manifests(tmp, rows, emojibase.group_names)
        attribution = attribution_text(versions, config.styles, config.size)
        (tmp / "ATTRIBUTION.md").write_text(attribution, encoding="utf-8")
        stats = _stats(rows, config, versions, label_counts, join_stats, failures)
        stats.update(concepts_in_all_styles=in_all, concepts_kept=len(kept))
        stats.update(shards=shards, csv_rows=csv_rows)
        stats.update(manifests=tasks.written, manifests_not_written=tasks.not_written)
        stats["bytes"] = folder_bytes(tmp)
        stats["build_seconds"] = round(time.perf_counter() - started, 2)
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
    log.info("wrote %d images to %s in %.1fs", len(rows), config.out_dir, stats["build_seconds"])
    manifests = tuple(config.out_dir / name for name in tasks.written)
    return BuildResult(config.out_dir, len(rows), stats, manifests)


def _check_config(config: EmojiBuildConfig) -> None:
    """Raise :class:`ConfigError` for settings that cannot work."""
    unknown = [s for s in config.styles if s not in STYLES]
    if unknown or not config.styles:
        raise ConfigError(f"unknown or no styles {unknown}; choose from {', '.join(STYLES)}")
    trained = [s for s in config.styles if split_of(s, config) == "train"]
    if any(STYLES[s].package in HELD_OUT_PACKAGES for s in trained):
        raise ConfigError(f"OpenMoji is the held-out style and never a training style: {trained}")
    if config.val_style is not None and (
        config.val_style not in config.styles or STYLES[config.val_style].split != "train"
    ):
        raise ConfigError(
            f"val_style {config.val_style!r} must be one of the selected training styles: "
            + ", ".join(s for s in config.styles if STYLES[s].split == "train")
        )
    if not 8 <= config.size <= 1024:
        raise ConfigError(f"size must be 8..1024 pixels, got {config.size}")
    if config.limit is not None and config.limit <= 0:
        raise ConfigError(f"limit must be a positive number of emoji, got {config.limit}")
    if config.max_tag_emoji is not None and config.max_tag_emoji <= 0:
        raise ConfigError(f"max_tag_emoji must be positive or None, got {config.max_tag_emoji}")
    if config.shard_size <= 0:
        raise ConfigError(f"shard_size must be positive, got {config.shard_size}")


def _load_sources(
    config: EmojiBuildConfig,
) -> tuple[EmojibaseData, dict[str, SourceImages], dict[str, str]]:
    """Emojibase, the images of each style, and the version of every package read."""
    cache = config.cache_dir or default_cache_dir()
    keys = ["emojibase", *dict.fromkeys(STYLES[s].package for s in config.styles)]
    archives = {k: fetch_package(SOURCE_PACKAGES[k], cache, offline=config.offline) for k in keys}
    emojibase = read_emojibase(archives["emojibase"])
    by_package: dict[str, SourceImages] = {}
    names = None
    for key in keys[1:]:
        spec = next(STYLES[s] for s in config.styles if STYLES[s].package == key)
        path = archives[key]
        log.info("reading %s", path.name)
        if spec.iconify:
            if names is None:
                base = [(e.hexcode, e.label) for e in emojibase.labels["en"] if e.base is None]
                names = read_emoji_names(archives["emojibase"], base)
            by_package[key] = read_iconify_emoji(path, names, SOURCE_PACKAGES[key].license)
        elif spec.image_set:
            by_package[key] = read_datasource_images(path, spec.image_set)
        else:
            by_package[key] = read_openmoji_svgs(path)
    versions = {"emojibase": emojibase.version}
    versions.update({k: v.version for k, v in by_package.items()})
    return emojibase, {s: by_package[STYLES[s].package] for s in config.styles}, versions


def _match_images(
    images: dict[str, SourceImages], concepts: dict[str, Concept], variants: set[str]
) -> tuple[dict[str, dict[str, RawImage]], dict[str, dict[str, Any]]]:
    """Each style's images by concept key, and per style what did not join and why.

    ``variants`` are the keys of Emojibase's skin-tone variants, counted apart when left out.
    """
    matched: dict[str, dict[str, RawImage]] = {}
    stats: dict[str, dict[str, Any]] = {}
    for style, source in images.items():
        found: dict[str, RawImage] = {}
        counts: Counter[str] = Counter()
        unjoined: list[str] = []
        for raw in source.images:
            key = normalise_hexcode(raw.hexcode)
            if key in concepts:
                counts["duplicate" if key in found else "joined"] += 1
                found.setdefault(key, raw)
            elif key in variants:
                counts["skin_tone_variant_skipped"] += 1
            else:
                counts["not_in_emojibase"] += 1
                unjoined.append(raw.hexcode)
        matched[style] = found
        missing = sorted(concepts[k].hexcode for k in concepts.keys() - found.keys())
        stats[style] = {
            "images_in_package": len(source.images), **counts, "archive_skipped": source.skipped,
            "not_in_emojibase_examples": unjoined[:20], "emojibase_missing": missing,
        }  # fmt: skip
        log.info("%s: %d of %d images joined", style, counts["joined"], len(source.images))
    return matched, stats


def _select_concepts(
    matched: dict[str, dict[str, RawImage]], concepts: dict[str, Concept], config: EmojiBuildConfig
) -> tuple[list[Concept], int]:
    """The concepts to write, in Emojibase order, and how many every style draws."""
    keys = [set(found) for found in matched.values()]
    complete = [set(found) for s, found in matched.items() if STYLES[s].complete] or keys
    in_all = set.intersection(*complete)
    wanted = in_all if config.require_all_styles else set.union(*keys)
    kept = sorted((concepts[k] for k in wanted), key=lambda c: (c.order, c.key))
    if config.limit is not None:
        kept = kept[: config.limit]
    return kept, len(in_all)


def _write_images(
    root: Path,
    kept: list[Concept],
    matched: dict[str, dict[str, RawImage]],
    generic: dict[str, frozenset[str]],
    cfg: EmojiBuildConfig,
) -> tuple[list[ManifestRow], dict[str, int]]:
    """Render and save every (style, concept) image; the manifest rows, and failures per style."""
    jobs = [(s, c) for s in _ordered(cfg) for c in kept if c.key in matched[s]]
    failures: Counter[str] = Counter()
    rows = []
    for style, concept in _progress(jobs, cfg.progress, "rendering emoji"):
        spec = STYLES[style]
        relative = f"images/{style}/{concept.hexcode.lower()}.png"
        try:
            image = render_image(matched[style][concept.key], cfg.size, outline=spec.outline)
        except (CrossmodalError, OSError, ValueError) as exc:
            log.warning("%s %s: skipped, cannot render (%s)", style, concept.hexcode, exc)
            failures[style] += 1
            continue
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / relative, format="PNG")
        rows.append(_row(concept, style, split_of(style, cfg), relative, generic))
    return rows, dict(failures)


def _mark_identical(rows: list[ManifestRow], root: Path) -> list[ManifestRow]:
    """Fill ``identical_to``: the other emoji whose image in the same style has equal pixels.

    Some designs draw several emoji alike (OpenMoji's black flags are all an empty frame,
    Twemoji draws every family alike); evaluation should not count such a pair as an error.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(rows):
        with Image.open(root / row.image) as image:
            digest = hashlib.sha256(image.tobytes()).hexdigest()
        groups.setdefault((row.style, digest), []).append(i)
    marked = list(rows)
    for members in groups.values():
        for i in members if len(members) > 1 else []:
            others = [rows[j].hexcode for j in members if j != i]
            marked[i] = dataclasses.replace(rows[i], identical_to=others)
    return marked


def split_of(style: str, config: EmojiBuildConfig) -> str:
    """The split of ``style``'s images: its own, or val for the held-out training style."""
    return "val" if style == config.val_style else STYLES[style].split


def _row(
    concept: Concept, style: str, split: str, image: str, generic: dict[str, frozenset[str]]
) -> ManifestRow:
    """The manifest row of one image."""
    return ManifestRow(
        key=f"{style}-{concept.hexcode.lower()}",
        image=image, hexcode=concept.hexcode, emoji=concept.emoji,
        label_en=concept.label_en, label_zh=concept.label_zh,
        tags_en=list(concept.tags_en), tags_zh=list(concept.tags_zh),
        group=concept.group, subgroup=concept.subgroup, style=style, split=split,
        captions_en=captions_en(concept, generic["en"]),
        captions_zh=captions_zh(concept, generic["zh"]),
        license=SOURCE_PACKAGES[STYLES[style].package].license,
    )  # fmt: skip


def _ordered(config: EmojiBuildConfig) -> list[str]:
    """Styles by split (train, val, test, test-hard), then in STYLES order."""
    names = list(STYLES)
    return sorted(
        dict.fromkeys(config.styles),
        key=lambda s: (SPLITS.index(split_of(s, config)), names.index(s)),
    )


def _progress(items: list[Any], enabled: bool, what: str) -> Iterable[Any]:
    """``items``, wrapped in a tqdm bar when ``enabled``."""
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=what, unit="img")


def _shared_captions(rows: list[ManifestRow]) -> dict[str, float]:
    """Per language, the share of an emoji's captions that other emoji carry too."""
    shares = {}
    for lang in ("en", "zh"):
        owners: dict[str, set[str]] = {}
        for row in rows:
            for caption in row.captions_en if lang == "en" else row.captions_zh:
                owners.setdefault(caption, set()).add(row.hexcode)
        pairs = [len(emoji) for emoji in owners.values() for _ in emoji]  # (caption, emoji)
        shares[lang] = round(sum(n > 1 for n in pairs) / max(1, len(pairs)), 4)
    return shares


def _stats(
    rows: list[ManifestRow],
    cfg: EmojiBuildConfig,
    versions: dict[str, str],
    label_counts: dict[str, int],
    join_stats: dict[str, dict[str, Any]],
    failures: dict[str, int],
) -> dict[str, Any]:
    """The content of stats.json, less what the writers add."""
    per_split_group: dict[str, Counter[str]] = {}
    for row in rows:
        per_split_group.setdefault(row.split, Counter())[row.group] += 1
    return {
        "dataset": DATASET_NAME,
        "format_version": 1,
        "image_size": cfg.size,
        "background": list(BACKGROUND),
        "sources": {k: {"package": SOURCE_PACKAGES[k].name, "version": v,
                        "license": SOURCE_PACKAGES[k].license} for k, v in versions.items()},
        "images": len(rows),
        "per_style": dict(Counter(r.style for r in rows)),
        "per_split": dict(Counter(r.split for r in rows)),
        "per_split_group": {s: dict(c) for s, c in per_split_group.items()},
        "captions": {"en": sum(len(r.captions_en) for r in rows),
                     "zh": sum(len(r.captions_zh) for r in rows),
                     "shared_by_several_emoji": _shared_captions(rows)},
        "labels": label_counts,
        "join": join_stats,
        "render_failures": failures,
        "identical_images": dict(Counter(r.style for r in rows if r.identical_to)),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
    }  # fmt: skip
