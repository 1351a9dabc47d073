"""Training: contrastive (InfoNCE) training and fine-tuning of the native CLIP.

    >>> from crossmodal.models.registry import create_model
    >>> from crossmodal.train import TrainConfig, build_objective, build_loader_factory, train
    >>> config = TrainConfig(model="test-tiny", total_steps=100, out_dir="runs/tiny")
    >>> factory = build_loader_factory(dataset, batch_size=config.batch_size)  # doctest: +SKIP
    >>> result = train(create_model("test-tiny"), build_objective("contrastive"), factory, config)

Modules, one job each: :mod:`~crossmodal.train.losses` (InfoNCE with gathered features,
cross-entropy), :mod:`~crossmodal.train.objective` (model + loss behind ``training_step``),
:mod:`~crossmodal.train.optim` (AdamW groups, warmup + cosine), :mod:`~crossmodal.train.freeze`
(locked towers, WiSE-FT), :mod:`~crossmodal.train.checkpoint` (atomic, weights-only
checkpoints), :mod:`~crossmodal.train.data_order` (resumable data order),
:mod:`~crossmodal.train.loop` (the loop itself), :mod:`~crossmodal.train.distributed`
(the ``torchrun`` process group: data-parallel training).
"""

from __future__ import annotations

from crossmodal.train.checkpoint import (
    TrainCheckpoint,
    latest_checkpoint,
    load_checkpoint_state,
    save_checkpoint,
)
from crossmodal.train.config import TrainConfig
from crossmodal.train.data_order import Batch, DataOrder, build_loader_factory
from crossmodal.train.errors import NonFiniteLossError
from crossmodal.train.freeze import freeze_tower, lock_image_tower, lock_text_tower, wise_ft
from crossmodal.train.loop import TrainResult, train
from crossmodal.train.losses import ClipLoss, CrossEntropyLoss
from crossmodal.train.objective import (
    ClassificationObjective,
    ContrastiveObjective,
    Objective,
    StepOutput,
    build_objective,
    list_objectives,
    register_objective,
)
from crossmodal.train.optim import WarmupCosine, build_optimizer, build_scheduler, param_groups

__all__ = [
    "Batch",
    "ClassificationObjective",
    "ClipLoss",
    "ContrastiveObjective",
    "CrossEntropyLoss",
    "DataOrder",
    "NonFiniteLossError",
    "Objective",
    "StepOutput",
    "TrainCheckpoint",
    "TrainConfig",
    "TrainResult",
    "WarmupCosine",
    "build_loader_factory",
    "build_objective",
    "build_optimizer",
    "build_scheduler",
    "freeze_tower",
    "latest_checkpoint",
    "list_objectives",
    "load_checkpoint_state",
    "lock_image_tower",
    "lock_text_tower",
    "param_groups",
    "register_objective",
    "save_checkpoint",
    "train",
    "wise_ft",
]
