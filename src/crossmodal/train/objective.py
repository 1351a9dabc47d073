"""Objectives: model and loss behind one interface, so the loop does not care which runs.

An :class:`Objective` turns a batch into a loss (``training_step``) and a group of
micro-batches into accumulated gradients (``backward_step``). The gradient of
``backward_step`` equals that of ``training_step`` on the micro-batches concatenated:

- :class:`ClassificationObjective` has a per-sample loss, so it averages the micro-batch
  losses (equal-sized micro-batches, as a ``drop_last`` loader gives);
- :class:`ContrastiveObjective` cannot: each pair's negatives are the whole batch. It first
  embeds every micro-batch without gradient, then for each one recomputes its own features
  with gradient and takes the full-batch loss against the cached others (OpenCLIP's
  ``accum_freq``, without its double count of the logit-scale gradient).

Objectives are registered by name (``build_objective("contrastive")``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from crossmodal.errors import ConfigError, InputError
from crossmodal.train.data_order import Batch
from crossmodal.train.losses import ClipLoss, CrossEntropyLoss

__all__ = [
    "ClassificationObjective",
    "ContrastiveObjective",
    "ForwardContext",
    "Objective",
    "StepOutput",
    "build_objective",
    "list_objectives",
    "register_objective",
]

ForwardContext = Callable[[], AbstractContextManager[Any]]  # e.g. a bf16 autocast, or nullcontext


@dataclass(frozen=True)
class StepOutput:
    """The loss of one step (scalar, with graph unless backward already ran) and its metrics."""

    loss: Tensor  # () mean loss over the batch
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. {"loss": …, "logit_scale": …}


@runtime_checkable
class Objective(Protocol):
    """What the loop needs from a training objective."""

    def training_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        """Forward one batch and return its loss, graph attached."""
        ...

    def backward_step(
        self,
        model: nn.Module,
        micro_batches: Sequence[Batch],
        forward_context: ForwardContext = nullcontext,
    ) -> StepOutput:
        """Accumulate into ``.grad`` the gradient of the loss of all micro-batches together."""
        ...


def _require(batch: Batch, keys: Sequence[str], objective: str) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise InputError(
            f"{objective} objective: batch lacks {missing} (has {sorted(batch)}); "
            f"it needs {list(keys)}"
        )


class ContrastiveObjective:
    """CLIP's symmetric InfoNCE: batch = {"pixels": (B, 3, S, S), "ids": (B, T)}."""

    name = "contrastive"

    def __init__(self, loss: ClipLoss | None = None) -> None:
        self.loss = loss if loss is not None else ClipLoss()  # gathers across ranks when live

    def training_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        """Embed both modalities and take the InfoNCE loss over the batch."""
        _require(batch, ("pixels", "ids"), self.name)
        out = model(batch["pixels"], batch["ids"])
        loss = self.loss(out.h_i, out.h_t, out.logit_scale)
        return StepOutput(loss, _metrics(loss, out.logit_scale))

    def backward_step(
        self,
        model: nn.Module,
        micro_batches: Sequence[Batch],
        forward_context: ForwardContext = nullcontext,
    ) -> StepOutput:
        """Full-batch InfoNCE gradients, one micro-batch of activations in memory at a time."""
        if len(micro_batches) == 1:
            with forward_context():
                step = self.training_step(model, micro_batches[0])
            torch.autograd.backward(step.loss)
            return StepOutput(step.loss.detach(), step.metrics)
        for mb in micro_batches:
            _require(mb, ("pixels", "ids"), self.name)
        with torch.no_grad(), forward_context():
            cached = [model(mb["pixels"], mb["ids"]) for mb in micro_batches]
        loss = torch.zeros(())
        for j, mb in enumerate(micro_batches):
            with forward_context():
                out = model(mb["pixels"], mb["ids"])
                h_i = torch.cat([out.h_i if k == j else c.h_i for k, c in enumerate(cached)])
                h_t = torch.cat([out.h_t if k == j else c.h_t for k, c in enumerate(cached)])
                # The scale is shared by every pass: let its gradient flow once, not n times.
                scale = out.logit_scale if j == 0 else out.logit_scale.detach()
                loss = self.loss(h_i, h_t, scale)
            torch.autograd.backward(loss)
        return StepOutput(loss.detach(), _metrics(loss, cached[0].logit_scale))


class ClassificationObjective:
    """Cross-entropy of a classifier head: ``model(batch[input_key]) -> logits (B, C)``.

    With ``input_key=None`` the model gets the whole batch mapping (heads that read several
    entries, such as :class:`~crossmodal.heads.classify.MultimodalClassifier`).
    """

    name = "classification"

    def __init__(
        self,
        input_key: str | None = "inputs",
        label_key: str = "labels",
        loss: CrossEntropyLoss | None = None,
    ) -> None:
        self.input_key = input_key  # batch entry passed to the model; None: the whole batch
        self.label_key = label_key  # batch entry: class labels (B,) or probabilities (B, C)
        self.loss = loss if loss is not None else CrossEntropyLoss()

    def training_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        """Classify the batch and take the mean cross-entropy; also report accuracy."""
        keys = (self.label_key,) if self.input_key is None else (self.input_key, self.label_key)
        _require(batch, keys, self.name)
        logits = model(batch if self.input_key is None else batch[self.input_key])
        labels = batch[self.label_key]
        loss = self.loss(logits, labels)
        wanted = labels.argmax(dim=-1) if labels.ndim == 2 else labels  # soft: the likeliest
        accuracy = (logits.detach().argmax(dim=-1) == wanted).float().mean()
        return StepOutput(loss, {"loss": float(loss.detach()), "accuracy": float(accuracy)})

    def backward_step(
        self,
        model: nn.Module,
        micro_batches: Sequence[Batch],
        forward_context: ForwardContext = nullcontext,
    ) -> StepOutput:
        """Average the micro-batch losses: the full-batch mean for equal-sized micro-batches."""
        n = len(micro_batches)
        total = torch.zeros(())
        sums: dict[str, float] = {}
        for mb in micro_batches:
            with forward_context():
                step = self.training_step(model, mb)
            torch.autograd.backward(step.loss / n)
            total = total + step.loss.detach() / n
            for key, value in step.metrics.items():
                sums[key] = sums.get(key, 0.0) + value / n
        return StepOutput(total, sums)


def _metrics(loss: Tensor, logit_scale: Tensor) -> dict[str, float]:
    return {"loss": float(loss.detach()), "logit_scale": float(logit_scale.detach())}


_OBJECTIVES: dict[str, Callable[..., Objective]] = {
    "contrastive": ContrastiveObjective,
    "classification": ClassificationObjective,
}


def list_objectives() -> list[str]:
    """Names of the registered objectives, sorted."""
    return sorted(_OBJECTIVES)


def register_objective(name: str, factory: Callable[..., Objective]) -> None:
    """Register an objective class or factory under ``name``."""
    _OBJECTIVES[name] = factory


def build_objective(name: str, **kwargs: Any) -> Objective:
    """Build the objective registered under ``name``; the error lists the valid names."""
    try:
        factory = _OBJECTIVES[name]
    except KeyError:
        raise ConfigError(
            f"unknown objective {name!r}; registered objectives: {', '.join(list_objectives())}"
        ) from None
    return factory(**kwargs)
