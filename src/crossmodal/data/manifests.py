"""Manifests: CSV / TSV / JSONL files naming images, captions and labels."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TextIO

from crossmodal.data.samples import PathLike, Sample, Skipped
from crossmodal.errors import ConfigError, InputError

log = logging.getLogger(__name__)

_IMAGE_COLUMNS = ("image", "filepath")  # default image column names (OpenCLIP: filepath)
_CAPTION_COLUMNS = ("caption", "title", "text")  # default caption column names (OpenCLIP: title)
_LABEL_COLUMNS = ("label",)  # default label column names
_Row = tuple[str, dict[str, Any]]  # ("row 12" or "line 3", the record)


class ManifestSource:
    """Images listed in a CSV / TSV or JSONL manifest, with captions and labels.

    Rows naming the same image are grouped into one sample whose captions are those of every
    row, in order; in JSONL a caption may also be a list of strings. Relative image paths are
    resolved against the manifest's folder. Rows are read at once (they are small); images
    are only checked to exist.
    """

    def __init__(
        self,
        path: PathLike,
        image_column: str | None = None,
        caption_column: str | None = None,
        label_column: str | None = None,
        on_missing: Literal["raise", "skip"] = "raise",
    ) -> None:
        """Read and group the manifest.

        Args:
            path: A ``.csv`` or ``.tsv`` file (UTF-8, tab or comma delimited, with a header),
                or a ``.jsonl`` file of one JSON object per line.
            image_column: Column of image paths; default ``image``, else ``filepath``.
            caption_column: Column of captions; default ``caption``, else ``title``, ``text``.
            label_column: Column of class labels; default ``label``.
            on_missing: A row whose image file is missing: ``raise``, or ``skip`` and record it.

        Raises:
            InputError: The manifest is missing, unreadable, malformed or empty, a named column
                is absent (the message lists those present), or (with ``raise``) an image
                file is missing; the message names the file and row.
            ConfigError: ``on_missing`` is neither ``raise`` nor ``skip``.
        """
        if on_missing not in ("raise", "skip"):
            raise ConfigError(f"on_missing must be 'raise' or 'skip', not {on_missing!r}")
        self.path = Path(path)
        self.name = str(self.path)
        self.skipped: list[Skipped] = []
        self._on_missing = on_missing
        rows, columns = _read_manifest(self.path)
        if not rows:
            raise InputError(f"{self.path}: is empty: it has no data rows")
        image_col = _pick_column(self.path, columns, image_column, _IMAGE_COLUMNS, "image")
        if image_col is None:
            raise InputError(
                f"{self.path}: has no image column (looked for {', '.join(_IMAGE_COLUMNS)}); "
                f"columns present: {', '.join(columns)}; pass image_column="
            )
        self._columns = (
            image_col,
            _pick_column(self.path, columns, caption_column, _CAPTION_COLUMNS, "caption"),
            _pick_column(self.path, columns, label_column, _LABEL_COLUMNS, "label"),
        )
        self._samples = self._group(rows)
        if not self._samples:
            raise InputError(f"{self.path}: is empty: all {len(rows)} rows were skipped")

    @property
    def class_names(self) -> tuple[str, ...]:
        """The sorted set of labels (empty when the manifest has none)."""
        return tuple(sorted({s.label for s in self._samples if s.label is not None}))

    def __len__(self) -> int:
        """Number of distinct images."""
        return len(self._samples)

    def __iter__(self) -> Iterator[Sample]:
        """Samples in order of each image's first row."""
        return iter(self._samples)

    def _group(self, rows: list[_Row]) -> list[Sample]:
        """One sample per distinct image path, captions gathered, labels checked to agree."""
        image_col, caption_col, label_col = self._columns
        groups: dict[str, tuple[Path, list[str], list[tuple[str | None, str]]]] = {}
        for ref, record in rows:
            where = f"{self.path}:{ref}"
            image = read_field_text(record.get(image_col), where, image_col)
            if image is None:
                self._missing(where, f"the {image_col!r} column is empty")
                continue
            path = Path(os.path.expanduser(image))
            path = path if path.is_absolute() else self.path.parent / path
            key = str(path)
            if key not in groups:
                if not path.is_file():
                    self._missing(where, f"image file not found: {path}")
                    continue
                groups[key] = (path, [], [])
            _, captions, labels = groups[key]
            if caption_col is not None:
                captions.extend(read_captions(record.get(caption_col), where))
            if label_col is not None:
                labels.append((read_field_text(record.get(label_col), where, label_col), where))
        return [
            Sample(image=path, source=key, captions=tuple(captions), label=_one_label(labels))
            for key, (path, captions, labels) in groups.items()
        ]

    def _missing(self, where: str, reason: str) -> None:
        if self._on_missing == "skip":
            self.skipped.append(Skipped(where, reason))
            return
        raise InputError(f"{where}: {reason}; fix the row, or pass on_missing='skip'")


def _read_manifest(path: Path) -> tuple[list[_Row], tuple[str, ...]]:
    """The rows and the column names of a CSV / TSV or JSONL manifest."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl"):
        raise InputError(f"{path}: a manifest must be a .csv, .tsv or .jsonl file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            if suffix == ".jsonl":
                return _read_jsonl(path, handle)
            return _read_csv(path, handle)
    except FileNotFoundError:
        raise InputError(f"{path}: no such manifest file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a manifest file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _read_csv(path: Path, handle: TextIO) -> tuple[list[_Row], tuple[str, ...]]:
    """Rows of a CSV / TSV with a header; the delimiter is sniffed from the header line."""
    header = handle.readline()
    if "\t" in header:
        delimiter = "\t"
    elif "," in header:
        delimiter = ","
    else:  # a single column: nothing to sniff
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    handle.seek(0)
    reader = csv.DictReader(handle, delimiter=delimiter)
    rows: list[_Row] = []
    try:
        columns = tuple(reader.fieldnames or ())
        for record in reader:  # a row number is a line number: the header is row 1
            rows.append((f"row {reader.line_num}", dict(record)))
    except csv.Error as exc:
        raise InputError(f"{path}:row {reader.line_num}: malformed CSV ({exc})") from None
    return rows, columns


def _read_jsonl(path: Path, handle: TextIO) -> tuple[list[_Row], tuple[str, ...]]:
    """Rows of a JSONL file; blank lines are ignored; the columns are every key seen."""
    rows: list[_Row] = []
    columns: dict[str, None] = {}  # insertion-ordered set
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}:line {number}: not valid JSON ({exc.msg} at column {exc.colno}); "
                "fix or remove the line"
            ) from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:line {number}: a JSON {type(record).__name__}, not an object")
        columns.update(dict.fromkeys(record))
        rows.append((f"line {number}", record))
    return rows, tuple(columns)


def _pick_column(
    path: Path, columns: tuple[str, ...], named: str | None, defaults: tuple[str, ...], what: str
) -> str | None:
    """The named column (which must exist), else the first default present, else None."""
    if named is None:
        return next((c for c in defaults if c in columns), None)
    if named not in columns:
        raise InputError(
            f"{path}: has no {what} column {named!r}; columns present: {', '.join(columns)}"
        )
    return named


def read_field_text(value: Any, where: str, column: str) -> str | None:
    """A cell as stripped text; None for an empty or absent cell."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InputError(f"{where}: {column!r} must be a string, not {type(value).__name__}")
    return value.strip() or None


def read_captions(value: Any, where: str) -> list[str]:
    """Captions of one row: a string, or a JSON list of strings; empty ones dropped."""
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if item is not None and not isinstance(item, str):
            raise InputError(
                f"{where}: a caption must be a string or a list of strings, "
                f"not {type(item).__name__}"
            )
        if item and item.strip():
            out.append(item.strip())
    return out


def _one_label(labels: list[tuple[str | None, str]]) -> str | None:
    """The label the rows of one image agree on (rows without a label do not count)."""
    given = [(label, where) for label, where in labels if label is not None]
    for label, where in given[1:]:
        if label != given[0][0]:
            raise InputError(
                f"{where}: label {label!r} conflicts with {given[0][0]!r} given for the same "
                f"image at {given[0][1]}"
            )
    return given[0][0] if given else None


# ------------------------------------------------------------------------------ WebDataset
