"""WebDataset shards: tar files whose members are grouped by key into samples.

Shards are local paths or URLs that fsspec opens (``s3://bucket/laion/{00000..00999}.tar``,
``gs://…``, ``https://…``, ``file://…``; the protocol's fsspec package must be installed, e.g.
``s3fs``). A URL shard is streamed, member after member, never downloaded whole; globs in
URLs are expanded by the store's own listing.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import os
import re
import tarfile
from collections.abc import Iterator, Sequence
from typing import Any

from PIL import Image

from crossmodal.data.manifests import read_captions, read_field_text
from crossmodal.data.samples import PathLike, Sample, Skipped
from crossmodal.errors import InputError

log = logging.getLogger(__name__)


_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")  # image members, in order of preference
_MEMBER = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's split: key, then extension
_BRACE = re.compile(r"\{([^{}]*)\}")  # the innermost brace group
_RANGE = re.compile(r"(\d+)\.\.(\d+)")  # a numeric brace range: {000..009}
_MAX_SHARDS = 1_000_000  # a brace range larger than this is a typo


class WebDatasetSource:
    """WebDataset ``.tar`` shards: members grouped by key into samples.

    A key's image is its ``jpg`` / ``jpeg`` / ``png`` / ``webp`` member; ``txt`` is a caption,
    ``cls`` a label, and ``json`` may hold ``label`` and ``caption`` (a string or a list).
    Nothing here stops a run: an unreadable shard, a corrupt or truncated part of one, an
    image member that is not an image and a key without an image are each recorded in
    ``skipped`` and the reading goes on. An image member's pixels are decoded by whoever uses
    the sample; a member whose header is fine but whose data is corrupt fails there.
    """

    def __init__(self, paths_or_glob: PathLike | Sequence[PathLike]) -> None:
        """Expand the shard list (see :func:`expand_shards`); no shard is opened yet.

        Raises:
            InputError: A named shard does not exist, or a glob matches nothing.
        """
        specs = _shard_specs(paths_or_glob)
        self.shards = expand_shards(specs)
        self.name = specs[0] if len(specs) == 1 else f"{specs[0]} and {len(specs) - 1} more"
        self.skipped: list[Skipped] = []

    @property
    def class_names(self) -> None:
        """Unknown until every shard has been read."""
        return None

    def __iter__(self) -> Iterator[Sample]:
        """Samples shard by shard in member order; ``skipped`` restarts with each pass.

        Raises:
            InputError: After the last shard, when not one sample could be read.
        """
        self.skipped.clear()
        count = 0
        for shard in self.shards:
            for sample in self._read_shard(shard):
                count += 1
                yield sample
        if count == 0:
            first = f"; first: {self.skipped[0].source}: {self.skipped[0].reason}"
            raise InputError(
                f"{self.name}: is empty: no sample could be read from {len(self.shards)} "
                f"shard(s), {len(self.skipped)} entries skipped{first if self.skipped else ''}"
            )

    def _read_shard(self, shard: str) -> Iterator[Sample]:
        """Samples of one shard; an unreadable shard is recorded and yields nothing."""
        try:
            if is_url(shard):
                with _fsspec().open(shard, "rb") as stream:
                    counted = _Counted(stream)
                    with tarfile.open(fileobj=counted, mode="r|") as tar:  # type: ignore[call-overload]
                        yield from self._read_members(shard, tar, counted)
            else:
                with tarfile.open(shard, mode="r:") as tar:
                    yield from self._read_members(shard, tar)
        except (tarfile.TarError, OSError) as exc:  # only opening raises: members are guarded
            self._skip(shard, f"not a readable tar file ({exc}); the whole shard was skipped")

    def _read_members(
        self, shard: str, tar: tarfile.TarFile, stream: _Counted | None = None
    ) -> Iterator[Sample]:
        """Group members by key; a key cut by corruption is dropped with the rest of the shard."""
        key: str | None = None
        members: dict[str, bytes] = {}
        try:
            for info in tar:
                match = _MEMBER.match(info.name)
                if not info.isfile() or match is None:
                    continue
                if match.group(1) != key:
                    if key is not None:
                        yield from self._sample(shard, key, members)
                    key, members = match.group(1), {}
                handle = tar.extractfile(info)
                data = handle.read() if handle else b""
                if len(data) != info.size:
                    raise tarfile.ReadError(f"{info.name} cut at {len(data)} of {info.size} bytes")
                members[match.group(2).lower()] = data
            cut = _trailing_garbage(shard, tar, stream)
        except (tarfile.TarError, OSError) as exc:
            cut = f"{type(exc).__name__}: {exc}"
        if cut is None and key is not None:
            yield from self._sample(shard, key, members)
        elif cut is not None:
            where = f" from key {key!r}" if key is not None else ""
            self._skip(shard, f"truncated or corrupt ({cut}); the rest{where} was skipped")

    def _sample(self, shard: str, key: str, members: dict[str, bytes]) -> Iterator[Sample]:
        """The sample of one key (none when it has no readable image)."""
        where = f"{shard}:{key}"
        ext = next((e for e in _IMAGE_EXTS if e in members), None)
        if ext is None:
            self._skip(where, f"no image member (has: {', '.join(sorted(members)) or 'nothing'})")
            return
        try:
            image = Image.open(io.BytesIO(members[ext]))
        except Exception as exc:  # Pillow raises many types on a bad header
            self._skip(f"{where}.{ext}", f"not a readable image ({type(exc).__name__}: {exc})")
            return
        image.filename = where  # decode errors raised later name the member
        try:
            captions, label = self._metadata(where, members)
        except InputError as exc:  # e.g. a JSON caption that is a number
            self._skip(where, str(exc))
            return
        yield Sample(image=image, source=where, captions=captions, label=label)

    def _metadata(
        self, where: str, members: dict[str, bytes]
    ) -> tuple[tuple[str, ...], str | None]:
        """Captions and label from the ``txt``, ``cls`` and ``json`` members of one key."""
        captions: list[str] = []
        label: str | None = None
        if "txt" in members:
            captions.extend(read_captions(self._text(where, "txt", members), f"{where}.txt"))
        if "cls" in members:
            label = read_field_text(self._text(where, "cls", members), f"{where}.cls", "label")
        if "json" in members:
            meta = self._json(where, members)
            captions.extend(read_captions(meta.get("caption"), f"{where}.json"))
            label = read_field_text(meta.get("label"), f"{where}.json", "label") or label
        return tuple(captions), label

    def _text(self, where: str, ext: str, members: dict[str, bytes]) -> str | None:
        try:
            return members[ext].decode("utf-8")
        except UnicodeDecodeError as exc:
            self._skip(f"{where}.{ext}", f"not UTF-8 text ({exc.reason} at byte {exc.start})")
            return None

    def _json(self, where: str, members: dict[str, bytes]) -> dict[str, Any]:
        text = self._text(where, "json", members)
        try:
            meta = json.loads(text) if text is not None else {}
        except json.JSONDecodeError as exc:
            self._skip(f"{where}.json", f"not valid JSON ({exc.msg} at column {exc.colno})")
            return {}
        if not isinstance(meta, dict):
            self._skip(f"{where}.json", f"a JSON {type(meta).__name__}, not an object")
            return {}
        return meta

    def _skip(self, source: str, reason: str) -> None:
        log.warning("skipped %s: %s", source, reason)
        self.skipped.append(Skipped(source, reason))


class _Counted:
    """A read-only stream that counts the bytes read through it."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.stream.read(size)
        self.count += len(data)
        return data


def _trailing_garbage(
    shard: str, tar: tarfile.TarFile, stream: _Counted | None = None
) -> str | None:
    """Why the shard ended early, or None when only the end-of-archive zeros follow.

    :mod:`tarfile` stops without a word at a corrupt or cut header after the first member.
    A streamed (URL) shard cannot be read again: it must at least hold the two zero blocks
    of the end-of-archive marker after its last member.
    """
    if stream is not None:
        end = tar.offset + 2 * tarfile.BLOCKSIZE
        return None if stream.count >= end else f"no end-of-archive marker after byte {tar.offset}"
    size = os.path.getsize(shard)
    if tar.offset >= size:
        return f"no end-of-archive marker after byte {tar.offset}"
    with open(shard, "rb") as handle:
        handle.seek(tar.offset)
        while block := handle.read(1 << 20):
            if block.count(0) != len(block):
                return f"unreadable header at byte {tar.offset}"
    return None


def expand_shards(paths_or_glob: PathLike | Sequence[PathLike]) -> list[str]:
    """Shard paths from a path, a glob (``*.tar``), a brace list, or a sequence of those.

    Braces expand like WebDataset's: ``{000..009}`` is a zero-padded range, ``{a,b}`` a list.
    Globs are sorted; the order of the patterns themselves is kept; duplicates count once.

    Raises:
        InputError: A plain path does not exist, a glob matches nothing, or no shard is named.
    """
    shards: dict[str, None] = {}  # insertion-ordered set
    for spec in _shard_specs(paths_or_glob):
        for pattern in expand_braces(spec):
            if is_url(pattern):
                shards.update(dict.fromkeys(_expand_url(pattern)))
            elif any(c in pattern for c in "*?["):
                found = sorted(glob.glob(pattern))
                if not found:
                    raise InputError(f"{pattern}: matches no shard file")
                shards.update(dict.fromkeys(found))
            elif os.path.isfile(pattern):
                shards[pattern] = None
            else:
                raise InputError(f"{pattern}: no such shard file")
    if not shards:
        raise InputError("no shard named; pass a .tar path, a glob or a brace list")
    return list(shards)


def is_url(path: str) -> bool:
    """Whether ``path`` is a URL (``scheme://…``) rather than a local path."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path) is not None


def _fsspec() -> Any:
    try:
        import fsspec
    except ImportError as exc:
        from crossmodal.errors import BackendUnavailableError

        raise BackendUnavailableError("WebDataset shards by URL", "scale", "fsspec") from exc
    return fsspec


def _expand_url(pattern: str) -> list[str]:
    """A URL as is, or the sorted URLs its glob matches (through the store's listing).

    Raises:
        InputError: A glob matches nothing, or the store cannot be listed.
    """
    if not any(c in pattern for c in "*?["):
        return [pattern]  # read (or recorded as unreadable) when its turn comes
    fsspec = _fsspec()
    try:
        fs, _, paths = fsspec.get_fs_token_paths(pattern)
        found = sorted(paths)
    except (OSError, ValueError) as exc:
        raise InputError(f"{pattern}: cannot list the shards ({exc})") from exc
    if not found:
        raise InputError(f"{pattern}: matches no shard file")
    return [fs.unstrip_protocol(p) for p in found]


def _shard_specs(paths_or_glob: PathLike | Sequence[PathLike]) -> list[str]:
    """One path or pattern, or a sequence of them, as a list of strings."""
    if isinstance(paths_or_glob, str | os.PathLike):
        return [os.fspath(paths_or_glob)]
    return [os.fspath(p) for p in paths_or_glob]


def expand_braces(pattern: str) -> list[str]:
    """Every string a brace pattern stands for, left to right (``a{1..2}b`` → a1b, a2b)."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    body = match.group(1)
    numeric = _RANGE.fullmatch(body)
    if numeric is not None:
        first, last = numeric.groups()
        step = 1 if int(last) >= int(first) else -1
        if abs(int(last) - int(first)) >= _MAX_SHARDS:
            raise InputError(f"{pattern}: the range {{{body}}} names too many shards")
        width = len(first) if len(first) == len(last) else 0
        choices = [str(n).zfill(width) for n in range(int(first), int(last) + step, step)]
    elif "," in body:
        choices = body.split(",")
    else:  # not a brace expression: keep the braces as text
        choices = ["\0" + body + "\1"]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    out = [head + choice + rest for choice in choices for rest in expand_braces(tail)]
    return [s.replace("\0", "{").replace("\1", "}") for s in out]


# ------------------------------------------------------------------------------ dispatch
