"""Losses: symmetric InfoNCE for the dual encoder, cross-entropy for classifier heads.

The contrastive loss of CLIP (Radford et al., 2021) over a batch of N pairs, with
``s = exp(τ)`` the learnable logit scale:

    logits = s · h_i · h_tᵀ                       (N, N), row n is image n against every text
    L = ½ · [CE(logits, arange(N)) + CE(logitsᵀ, arange(N))]

Distributed ("local loss with gradient-carrying all-gather", OpenCLIP's ``local_loss=True``
with ``gather_with_grad=True``): rank r holds B rows; it gathers every rank's features with
``torch.distributed.nn.functional.all_gather``, whose backward sends each rank the gradient
of its own features, and computes only its B local rows against the world·B gathered ones,
with labels offset by r·B. Its loss L_r is the mean over its B image rows and B text rows.

Scaling: the full-batch loss is the mean over all N = world·B rows, L = (1/world)·Σ_r L_r.
After backward, rank r holds Σ_s ∂L_s/∂θ through its own features (the all-gather backward
sums the other ranks' contributions), and DDP *averages* gradients over ranks, giving
(1/world)·Σ_s ∂L_s/∂θ = ∂L/∂θ. So DDP-averaged gradients equal single-process full-batch
ones, and the mean of the ranks' losses equals the full-batch loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossmodal.errors import InputError
from crossmodal.train import distributed

__all__ = ["ClipLoss", "CrossEntropyLoss", "gather_features"]


def gather_features(h: Tensor) -> Tensor:
    """Every rank's rows of ``h`` (B, D) stacked in rank order → (world·B, D), with gradient.

    Every rank must pass the same B. Outside a process group this returns ``h`` itself.
    """
    if distributed.world_size() == 1:
        return h
    from torch.distributed.nn.functional import all_gather

    gathered = all_gather(h.contiguous())  # type: ignore[no-untyped-call]
    return torch.cat(gathered, dim=0)  # (world·B, D)


class ClipLoss(nn.Module):
    """Symmetric InfoNCE over image-text pairs, local rows against gathered features.

    ``forward(h_i, h_t, logit_scale)`` takes L2-normalised embeddings (B, D) and the logit
    scale ``s = exp(τ)`` (the multiplier itself, as :class:`~crossmodal.models.clip.CLIPOutput`
    gives it), and returns the scalar loss. In a process group of several ranks the features
    are gathered with gradient (see the module docstring for why the scaling is right);
    ``distributed=False`` computes on the local batch only.
    """

    def __init__(self, distributed: bool = True) -> None:
        super().__init__()
        self.distributed = distributed  # gather features across ranks when a group is live

    def forward(self, h_i: Tensor, h_t: Tensor, logit_scale: Tensor) -> Tensor:
        """L = ½·[CE(image rows) + CE(text rows)], labels = arange(B) + rank·B."""
        if h_i.shape != h_t.shape or h_i.ndim != 2:
            raise InputError(
                f"h_i {tuple(h_i.shape)} and h_t {tuple(h_t.shape)} must both be (B, D)"
            )
        live = self.distributed
        rank, world = (distributed.rank(), distributed.world_size()) if live else (0, 1)
        B = h_i.shape[0]
        # The softmax runs in fp32 even under bf16 autocast: logits up to 100 need the range.
        with torch.autocast(device_type=h_i.device.type, enabled=False):
            h_i, h_t, s = h_i.float(), h_t.float(), logit_scale.float()
            if world > 1:
                all_h_i, all_h_t = gather_features(h_i), gather_features(h_t)  # (world·B, D)
                logits_i = s * h_i @ all_h_t.T  # (B, world·B): local images, every text
                logits_t = s * h_t @ all_h_i.T  # (B, world·B): local texts, every image
            else:
                logits_i = s * h_i @ h_t.T  # (B, B): image n against every text
                logits_t = logits_i.T
            labels = torch.arange(B, device=h_i.device) + rank * B
            loss: Tensor = (
                F.cross_entropy(logits_i, labels) + F.cross_entropy(logits_t, labels)
            ) / 2
        return loss


class CrossEntropyLoss(nn.Module):
    """Cross-entropy of classifier logits (B, C), in fp32, against integer labels (B,) or
    class probabilities (B, C) (soft targets: a teacher's distribution, distillation)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing  # mass spread over the other classes, in [0, 1)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy over the batch."""
        soft = labels.ndim == 2 and labels.shape == logits.shape
        if logits.ndim != 2 or not (soft or labels.shape == logits.shape[:1]):
            raise InputError(
                f"logits {tuple(logits.shape)} must be (B, C) and labels {tuple(labels.shape)} "
                "(B,) class indices or (B, C) class probabilities"
            )
        if soft != labels.dtype.is_floating_point:
            kind = "class probabilities must be floats" if soft else "class indices must be ints"
            raise InputError(f"labels {tuple(labels.shape)} of {labels.dtype}: {kind}")
        target = labels.float() if soft else labels
        loss: Tensor = F.cross_entropy(logits.float(), target, label_smoothing=self.label_smoothing)
        return loss
