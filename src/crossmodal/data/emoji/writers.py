"""The dataset's files: manifest rows, WebDataset shards, OpenCLIP CSVs, attribution.

:func:`staging` gives a hidden folder beside the dataset to write into and renames it into
place only when everything was written, so a failed or killed build never leaves half a
dataset, and the previous one stays as it was until the last moment.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import random
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from crossmodal.atomic import atomic_write
from crossmodal.data.emoji.sources import SOURCE_PACKAGES, STYLES
from crossmodal.data.images import BACKGROUND
from crossmodal.errors import InputError

__all__ = [
    "DATASET_NAME",
    "SPLITS",
    "ManifestRow",
    "attribution_text",
    "check_replaceable",
    "folder_bytes",
    "staging",
    "write_csv",
    "write_jsonl",
    "write_shards",
]

log = logging.getLogger(__name__)

DATASET_NAME = "crossmodal-emoji"
"""The ``dataset`` field of ``stats.json``; marks a folder that a rebuild may replace."""

SPLITS = ("train", "val", "test", "test-hard")
"""The splits, in manifest order (val: a training style held out for model selection)."""

_CSV_COLUMNS = ("filepath", "title", "lang", "hexcode", "style")  # OpenCLIP reads the first 2


@dataclass(frozen=True)
class ManifestRow:
    """One line of ``manifest.jsonl``: one image of one emoji in one style."""

    key: str  # WebDataset sample key: "<style>-<hexcode>"
    image: str  # path of the PNG relative to the dataset folder
    hexcode: str  # Emojibase's hexcode
    emoji: str  # the emoji character(s)
    label_en: str  # English label
    label_zh: str  # Chinese label ("" if none)
    tags_en: list[str]  # English tags
    tags_zh: list[str]  # Chinese tags
    group: str  # group key
    subgroup: str  # subgroup key
    style: str  # a name of STYLES: twemoji, noto, fxemoji, openmoji, ...
    split: str  # train, val, test or test-hard
    captions_en: list[str]  # English captions from the label, templates and tags
    captions_zh: list[str]  # Chinese captions from the label, templates and tags
    license: str  # SPDX id of the image's licence
    identical_to: list[str] = field(default_factory=list)  # other emoji drawn pixel-identically

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object."""
        return asdict(self)


def write_jsonl(path: Path, objects: Iterable[dict[str, Any]]) -> int:
    """One JSON object a line, UTF-8, written atomically (missing folders made); returns lines.

    Written through :func:`crossmodal.atomic.atomic_write`, so a reader of an existing file
    sees the old content or the new, never half a file.
    """
    count = 0

    def write(f: BinaryIO) -> None:
        nonlocal count
        for obj in objects:
            f.write((json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8"))
            count += 1

    atomic_write(path, write)
    return count


def write_shards(
    folder: Path, rows: list[ManifestRow], *, shard_size: int, seed: int
) -> dict[str, list[str]]:
    """WebDataset shards of ``shard_size`` samples per split, in seeded order; names per split.

    A sample is ``key.png``, ``key.json`` (its manifest row) and ``key.txt`` (one caption,
    drawn with ``seed`` from both languages). Shards of equal rows are byte-equal.
    """
    folder.mkdir()
    names: dict[str, list[str]] = {}
    for split in SPLITS:
        samples = [r for r in rows if r.split == split]
        random.Random(f"{seed}-{split}").shuffle(samples)
        for start in range(0, len(samples), shard_size):
            name = f"{split}-{start // shard_size:06d}.tar"
            with tarfile.open(folder / name, "w", format=tarfile.PAX_FORMAT) as tar:
                for row in samples[start : start + shard_size]:
                    _add_sample(tar, row, folder.parent, seed)
            names.setdefault(split, []).append(name)
    return names


def _add_sample(tar: tarfile.TarFile, row: ManifestRow, root: Path, seed: int) -> None:
    """Add ``key.png``, ``key.json`` (the row) and ``key.txt`` (one seeded caption)."""
    caption = random.Random(f"{seed}-{row.key}").choice(row.captions_en + row.captions_zh)
    _add_member(tar, f"{row.key}.png", (root / row.image).read_bytes())
    _add_member(tar, f"{row.key}.json", json.dumps(row.to_json(), ensure_ascii=False).encode())
    _add_member(tar, f"{row.key}.txt", caption.encode())


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a file with fixed metadata, so equal inputs give byte-equal shards."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_csv(root: Path, rows: list[ManifestRow], final: Path) -> int:
    """OpenCLIP CSVs of the train split; returns the rows of ``train.csv``.

    ``train.csv`` has a row per (image, caption) in both languages, ``train_en.csv`` the
    English ones only. Tab-separated with ``filepath`` and ``title`` columns (open_clip_train's
    defaults) and the absolute image path under ``final``, the dataset's published folder.
    """
    count = 0
    for name, languages in (("train.csv", ("en", "zh")), ("train_en.csv", ("en",))):
        with (root / name).open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(_CSV_COLUMNS)
            for row in (r for r in rows if r.split == "train"):
                for lang in languages:
                    for caption in row.captions_en if lang == "en" else row.captions_zh:
                        writer.writerow([final / row.image, caption, lang, row.hexcode, row.style])
                        count += name == "train.csv"
    return count


def attribution_text(versions: dict[str, str], styles: Iterable[str], size: int) -> str:
    """ATTRIBUTION.md: each source package, its version and licence, and what was changed.

    ``versions`` maps package keys of :data:`SOURCE_PACKAGES` to the versions read.
    """
    styles = list(styles)
    lines = ["# Attribution", "", "This dataset is built from these packages:", ""]
    for key, package in SOURCE_PACKAGES.items():
        used_by = [s for s in styles if STYLES[s].package == key]
        if key == "emojibase":
            used_by = ["labels, tags and captions in English and Chinese"]
        if used_by:
            lines.append(
                f"- **{package.title}**: {package.registry} package `{package.name}` "
                f"version {versions.get(key, '?')}; licence {package.license}. "
                f"{package.credit.rstrip('.')}. Used for: {', '.join(used_by)}."
            )
    lines += [
        "",
        f"Changes: every image was rendered or resized to {size}x{size} pixels and its "
        f"transparency composited onto RGB {BACKGROUND}. SVGs were rasterised with resvg; "
        "Iconify icons were assembled into standalone SVGs from their set's JSON (aliases "
        "resolved with their flips and rotations); the `openmoji-black` images keep only "
        "OpenMoji's `line` and `line-supplement` layers, as OpenMoji's black set does. Images "
        "derived from OpenMoji are shared under CC BY-SA 4.0.",
        "",
    ]
    return "\n".join(lines)


def folder_bytes(root: Path) -> int:
    """Total size of the files under ``root``."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def check_replaceable(out: Path) -> None:
    """Refuse to replace anything but an empty folder or an earlier emoji dataset.

    Raises:
        InputError: ``out`` is a file, or a non-empty folder without our ``stats.json``.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"{out} exists and is not a folder; choose another --out")
    if not any(out.iterdir()):
        return
    try:
        marker = json.loads((out / "stats.json").read_text(encoding="utf-8")).get("dataset")
    except (OSError, ValueError, AttributeError):
        marker = None
    if marker != DATASET_NAME:
        raise InputError(
            f"{out} is not empty and holds no emoji dataset (stats.json) to replace; "
            "choose a new or empty folder"
        )


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A hidden folder beside ``out`` to write into; renamed to ``out`` if the block succeeds.

    If the block raises, the folder is removed and ``out`` is untouched. Folders left by a
    killed build (their process is gone) are removed first.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out)
    pid = os.getpid()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{pid}-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        yield tmp
        old = out.parent / f".{out.name}.old-{pid}-{tmp.name.rsplit('-', 1)[-1]}"
        if out.exists():
            os.rename(out, old)
        try:
            os.rename(tmp, out)
        except OSError:
            if old.exists():
                os.rename(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_leftovers(out: Path) -> None:
    """Remove staging folders of ``out`` whose build process no longer runs."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(partial|old)-(\d+)-")
    for path in out.parent.iterdir():
        match = pattern.match(path.name)
        if match and not _is_running(int(match.group(2))):
            log.info("removing %s, left by an interrupted build", path)
            shutil.rmtree(path, ignore_errors=True)


def _is_running(pid: int) -> bool:
    """Whether a process with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True
