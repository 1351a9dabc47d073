"""Build a captioned icon dataset from ``@iconify/json``: names → captions → 64 px PNGs.

    crossmodal data icons --out icon-data [--sets mdi,tabler] [--chinese]

Every usable set (:func:`~crossmodal.data.icons.collection.choose_sets`) is read as a
stream; each icon's name becomes a caption (:func:`~crossmodal.data.icons.names.caption_of`).
A name is not always a picture of its word (mdi's ``hospital`` is a plus sign), so a caption
is kept only where at least ``min_sets`` sets draw something by that name, and at most
``max_per_caption`` icons of it are kept (from different sets first): the vocabulary is
weighted by agreement, not by how many variants one set ships. Icons are rendered with
resvg onto the shared white background; an icon whose pixels equal an earlier one is a
duplicate and left out. Output::

    out/
      images/<prefix>/<name>.png   RGB, size x size
      sets/<prefix>.jsonl          the rows of one finished set (a resumed build skips it)
      manifest.jsonl               every row: image, caption (EN, ZH), name, set, license
      train.jsonl                  crossmodal train --data: image and its captions
      ATTRIBUTION.md  stats.json

The build is resumable set by set: a set's rows are written atomically once all its images
are, and a rerun with the same settings skips finished sets; the manifests, attribution and
stats are written (atomically) at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from crossmodal.atomic import atomic_write_text
from crossmodal.data.emoji.iconify import IconSet, icon_svg
from crossmodal.data.emoji.render import render_image
from crossmodal.data.emoji.sources import RawImage, default_cache_dir, fetch_package
from crossmodal.data.emoji.writers import write_jsonl
from crossmodal.data.icons.chinese import ChineseGlossary, read_cedict
from crossmodal.data.icons.collection import (
    CEDICT,
    ICONIFY_JSON,
    SetInfo,
    choose_sets,
    iter_icon_sets,
    read_collections,
)
from crossmodal.data.icons.names import caption_of
from crossmodal.errors import ConfigError, CrossmodalError, InputError

__all__ = ["IconBuildConfig", "IconBuildResult", "build_icon_dataset"]

log = logging.getLogger(__name__)

DATASET_NAME = "crossmodal-icons"  # stats.json's "dataset": marks a folder a rebuild may reuse


@dataclass(frozen=True)
class IconBuildConfig:
    """What ``crossmodal data icons`` builds, and where."""

    out_dir: Path  # the dataset folder (built in place, resumable set by set)
    cache_dir: Path | None = None  # source archive cache; None: default_cache_dir()
    sets: tuple[str, ...] = ()  # prefixes to use; () = every usable set
    size: int = 64  # side of every image in pixels
    min_sets: int = 2  # keep a caption only where at least this many sets use the name
    max_per_caption: int = 3  # keep at most this many icons of one caption
    chinese: bool = False  # add Chinese captions from CC-CEDICT where the sense is clear
    offline: bool = False  # never run npm; fail if a source is not cached
    progress: bool = False  # show a tqdm bar while rendering


@dataclass(frozen=True)
class IconBuildResult:
    """What a build wrote."""

    out_dir: Path  # the dataset folder
    rows: int  # images in the manifest
    stats: dict[str, Any]  # the content of stats.json


@dataclass(frozen=True)
class _Pick:
    prefix: str  # the set
    name: str  # the icon's name in it
    caption: str  # its English caption


def build_icon_dataset(config: IconBuildConfig) -> IconBuildResult:
    """Fetch (or reuse) ``@iconify/json``, choose icons, render the unfinished sets, write.

    Raises:
        ConfigError: Bad size, min_sets or max_per_caption.
        InputError: ``out_dir`` exists and is not an icon dataset.
        SourceFetchError: A source is not cached and cannot be fetched.
        SourceLayoutError: A source is unreadable; a set asked for is not usable.
    """
    started = time.perf_counter()
    _check(config)
    cache = config.cache_dir or default_cache_dir()
    archive = fetch_package(ICONIFY_JSON, cache, offline=config.offline)
    infos = read_collections(archive)
    prefixes = choose_sets(infos, config.sets)
    glossary = _glossary(config, cache)
    picks, counts, order = _choose_icons(archive, prefixes, config)
    out = config.out_dir
    settings = _settings(config)
    seen: dict[str, str] = {}  # pixel digest -> image of the first icon drawn so
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    by_set: dict[str, list[_Pick]] = defaultdict(list)
    for pick in picks:
        by_set[pick.prefix].append(pick)
    todo = {p for p in by_set if _finished(out, p, settings) is None}
    fresh = iter_icon_sets(archive, todo)  # in archive order, one set in memory at a time
    for prefix in (p for p in order if p in by_set):  # archive order: the same on resume
        done = _finished(out, prefix, settings)
        if done is None:
            icons = next(fresh)
            done = _render_set(out, icons, by_set[prefix], infos[prefix], config, seen)
            _write_set(out, prefix, done, settings)
        for row in done:
            if row.get("duplicate_of"):
                skipped["same pixels as an earlier icon"] += 1
            elif row.get("error"):
                skipped["cannot render"] += 1
            else:
                seen.setdefault(row["digest"], row["image"])
                rows.append(_with_chinese(row, glossary))
    _write_outputs(out, rows, infos, prefixes, glossary is not None)
    stats = {
        "dataset": DATASET_NAME,
        "images": len(rows),
        "captions": len({r["caption"][0] for r in rows}),
        "sets": len({r["set"] for r in rows}),
        "per_licence": dict(Counter(r["license"] for r in rows)),
        "names": dict(counts),
        "skipped": dict(skipped),
        "chinese_captions": sum(len(r["caption"]) > 2 for r in rows),
        "build_seconds": round(time.perf_counter() - started, 2),
        "config": settings,
    }
    atomic_write_text(out / "stats.json", json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
    return IconBuildResult(out, len(rows), stats)


def _check(config: IconBuildConfig) -> None:
    if not 8 <= config.size <= 1024:
        raise ConfigError(f"size must be 8..1024 pixels, got {config.size}")
    if config.min_sets < 1 or config.max_per_caption < 1:
        raise ConfigError("min_sets and max_per_caption must be at least 1")
    out = config.out_dir
    if out.is_file() or (
        out.is_dir() and any(out.iterdir()) and not (out / "sets").is_dir()
        and not _is_ours(out / "stats.json")
    ):  # fmt: skip
        raise InputError(f"{out}: exists and is not an icon dataset; choose an empty or new folder")


def _is_ours(stats: Path) -> bool:
    try:
        return bool(json.loads(stats.read_text("utf-8")).get("dataset") == DATASET_NAME)
    except (OSError, ValueError):
        return False


def _settings(config: IconBuildConfig) -> dict[str, Any]:
    """The settings that decide a set's rows (a finished set is reused only under them)."""
    keep = ("size", "min_sets", "max_per_caption", "sets")
    chosen = {k: v for k, v in asdict(config).items() if k in keep}
    return dict(json.loads(json.dumps(chosen)))  # as read back from a set's file


def _glossary(config: IconBuildConfig, cache: Path) -> ChineseGlossary | None:
    if not config.chinese:
        return None
    return read_cedict(fetch_package(CEDICT, cache, offline=config.offline))


def _choose_icons(
    archive: Path, prefixes: list[str], config: IconBuildConfig
) -> tuple[list[_Pick], Counter[str], list[str]]:
    """The icons to render (captions enough sets agree on, a few icons of each), counts of
    what was left out and why, and the sets in archive order."""
    counts: Counter[str] = Counter()
    by_caption: dict[str, list[_Pick]] = defaultdict(list)
    order = []
    for icons in iter_icon_sets(archive, set(prefixes)):
        order.append(icons.prefix)
        for name, icon in sorted(icons.icons.items()):
            counts["icons"] += 1
            caption = caption_of(name)
            if caption is None or icon.get("hidden"):
                counts["no caption (style words, brands, keyword lists, letters)"] += 1
                continue
            by_caption[caption].append(_Pick(icons.prefix, name, caption))
    picks = []
    for caption in sorted(by_caption):
        candidates = by_caption[caption]
        if len({p.prefix for p in candidates}) < config.min_sets:
            counts[f"caption used by fewer than {config.min_sets} sets"] += len(candidates)
            continue
        chosen = _spread(candidates, config.max_per_caption)
        counts["more icons of a caption than max_per_caption"] += len(candidates) - len(chosen)
        picks += chosen
    counts["chosen"] = len(picks)
    return picks, counts, order


def _spread(candidates: list[_Pick], n: int) -> list[_Pick]:
    """Up to ``n`` picks, one per set in prefix order first, then seconds, ..."""
    by_prefix: dict[str, list[_Pick]] = defaultdict(list)
    for pick in candidates:
        by_prefix[pick.prefix].append(pick)
    chosen: list[_Pick] = []
    depth = 0
    while len(chosen) < n and any(len(v) > depth for v in by_prefix.values()):
        for prefix in sorted(by_prefix):
            if len(by_prefix[prefix]) > depth and len(chosen) < n:
                chosen.append(by_prefix[prefix][depth])
        depth += 1
    return chosen


def _render_set(
    out: Path,
    icons: IconSet,
    picks: list[_Pick],
    info: SetInfo,
    config: IconBuildConfig,
    seen: dict[str, str],
) -> list[dict[str, Any]]:
    """Render one set's picks into ``out/images/<prefix>/``; its rows, duplicates marked."""
    rows = []
    for pick in _progress(picks, config.progress, f"rendering {info.prefix}"):
        relative = f"images/{pick.prefix}/{pick.name}.png"
        row: dict[str, Any] = {
            "image": relative, "caption": [pick.caption, f"an icon of {pick.caption}"],
            "name": pick.name, "set": pick.prefix, "license": info.license,
        }  # fmt: skip
        try:
            svg = icon_svg(icons, pick.name)
            image = render_image(RawImage(pick.name, svg, "svg"), config.size)
        except (CrossmodalError, OSError, ValueError) as exc:
            log.warning("%s:%s: skipped, cannot render (%s)", pick.prefix, pick.name, exc)
            rows.append({**row, "error": str(exc)[:200]})
            continue
        digest = hashlib.sha256(image.tobytes()).hexdigest()[:32]
        if digest in seen:
            rows.append({**row, "digest": digest, "duplicate_of": seen[digest]})
            continue
        seen[digest] = relative
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        image.save(out / relative, format="PNG")
        rows.append({**row, "digest": digest})
    log.info("%s: %d icons rendered or skipped", info.prefix, len(rows))
    return rows


def _finished(out: Path, prefix: str, settings: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The rows of a set finished under ``settings``, or None."""
    path = out / "sets" / f"{prefix}.jsonl"
    try:
        lines = path.read_text("utf-8").splitlines()
        head = json.loads(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    if head.get("settings") != settings:
        return None
    return [json.loads(line) for line in lines[1:]]


def _write_set(
    out: Path, prefix: str, rows: list[dict[str, Any]], settings: dict[str, Any]
) -> None:
    write_jsonl(out / "sets" / f"{prefix}.jsonl", [{"settings": settings}, *rows])


def _with_chinese(row: dict[str, Any], glossary: ChineseGlossary | None) -> dict[str, Any]:
    """The row without its bookkeeping, and with a Chinese caption where the glossary has one."""
    clean = {k: v for k, v in row.items() if k not in ("digest", "duplicate_of", "error")}
    zh = glossary.translate(row["caption"][0]) if glossary is not None else None
    if zh:
        clean["caption"] = [*row["caption"], zh, f"{zh}图标"]
    return clean


def _write_outputs(
    out: Path,
    rows: list[dict[str, Any]],
    infos: dict[str, SetInfo],
    prefixes: list[str],
    chinese: bool,
) -> None:
    write_jsonl(out / "manifest.jsonl", rows)
    write_jsonl(out / "train.jsonl", ({"image": r["image"], "caption": r["caption"]} for r in rows))
    used = Counter(r["set"] for r in rows)
    lines = [
        "# Attribution", "",
        f"Icons from npm `{ICONIFY_JSON.name}`, rendered to PNG with resvg (the SVGs assembled "
        "from each set's JSON, composited onto white); captions made from the icons' names.",
        "", "| set | name | author | licence | icons used |", "|---|---|---|---|---|",
    ]  # fmt: skip
    for prefix in prefixes:
        if used[prefix]:
            info = infos[prefix]
            lines.append(
                f"| `{prefix}` | {info.name} | {info.author} {info.url} | {info.license} | "
                f"{used[prefix]} |"
            )
    if chinese:
        lines += ["", f"Chinese captions: {CEDICT.credit} ({CEDICT.license})."]
    atomic_write_text(out / "ATTRIBUTION.md", "\n".join(lines) + "\n")


def _progress(items: list[Any], enabled: bool, what: str) -> Iterable[Any]:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=what, unit="icon")
