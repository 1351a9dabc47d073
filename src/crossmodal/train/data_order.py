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

Data parallel (:mod:`crossmodal.train.distributed`): every rank builds the same epoch from
the same generator state. Consecutive groups of ``world`` batches form one *global* batch of
``world·B`` samples, and rank r keeps the r-th batch of each group, rows ``[r·B, (r+1)·B)``
of the global batch; an incomplete last group is dropped on every rank. So 2 ranks with
batch B train on exactly the batches of 1 process with batch 2B. A factory from
:func:`build_loader_factory` shards its sampler instead (each rank loads only its own rows);
any other data is sharded by :func:`epoch_batches` after loading, which is the same order at
``world``× the loading cost.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from crossmodal.errors import CheckpointError, ConfigError

__all__ = [
    "Batch",
    "BatchFactory",
    "DataOrder",
    "DataSource",
    "GroupSampler",
    "Shard",
    "ShardSampler",
    "batches_per_epoch",
    "build_loader_factory",
    "count_samples",
    "epoch_batches",
    "live_shard",
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


@dataclass(frozen=True)
class Shard:
    """Which part of every global batch this process trains on."""

    rank: int = 0  # this process's rank: it takes the rank-th batch of each group of world
    world: int = 1  # number of ranks (batches per global batch)

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ConfigError(f"{self}: need 0 <= rank < world")


def live_shard() -> Shard:
    """The shard of this process in the live process group; ``Shard()`` without one."""
    from crossmodal.train import distributed

    return Shard(distributed.rank(), distributed.world_size())


class ShardSampler(torch.utils.data.Sampler[int]):
    """``base``'s order, keeping rows ``[r·B, (r+1)·B)`` of every global batch of ``world·B``.

    The whole epoch order is drawn first, exactly as ``base`` alone would draw it (same calls
    on the generator), so every rank sees the same permutation; the incomplete last global
    batch is dropped.
    """

    epochs_drawn: ClassVar[int] = 0  # epochs drawn by any instance: catches double sharding

    def __init__(self, base: torch.utils.data.Sampler[int], batch_size: int, shard: Shard) -> None:
        self.base = base  # the unsharded sampler (random or sequential)
        self.batch_size = batch_size  # B: per-rank batch
        self.shard = shard  # this process's rank and the world

    def __iter__(self) -> Iterator[int]:
        ShardSampler.epochs_drawn += 1
        order = list(self.base)  # the epoch's permutation, identical on every rank
        B, r = self.batch_size, self.shard.rank
        size = B * self.shard.world  # global batch
        for start in range(0, len(order) - size + 1, size):
            yield from order[start + r * B : start + (r + 1) * B]

    def __len__(self) -> int:
        return len(self.base) // (self.batch_size * self.shard.world) * self.batch_size  # type: ignore[arg-type]


class GroupSampler(torch.utils.data.Sampler[int]):
    """One item of every group an epoch, groups in random order: ``len(groups)`` indices.

    ``groups[g]`` lists the dataset indices of group g (say, the images of one concept in
    several styles). Each epoch draws a permutation of the groups, then one member of each,
    all from ``generator``: so an epoch follows from the generator's state, and no two items
    of one group meet in an epoch (nor in a batch, where InfoNCE would take them for
    negatives).
    """

    def __init__(self, groups: Sequence[Sequence[int]], generator: torch.Generator) -> None:
        if not groups or any(not members for members in groups):
            raise ConfigError("GroupSampler needs at least one group, and no empty group")
        self.groups = groups  # dataset indices of each group
        self.generator = generator  # the loop's shuffling generator

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(len(self.groups), generator=self.generator).tolist()
        sizes = torch.tensor([len(self.groups[g]) for g in order], dtype=torch.float64)
        picks = torch.rand(len(order), generator=self.generator, dtype=torch.float64) * sizes
        for g, pick in zip(order, picks.long().tolist(), strict=True):
            yield self.groups[g][pick]

    def __len__(self) -> int:
        return len(self.groups)


def build_loader_factory(
    dataset: torch.utils.data.Dataset[Any],
    batch_size: int,
    *,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
    collate_fn: Callable[[list[Any]], Batch] | None = None,
    shard: Shard | None = None,
    groups: Sequence[Sequence[int]] | None = None,
) -> BatchFactory:
    """A factory of ``DataLoader`` epochs whose order comes only from the loop's generator.

    The generator drives both the ``RandomSampler`` permutation and the loader's worker seeds.
    ``drop_last`` keeps every batch the same size (contrastive batches and accumulation
    assume it). ``groups`` (with ``shuffle``) makes an epoch one item of each group
    (:class:`GroupSampler`). ``batch_size`` is per rank; ``shard`` (``None``: the live
    process group's, read when each epoch is built) makes every epoch load only this rank's
    rows, through a :class:`ShardSampler` (which always drops the incomplete last global
    batch).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")

    def factory(generator: torch.Generator) -> Iterable[Batch]:
        sampler: torch.utils.data.Sampler[int]
        if shuffle and groups is not None:
            sampler = GroupSampler(groups, generator)
        elif shuffle:
            sampler = torch.utils.data.RandomSampler(dataset, generator=generator)  # type: ignore[arg-type]
        else:
            sampler = torch.utils.data.SequentialSampler(dataset)  # type: ignore[arg-type]
        where = shard if shard is not None else live_shard()
        if where.world > 1:
            sampler = ShardSampler(sampler, batch_size, where)
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


def _sharded_by_loader(epoch: Iterable[Batch], shard: Shard) -> bool:
    """Whether ``epoch`` is a loader that already shards (for ``shard``; another is an error)."""
    sampler = getattr(epoch, "sampler", None)
    if not isinstance(epoch, torch.utils.data.DataLoader) or not isinstance(sampler, ShardSampler):
        return False
    if sampler.shard != shard:
        raise ConfigError(f"the data loader is sharded for {sampler.shard}, this rank is {shard}")
    return True


def _take_shard(epoch: Iterable[Batch], shard: Shard) -> Iterator[Batch]:
    """The ``shard.rank``-th batch of every complete group of ``shard.world`` batches."""
    drawn = ShardSampler.epochs_drawn
    group: list[Batch] = []
    for batch in epoch:
        if ShardSampler.epochs_drawn != drawn:
            raise ConfigError(
                "the data would be sharded twice: a build_loader_factory loader in it already "
                "keeps only this rank's rows, but the factory does not return that DataLoader "
                "itself, so the loop shards its batches again; return the DataLoader unwrapped"
            )
        group.append(batch)
        if len(group) == shard.world:
            yield group[shard.rank]
            group = []


def epoch_batches(
    data: DataSource, generator: torch.Generator, skip: int = 0, shard: Shard | None = None
) -> Iterator[Batch]:
    """This rank's batches of one epoch, after its first ``skip`` ones.

    ``shard`` defaults to ``Shard()``: one process, every batch.
    """
    shard = shard if shard is not None else Shard()
    if _is_factory(data):
        epoch: Iterable[Batch] = data(generator)  # type: ignore[operator]
    elif isinstance(data, Iterator):  # a one-shot iterator cannot be replayed next epoch
        raise ConfigError(
            "data is a one-shot iterator; pass a list, a DataLoader or a factory "
            "(generator) -> batches so that every epoch can be built again"
        )
    else:
        epoch = data  # type: ignore[assignment]
    if shard.world > 1 and not _sharded_by_loader(epoch, shard):
        epoch = _take_shard(epoch, shard)
    return itertools.islice(epoch, skip, None)


def batches_per_epoch(data: DataSource, shard: Shard | None = None) -> int | None:
    """This rank's batches in one epoch when the data knows its length, else ``None``.

    The same on every rank: the number of complete global batches.
    """
    shard = shard if shard is not None else Shard()
    epoch: Iterable[Batch] = data(torch.Generator()) if _is_factory(data) else data  # type: ignore[operator,assignment]
    if not isinstance(epoch, Sized):
        return None
    n = len(epoch)
    if shard.world > 1 and not _sharded_by_loader(epoch, shard):
        return n // shard.world
    return n


def count_samples(batch: Batch) -> int:
    """The batch size: the first dimension of the batch's first tensor."""
    for value in batch.values():
        if isinstance(value, Tensor) and value.ndim > 0:
            return int(value.shape[0])
    raise ConfigError(f"batch has no tensor with a batch dimension (keys: {sorted(batch)})")
