"""Training data: captioned images as a map-style dataset of ``{"pixels", "ids"}`` items.

    dataset = CaptionPairDataset(open_source("train.csv"), preprocess, tokenizer, seed=0)
    factory = build_pair_loader_factory(dataset, batch_size=128)
    train(model, ContrastiveObjective(), factory, config)

Each item is one image with one of its captions. Which caption, and every augmentation draw,
comes from a numpy generator seeded with ``(seed, epoch_seed, index)``: an item is a pure
function of those three numbers, so a resumed run rebuilds exactly the batches it skipped.
:func:`build_pair_loader_factory` draws ``epoch_seed`` from the loop's shuffling generator at
the start of each epoch, so captions and crops change from epoch to epoch, reproducibly.

Bad images are found by **pre-scanning**: the constructor decodes every image once (in a
thread pool) and keeps only those that decode, recording the others in ``skipped`` with the
reason. The dataset's length is then exact before training starts (epoch counts, schedules
and resume offsets stay right), and no batch ever repeats a neighbour in place of a bad
image. The cost is one extra decode per image per run. Should an image that passed the scan
fail later (a file replaced mid-run), :meth:`CaptionPairDataset.__getitem__` falls back to
the next index and counts it in ``late_failures`` rather than crash.

Images go through :func:`~crossmodal.data.images.load_image`, so transparency is composited
onto the same background as in evaluation and search. A source's samples are held in memory
(for WebDataset shards that means their images, decoded by the scan). With loader worker
processes, ``late_failures`` is counted in each worker and not seen by the main process.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch import Tensor

from crossmodal.data.images import BACKGROUND, ImagePreprocess, load_image
from crossmodal.data.samples import Sample, Skipped
from crossmodal.errors import ConfigError, CrossmodalError, InputError
from crossmodal.text.base import Tokenizer
from crossmodal.train.data_order import Batch, BatchFactory, build_loader_factory

__all__ = [
    "CaptionPairDataset",
    "TrainAugment",
    "TrainItem",
    "apply_augment",
    "build_pair_loader_factory",
    "collate",
]

log = logging.getLogger(__name__)

TrainItem = dict[str, Tensor]  # {"pixels": (3, S, S) float32, "ids": (T,) int64}


@dataclass(frozen=True)
class TrainAugment:
    """Random image augmentation for training; the defaults are mild and keep handedness."""

    crop_scale: tuple[float, float] = (0.8, 1.0)  # area fraction range of the random crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect-ratio range of the random crop
    rotation: float = 5.0  # max rotation in degrees, drawn uniformly in [-rotation, rotation]
    color_jitter: float = 0.0  # brightness/contrast/saturation factors in [1-j, 1+j]; 0: off
    hflip: bool = False  # mirror half the images; off: emoji and text have a handedness

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"TrainAugment.crop_scale={self.crop_scale}: need 0 < lo <= hi <= 1")
        r_lo, r_hi = self.crop_ratio
        if not 0 < r_lo <= r_hi:
            raise ConfigError(f"TrainAugment.crop_ratio={self.crop_ratio}: need 0 < lo <= hi")
        if not 0 <= self.rotation <= 180:
            raise ConfigError(f"TrainAugment.rotation={self.rotation}: need 0..180 degrees")
        if not 0 <= self.color_jitter < 1:
            raise ConfigError(f"TrainAugment.color_jitter={self.color_jitter}: need [0, 1)")

    @classmethod
    def off(cls) -> TrainAugment:
        """No augmentation: the evaluation transform (centre crop), nothing random."""
        return cls(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotation=0.0)


def apply_augment(
    image: Image.Image, augment: TrainAugment, size: int, rng: np.random.Generator
) -> Image.Image:
    """Rotate, random-resized-crop to ``size × size``, jitter and flip ``image`` (RGB).

    Every random number comes from ``rng``; the corners a rotation uncovers are filled with
    :data:`~crossmodal.data.images.BACKGROUND`. With ``crop_scale == (1, 1)`` there is no
    crop and the size is kept: the model's preprocess then centre-crops, as in evaluation.
    """
    if augment.rotation > 0:
        angle = float(rng.uniform(-augment.rotation, augment.rotation))
        image = image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=BACKGROUND)
    if augment.crop_scale != (1.0, 1.0):
        box = _crop_box(image.size, augment, rng)
        image = image.resize((size, size), resample=Image.Resampling.BICUBIC, box=box)
    j = augment.color_jitter
    if j > 0:
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            image = enhancer(image).enhance(float(rng.uniform(1 - j, 1 + j)))
    if augment.hflip and rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def _crop_box(
    size: tuple[int, int], augment: TrainAugment, rng: np.random.Generator
) -> tuple[float, float, float, float]:
    """torchvision's RandomResizedCrop box: area fraction and log-uniform aspect ratio."""
    width, height = size
    area = width * height * float(rng.uniform(*augment.crop_scale))
    log_lo, log_hi = math.log(augment.crop_ratio[0]), math.log(augment.crop_ratio[1])
    ratio = math.exp(float(rng.uniform(log_lo, log_hi)))
    w = min(float(width), math.sqrt(area * ratio))
    h = min(float(height), math.sqrt(area / ratio))
    left = float(rng.uniform(0, width - w))
    top = float(rng.uniform(0, height - h))
    return (left, top, left + w, top + h)


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
    ) -> None:
        """Collect the captioned samples and pre-scan their images.

        Args:
            samples: A data source (its ``skipped`` list is copied) or any samples.
            preprocess: The model's image transform (size and normalisation).
            tokenizer: The model's tokenizer.
            augment: Training augmentation; ``None`` for the default :class:`TrainAugment`.
            seed: Base seed of every item's generator.
            scan_workers: Threads decoding images during the pre-scan.

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
        self.samples = self._scan(captioned, scan_workers)
        if not self.samples:
            raise InputError(
                f"no usable training pairs: {len(self.skipped)} samples skipped "
                "(no caption or undecodable image)"
            )

    def _scan(self, samples: Sequence[Sample], workers: int) -> list[Sample]:
        """The samples whose image decodes; the others go to ``skipped``."""
        draft = self.preprocess.draft_size

        def check(sample: Sample) -> str | None:
            try:
                load_image(sample.image, draft_size=draft)
            except CrossmodalError as exc:
                return str(exc)
            return None

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            reasons = list(pool.map(check, samples))
        good = []
        for sample, reason in zip(samples, reasons, strict=True):
            if reason is None:
                good.append(sample)
            else:
                self.undecodable_sources.append(sample.source)
                self.skipped.append(Skipped(sample.source, reason))
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
        """Item ``index``: augmented pixels and the ids of one of its captions."""
        n = len(self.samples)
        for offset in range(n):
            at = (index + offset) % n
            rng = self.rng(at)
            sample = self.samples[at]
            caption = sample.captions[int(rng.integers(len(sample.captions)))]
            try:
                image = load_image(sample.image, draft_size=self.preprocess.draft_size)
            except CrossmodalError as exc:
                self.late_failures += 1
                log.warning("%s: failed after the pre-scan (%s); using the next item", at, exc)
                continue
            size = self.preprocess.image_size
            image = apply_augment(image, self.augment, size, rng)
            pixels = torch.from_numpy(self.preprocess(image))  # (3, S, S)
            ids = torch.from_numpy(self.tokenizer([caption]).ids[0].astype(np.int64))  # (T,)
            return {"pixels": pixels, "ids": ids}
        raise InputError("no image of the dataset decodes any more")


def collate(items: Sequence[TrainItem]) -> Batch:
    """Stack items into ``{"pixels": (B, 3, S, S), "ids": (B, T)}``."""
    return {key: torch.stack([item[key] for item in items]) for key in ("pixels", "ids")}


def build_pair_loader_factory(
    dataset: CaptionPairDataset, batch_size: int, *, num_workers: int = 0
) -> BatchFactory:
    """A loop data factory: per epoch, an epoch seed then a shuffled, ``drop_last`` loader.

    Both the epoch seed and the permutation come from the loop's generator, so an epoch is
    rebuilt identically on resume.
    """
    if batch_size > len(dataset):
        raise ConfigError(
            f"batch_size {batch_size} exceeds the {len(dataset)} usable training samples; "
            "lower the batch size"
        )

    def factory(generator: torch.Generator) -> Iterable[Batch]:
        epoch_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        epoch = build_loader_factory(
            dataset.for_epoch(epoch_seed),
            batch_size,
            num_workers=num_workers,
            collate_fn=collate,
        )
        return epoch(generator)

    return factory
