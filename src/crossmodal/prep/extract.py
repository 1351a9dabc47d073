"""Feature extraction at scale: image (and caption) embeddings of a dataset, in resumable shards.

    report = extract_features(open_source("photos.jsonl"), encoder, "feats/", ExtractConfig())

Shard ``k`` holds samples ``[k·shard_size, (k+1)·shard_size)`` of the source, in its (stable)
order; with ``shard_by="input"`` (WebDataset sources) it holds the samples of input tar ``k``,
and a tar is read only when its shard is made. Each shard is written atomically and its last
file is the commit mark, so a killed run leaves only whole shards, and running the same
command again embeds only the missing ones: the result is byte-identical to a run that was
never stopped (tested).

Two layouts:

- ``parquet`` (default): ``part-00000.parquet``, ... with one row per image: ``source``,
  ``image`` (absolute path, or null for a shard member), ``hash`` (the file's content hash,
  the one the search index keys vectors by, so ``crossmodal index --features`` reuses them),
  ``caption`` (the first caption), ``label``, ``image_embedding`` and ``text_embedding``
  (fixed-size lists of float32; text null without a caption);
- ``npy``: clip-retrieval's layout, ``img_emb/img_emb_00000.npy``,
  ``text_emb/text_emb_00000.npy`` (rows of images with a caption, in order; NaN rows for
  those without) and ``metadata/metadata_00000.parquet`` (the other columns, row for row).

``extract.json`` records the model, width, layout and shard size; a resume with other values
is refused rather than mixing two models' vectors. Images that do not decode are left out
of their shard and listed in ``failures/part-00000.jsonl``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from crossmodal.atomic import atomic_write
from crossmodal.data.samples import DataSource, Sample
from crossmodal.encoders.base import Encoder, FloatArray
from crossmodal.encoders.embedder import EmbedConfig, Embedder
from crossmodal.errors import BackendUnavailableError, ConfigError, CrossmodalError, InputError

__all__ = [
    "ExtractConfig",
    "ExtractReport",
    "FeatureShard",
    "extract_features",
    "load_image_features",
    "read_feature_shards",
    "read_state",
    "remove_stale_temps",
    "shard_plan",
]

log = logging.getLogger(__name__)

STATE_NAME = "extract.json"
LAYOUTS = ("parquet", "npy")


@dataclass(frozen=True)
class ExtractConfig:
    """How features are extracted and laid out."""

    shard_size: int = 10_000  # images per shard: the unit of resume
    shard_by: Literal["count", "input"] = "count"  # input: one shard per WebDataset .tar
    layout: Literal["parquet", "npy"] = "parquet"  # see the module docstring
    texts: bool = True  # embed each image's first caption too
    batch_size: int = 64  # images per forward pass
    workers: int = 2  # image decoding threads
    progress: bool = False  # a progress bar on stderr

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.batch_size < 1 or self.workers < 1:
            raise ConfigError("shard_size, batch_size and workers must be at least 1")
        if self.shard_by not in ("count", "input"):
            raise ConfigError(f"shard_by {self.shard_by!r}: count or input")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"unknown layout {self.layout!r}; use one of {', '.join(LAYOUTS)}")


@dataclass
class ExtractReport:
    """What one call did."""

    shards: int = 0  # shards of the source
    written: int = 0  # shards embedded and written by this call
    skipped: int = 0  # shards already complete (resume)
    images: int = 0  # images embedded by this call
    texts: int = 0  # captions embedded by this call
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source, reason), this call
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        """Throughput of this call."""
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class FeatureShard:
    """One shard read back: rows and their vectors."""

    rows: list[dict[str, Any]]  # source, image, hash, caption, label
    image_embeddings: FloatArray  # (N, D)
    text_embeddings: FloatArray  # (N, D), NaN rows where there was no caption


def extract_features(
    source: DataSource, encoder: Encoder, out_dir: str | os.PathLike[str], config: ExtractConfig
) -> ExtractReport:
    """Embed ``source`` into shards under ``out_dir``, skipping shards already complete.

    Raises:
        ConfigError: ``out_dir`` holds features of another model, layout or shard size.
        BackendUnavailableError: pyarrow is not installed.
        InputError: ``out_dir`` cannot be written.
    """
    require_pyarrow()
    started = time.perf_counter()
    out = Path(out_dir)
    check_state(out, encoder, config, source.name)
    remove_stale_temps(out)  # a killed run's half-written files (this run writes alone)
    embedder = Embedder(
        encoder,
        EmbedConfig(batch_size=config.batch_size, workers=config.workers, on_error="skip"),
    )
    report = ExtractReport()
    report.shards, samples_of = shard_plan(source, config)
    todo = [k for k in range(report.shards) if not commit_path(out, k, config).exists()]
    report.skipped = report.shards - len(todo)
    bar = tqdm(total=len(todo), desc="extract", unit="shard", disable=not config.progress)
    with bar:
        for k in todo:
            write_shard(out, k, samples_of(k), embedder, config, report)
            report.written += 1
            bar.update(1)
    report.seconds = time.perf_counter() - started
    return report


def remove_stale_temps(out: Path) -> int:
    """Delete temporary files a killed writer left under ``out`` (never a finished file)."""
    removed = 0
    for tmp in out.rglob(".*.tmp"):
        if re.fullmatch(r"\..+\.[0-9a-f]{12}\.tmp", tmp.name):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def shard_plan(
    source: DataSource, config: ExtractConfig
) -> tuple[int, Callable[[int], list[Sample]]]:
    """How many output shards, and the samples of shard ``k``.

    ``shard_by="count"`` lists the whole source and cuts it every ``shard_size`` samples.
    ``shard_by="input"`` (WebDataset only) makes output shard ``k`` of input ``.tar`` ``k``
    and reads a tar only when its shard is made: a process that writes a few shards of a
    huge collection reads only those tars.

    Raises:
        ConfigError: ``shard_by="input"`` for a source that is not WebDataset shards.
    """
    from crossmodal.data.shards import WebDatasetSource

    if config.shard_by == "input":
        if not isinstance(source, WebDatasetSource):
            raise ConfigError(
                f"{source.name}: one shard per input needs WebDataset .tar shards; "
                "use --shard-size for folders and manifests"
            )
        tars = list(source.shards)
        return len(tars), lambda k: _tar_samples(tars[k])
    samples = list(source)
    count = -(-len(samples) // config.shard_size)
    return count, lambda k: _shard_samples(samples, k, config)


def _tar_samples(tar: str) -> list[Sample]:
    """The samples of one input tar (none when it is unreadable: it was logged)."""
    from crossmodal.data.shards import WebDatasetSource

    try:
        return list(WebDatasetSource(tar))
    except InputError as exc:  # missing, or not one readable sample
        log.warning("%s", exc)
        return []


def _shard_samples(samples: list[Sample], k: int, config: ExtractConfig) -> list[Sample]:
    return samples[k * config.shard_size : (k + 1) * config.shard_size]


def write_shard(
    out: Path,
    k: int,
    shard: list[Sample],
    embedder: Embedder,
    config: ExtractConfig,
    report: ExtractReport,
) -> None:
    result = embedder.embed_images([s.image for s in shard], desc=f"shard {k}")
    kept = [shard[i] for i in result.indices.tolist()]
    failures = [(shard[i].source, reason) for i, reason in result.failures]
    report.images += len(kept)
    report.failures += failures
    dim = embedder.encoder.dim
    text_emb = np.full((len(kept), dim), np.nan, dtype=np.float32)
    captioned = [i for i, s in enumerate(kept) if s.captions]
    if config.texts and captioned:
        text_emb[captioned] = embedder.embed_texts([kept[i].captions[0] for i in captioned])
        report.texts += len(captioned)
    rows = [_row(s, config.texts) for s in kept]
    lines = "".join(
        json.dumps({"source": s, "reason": r}, ensure_ascii=False) + "\n" for s, r in failures
    )
    _atomic_text(out / "failures" / f"part-{k:05d}.jsonl", lines)
    if config.layout == "parquet":
        _write_parquet(commit_path(out, k, config), rows, result.vectors, text_emb, config.texts)
    else:
        _atomic_npy(out / "img_emb" / f"img_emb_{k:05d}.npy", result.vectors)
        if config.texts:
            _atomic_npy(out / "text_emb" / f"text_emb_{k:05d}.npy", text_emb)
        _write_parquet(commit_path(out, k, config), rows, None, None, False)


def _row(sample: Sample, texts: bool) -> dict[str, Any]:
    image = sample.image
    path = os.path.abspath(image) if isinstance(image, str | os.PathLike) else None
    return {
        "source": sample.source,
        "image": path,
        "hash": _content_hash(path),
        "caption": sample.captions[0] if texts and sample.captions else None,
        "label": sample.label,
    }


def _content_hash(path: str | None) -> str | None:
    if path is None:
        return None
    from crossmodal.data.walk import content_hash

    try:
        return content_hash(path)
    except CrossmodalError:
        return None


def commit_path(out: Path, k: int, config: ExtractConfig) -> Path:
    """The last file a shard writes: it existing means the shard is complete."""
    if config.layout == "parquet":
        return out / f"part-{k:05d}.parquet"
    return out / "metadata" / f"metadata_{k:05d}.parquet"


# ------------------------------------------------------------------ state


def check_state(out: Path, encoder: Encoder, config: ExtractConfig, source: str) -> None:
    state = {
        "model": encoder.spec,
        "dim": encoder.dim,
        "layout": config.layout,
        "shard_size": config.shard_size,
        "shard_by": config.shard_by,
        "texts": config.texts,
    }
    path = out / STATE_NAME
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{path}: unreadable ({exc}); remove it, or use another --out"
            ) from exc
        saved.setdefault("shard_by", "count")  # written before one shard per input existed
        differ = {k: (saved.get(k), v) for k, v in state.items() if saved.get(k) != v}
        if differ:
            what = ", ".join(f"{k} {old!r} → {new!r}" for k, (old, new) in differ.items())
            raise ConfigError(
                f"{out}: holds features made with other settings ({what}); resume with the "
                "same ones, or write to another --out"
            )
        return
    _atomic_text(path, json.dumps(state | {"source": source}, indent=2) + "\n")


# ------------------------------------------------------------------ files


def require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError("feature extraction (Parquet)", "parquet", "pyarrow") from exc


def _write_parquet(
    path: Path,
    rows: list[dict[str, Any]],
    image_emb: FloatArray | None,
    text_emb: FloatArray | None,
    texts: bool,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, Any] = {
        key: pa.array([r[key] for r in rows], type=pa.string())
        for key in ("source", "image", "hash", "caption", "label")
    }
    if image_emb is not None:
        columns["image_embedding"] = _vectors(image_emb)
    if text_emb is not None and texts:
        missing: np.ndarray = np.asarray(np.isnan(text_emb).any(axis=1))
        columns["text_embedding"] = _vectors(text_emb, mask=missing)
    table = pa.table(columns)
    _atomic(path, lambda f: pq.write_table(table, f))


def _vectors(matrix: FloatArray, mask: np.ndarray | None = None) -> Any:
    import pyarrow as pa

    dim = int(matrix.shape[1]) if matrix.ndim == 2 else 0
    flat = pa.array(np.nan_to_num(matrix, nan=0.0).astype(np.float32).reshape(-1))
    array = pa.FixedSizeListArray.from_arrays(flat, dim)
    if mask is not None and mask.any():
        array = pa.FixedSizeListArray.from_arrays(flat, dim, mask=pa.array(mask))
    return array


def _atomic_npy(path: Path, matrix: FloatArray) -> None:
    _atomic(path, lambda f: np.save(f, np.asarray(matrix, dtype=np.float32)))


def _atomic_text(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode("utf-8")))


def _atomic(path: Path, write: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc})") from exc


# ------------------------------------------------------------------ reading back


def read_feature_shards(out_dir: str | os.PathLike[str]) -> Iterator[FeatureShard]:
    """The complete shards of an extraction, in order (either layout).

    Raises:
        InputError: ``out_dir`` holds no ``extract.json``.
    """
    import pyarrow.parquet as pq

    out = Path(out_dir)
    state = read_state(out)
    layout = state["layout"]
    dim = int(state["dim"])
    k = 0
    while True:
        config = ExtractConfig(layout=layout, shard_size=int(state["shard_size"]))
        path = commit_path(out, k, config)
        if not path.exists():
            return
        table = pq.read_table(path)
        rows = table.select(["source", "image", "hash", "caption", "label"]).to_pylist()
        if layout == "parquet":
            image_emb = _column_matrix(table, "image_embedding", dim)
            text_emb = _column_matrix(table, "text_embedding", dim)
        else:
            image_emb = np.load(out / "img_emb" / f"img_emb_{k:05d}.npy", allow_pickle=False)
            text_path = out / "text_emb" / f"text_emb_{k:05d}.npy"
            text_emb = (
                np.load(text_path, allow_pickle=False)
                if text_path.exists()
                else np.full_like(image_emb, np.nan)
            )
        yield FeatureShard(rows, image_emb, text_emb)
        k += 1


def read_state(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``extract.json`` of an extraction folder.

    Raises:
        InputError: It is missing or unreadable.
    """
    path = Path(out_dir) / STATE_NAME
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"{out_dir}: no {STATE_NAME}; pass a folder written by `crossmodal data extract`"
        ) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({exc})") from exc
    return state


def _column_matrix(table: Any, name: str, dim: int) -> FloatArray:
    n = table.num_rows
    if name not in table.column_names:
        return np.full((n, dim), np.nan, dtype=np.float32)
    column = table.column(name).combine_chunks()
    flat = column.values[column.offset * dim : (column.offset + n) * dim]  # null slots too
    values = np.asarray(flat, dtype=np.float32).reshape(n, dim)
    if column.null_count:
        values = values.copy()
        values[np.asarray(column.is_null())] = np.nan
    return values


def load_image_features(out_dir: str | os.PathLike[str], model: str) -> dict[str, FloatArray]:
    """Image vectors of an extraction by file content hash, for :meth:`Index.add`.

    Raises:
        ConfigError: The features were made by another model than ``model``.
        InputError: ``out_dir`` is not an extraction folder.
    """
    state = read_state(out_dir)
    if state.get("model") != model:
        raise ConfigError(
            f"{out_dir}: features were extracted with {state.get('model')!r}, but the index "
            f"uses {model!r}; extract again with -m {model}, or index without --features"
        )
    vectors: dict[str, FloatArray] = {}
    for shard in read_feature_shards(out_dir):
        for row, vector in zip(shard.rows, shard.image_embeddings, strict=True):
            if row["hash"] is not None:
                vectors[row["hash"]] = vector
    return vectors
