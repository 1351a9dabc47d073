"""Contrastive training with a language prior distilled in: InfoNCE plus a teacher term.

The text tower learns the images (CLIP's symmetric InfoNCE) and, at the same time, the
geometry of a sentence-embedding teacher (all-MiniLM-L6-v2): a linear map ``P`` of its
embedding must point where the teacher's vector of the caption points,

    loss = InfoNCE(h_i, h_t) + β · mean(1 − cos(P h_t(t), T(t)))

(multilingual distillation, Reimers & Gurevych 2020: a Chinese caption is taught by its
sample's English caption). Since ``P`` is linear and shared, texts the teacher places
together ("puppy", "dog") must land together in the joint space too. ``P`` lives in
:class:`DistilledCLIP` beside the CLIP, is trained with it, and is dropped when the weights
are saved (``model.clip``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossmodal.errors import ConfigError, InputError
from crossmodal.models.clip import CLIP, CLIPOutput
from crossmodal.train.data_order import Batch
from crossmodal.train.objective import ContrastiveObjective, ForwardContext, StepOutput

__all__ = ["DistillObjective", "DistilledCLIP"]


class DistilledCLIP(nn.Module):
    """A CLIP and the linear map of its text embeddings into a teacher's space."""

    def __init__(self, clip: CLIP, teacher_dim: int) -> None:
        super().__init__()
        self.clip = clip
        self.config = clip.config
        self.proj = nn.Linear(clip.config.embed_dim, teacher_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=clip.config.embed_dim**-0.5)

    def forward(self, pixels: Tensor, ids: Tensor) -> CLIPOutput:
        out: CLIPOutput = self.clip(pixels, ids)
        return out


class DistillObjective(ContrastiveObjective):
    """InfoNCE plus ``weight`` × the teacher term (see the module doc).

    ``table`` holds the teacher's unit vectors; a batch's ``teacher`` entry gives each
    caption's row (-1: no teacher text, no distillation for that pair). ``vocabulary``
    (token ids (V, T), teacher rows (V,)) adds ``vocab_batch`` text-only rows drawn at random
    each step (words no image shows, an icon vocabulary, a glossary); the draws follow
    ``seed`` but are not restored by a resume.
    """

    name = "distill"
    metric_columns = ("infonce", "distill")  # logged beside the common columns

    def __init__(
        self,
        table: Tensor,
        weight: float = 1.0,
        vocabulary: tuple[Tensor, Tensor] | None = None,
        vocab_batch: int = 128,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if vocabulary is not None and (
            len(vocabulary[0]) != len(vocabulary[1]) or not len(vocabulary[0])
        ):
            raise InputError("vocabulary: token ids and teacher rows must be equally many, > 0")
        self.vocabulary = vocabulary
        self.vocab_batch = vocab_batch
        self.generator = torch.Generator().manual_seed(seed)
        if table.ndim != 2 or not len(table):
            raise InputError(f"teacher table {tuple(table.shape)}: need (N, d) with N > 0")
        if not weight >= 0:
            raise ConfigError(f"distillation weight {weight}: must be >= 0")
        self.table = F.normalize(table.float(), dim=-1)
        self.weight = weight

    def training_step(self, model: nn.Module, batch: Batch) -> StepOutput:
        """InfoNCE over the batch plus the teacher term over its taught captions."""
        if not isinstance(model, DistilledCLIP):
            raise ConfigError("the distill objective trains a DistilledCLIP (CLIP + projection)")
        rows = batch.get("teacher")
        if rows is None:
            raise InputError("distill objective: the batch has no 'teacher' rows")
        out = model(batch["pixels"], batch["ids"])  # h_t and h_i unit, as InfoNCE wants
        loss = self.loss(out.h_i, out.h_t, out.logit_scale)
        metrics = {"logit_scale": float(out.logit_scale.detach()), "infonce": float(loss.detach())}
        metrics["distill"] = 0.0
        taught = rows >= 0
        h_t, rows = out.h_t[taught], rows[taught]
        if self.vocabulary is not None:
            ids, vocab_rows = self.vocabulary
            pick = torch.randint(len(ids), (self.vocab_batch,), generator=self.generator)
            words = model.clip.encode_text(ids[pick].to(h_t.device), normalize=True)
            h_t, rows = torch.cat([h_t, words]), torch.cat([rows, vocab_rows[pick].to(rows.device)])
        if len(rows):
            z = F.normalize(model.proj(h_t.float()), dim=-1)
            target = self.table.to(z.device)[rows]
            distill = (1 - (z * target).sum(-1)).mean()
            metrics["distill"] = float(distill.detach())
            loss = loss + self.weight * distill
        metrics["loss"] = float(loss.detach())
        return StepOutput(loss, metrics)

    def backward_step(
        self,
        model: nn.Module,
        micro_batches: Sequence[Batch],
        forward_context: ForwardContext = nullcontext,
    ) -> StepOutput:
        """One micro-batch per step: the parent's cached-feature accumulation would leave the
        teacher term out, so accumulation is refused."""
        if len(micro_batches) != 1:
            raise ConfigError("distillation trains with accum_steps=1; raise --batch-size")
        return super().backward_step(model, micro_batches, forward_context)
