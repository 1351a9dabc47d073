"""Training the memory re-ranker (:mod:`crossmodal.heads.rerank`) and measuring what it does.

The re-ranker earns its keep on pictures unlike those it remembers (a new drawing style), so
training makes every caption look at the memory the way a query on a new collection will:

* its candidates (its picture and the ``candidates - 1`` wrong pictures the embedding search
  ranks highest) come from its picture's own **gallery** (one style, one source), as a search
  over one collection sees them; never a picture of its own concept (**group**);
* the memory it attends over holds **no picture of that gallery** (with one gallery: not its
  own picture), so what helps is the same concept seen elsewhere;
* for a fraction ``drop_group`` of the captions the memory holds **nothing of its concept**,
  so the gate learns to stay shut for concepts the memory lacks.

The loop is the common one (:func:`crossmodal.train.loop.train`, cross-entropy with the
positive first), so a run has the usual checkpoints, resume and curves.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from crossmodal.errors import ConfigError
from crossmodal.heads.rerank import Reranker, RerankMemory, mine_hard_negatives
from crossmodal.train.loop import TrainResult

__all__ = [
    "RerankTrainConfig",
    "build_memory",
    "memory_captions",
    "rerank_ranks",
    "train_reranker",
]


@dataclass(frozen=True)
class RerankTrainConfig:
    """How a re-ranker is trained (defaults: those measured in ``benchmarks/rerank.py``)."""

    candidates: int = 21  # per caption: its picture and 20 hard negatives (a top 20, plus one)
    steps: int = 1500
    batch_size: int = 512
    lr: float = 1e-2
    drop_group: float = 0.3  # captions trained with their concept missing from the memory
    seed: int = 0

    def __post_init__(self) -> None:
        if self.candidates < 2:
            raise ConfigError(f"candidates={self.candidates}: need at least 2")
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("steps, batch_size and lr must be positive")
        if not 0 <= self.drop_group < 1:
            raise ConfigError(f"drop_group={self.drop_group}: a fraction, need [0, 1)")


def memory_captions(captions: Sequence[str]) -> list[str]:
    """A picture's keys in memory: its first caption in each language (English, Chinese).

    Captions usually lead with the label (``grinning face``, then tags and templates); the
    label in each language is what a query looks like, and one key per language keeps the
    memory small.
    """
    from crossmodal.text.language import query_language

    first: dict[str, str] = {}
    for caption in captions:
        if caption.strip():
            first.setdefault(query_language([caption]), caption)
    return list(first.values())


def build_memory(
    pictures: Tensor,
    captions: Sequence[Sequence[str]],
    embed_texts: Callable[[list[str]], Tensor],
    *,
    groups: Sequence[Hashable] | None = None,
    galleries: Sequence[Hashable] | None = None,
) -> RerankMemory:
    """A memory of captioned pictures.

    Args:
        pictures: (V, D) unit picture vectors.
        captions: each picture's captions (its keys: :func:`memory_captions`).
        embed_texts: texts → (N, D) unit vectors, by the encoder that made ``pictures``.
        groups: what each picture shows (a label; pictures sharing it are never each
            other's negatives); default: each picture its own.
        galleries: where each picture comes from (a style, a source folder); default: one.

    Raises:
        InputError: The lengths disagree, or no picture has a caption.
    """
    from crossmodal.errors import InputError

    v = len(pictures)
    if len(captions) != v or (groups is not None and len(groups) != v):
        raise InputError(f"build_memory: {v} pictures, {len(captions)} caption lists")
    if galleries is not None and len(galleries) != v:
        raise InputError(f"build_memory: {v} pictures, {len(galleries)} galleries")
    texts, owner = [], []
    for picture, own in enumerate(captions):
        for text in memory_captions(own):
            texts.append(text)
            owner.append(picture)
    if not texts:
        raise InputError("build_memory: no picture has a caption; the memory's keys are captions")

    def ids(values: Sequence[Hashable] | None) -> Tensor:
        if values is None:
            return torch.arange(v)
        index: dict[Hashable, int] = {}
        return torch.tensor([index.setdefault(x, len(index)) for x in values])

    return RerankMemory(
        keys=embed_texts(texts),
        key_picture=torch.tensor(owner),
        pictures=pictures,
        groups=ids(groups),
        galleries=ids(galleries) if galleries is not None else torch.zeros(v, dtype=torch.long),
    )


class _Captions(torch.utils.data.Dataset[dict[str, Tensor]]):
    """Caption j of the memory with its candidates and what it must not see."""

    def __init__(self, memory: RerankMemory, candidates: Tensor, drop: Tensor) -> None:
        picture = memory.key_picture
        self.h_t = memory.keys
        self.h_i = memory.pictures
        self.candidates = candidates
        self.exclude_picture = picture
        one_gallery = len(torch.unique(memory.galleries)) == 1
        none = torch.full_like(picture, -1)
        self.exclude_gallery = none if one_gallery else memory.galleries[picture]
        self.exclude_group = torch.where(drop, memory.groups[picture], none)

    def __len__(self) -> int:
        return len(self.candidates)

    def __getitem__(self, j: int) -> dict[str, Tensor]:
        return {
            "h_t": self.h_t[j],
            "h_i": self.h_i[self.candidates[j]],
            "exclude_picture": self.exclude_picture[j],
            "exclude_gallery": self.exclude_gallery[j],
            "exclude_group": self.exclude_group[j],
            "labels": torch.tensor(0),
        }


def train_reranker(
    memory: RerankMemory,
    out_dir: str | Path,
    config: RerankTrainConfig | None = None,
    *,
    logit_scale: float = 100.0,
) -> tuple[Reranker, TrainResult]:
    """A re-ranker over ``memory``, its four numbers fitted on the memory's own captions
    (returned in eval mode, frozen).

    Raises:
        InputError: A gallery holds fewer pictures than ``config.candidates``.
    """
    from crossmodal.train.config import TrainConfig
    from crossmodal.train.data_order import build_loader_factory
    from crossmodal.train.loop import train
    from crossmodal.train.objective import ClassificationObjective

    config = config or RerankTrainConfig()
    candidates = mine_hard_negatives(
        memory.keys,
        memory.pictures,
        memory.key_picture,
        config.candidates,
        text_groups=memory.groups[memory.key_picture],
        image_groups=memory.groups,
        galleries=memory.galleries,
    )
    generator = torch.Generator().manual_seed(config.seed)
    drop = torch.rand(len(memory.keys), generator=generator) < config.drop_group
    dataset = _Captions(memory, candidates, drop)
    torch.manual_seed(config.seed)
    reranker = Reranker(memory, logit_scale=logit_scale)
    loop = TrainConfig(
        model="reranker",
        objective="classification",
        total_steps=config.steps,
        batch_size=config.batch_size,
        lr=config.lr,
        warmup_steps=config.steps // 20,
        weight_decay=0.0,
        checkpoint_every=0,
        out_dir=str(out_dir),
        seed=config.seed,
        plot=False,
    )
    result = train(
        reranker,
        ClassificationObjective(input_key=None, label_key="labels"),
        build_loader_factory(dataset, config.batch_size),
        loop,
    )
    return reranker.eval().requires_grad_(False), result


@torch.inference_mode()
def rerank_ranks(
    reranker: Reranker, queries: Tensor, gallery: Tensor, truth: Tensor, top_n: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Rank (0 = first) of each query's right picture by the embedding search, then with
    the search's top ``top_n`` re-scored by ``reranker`` (ranks past ``top_n`` unchanged).

    Args:
        queries: (N, D) unit query vectors; gallery: (G, D) unit picture vectors;
        truth: (N,) the index in ``gallery`` of each query's right picture.
    """
    scores = queries @ gallery.T
    order = scores.argsort(dim=1, descending=True)
    base = (order == truth[:, None]).long().argmax(dim=1)
    top = order[:, :top_n]
    rescored = reranker.eval()({"h_t": queries, "h_i": gallery[top]})
    reordered = top.gather(1, rescored.argsort(dim=1, descending=True))
    new = torch.where(base < top_n, (reordered == truth[:, None]).long().argmax(dim=1), base)
    return base.numpy(), new.numpy()
