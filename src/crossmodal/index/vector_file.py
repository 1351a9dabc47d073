"""The saved vector index file: sections, then a JSON footer, its length and a magic tag.

The sections are the FAISS index through ``faiss.write_index``, or raw little-endian arrays
for ``exact`` (never pickle); the footer holds the format, kind, dim, count, tombstones, the
caller's ``generation``, the options and each section's offset, size and CRC-32. Reading
checks every section against its checksum before using it, and a truncated or corrupt file
raises :class:`InputError` naming the file. See :mod:`crossmodal.index.vectors`.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from crossmodal.atomic import atomic_write
from crossmodal.errors import ConfigError, InputError
from crossmodal.index.vector_common import KINDS, VectorIndexOptions

__all__ = [  # the file format; the writers and readers are for crossmodal.index's backends
    "FORMAT_VERSION",
    "IndexFile",
    "SectionSource",
    "VectorIndexHeader",
    "array_source",
    "faiss_source",
    "header_dict",
    "open_index_file",
    "write_index_file",
]

FORMAT_VERSION = 1  # of the saved file; bumped on any incompatible change
_MAGIC = b"CMVINDEX"
_TAIL = struct.Struct("<Q8s")  # footer length, magic
_IO_CHUNK = 1 << 20  # small enough that freed read buffers go back to the OS


@dataclass(frozen=True)
class VectorIndexHeader:
    """What a saved index file says about itself (read without loading the index)."""

    format: int  # FORMAT_VERSION of the writer
    kind: str  # one of KINDS
    dim: int  # vector width
    count: int  # live vectors
    tombstones: int  # removed vectors still stored (hnsw, ivfpq)
    generation: int  # the caller's value given to save()
    options: VectorIndexOptions | None  # None for "exact"


# --------------------------------------------------------------------------------------------
# the file: sections, then a JSON footer, its length and a magic tag


SectionSource = Callable[[Callable[[bytes | memoryview], None]], None]


def array_source(arr: npt.NDArray[Any], dtype: str) -> SectionSource:
    data = np.ascontiguousarray(arr, dtype=np.dtype(dtype))

    def emit(write: Callable[[bytes | memoryview], None]) -> None:
        raw = data.reshape(-1).view(np.uint8).data
        for start in range(0, len(raw), _IO_CHUNK):
            write(raw[start : start + _IO_CHUNK])

    return emit


def faiss_source(faiss: Any, index: Any) -> SectionSource:
    def emit(write: Callable[[bytes | memoryview], None]) -> None:
        faiss.write_index(index, faiss.PyCallbackIOWriter(write))

    return emit


def header_dict(
    kind: str,
    dim: int,
    count: int,
    tombstones: int,
    generation: int,
    options: VectorIndexOptions | None,
) -> dict[str, Any]:
    if isinstance(generation, bool) or not isinstance(generation, int):
        raise ConfigError(f"generation: expected an int, got {generation!r}")
    return {
        "format": FORMAT_VERSION,
        "kind": kind,
        "dim": dim,
        "count": count,
        "tombstones": tombstones,
        "generation": generation,
        "options": None if options is None else asdict(options),
    }


def write_index_file(
    path: str | os.PathLike[str],
    header: dict[str, Any],
    sections: list[tuple[str, SectionSource]],
) -> Path:
    def write(f: BinaryIO) -> None:
        f.write(_MAGIC)
        offset = len(_MAGIC)
        table = []
        for name, emit in sections:
            sink = _Sink(f)
            emit(sink)
            table.append({"name": name, "offset": offset, "nbytes": sink.size, "crc32": sink.crc})
            offset += sink.size
        footer = json.dumps({**header, "sections": table}).encode("utf-8")
        f.write(footer)
        f.write(_TAIL.pack(len(footer), _MAGIC))

    return atomic_write(path, write)


class _Sink:
    """Writes chunks to a file, counting their bytes and CRC-32."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.size, self.crc = f, 0, 0

    def __call__(self, chunk: bytes | memoryview) -> None:
        self.crc = zlib.crc32(chunk, self.crc)
        self.size += len(chunk)
        self.f.write(chunk)


class IndexFile:
    """An open saved index: footer parsed, sections located; checks as it reads."""

    def __init__(self, path: Path, f: io.BufferedReader) -> None:
        self.path, self.f = path, f
        size = os.fstat(f.fileno()).st_size
        if size < len(_MAGIC) + _TAIL.size or f.read(len(_MAGIC)) != _MAGIC:
            raise self.error("not a crossmodal vector index (no header)")
        f.seek(size - _TAIL.size)
        footer_len, magic = _TAIL.unpack(f.read(_TAIL.size))
        footer_start = size - _TAIL.size - footer_len
        if magic != _MAGIC or footer_start < len(_MAGIC):
            raise self.error("truncated (no footer)")
        f.seek(footer_start)
        try:
            self.meta = json.loads(f.read(footer_len).decode("utf-8"))
            self.sections = {s["name"]: s for s in self.meta["sections"]}
            offset = len(_MAGIC)
            for s in self.meta["sections"]:
                if not all(isinstance(s[key], int) for key in ("offset", "nbytes", "crc32")):
                    raise ValueError("section table")
                if s["offset"] != offset or s["nbytes"] < 0:
                    raise ValueError("section table")
                offset += s["nbytes"]
            if offset != footer_start:
                raise ValueError("section sizes")
            self.header = _parse_header(self.meta)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSON and Unicode too
            raise self.error(f"corrupt footer ({exc})") from None

    def error(self, what: str) -> InputError:
        return InputError(
            f"{self.path}: cannot load the vector index: {what}; delete it and rebuild the "
            "index from the stored vectors"
        )

    def section(self, name: str) -> dict[str, int]:
        if name not in self.sections:
            raise self.error(f"no {name!r} section")
        return dict(self.sections[name])

    def array(self, name: str, dtype: str, count: int) -> npt.NDArray[Any]:
        s = self.section(name)
        if s["nbytes"] != count * np.dtype(dtype).itemsize:
            raise self.error(f"section {name!r} holds {s['nbytes']} bytes, not {count} {dtype}")
        buf = np.empty(s["nbytes"], np.uint8)
        self.f.seek(s["offset"])
        if self.f.readinto(buf.data) != s["nbytes"] or zlib.crc32(buf.data) != s["crc32"]:
            raise self.error(f"section {name!r} is damaged (checksum mismatch)")
        return buf.view(np.dtype(dtype)).astype(np.dtype(dtype).newbyteorder("="), copy=False)

    def chunks(self, name: str) -> Iterator[bytes]:
        s = self.section(name)
        self.f.seek(s["offset"])
        left = s["nbytes"]
        while left:
            chunk = self.f.read(min(left, _IO_CHUNK))
            if not chunk:
                raise self.error(f"section {name!r} is truncated")
            left -= len(chunk)
            yield chunk

    def faiss_index(self, faiss: Any, name: str) -> Any:
        s = self.section(name)
        crc = 0
        for chunk in self.chunks(name):
            crc = zlib.crc32(chunk, crc)
        if crc != s["crc32"]:
            raise self.error(f"section {name!r} is damaged (checksum mismatch)")
        self.f.seek(s["offset"])
        left = s["nbytes"]

        def read(n: int) -> bytes:  # never past the section, whatever FAISS asks for
            nonlocal left
            data = self.f.read(min(n, left))
            left -= len(data)
            return data

        try:
            return faiss.read_index(faiss.PyCallbackIOReader(read))
        except RuntimeError as exc:
            raise self.error(f"FAISS cannot read it ({str(exc).splitlines()[0][:200]})") from None


def _parse_header(meta: dict[str, Any]) -> VectorIndexHeader:
    if meta["format"] != FORMAT_VERSION:
        raise ValueError(f"format {meta['format']}, this version reads {FORMAT_VERSION}")
    if meta["kind"] not in KINDS:
        raise ValueError(f"kind {meta['kind']!r}")
    ints = {name: meta[name] for name in ("dim", "count", "tombstones", "generation")}
    for name, value in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} {value!r}")
    if ints["dim"] < 1 or (meta["kind"] == "exact" and ints["tombstones"]):
        raise ValueError(f"dim {ints['dim']}, tombstones {ints['tombstones']}")
    options = None
    if meta["kind"] != "exact":
        known = {f.name for f in fields(VectorIndexOptions)}
        options = VectorIndexOptions(**{k: v for k, v in meta["options"].items() if k in known})
    return VectorIndexHeader(meta["format"], meta["kind"], options=options, **ints)


def open_index_file(path: str | os.PathLike[str]) -> io.BufferedReader:
    try:
        return open(path, "rb")  # closed by the caller's with
    except OSError as exc:
        raise InputError(
            f"{path}: cannot open the vector index ({exc.strerror}); build it with "
            "build_vector_index"
        ) from exc
