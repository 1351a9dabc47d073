"""Training the text tower on the teacher's targets, against the locked image prototypes.

The model is the whole CLIP with its image tower and temperature frozen: the text tower
classifies each text over the concept prototypes, ``softmax(s · h_t(x)·p_j)`` at a fixed
scale ``s``, and is trained by cross-entropy against soft targets:

- a concept's own caption: ``own_weight`` on its concept, the rest as the teacher spreads
  its concept's English label (so a Chinese caption is taught by the English one);
- any other text: as the teacher spreads it.

Image vectors do not change, so an index built with the contrastive weights stays valid for
the new ones (its weights fingerprint apart).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from crossmodal.errors import ConfigError, InputError
from crossmodal.models.clip import CLIP
from crossmodal.text.base import Tokenizer
from crossmodal.train.loop import TrainResult
from crossmodal.train.prior.concepts import Concepts
from crossmodal.train.prior.targets import SoftTargets, TargetConfig, soft_targets

__all__ = ["PriorConfig", "PriorResult", "PriorSamples", "build_samples", "train_text_prior"]

Teach = Callable[[Sequence[str]], npt.NDArray[np.float32]]  # texts → (N, d) unit vectors
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PriorConfig:
    """How the prior stage trains (defaults: the shipped emoji-mini's prior)."""

    steps: int = 2000
    batch_size: int = 256
    lr: float = 5e-4
    warmup_steps: int = 100
    logit_scale: float = 100.0  # fixed scale on the text-prototype cosines
    own_weight: float = 0.5  # target mass a concept's caption keeps on its own concept
    targets: TargetConfig = field(default_factory=TargetConfig)
    precision: str = "auto"
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0 or self.warmup_steps < 0:
            raise ConfigError("steps, batch_size and lr must be positive, warmup_steps >= 0")
        if not 0 <= self.own_weight <= 1:
            raise ConfigError(f"own_weight={self.own_weight}: a fraction, in [0, 1]")
        if not self.logit_scale > 0:
            raise ConfigError(f"logit_scale={self.logit_scale}: must be > 0")


@dataclass(frozen=True)
class PriorSamples:
    """The texts trained on: ``concept[n]`` is a caption's concept (-1: vocabulary)."""

    texts: list[str]
    concept: npt.NDArray[np.int64]
    targets: SoftTargets
    dropped: int  # vocabulary texts the teacher found near no concept

    def dense(self, rows: Sequence[int], n_concepts: int, own_weight: float) -> Tensor:
        """(len(rows), C) target distributions."""
        out = torch.zeros(len(rows), n_concepts)
        index = torch.as_tensor(self.targets.indices[rows])
        probs = torch.as_tensor(self.targets.probs[rows])
        own = torch.as_tensor(self.concept[rows])
        has_own = own >= 0
        probs = torch.where(has_own[:, None], probs * (1 - own_weight), probs)
        out.scatter_add_(1, index, probs)
        mine = has_own.nonzero().squeeze(1)
        out[mine, own[mine]] += own_weight
        return out


def build_samples(
    concepts: Concepts,
    vocabulary: Sequence[tuple[str, str]],
    teach: Teach,
    config: TargetConfig | None = None,
) -> PriorSamples:
    """Every caption of every concept, and the vocabulary the teacher places near a concept.

    A caption of several concepts is kept once per concept (its targets average out).
    """
    config = config or TargetConfig()
    texts: list[str] = []
    teacher_text: list[str] = []
    concept: list[int] = []
    for j, (label, captions) in enumerate(zip(concepts.labels, concepts.captions, strict=True)):
        for caption in captions:
            texts.append(caption)
            teacher_text.append(label)  # the concept's own label spreads the remainder
            concept.append(j)
    own = set(texts)
    extra = [(t, s) for t, s in vocabulary if t not in own]
    distinct = sorted({s for s in teacher_text} | {s for _, s in extra})
    vectors = teach(distinct)
    row = {s: i for i, s in enumerate(distinct)}
    label_vectors = vectors[[row[label] for label in concepts.labels]]
    all_targets = soft_targets(vectors, label_vectors, config)
    keep_extra = [(t, s) for t, s in extra if all_targets.best[row[s]] >= config.min_similarity]
    texts += [t for t, _ in keep_extra]
    teacher_text += [s for _, s in keep_extra]
    concept += [-1] * len(keep_extra)
    rows = np.array([row[s] for s in teacher_text], dtype=np.int64)
    targets = SoftTargets(
        all_targets.indices[rows], all_targets.probs[rows], all_targets.best[rows]
    )
    return PriorSamples(texts, np.array(concept, np.int64), targets, len(extra) - len(keep_extra))


class ConceptPrior(nn.Module):
    """A CLIP's text tower classifying texts over fixed concept prototypes."""

    def __init__(self, model: CLIP, prototypes: Tensor, logit_scale: float) -> None:
        super().__init__()
        self.clip = model
        self.register_buffer("prototypes", prototypes.float())
        self.scale = logit_scale
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("text."))

    def forward(self, ids: Tensor) -> Tensor:
        h_t = self.clip.encode_text(ids, normalize=True)
        prototypes = self.get_buffer("prototypes")
        return self.scale * h_t.float() @ prototypes.T


class _Texts(torch.utils.data.Dataset[dict[str, Tensor]]):
    def __init__(self, ids: Tensor, samples: PriorSamples, n_concepts: int, own: float) -> None:
        self.ids, self.samples, self.n, self.own = ids, samples, n_concepts, own

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, j: int) -> dict[str, Tensor]:
        target = self.samples.dense([j], self.n, self.own)[0]
        return {"inputs": self.ids[j], "labels": target}


@dataclass(frozen=True)
class PriorResult:
    """The trained CLIP (eval mode) and the run's record."""

    model: CLIP
    train: TrainResult


def train_text_prior(
    model: CLIP,
    tokenizer: Tokenizer,
    prototypes: npt.NDArray[np.float32],
    samples: PriorSamples,
    out_dir: str | Path,
    config: PriorConfig | None = None,
    *,
    resume: bool = False,
    progress: bool = False,
) -> PriorResult:
    """Train ``model``'s text tower in place on ``samples`` (see the module doc).

    Raises:
        InputError: No samples, or prototypes of another width than the joint space.
    """
    from crossmodal.train.config import TrainConfig
    from crossmodal.train.data_order import build_loader_factory
    from crossmodal.train.loop import train
    from crossmodal.train.objective import ClassificationObjective

    config = config or PriorConfig()
    if not samples.texts:
        raise InputError("the prior has nothing to train on: no captions and no vocabulary")
    if prototypes.shape[1] != model.config.embed_dim:
        raise InputError(
            f"prototypes are {prototypes.shape[1]}-d but the model's joint space is "
            f"{model.config.embed_dim}-d: embed the concepts with this model"
        )
    ids = torch.from_numpy(np.asarray(tokenizer(samples.texts).ids, dtype=np.int64))
    dataset = _Texts(ids, samples, len(prototypes), config.own_weight)
    prior = ConceptPrior(model, torch.from_numpy(prototypes), config.logit_scale)
    loop = TrainConfig(
        model="text-prior",
        objective="classification",
        total_steps=config.steps,
        batch_size=config.batch_size,
        lr=config.lr,
        warmup_steps=min(config.warmup_steps, config.steps - 1),
        weight_decay=0.1,
        precision=config.precision,  # type: ignore[arg-type]
        checkpoint_every=config.checkpoint_every,
        out_dir=str(out_dir),
        seed=config.seed,
        progress=progress,
    )
    log.info(
        "prior: %d texts (%d captions, %d vocabulary; %d vocabulary texts near no concept "
        "left out), %d concepts",
        len(samples.texts),
        int((samples.concept >= 0).sum()),
        int((samples.concept < 0).sum()),
        samples.dropped,
        len(prototypes),
    )
    result = train(
        prior,
        ClassificationObjective(input_key="inputs", label_key="labels"),
        build_loader_factory(dataset, config.batch_size),
        loop,
        resume=resume,
    )
    model.requires_grad_(False)
    return PriorResult(model.eval(), result)
