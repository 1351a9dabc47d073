"""A contrastive training job: the model, the data and the objective one run trains.

    spec = JobSpec(data="train.jsonl", config=TrainConfig(model="emoji-mini", ...),
                   init="random", tokenizer="tok.json", sampler="concept",
                   distill=DistillSpec("all-MiniLM-L6-v2", vocab=("icons/train.jsonl",)))
    job = build_job(spec)
    result = train(job.trained, job.objective, job.data, job.config)

``crossmodal train`` builds a :class:`JobSpec` from its command line; anything else (a
notebook, a Ray worker) can build one directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from crossmodal.errors import ConfigError
from crossmodal.train.augment import TrainAugment
from crossmodal.train.config import TrainConfig

if TYPE_CHECKING:
    from torch import nn

    from crossmodal.data.samples import Sample
    from crossmodal.models.clip import CLIP
    from crossmodal.train.data_order import BatchFactory
    from crossmodal.train.dataset import CaptionPairDataset
    from crossmodal.train.objective import Objective

__all__ = ["DistillSpec", "JobSpec", "TrainJob", "build_job"]

Sampler = Literal["image", "concept"]
Glossary = Literal["none", "cedict"]


@dataclass(frozen=True)
class DistillSpec:
    """A sentence-embedding teacher distilled into the text tower while it trains."""

    teacher: str  # a sentence-transformers model name or folder (all-MiniLM-L6-v2)
    weight: float = 1.0  # β of InfoNCE + β·(1 − cos) (see crossmodal.train.distill)
    vocab: tuple[str, ...] = ()  # JSONL caption lists taught too, each by its first English
    glossary: Glossary = "none"  # cedict: short CC-CEDICT entries taught by their English
    vocab_batch: int = 128  # vocabulary texts taught per step beside the batch's captions

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ConfigError(f"DistillSpec.weight={self.weight}: need >= 0")
        if self.vocab_batch < 1:
            raise ConfigError(f"DistillSpec.vocab_batch={self.vocab_batch}: need >= 1")
        if self.glossary not in ("none", "cedict"):
            raise ConfigError(f"DistillSpec.glossary={self.glossary!r}: need 'none' or 'cedict'")


@dataclass(frozen=True)
class JobSpec:
    """What a contrastive run trains on, besides the loop's :class:`TrainConfig`.

    ``config.model`` names the starting model, ``config.seed`` seeds the fresh weights, the
    data order and the augmentation, and ``config.out_dir`` holds the teacher's cache.
    """

    data: str  # captioned manifest, folder or shards (a manifest's missing images are skipped)
    config: TrainConfig
    init: Literal["weights", "random"] = "weights"  # see crossmodal.train.start.build_model
    tokenizer: str | None = None  # with init="random": a tokenizer.json or clip-bpe
    augment: TrainAugment = field(default_factory=TrainAugment)
    sampler: Sampler = "image"  # each image once per epoch, or each concept (one style each)
    workers: int = 0  # data loader processes
    distill: DistillSpec | None = None  # a language prior taught while training


@dataclass
class TrainJob:
    """Everything a training run needs, built from a :class:`JobSpec`."""

    model: CLIP  # the model to train (fresh or loaded weights); what is saved
    dataset: CaptionPairDataset  # the training pairs
    data: BatchFactory  # per-epoch loader factory
    config: TrainConfig  # the typed training config
    objective: Objective  # contrastive, or contrastive with a teacher distilled in
    trained: nn.Module  # what the loop trains: the model, or it with a teacher projection


def build_job(spec: JobSpec) -> TrainJob:
    """Open the data (first: a typo fails before any model loads), build the model, the
    dataset, the loader factory and the objective.

    Raises:
        InputError: The data cannot be read.
        ConfigError: The model spec or an option is at fault.
    """
    from crossmodal.data.sources import open_dataset
    from crossmodal.encoders.native import build_preprocess, build_tokenizer
    from crossmodal.train.dataset import CaptionPairDataset, build_pair_loader_factory
    from crossmodal.train.objective import build_objective
    from crossmodal.train.rng import seed_everything
    from crossmodal.train.start import build_model

    config = spec.config
    source = open_dataset(spec.data)
    seed_everything(config.seed)  # a fresh model's initial weights follow the seed
    model = build_model(config.model, spec.tokenizer, init=spec.init)
    tokenizer = build_tokenizer(model.config)
    table, rows, vocab = (
        _teacher_table(spec.distill, source, tokenizer, Path(config.out_dir))
        if spec.distill
        else (None, None, None)
    )
    dataset = CaptionPairDataset(
        source,
        build_preprocess(model.config),
        tokenizer,
        spec.augment,
        seed=config.seed,
        teacher_rows=rows,
    )
    data = build_pair_loader_factory(
        dataset, config.batch_size, num_workers=spec.workers, sampler=spec.sampler
    )
    if spec.distill is None or table is None:
        return TrainJob(model, dataset, data, config, build_objective("contrastive"), model)
    import torch

    from crossmodal.train.distill import DistilledCLIP, DistillObjective

    objective = DistillObjective(
        torch.from_numpy(table),
        spec.distill.weight,
        vocabulary=vocab,
        vocab_batch=spec.distill.vocab_batch,
        seed=config.seed,
    )
    return TrainJob(model, dataset, data, config, objective, DistilledCLIP(model, table.shape[1]))


def _teacher_table(
    distill: DistillSpec, samples: Iterable[Sample], tokenizer: Any, out: Path
) -> tuple[Any, dict[str, int], Any]:
    """The teacher's vectors of every English caption and vocabulary text, each caption's
    row, and the vocabulary as (token ids, rows) (None without vocabulary or glossary)."""
    import numpy as np
    import torch

    from crossmodal.train.prior import (
        cached_teacher_vectors,
        cedict_pairs,
        is_english,
        read_vocabulary,
    )

    pairs = [pair for path in distill.vocab for pair in read_vocabulary(path)]
    if distill.glossary == "cedict":
        pairs += cedict_pairs()
    captions = {c for s in samples for c in s.captions if is_english(c)}
    texts = sorted(captions | {teacher for _, teacher in pairs})
    table = cached_teacher_vectors(distill.teacher, texts, out / "teacher.npz")
    rows = {t: i for i, t in enumerate(texts)}
    if not pairs:
        return table, rows, None
    ids = torch.from_numpy(np.asarray(tokenizer([t for t, _ in pairs]).ids, dtype=np.int64))
    return table, rows, (ids, torch.tensor([rows[teacher] for _, teacher in pairs]))
