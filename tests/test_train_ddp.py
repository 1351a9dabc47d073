"""Two-process data parallel training on CPU (gloo) gives the single-process gradients.

Each rank embeds half of a fixed batch, gathers the features with gradient and computes the
local-rows InfoNCE loss (:class:`~crossmodal.train.losses.ClipLoss`); DDP averages the
gradients. Rank r's loss is the mean over its own B rows, the full-batch loss the mean over
all 2B, so mean(rank losses) = full loss and mean(rank gradients) = full-batch gradient
(the all-gather backward hands each rank the other rank's share of its features' gradient).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor

from crossmodal.models.registry import create_model
from crossmodal.train import ClipLoss, ContrastiveObjective
from tests.conftest import random_ids

WORLD = 2
N = 8  # full batch; each rank holds N / WORLD rows
TOL = 1e-5

pytestmark = [
    pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built in"),
    pytest.mark.timeout(120),
]


def _batch() -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(7)
    return {"pixels": torch.randn(N, 3, 32, 32, generator=g), "ids": random_ids(N, 16, seed=7)}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("test-tiny")


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        model = _model()
        ddp = torch.nn.parallel.DistributedDataParallel(model)  # averages gradients
        B = N // WORLD
        local = {k: v[rank * B : (rank + 1) * B] for k, v in _batch().items()}
        step = ContrastiveObjective(ClipLoss(distributed=True)).training_step(ddp, local)
        torch.autograd.backward(step.loss)
        loss = step.loss.detach().clone()
        dist.all_reduce(loss)  # sum of the ranks' losses
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        torch.save({"loss": loss / WORLD, "grads": grads}, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_loss_and_gradients_equal_the_full_batch(tmp_path: Path) -> None:
    args = (str(tmp_path / "rendezvous"), str(tmp_path))
    mp.spawn(_worker, args=args, nprocs=WORLD)  # type: ignore[attr-defined,no-untyped-call]

    model = _model()
    batch = _batch()
    step = ContrastiveObjective(ClipLoss(distributed=False)).training_step(model, batch)
    torch.autograd.backward(step.loss)
    reference = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    for rank in range(WORLD):
        got = torch.load(tmp_path / f"{rank}.pt", weights_only=True)
        assert float(got["loss"]) == pytest.approx(float(step.loss.detach()), abs=TOL)
        assert got["grads"].keys() == reference.keys()
        for name, g in reference.items():
            diff = float((got["grads"][name] - g).abs().max())
            assert diff <= TOL, f"rank {rank} {name}: max |Δgrad| = {diff:.2e}"
