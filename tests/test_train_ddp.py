"""Two-process data parallel training on CPU (gloo) follows the single-process run.

Gradients: each rank embeds half of a fixed batch, gathers the features with gradient and
computes the local-rows InfoNCE loss (:class:`~crossmodal.train.losses.ClipLoss`); DDP
averages the gradients. Rank r's loss is the mean over its own B rows, the full-batch loss
the mean over all 2B, so mean(rank losses) = full loss and mean(rank gradients) = full-batch
gradient (the all-gather backward hands each rank the other rank's share of its features'
gradient).

The loop: :func:`~crossmodal.train.train` in 2 processes with batch 4 per rank (and with
batch 2 per rank and ``accum_steps=2``) ends with the weights of 1 process with batch 8;
only rank 0 writes files; a killed DDP run resumes on both ranks to the same weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor

from crossmodal.errors import ConfigError
from crossmodal.models.registry import create_model
from crossmodal.train import (
    ClipLoss,
    ContrastiveObjective,
    TrainConfig,
    build_loader_factory,
    distributed,
    latest_checkpoint,
    train,
)
from crossmodal.train import loop as train_loop
from crossmodal.train.data_order import Shard, batches_per_epoch, epoch_batches
from crossmodal.train.records import read_metrics
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


# --------------------------------------------------------------------------- the loop under DDP

PAIRS = 26  # 3 global batches of 8 (the last 2 pairs are dropped on every rank)


def _pairs(n: int = PAIRS) -> torch.utils.data.Dataset[Any]:
    g = torch.Generator().manual_seed(3)
    pixels = torch.randn(n, 3, 32, 32, generator=g)
    ids = random_ids(n, 16, seed=3)
    return torch.utils.data.StackDataset(pixels=pixels, ids=ids)  # type: ignore[arg-type]


class _KilledError(Exception):
    """Stands in for the processes being killed."""


class _Killing(torch.utils.data.Dataset[Any]):
    """``_pairs()``, dying at its ``kill_at``-th item (the same item count on every rank)."""

    def __init__(self, kill_at: int) -> None:
        self.pairs, self.kill_at, self.served = _pairs(), kill_at, 0

    def __len__(self) -> int:
        return len(self.pairs)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        self.served += 1
        if self.served == self.kill_at:
            raise _KilledError
        return self.pairs[index]


def _config(out: Path, batch_size: int, **overrides: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "batch_size": batch_size,
        "epochs": 1,
        "lr": 1e-3,
        "warmup_steps": 0,
        "weight_decay": 0.1,
        "checkpoint_every": 2,
        "out_dir": str(out),
        "plot": False,
        "device": "cpu",
        "precision": "fp32",
    }
    return TrainConfig(**{**base, **overrides})


def _state(model: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _count_calls(name: str, counts: dict[str, int]) -> None:
    """Count the calls of ``crossmodal.train.loop.<name>`` in this process."""
    real = getattr(train_loop, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        counts[name] = counts.get(name, 0) + 1
        return real(*args, **kwargs)

    setattr(train_loop, name, counted)


def _train_worker(rank: int, init_file: str, root: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        counts: dict[str, int] = {}
        for name in ("MetricsLog", "save_rotating_checkpoint", "plot_curves"):
            _count_calls(name, counts)
        out = Path(root)
        objective = ContrastiveObjective()
        runs = {
            "b4": _config(out / "b4", 4, plot=True),
            "accum": _config(out / "accum", 2, accum_steps=2),
        }
        results: dict[str, Any] = {}
        for name, config in runs.items():
            model = _model()
            result = train(
                model, objective, build_loader_factory(_pairs(), config.batch_size), config
            )
            torch.save(_state(model), out / f"{name}-{rank}.pt")
            results[name] = {"steps": result.steps, "samples": result.samples}

        # Killed when it asks for batch 3 (items 9..12 of this rank): the last checkpoint is
        # step 2; the resume starts from other weights, on both ranks.
        config = _config(out / "resume", 4)
        with pytest.raises(_KilledError):
            train(_model(), objective, build_loader_factory(_Killing(9), 4), config)
        torch.manual_seed(123)
        model = create_model("test-tiny")
        result = train(model, objective, build_loader_factory(_pairs(), 4), config, resume=True)
        torch.save(_state(model), out / f"resume-{rank}.pt")
        results["resume"] = {"steps": result.steps, "from": str(result.resumed_from)}
        results["calls"] = counts
        (out / f"results-{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def _assert_close(a: dict[str, Tensor], b: dict[str, Tensor], what: str) -> None:
    assert a.keys() == b.keys()
    for name, v in b.items():
        diff = float((a[name] - v).abs().max())
        assert diff <= TOL, f"{what} {name}: max |Δ| = {diff:.2e}"


def test_two_process_training_equals_one_process_with_the_doubled_batch(tmp_path: Path) -> None:
    mp.spawn(_train_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD)  # type: ignore[attr-defined,no-untyped-call]

    reference = _model()
    factory = build_loader_factory(_pairs(), 8)
    result = train(reference, ContrastiveObjective(), factory, _config(tmp_path / "one", 8))
    assert result.steps == 3
    expected = _state(reference)

    for rank in range(WORLD):
        got = json.loads((tmp_path / f"results-{rank}.json").read_text())
        assert got["b4"] == got["accum"] == {"steps": 3, "samples": 24}
        assert got["resume"]["steps"] == 3
        assert got["resume"]["from"].endswith("step-00000002.pt")
        for run in ("b4", "accum", "resume"):
            state = torch.load(tmp_path / f"{run}-{rank}.pt", weights_only=True)
            _assert_close(state, expected, f"rank {rank} {run}")
        # Only rank 0 opens metrics.csv, saves checkpoints and plots.
        calls = got["calls"]
        if rank == 0:
            assert calls == {"MetricsLog": 4, "save_rotating_checkpoint": 6, "plot_curves": 1}
        else:
            assert calls == {}

    rows = read_metrics(tmp_path / "b4" / "metrics.csv")
    assert [r["step"] for r in rows] == [1, 2, 3]
    one = read_metrics(tmp_path / "one" / "metrics.csv")
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in one], abs=TOL)
    assert (tmp_path / "b4" / "curves.png").is_file()
    checkpoints = tmp_path / "b4" / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.pt")) == [
        "step-00000002.pt",
        "step-00000003.pt",
    ]
    ckpt = torch.load(latest_checkpoint(checkpoints), weights_only=True)  # type: ignore[arg-type]
    assert ckpt["model"].keys() == expected.keys()  # the unwrapped model's keys
    resumed = read_metrics(tmp_path / "resume" / "metrics.csv")
    assert [r["step"] for r in resumed] == [1, 2, 3]


# --------------------------------------------------------------------------- sharding


def test_ranks_take_consecutive_slices_of_each_global_batch() -> None:
    single = list(build_loader_factory(_pairs(), 8)(torch.Generator().manual_seed(5)))
    shards = [
        list(build_loader_factory(_pairs(), 4, shard=Shard(r, 2))(torch.Generator().manual_seed(5)))
        for r in range(2)
    ]
    assert len(single) == len(shards[0]) == len(shards[1]) == 3  # 26 // 8
    for k, batch in enumerate(single):
        for key, rows in batch.items():
            assert torch.equal(rows, torch.cat([shards[0][k][key], shards[1][k][key]]))


def test_other_data_is_sharded_by_groups_of_world_batches() -> None:
    batches = [{"x": torch.full((2,), float(i))} for i in range(5)]
    g = torch.Generator()
    got = [float(b["x"][0]) for b in epoch_batches(batches, g, shard=Shard(1, 2))]
    assert got == [1.0, 3.0]  # batch 4 is an incomplete global batch: dropped
    assert batches_per_epoch(batches, Shard(1, 2)) == 2
    assert [float(b["x"][0]) for b in epoch_batches(batches, g, 1, Shard(0, 2))] == [2.0]


def test_data_sharded_twice_is_refused() -> None:
    factory = build_loader_factory(_pairs(), 4, shard=Shard(0, 2))

    def wrapped(generator: torch.Generator) -> Any:
        def epoch() -> Any:
            yield from factory(generator)  # hides the sharded DataLoader from the loop

        return epoch()

    with pytest.raises(ConfigError, match="sharded twice"):
        next(epoch_batches(wrapped, torch.Generator(), shard=Shard(0, 2)))
    with pytest.raises(ConfigError, match="sharded for"):
        next(epoch_batches(factory, torch.Generator(), shard=Shard(1, 2)))


# --------------------------------------------------------------------------- outside torchrun


def test_outside_torchrun_everything_is_a_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.torchrun_env() is None
    with distributed.process_group("cpu") as live:
        assert not live and not distributed.is_live()
        assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
        assert distributed.all_reduce_mean(2.5) == 2.5
        assert distributed.any_rank(True) and not distributed.any_rank(False)
        distributed.barrier()
        p = torch.nn.Parameter(torch.ones(2))
        p.grad = torch.full((2,), 3.0)
        distributed.average_gradients([p])
        assert torch.equal(p.grad, torch.full((2,), 3.0))
    device = torch.device("cpu")
    assert distributed.rank_device(device) == device


def test_torchrun_environment_is_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.torchrun_env() == distributed.TorchrunEnv(rank=1, world_size=2, local_rank=1)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ConfigError, match="RANK=2"):
        distributed.torchrun_env()
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ConfigError, match="malformed"):
        distributed.torchrun_env()
