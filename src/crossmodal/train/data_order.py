"""Data order: where batches come from, and how a resumed run continues the same order.

The loop owns one seeded ``torch.Generator`` for shuffling. Data reaches it in one of two
forms:

- a **factory** ``(generator) -> Iterable[Batch]``, called once per epoch; it must draw all
  of its randomness from that generator (:func:`build_loader_factory` builds a
  ``DataLoader`` with a ``RandomSampler`` that does), so the order of every epoch follows
  from the generator's state when the epoch began;
- a re-iterable of batches (a list, a ``DataLoader`` without shuffling), replayed in its own
  order each epoch.

A checkpoint stores a :class:`DataOrder`: the epoch, the generator state at its start and the
number of batches already consumed. Resuming restores that state, builds the epoch again and
skips the consumed batches (they are still produced, then dropped: the cost of one partial
epoch of loading, for an exact continuation).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from crossmodal.errors import CheckpointError, ConfigError

__all__ = [
    "Batch",
    "BatchFactory",
    "DataOrder",
    "DataSource",
    "batches_per_epoch",
    "build_loader_factory",
    "count_samples",
    "epoch_batches",
]

Batch = Mapping[str, Tensor]  # one (micro-)batch: named tensors sharing the first dimension
BatchFactory = Callable[[torch.Generator], Iterable[Batch]]  # one epoch's batches
DataSource = Iterable[Batch] | BatchFactory


@dataclass(frozen=True)
class DataOrder:
    """Where the run stands in its data: enough to rebuild the rest of the current epoch."""

    epoch: int  # epochs completed before the current one (0-based index of the current epoch)
    generator_state: Tensor  # uint8 state of the shuffling generator when this epoch began
    batches_done: int  # batches of the current epoch already consumed

    def to_dict(self) -> dict[str, Any]:
        """Tensors and ints only, so the checkpoint loads with ``weights_only=True``."""
        return {
            "epoch": self.epoch,
            "generator_state": self.generator_state.clone(),
            "batches_done": self.batches_done,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataOrder:
        """Inverse of :meth:`to_dict`; :class:`CheckpointError` on a malformed entry."""
        try:
            epoch, state, done = data["epoch"], data["generator_state"], data["batches_done"]
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"data order state lacks {exc}") from exc
        if not (isinstance(epoch, int) and isinstance(done, int) and isinstance(state, Tensor)):
            raise CheckpointError("data order state: epoch, batches_done or generator malformed")
        if state.dtype != torch.uint8:
            raise CheckpointError(f"data order generator state has dtype {state.dtype}, not uint8")
        return cls(epoch=epoch, generator_state=state, batches_done=done)


def build_loader_factory(
    dataset: torch.utils.data.Dataset[Any],
    batch_size: int,
    *,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
    collate_fn: Callable[[list[Any]], Batch] | None = None,
) -> BatchFactory:
    """A factory of ``DataLoader`` epochs whose order comes only from the loop's generator.

    The generator drives both the ``RandomSampler`` permutation and the loader's worker seeds.
    ``drop_last`` keeps every batch the same size (contrastive batches and accumulation
    assume it).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")

    def factory(generator: torch.Generator) -> Iterable[Batch]:
        sampler: torch.utils.data.Sampler[int] = (
            torch.utils.data.RandomSampler(dataset, generator=generator)  # type: ignore[arg-type]
            if shuffle
            else torch.utils.data.SequentialSampler(dataset)  # type: ignore[arg-type]
        )
        loader: Iterable[Batch] = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=num_workers,
            collate_fn=collate_fn,
            generator=generator,
        )
        return loader

    return factory


def _is_factory(data: DataSource) -> bool:
    return callable(data) and not isinstance(data, Iterable)


def epoch_batches(data: DataSource, generator: torch.Generator, skip: int = 0) -> Iterator[Batch]:
    """The batches of one epoch, after the first ``skip`` ones."""
    if _is_factory(data):
        epoch: Iterable[Batch] = data(generator)  # type: ignore[operator]
    elif isinstance(data, Iterator):  # a one-shot iterator cannot be replayed next epoch
        raise ConfigError(
            "data is a one-shot iterator; pass a list, a DataLoader or a factory "
            "(generator) -> batches so that every epoch can be built again"
        )
    else:
        epoch = data  # type: ignore[assignment]
    return itertools.islice(epoch, skip, None)


def batches_per_epoch(data: DataSource) -> int | None:
    """Batches in one epoch when the data knows its length, else ``None``."""
    epoch = data(torch.Generator()) if _is_factory(data) else data  # type: ignore[operator]
    return len(epoch) if isinstance(epoch, Sized) else None


def count_samples(batch: Batch) -> int:
    """The batch size: the first dimension of the batch's first tensor."""
    for value in batch.values():
        if isinstance(value, Tensor) and value.ndim > 0:
            return int(value.shape[0])
    raise ConfigError(f"batch has no tensor with a batch dimension (keys: {sorted(batch)})")
