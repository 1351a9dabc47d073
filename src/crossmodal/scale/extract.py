"""Feature extraction on a Ray cluster: ``crossmodal data extract --engine ray``.

The same shards as :func:`~crossmodal.prep.extract.extract_features` (same files, same rows,
same commit marks, same resume), made by a pool of Ray actors through Ray Data:

    shard numbers ──► Ray Data ──► actor pool (``actors`` actors, one model each,
                                   ``num_gpus`` each where there are GPUs)
                                   each actor: decode (its threads) → model → write shard k

The unit of work is a shard. An actor opens the source and loads the model once (a folder or
manifest is listed; WebDataset input with ``shard_by="input"`` is not read until a shard
needs its tar), then for each shard number it receives decodes that shard's pictures on its
own threads (overlapped with the model, as the single-process path does) and writes the shard
atomically, commit mark last. Decoding stays beside the model on purpose: pixels never
travel through Ray's object store (a 10,000-image shard of 224-px float pixels is 6 GB), and
each shard's files are written by one process. What the cluster needs to share is the
output folder (a shared file system, or a bucket mounted as one) and read access to the
source (WebDataset shards may be URLs: :mod:`crossmodal.data.shards`).

Fault tolerance is Ray's: a killed actor is restarted and its shard retried; a shard written
twice is written identically (atomic files, commit mark last), so every shard appears once,
and a run that is itself stopped resumes where it stopped, like the single-process path.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from crossmodal.prep.extract import (
    ExtractConfig,
    ExtractReport,
    check_state,
    commit_path,
    remove_stale_temps,
    require_pyarrow,
    shard_plan,
    write_shard,
)
from crossmodal.scale.ray import RayConfig, start_ray

if TYPE_CHECKING:
    from crossmodal.encoders.base import Encoder

__all__ = ["SourceSpec", "extract_features_ray"]


@dataclass(frozen=True)
class SourceSpec:
    """How an actor opens the source itself: :func:`open_source`'s arguments."""

    path: str
    options: dict[str, Any]

    def open(self) -> Any:
        from crossmodal.data.sources import open_source

        return open_source(self.path, **self.options)


class _ShardWriter:
    """A Ray actor: the source and the model, loaded once; writes the shards it is given."""

    def __init__(
        self,
        source: SourceSpec,
        model: str,
        device: str,
        precision: str,
        out: str,
        config: ExtractConfig,
    ) -> None:
        from crossmodal.encoders import load_encoder
        from crossmodal.encoders.embedder import EmbedConfig, Embedder

        _, self.samples_of = shard_plan(source.open(), config)  # "input": no tar read yet
        encoder = load_encoder(model, device=device, precision=precision)
        self.embedder = Embedder(
            encoder,
            EmbedConfig(batch_size=config.batch_size, workers=config.workers, on_error="skip"),
        )
        self.out = Path(out)
        self.config = config

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images, texts, failures = [], [], []
        for k in batch["shard"].tolist():
            report = ExtractReport()
            if not commit_path(self.out, k, self.config).exists():  # not done by a retry
                shard = self.samples_of(k)
                write_shard(self.out, k, shard, self.embedder, self.config, report)
            images.append(report.images)
            texts.append(report.texts)
            failures.append(json.dumps(report.failures))
        return {
            "shard": batch["shard"],
            "images": np.asarray(images),
            "texts": np.asarray(texts),
            "failures": np.asarray(failures, dtype=object),
        }


def extract_features_ray(
    source: SourceSpec,
    model: str,
    out_dir: str | os.PathLike[str],
    config: ExtractConfig,
    ray_config: RayConfig,
    *,
    device: str = "auto",
    precision: str = "auto",
    encoder: Encoder | None = None,
) -> ExtractReport:
    """Embed ``source`` into shards under ``out_dir`` on Ray (see the module doc).

    ``encoder``, when the caller has ``model`` loaded already, saves loading it here for the
    output folder's check.

    Raises:
        ConfigError: ``out_dir`` holds features of another model, layout or shard size.
        BackendUnavailableError: Ray or pyarrow is not installed.
    """
    require_pyarrow()
    started = time.perf_counter()
    out = Path(out_dir).resolve()
    if encoder is None:  # its spec and width guard the output folder; the actors load their own
        from crossmodal.encoders import load_encoder

        encoder = load_encoder(model, device="cpu")
    opened = source.open()
    check_state(out, encoder, config, opened.name)
    report = ExtractReport(shards=shard_plan(opened, config)[0])
    todo = [k for k in range(report.shards) if not commit_path(out, k, config).exists()]
    report.skipped = report.shards - len(todo)
    remove_stale_temps(out)  # before the actors start: what a killed run left
    if not todo:
        report.seconds = time.perf_counter() - started
        return report
    ray = start_ray(ray_config)
    if not config.progress:
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    pool = ray.data.ActorPoolStrategy(size=min(ray_config.actors, len(todo)))
    shards = ray.data.from_items([{"shard": k} for k in todo], override_num_blocks=len(todo))
    written = shards.map_batches(
        _ShardWriter,
        fn_constructor_args=(source, model, device, precision, str(out), config),
        batch_size=1,
        compute=pool,
        num_cpus=ray_config.num_cpus,
        num_gpus=ray_config.num_gpus,
    )
    bar = tqdm(total=len(todo), desc="extract (ray)", unit="shard", disable=not config.progress)
    with bar:
        for row in written.iter_rows():
            report.written += 1
            report.images += int(row["images"])
            report.texts += int(row["texts"])
            report.failures += [tuple(f) for f in json.loads(row["failures"])]  # type: ignore[misc]
            bar.update(1)
    remove_stale_temps(out)  # every actor is done: what a killed actor left
    report.seconds = time.perf_counter() - started
    return report
