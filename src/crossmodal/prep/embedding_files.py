"""Writing embeddings to disk: ``.npy`` (plus an items sidecar) or Parquet."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossmodal.atomic import atomic_write, atomic_write_text
from crossmodal.encoders.base import FloatArray
from crossmodal.errors import BackendUnavailableError, ConfigError

FORMATS = (".npy", ".parquet")  # output suffixes write_embeddings understands


@dataclass(frozen=True)
class EmbeddedItem:
    """What one row of an embeddings file stands for."""

    kind: str  # "image" or "text"
    source: str  # the image path or the text itself


def items_path(npy_path: Path) -> Path:
    """The JSONL sidecar that names the rows of an ``.npy`` file."""
    return npy_path.with_suffix(".items.jsonl")


def write_embeddings(
    path: str | os.PathLike[str], vectors: FloatArray, items: Sequence[EmbeddedItem], model: str
) -> list[Path]:
    """Write ``vectors`` and what each row is; return the files written.

    ``.npy``: the (N, D) float32 matrix, and ``<name>.items.jsonl`` with one line per row.
    ``.parquet``: one row per item with ``kind``, ``source`` and ``embedding`` columns, and the
    model spec in the file's metadata. Files appear atomically (temp file, then rename).
    """
    path = Path(path)
    if len(items) != len(vectors):
        raise ConfigError(f"{len(vectors)} vectors but {len(items)} items")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"{path}: unknown output format; use one of {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        matrix = np.asarray(vectors, dtype=np.float32)
        atomic_write(path, lambda f: np.save(f, matrix))
        lines = (
            json.dumps(
                {"row": row, "kind": item.kind, "source": item.source, "model": model},
                ensure_ascii=False,
            )
            + "\n"
            for row, item in enumerate(items)
        )
        side = atomic_write_text(items_path(path), "".join(lines))
        return [path, side]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise BackendUnavailableError("parquet output", "parquet", "pyarrow") from exc
    dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
    table = pa.table(
        {
            "kind": [i.kind for i in items],
            "source": [i.source for i in items],
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(np.asarray(vectors, dtype=np.float32).reshape(-1)), dim
            ),
        }
    ).replace_schema_metadata({"crossmodal_model": model})
    atomic_write(path, lambda f: pq.write_table(table, f))
    return [path]
