"""Training data: captioned images as a map-style dataset, batched into ``{"pixels", "ids"}``.

    dataset = CaptionPairDataset(open_source("train.csv"), preprocess, tokenizer, seed=0)
    factory = build_pair_loader_factory(dataset, batch_size=128)
    train(model, ContrastiveObjective(), factory, config)

Each item is one image with one of its captions. Which caption, and every augmentation draw,
comes from a numpy generator seeded with ``(seed, epoch_seed, index)``: an item is a pure
function of those three numbers, so a resumed run rebuilds exactly the batches it skipped.
:func:`build_pair_loader_factory` draws ``epoch_seed`` from the loop's shuffling generator at
the start of each epoch, so captions and crops change from epoch to epoch, reproducibly.
An item carries its image as a model-size uint8 square and its augmentation numbers;
:class:`PairCollate` makes the pixels of a whole batch at once
(:mod:`crossmodal.train.augment`).

Bad images are found by **pre-scanning**: the constructor decodes every image once (in a
thread pool) and keeps only those that decode, recording the others in ``skipped`` with the
reason. The dataset's length is then exact before training starts (epoch counts, schedules
and resume offsets stay right), and no batch ever repeats a neighbour in place of a bad
image. When the decoded squares fit in memory (``cache``, on by default up to
:data:`CACHE_BYTES`) the scan keeps them, with every caption's token ids, and items cost
no decoding at all; otherwise each item decodes its file again. Should an image that passed
the scan fail later (a file replaced mid-run, without the cache),
:meth:`CaptionPairDataset.__getitem__` falls back to the next index and counts it in
``late_failures`` rather than crash.

Images go through :func:`~crossmodal.data.images.load_image`, so transparency is composited
onto the same background as in evaluation and search. A source's samples are held in memory
(for WebDataset shards that means their images, decoded by the scan). With loader worker
processes, ``late_failures`` is counted in each worker and not seen by the main process.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from crossmodal.data.images import BACKGROUND, ImagePreprocess, load_image
from crossmodal.data.samples import Sample, Skipped
from crossmodal.errors import ConfigError, CrossmodalError, InputError
from crossmodal.text.base import Tokenizer
from crossmodal.train.augment import TrainAugment, apply_batch, draw_params
from crossmodal.train.data_order import Batch, BatchFactory, build_loader_factory

__all__ = [
    "CaptionPairDataset",
    "PairCollate",
    "TrainAugment",
    "SAMPLERS",
    "TrainItem",
    "build_pair_loader_factory",
]

log = logging.getLogger(__name__)

TrainItem = dict[str, Tensor]  # {"image": (3, S, S) uint8, "ids": (T,) int64, "aug": (K,)}

SAMPLERS = ("image", "concept")  # what an epoch visits once: each image, or each concept

CACHE_BYTES = 2**30  # auto-cache decoded images (and token ids) when they fit in this


class CaptionPairDataset(torch.utils.data.Dataset[TrainItem]):
    """Captioned images as ``{"pixels": (3, S, S), "ids": (T,)}`` items, one per image.

    Samples without a caption and images that do not decode are left out and recorded in
    ``skipped`` (the source's own skipped entries come first); ``undecodable`` counts the
    latter. See the module docstring for determinism and the pre-scan.
    """

    def __init__(
        self,
        samples: Iterable[Sample],
        preprocess: ImagePreprocess,
        tokenizer: Tokenizer,
        augment: TrainAugment | None = None,
        *,
        seed: int = 0,
        scan_workers: int = 4,
        cache: bool | None = None,
        teacher_rows: Mapping[str, int] | None = None,
    ) -> None:
        """Collect the captioned samples and pre-scan their images.

        Args:
            samples: A data source (its ``skipped`` list is copied) or any samples.
            preprocess: The model's image transform (size and normalisation).
            tokenizer: The model's tokenizer.
            augment: Training augmentation; ``None`` for the default :class:`TrainAugment`.
            seed: Base seed of every item's generator.
            scan_workers: Threads decoding images during the pre-scan.
            cache: Keep the scanned images (as model-size uint8 squares) and the captions'
                token ids in memory, so items need no decoding; ``None`` caches when they
                fit in :data:`CACHE_BYTES`.
            teacher_rows: English text → row of a teacher's vector table (distillation,
                :class:`~crossmodal.train.distill.DistillObjective`): items then carry
                ``teacher``, the row of their caption, or for a caption in another language
                the row of its sample's first English caption (-1: none).

        Raises:
            InputError: No sample has both a caption and a decodable image.
        """
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.augment = augment if augment is not None else TrainAugment()
        self.seed = seed
        self.epoch_seed = 0  # set per epoch by for_epoch(); part of every item's seed
        self.skipped: list[Skipped] = list(getattr(samples, "skipped", []))
        self.late_failures = 0  # images that passed the scan but failed in __getitem__
        self.undecodable_sources: list[str] = []  # images the pre-scan could not decode
        captioned: list[Sample] = []
        for sample in samples:
            if sample.captions:
                captioned.append(sample)
            else:
                self.skipped.append(Skipped(sample.source, "no caption"))
        if cache is None:
            side = preprocess.image_size
            cache = len(captioned) * 3 * side * side <= CACHE_BYTES
        self.cached = cache
        self._images: npt.NDArray[np.uint8] | None = None  # (N, 3, S, S) when cached
        self._ids: list[npt.NDArray[np.int64]] | None = None  # per sample (captions, T)
        self.samples = self._scan(captioned, scan_workers)
        if not self.samples:
            raise InputError(
                f"no usable training pairs: {len(self.skipped)} samples skipped "
                "(no caption or undecodable image)"
            )
        if self.cached:
            self._ids = [self._tokenize(sample.captions) for sample in self.samples]
        self._teacher = (
            None
            if teacher_rows is None
            else [caption_teacher_rows(s.captions, teacher_rows) for s in self.samples]
        )

    def _tokenize(self, captions: Sequence[str]) -> npt.NDArray[np.int64]:
        return self.tokenizer(list(captions)).ids.astype(np.int64)

    def _scan(self, samples: Sequence[Sample], workers: int) -> list[Sample]:
        """The samples whose image decodes; the others go to ``skipped``.

        When caching, the decoded squares are kept (in the order of the good samples).
        """
        draft = self.preprocess.draft_size
        keep = self.cached

        def check(sample: Sample) -> str | npt.NDArray[np.uint8] | None:
            try:
                image = load_image(sample.image, draft_size=draft)
            except CrossmodalError as exc:
                return str(exc)
            return self.preprocess.square(image) if keep else None

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            results = list(pool.map(check, samples))
        good = []
        squares = []
        for sample, result in zip(samples, results, strict=True):
            if isinstance(result, str):
                self.undecodable_sources.append(sample.source)
                self.skipped.append(Skipped(sample.source, result))
            else:
                good.append(sample)
                if result is not None:
                    squares.append(result)
        if keep and squares:
            self._images = np.stack(squares)
        if len(good) < len(samples):
            bad = len(samples) - len(good)
            log.warning("%d of %d images do not decode; skipped", bad, len(samples))
        return good

    def __len__(self) -> int:
        """Number of usable (image, captions) samples."""
        return len(self.samples)

    @property
    def undecodable(self) -> int:
        """Images left out by the pre-scan because they did not decode."""
        return len(self.undecodable_sources)

    def for_epoch(self, epoch_seed: int) -> CaptionPairDataset:
        """A shallow copy whose items use ``epoch_seed`` (the samples are shared, not copied)."""
        view = copy.copy(self)
        view.epoch_seed = epoch_seed
        return view

    def rng(self, index: int) -> np.random.Generator:
        """The generator of item ``index``: a pure function of seed, epoch seed and index."""
        return np.random.default_rng([self.seed % 2**63, self.epoch_seed, index])

    def __getitem__(self, index: int) -> TrainItem:
        """Item ``index``: its image square, one caption's ids and its augmentation draw.

        The pixels are made per batch by :class:`PairCollate` (:func:`apply_batch`).
        """
        n = len(self.samples)
        for offset in range(n):
            at = (index + offset) % n
            rng = self.rng(at)
            sample = self.samples[at]
            choice = int(rng.integers(len(sample.captions)))
            if self._images is not None and self._ids is not None:
                square = self._images[at]
                ids = self._ids[at][choice]
            else:
                try:
                    image = load_image(sample.image, draft_size=self.preprocess.draft_size)
                except CrossmodalError as exc:
                    self.late_failures += 1
                    log.warning("%s: failed after the pre-scan (%s); using the next item", at, exc)
                    continue
                square = self.preprocess.square(image)
                ids = self._tokenize([sample.captions[choice]])[0]
            item = {
                "image": torch.from_numpy(np.array(square)),
                "ids": torch.from_numpy(np.array(ids, dtype=np.int64)),
                "aug": torch.from_numpy(draw_params(self.augment, rng)),
            }
            if self._teacher is not None:
                item["teacher"] = torch.tensor(int(self._teacher[at][choice]))
            return item
        raise InputError("no image of the dataset decodes any more")

    def concepts(self) -> list[list[int]]:
        """Indices of the samples grouped by caption set, in order of first appearance.

        Samples that carry the same set of captions describe the same thing: one concept.
        """
        groups: dict[frozenset[str], list[int]] = {}
        for index, sample in enumerate(self.samples):
            groups.setdefault(frozenset(sample.captions), []).append(index)
        return list(groups.values())

    def collate(self) -> PairCollate:
        """The collate function that turns this dataset's items into model batches."""
        config = self.preprocess.config
        return PairCollate(self.preprocess.image_size, config.mean, config.std)

    def batch(self, indices: Sequence[int]) -> Batch:
        """Items ``indices`` as one model batch (``{"pixels", "ids"}``), as the loader makes."""
        return self.collate()([self[i] for i in indices])


@dataclass(frozen=True)
class PairCollate:
    """Stack items and make their pixels: ``{"pixels": (B, 3, S, S), "ids": (B, T)}``."""

    size: int  # the model's input side
    mean: tuple[float, ...]  # normalisation, from the model's preprocess
    std: tuple[float, ...]

    def __call__(self, items: Sequence[TrainItem]) -> Batch:
        """Augment the batch's images in one pass (:func:`apply_batch`)."""
        images = torch.stack([item["image"] for item in items])
        params = torch.stack([item["aug"] for item in items])
        pixels = apply_batch(images, params, self.size, self.mean, self.std, BACKGROUND)
        batch = {"pixels": pixels, "ids": torch.stack([item["ids"] for item in items])}
        if "teacher" in items[0]:
            batch["teacher"] = torch.stack([item["teacher"] for item in items])
        return batch


def caption_teacher_rows(captions: Sequence[str], rows: Mapping[str, int]) -> npt.NDArray[np.int64]:
    """Each caption's teacher row: its own (English), else the first English caption's."""
    from crossmodal.train.prior.vocabulary import is_english

    first = next((rows.get(c, -1) for c in captions if is_english(c)), -1)
    return np.array([rows.get(c, -1) if is_english(c) else first for c in captions], np.int64)


def build_pair_loader_factory(
    dataset: CaptionPairDataset,
    batch_size: int,
    *,
    num_workers: int = 0,
    sampler: str = "image",
) -> BatchFactory:
    """A loop data factory: per epoch, an epoch seed then a shuffled, ``drop_last`` loader.

    Both the epoch seed and the permutation come from the loop's generator, so an epoch is
    rebuilt identically on resume. ``sampler`` is ``image`` (an epoch is every image once)
    or ``concept``: images with the same captions are one concept (an emoji drawn in several
    styles), and an epoch is every concept once, through one of its images drawn at random
    (:meth:`CaptionPairDataset.concepts`). So every concept is seen equally often however
    many styles draw it, and two images of one concept never meet in a batch, where InfoNCE
    would push them apart as negatives.
    """
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    groups = dataset.concepts() if sampler == "concept" else None
    usable = len(groups) if groups is not None else len(dataset)
    if batch_size > usable:
        what = "concepts (distinct caption sets)" if groups is not None else "training samples"
        raise ConfigError(
            f"batch_size {batch_size} exceeds the {usable} usable {what}; lower the batch size"
        )

    def factory(generator: torch.Generator) -> Iterable[Batch]:
        epoch_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        epoch = build_loader_factory(
            dataset.for_epoch(epoch_seed),
            batch_size,
            num_workers=num_workers,
            collate_fn=dataset.collate(),
            groups=groups,
        )
        return epoch(generator)

    return factory
