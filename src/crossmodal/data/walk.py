"""Finding the image and video files under the roots a user indexes.

:func:`walk` yields a :class:`FoundFile` for each image or video and a :class:`WalkProblem`
for each thing it could not look at (an unreadable directory, a symlink loop, a broken
symlink), so that one bad corner of a photo library never stops an index run.
:func:`content_hash` is the key incremental indexing compares once a file's size or mtime
has changed.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import logging
import os
import re
import stat
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

from PIL import Image

from crossmodal.data.files import IMAGE_SUFFIXES
from crossmodal.errors import ConfigError, InputError

__all__ = [
    "DEFAULT_EXCLUDE",
    "VIDEO_SUFFIXES",
    "FoundFile",
    "MediaKind",
    "WalkConfig",
    "WalkProblem",
    "classify",
    "content_hash",
    "default_image_extensions",
    "walk",
]

logger = logging.getLogger(__name__)

MediaKind: TypeAlias = Literal["image", "video"]
"""What a found file holds, by its suffix."""

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"})
"""Lower-case suffixes treated as videos."""

DEFAULT_EXCLUDE: tuple[str, ...] = (
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    "node_modules",
    "@eaDir",  # Synology thumbnails
    "#recycle",  # Synology recycle bin
    ".@__thumb",  # QNAP thumbnails
    ".thumbnails",
    ".Trash-*",
    ".Trashes",
    "$RECYCLE.BIN",
    "System Volume Information",
    "lost+found",
)
"""Names skipped at any depth: version control, caches, NAS thumbnails, trash folders."""

_OPTIONAL_IMAGE_SUFFIXES = frozenset({".heic", ".heif"})  # need a Pillow plugin (pillow-heif)
_HASH_CHUNK = 1 << 20  # content_hash reads 1 MiB at a time

_DirId: TypeAlias = tuple[int, int]  # (st_dev, st_ino): one directory, whatever its path


def default_image_extensions() -> frozenset[str]:
    """The image suffixes that Pillow can open in this process.

    The suffixes of :data:`crossmodal.data.files.IMAGE_SUFFIXES`, plus ``.heic`` / ``.heif``,
    kept only where Pillow has a plugin registered for them: HEIC needs ``pillow-heif`` and its
    ``register_heif_opener()`` called first, AVIF a Pillow built with libavif. A suffix that
    every file would fail to decode is better not found at all.
    """
    readable = Image.registered_extensions()
    return frozenset(s for s in IMAGE_SUFFIXES | _OPTIONAL_IMAGE_SUFFIXES if s in readable)


@dataclass(frozen=True)
class WalkConfig:
    """What :func:`walk` looks at and what it skips.

    Suffixes may be given with or without the dot and in any case; they are stored lower-case
    with a leading dot (``"JPG"`` → ``".jpg"``). ``exclude`` patterns are matched,
    case-sensitively, against the name of every file and directory below a root.
    """

    skip_hidden: bool = True  # skip files and directories whose name starts with "."
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE  # fnmatch patterns of names skipped at any depth
    follow_symlinks: bool = True  # walk symlinked directories (loop-checked), read linked files
    image_extensions: frozenset[str] = field(default_factory=default_image_extensions)  # image
    # suffixes; by default those Pillow can open, computed when the config is made
    video_extensions: frozenset[str] = VIDEO_SUFFIXES  # suffixes treated as videos
    max_file_bytes: int | None = None  # larger files are reported as problems; None: no limit

    def __post_init__(self) -> None:
        """Normalise the suffixes and check the settings.

        Raises:
            ConfigError: ``exclude`` is a bare string, a suffix is empty or in both sets, or
                ``max_file_bytes`` is negative.
        """
        if isinstance(self.exclude, str):
            raise ConfigError(
                f"exclude must be a tuple of patterns, got the string {self.exclude!r}"
            )
        images = _normalise_suffixes(self.image_extensions, "image_extensions")
        videos = _normalise_suffixes(self.video_extensions, "video_extensions")
        if images & videos:
            raise ConfigError(
                f"suffixes {sorted(images & videos)} are in both image_extensions and "
                "video_extensions; a file can be only one kind"
            )
        if self.max_file_bytes is not None and self.max_file_bytes < 0:
            raise ConfigError(f"max_file_bytes must be >= 0 or None, got {self.max_file_bytes}")
        object.__setattr__(self, "image_extensions", images)  # frozen: normalise in place
        object.__setattr__(self, "video_extensions", videos)
        object.__setattr__(self, "exclude", tuple(self.exclude))


@dataclass(frozen=True)
class FoundFile:
    """One image or video file found by :func:`walk`."""

    path: Path  # absolute, not resolved: a symlink (or a file under one) keeps its own path
    root: Path  # the root, as passed to walk() and made absolute, that it was found under
    kind: MediaKind  # by suffix
    size: int  # bytes, of the file a symlink points to
    mtime_ns: int  # modification time in nanoseconds, of the file a symlink points to


@dataclass(frozen=True)
class WalkProblem:
    """Something :func:`walk` could not look at; the walk goes on past it."""

    path: Path  # absolute, not resolved
    reason: str  # e.g. "permission denied: cannot list directory", "broken symlink: ..."


def classify(path: str | os.PathLike[str], config: WalkConfig | None = None) -> MediaKind | None:
    """``"image"`` or ``"video"`` by the file's suffix (case-insensitive), else ``None``.

    Args:
        path: A file name or path; only its suffix is read, the file is not touched.
        config: The suffix sets to use; ``None`` uses a default :class:`WalkConfig`.
    """
    config = config or WalkConfig()
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix in config.image_extensions:
        return "image"
    if suffix in config.video_extensions:
        return "video"
    return None


def content_hash(path: str | os.PathLike[str]) -> str:
    """A hex digest of the file's bytes, for telling changed files from touched ones.

    BLAKE2b with a 16-byte digest (32 hex characters) over the whole file, read in 1 MiB
    chunks: it hashes faster than most disks read, and 128 bits make accidental collisions
    negligible for deduplication (it is not meant as a security boundary). The file is opened
    non-blocking, so a FIFO is refused rather than waited on.

    Raises:
        InputError: The file cannot be opened or read, or is not a regular file.
    """
    name = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    digest = hashlib.blake2b(digest_size=16)
    try:
        fd = os.open(path, flags)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InputError(f"{name}: cannot hash file (not a regular file)")
            while chunk := os.read(fd, _HASH_CHUNK):
                digest.update(chunk)
        finally:
            os.close(fd)
    except OSError as exc:
        raise InputError(f"{name}: cannot hash file ({_os_reason(exc)})") from None
    return digest.hexdigest()


def walk(
    roots: Sequence[str | os.PathLike[str]], config: WalkConfig | None = None
) -> Iterator[FoundFile | WalkProblem]:
    """The image and video files under ``roots``, and what could not be looked at.

    Each root is a directory, walked recursively, or a single file. Within a directory the
    files come in sorted name order, then its subdirectories, each walked the same way, so
    the order is the same on every run. Hidden and excluded names are skipped at any depth
    (a root itself is never skipped: the user named it). Files whose suffix is neither an
    image nor a video are ignored in silence, except a root named directly, which is reported.

    Symlinks (with ``config.follow_symlinks``): a symlinked file is found under the link's own
    path, with the size and mtime of its target; a hard link or a symlink to a file found
    elsewhere is found once per path, and the indexer deduplicates by :func:`content_hash`.
    A directory, however reached, is listed at most once per call (tracked by ``st_dev`` and
    ``st_ino``): every root's real tree is walked first and symlinked directories after, so a
    directory reachable both ways is found under its real path. A symlink back to one of its
    own ancestors is reported as a loop; one to a directory already walked elsewhere, or a
    root inside another root, is skipped (logged at debug level). The walk always ends.

    Args:
        roots: Directories or files to walk, in order. Relative paths are made absolute with
            :func:`os.path.abspath` (lexically; symlinks are not resolved).
        config: What to look at; ``None`` uses a default :class:`WalkConfig`.

    Returns:
        An iterator of :class:`FoundFile` and :class:`WalkProblem`, in walk order.

    Raises:
        InputError: A root does not exist (checked for all roots when ``walk`` is called,
            before anything is yielded), or ``roots`` is a single path rather than a list.
    """
    if isinstance(roots, str | os.PathLike):
        raise InputError(f"walk() takes a list of roots, got the single path {roots!r}")
    config = config or WalkConfig()
    absolute = [_check_root(root) for root in roots]
    return _Walker(config).run(absolute)


@dataclass(frozen=True)
class _Directory:
    """A directory waiting to be listed."""

    path: Path  # where it is listed: a symlink's own path for a linked directory
    root: Path  # the root it belongs to
    chain: tuple[_DirId, ...]  # ids of the directories above it, outermost first


class _Walker:
    """The state of one :func:`walk` call: the directories listed so far, the links to follow."""

    def __init__(self, config: WalkConfig) -> None:
        self.config = config
        self.listed: dict[_DirId, Path] = {}  # every directory listed → the path it was listed at
        self.links: deque[_Directory] = deque()  # symlinked directories, walked after real trees
        patterns = [fnmatch.translate(p) for p in config.exclude]
        self.excluded = re.compile("|".join(patterns)) if patterns else None

    def run(self, roots: Iterable[Path]) -> Iterator[FoundFile | WalkProblem]:
        """Walk every root's real tree, then the symlinked directories found on the way."""
        for root in roots:
            yield from self._walk_root(root)
        while self.links:
            yield from self._walk_link(self.links.popleft())

    def _walk_root(self, root: Path) -> Iterator[FoundFile | WalkProblem]:
        try:
            info = os.stat(root)
        except OSError as exc:
            yield WalkProblem(root, f"cannot look at root ({_os_reason(exc)})")
            return
        if not stat.S_ISDIR(info.st_mode):
            kind = classify(root, self.config)
            if kind is None:
                yield WalkProblem(root, "not an image or video file (unknown suffix)")
            else:
                yield self._file(root, root, info, kind)
            return
        root_id = (info.st_dev, info.st_ino)
        if root_id in self.listed:
            logger.debug("%s: skipped, already walked as %s", root, self.listed[root_id])
            return
        yield from self._walk_tree(_Directory(root, root, ()), root_id)

    def _walk_link(self, link: _Directory) -> Iterator[FoundFile | WalkProblem]:
        try:
            info = os.stat(link.path)
        except OSError as exc:  # changed since it was seen
            yield WalkProblem(link.path, f"cannot follow symlink ({_os_reason(exc)})")
            return
        target = (info.st_dev, info.st_ino)
        if target in link.chain:
            yield WalkProblem(
                link.path, f"symlink loop: {link.path} points back to {self.listed[target]}"
            )
        elif target in self.listed:
            logger.debug("%s: skipped, the same directory as %s", link.path, self.listed[target])
        else:
            yield from self._walk_tree(link, target)

    def _walk_tree(self, top: _Directory, top_id: _DirId) -> Iterator[FoundFile | WalkProblem]:
        """Depth first from ``top``, which has not been listed yet; links are queued."""
        self.listed[top_id] = top.path
        stack = [(top.path, (*top.chain, top_id))]
        while stack:
            directory, chain = stack.pop()
            entries = _list_directory(directory)
            if isinstance(entries, WalkProblem):
                yield entries
                continue
            subdirectories: list[tuple[Path, tuple[_DirId, ...]]] = []
            for entry in entries:
                if self._skipped(entry.name):
                    continue
                if entry.is_symlink():
                    yield from self._symlink(_Directory(Path(entry.path), top.root, chain))
                elif entry.is_dir(follow_symlinks=False):
                    seen = self._new_directory(entry, chain)
                    if isinstance(seen, WalkProblem):
                        yield seen
                    elif seen is not None:
                        subdirectories.append((Path(entry.path), (*chain, seen)))
                else:  # a file, by far the most common case: classify before any system call
                    kind = classify(entry.name, self.config)
                    if kind is not None:
                        yield self._stat_file(entry, top.root, kind)
            stack.extend(reversed(subdirectories))

    def _new_directory(
        self, entry: os.DirEntry[str], chain: tuple[_DirId, ...]
    ) -> _DirId | WalkProblem | None:
        """The id of a real subdirectory to walk, a loop (bind mount) problem, or None: seen."""
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError as exc:
            return WalkProblem(Path(entry.path), f"cannot look at directory ({_os_reason(exc)})")
        dir_id = (info.st_dev, info.st_ino)
        if dir_id in chain:
            return WalkProblem(
                Path(entry.path),
                f"directory loop: {entry.path} is the same directory as its ancestor "
                f"{self.listed[dir_id]}",
            )
        if dir_id in self.listed:
            logger.debug("%s: skipped, the same directory as %s", entry.path, self.listed[dir_id])
            return None
        self.listed[dir_id] = Path(entry.path)
        return dir_id

    def _symlink(self, link: _Directory) -> Iterator[FoundFile | WalkProblem]:
        """A symlink found in a directory: queue a directory, check a file, report a bad one."""
        path = link.path
        if not self.config.follow_symlinks:
            logger.debug("%s: skipped, a symlink (follow_symlinks is off)", path)
            return
        try:
            info = os.stat(path)
        except FileNotFoundError:
            yield WalkProblem(path, f"broken symlink: {path} points to {_link_target(path)}")
            return
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                yield WalkProblem(path, f"symlink loop: {path} never reaches a file")
            else:
                yield WalkProblem(path, f"cannot follow symlink ({_os_reason(exc)})")
            return
        if stat.S_ISDIR(info.st_mode):
            self.links.append(link)
            return
        kind = classify(path, self.config)
        if kind is not None:
            yield self._file(path, link.root, info, kind)

    def _stat_file(
        self, entry: os.DirEntry[str], root: Path, kind: MediaKind
    ) -> FoundFile | WalkProblem:
        try:
            info = entry.stat()
        except OSError as exc:  # deleted or changed since it was listed
            return WalkProblem(Path(entry.path), f"cannot look at file ({_os_reason(exc)})")
        return self._file(Path(entry.path), root, info, kind)

    def _file(
        self, path: Path, root: Path, info: os.stat_result, kind: MediaKind
    ) -> FoundFile | WalkProblem:
        """A found image or video, or why it cannot be used."""
        if not stat.S_ISREG(info.st_mode):
            return WalkProblem(path, "not a regular file (a FIFO, socket or device)")
        limit = self.config.max_file_bytes
        if limit is not None and info.st_size > limit:
            return WalkProblem(
                path, f"too large: {info.st_size} bytes exceeds max_file_bytes={limit}"
            )
        if not os.access(path, os.R_OK):
            return WalkProblem(path, "permission denied: cannot read file")
        return FoundFile(path, root, kind, info.st_size, info.st_mtime_ns)

    def _skipped(self, name: str) -> bool:
        if self.config.skip_hidden and name.startswith("."):
            return True
        return self.excluded is not None and self.excluded.match(name) is not None


def _check_root(root: str | os.PathLike[str]) -> Path:
    """``root`` made absolute (not resolved); a missing one is an error, not a problem."""
    path = Path(os.path.abspath(root))
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        broken = " (a broken symlink)" if os.path.islink(path) else ""
        raise InputError(
            f"{os.fspath(root)}: no such file or directory{broken}; check the path to index"
        ) from None
    except OSError:
        pass  # exists but cannot be looked at: reported as a problem by the walk
    return path


def _list_directory(directory: Path) -> list[os.DirEntry[str]] | WalkProblem:
    """The entries of ``directory`` sorted by name, or why they cannot be listed."""
    try:
        with os.scandir(directory) as scan:
            entries = list(scan)
    except PermissionError:
        return WalkProblem(directory, "permission denied: cannot list directory")
    except OSError as exc:
        return WalkProblem(directory, f"cannot list directory ({_os_reason(exc)})")
    entries.sort(key=lambda entry: entry.name)
    return entries


def _link_target(path: Path) -> str:
    """What a symlink points to, for a message."""
    try:
        return repr(os.readlink(path))
    except OSError:
        return "a missing target"


def _os_reason(exc: OSError) -> str:
    """A short reason from an OSError: "permission denied", "no such file", ..."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    return (exc.strerror or type(exc).__name__).lower()


def _normalise_suffixes(suffixes: Iterable[str], name: str) -> frozenset[str]:
    """Lower-case suffixes with a leading dot."""
    if isinstance(suffixes, str):
        raise ConfigError(f"{name} must be a set of suffixes, got the string {suffixes!r}")
    out = set()
    for suffix in suffixes:
        bare = suffix.lower().lstrip(".")
        if not bare:
            raise ConfigError(f"{name} holds an empty suffix {suffix!r}")
        out.add("." + bare)
    return frozenset(out)
