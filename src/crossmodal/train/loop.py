"""The training loop: accumulate, clip, step, log, checkpoint; resume exactly where it stopped.

    result = train(create_model("ViT-B-32"), ContrastiveObjective(), factory, config)

Per optimizer step, the objective's ``backward_step`` accumulates the gradients of
``accum_steps`` micro-batches; a non-finite loss or gradient norm raises
:class:`~crossmodal.train.errors.NonFiniteLossError` *before* ``optimizer.step()``, so the
weights stay as they were. Gradients are clipped to ``grad_clip``, AdamW steps, the
warmup + cosine schedule advances. bf16 autocast runs only when ``precision`` asks for it,
or ``auto`` finds fast bf16 (``resolve_dtype``); on an AVX2-only CPU auto means fp32.

Determinism: the loop owns a ``torch.Generator`` seeded with ``config.seed`` and hands it to
the data factory each epoch (:mod:`crossmodal.train.data_order`). A checkpoint stores its
state at the start of the current epoch and the batches consumed since; ``resume=True``
restores it with the weights, optimizer, schedule and global RNG states, rebuilds the epoch
and skips the consumed batches, so a stopped and resumed run ends bitwise equal to one that
ran straight through (on the same machine and thread count).

Writes ``out_dir/metrics.csv`` (one row per step), ``out_dir/checkpoints/`` and, at the end,
``out_dir/curves.png``.

Data parallel, under ``torchrun`` (:mod:`crossmodal.train.distributed`): when a process group
is live, the objective calls the model through ``DistributedDataParallel`` (the objective's
loss gathers features across ranks itself), ``config.batch_size`` is the batch of each rank and
every rank trains on its rows of the same global batches (:mod:`~crossmodal.train.data_order`),
so N ranks with batch B follow the run of one process with batch N·B. With ``accum_steps > 1``
every micro-batch runs under ``no_sync()`` and the accumulated gradients are averaged in one
all-reduce before clipping: the objective owns the micro-batch loop (the contrastive one runs a
cached no-grad pass, then one backward per micro-batch, and lets the logit scale's gradient
flow in one of them only), so the loop cannot leave just "the last backward" to DDP's reducer.
The logged loss is the mean over ranks and a non-finite loss or gradient norm stops every rank
at the same step. Only rank 0 writes metrics, curves and checkpoints (the other ranks wait for
each checkpoint at a barrier); a resume loads the checkpoint on every rank. Checkpoints hold
the unwrapped model's weights.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

from crossmodal.encoders.runtime import resolve_device, resolve_dtype
from crossmodal.errors import CheckpointError, ConfigError
from crossmodal.models.weights import load_weights
from crossmodal.train import distributed
from crossmodal.train.checkpoint import (
    checkpoint_name,
    latest_checkpoint,
    load_checkpoint_state,
    save_rotating_checkpoint,
)
from crossmodal.train.config import TrainConfig
from crossmodal.train.data_order import (
    Batch,
    DataOrder,
    DataSource,
    Shard,
    batches_per_epoch,
    count_samples,
    epoch_batches,
    live_shard,
)
from crossmodal.train.errors import NonFiniteLossError
from crossmodal.train.freeze import lock_image_tower, lock_text_tower
from crossmodal.train.objective import ForwardContext, Objective, StepOutput
from crossmodal.train.optim import (
    apply_schedule,
    build_optimizer,
    build_scheduler,
    clip_gradients,
)
from crossmodal.train.records import MetricsLog, plot_curves
from crossmodal.train.rng import capture_rng_state, restore_rng_state, seed_everything

__all__ = ["TrainResult", "forward_context_for", "total_steps_for", "train"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a call to :func:`train` did."""

    steps: int  # optimizer steps completed by the run (including those before a resume)
    epoch: int  # index of the epoch the run ended in
    loss: float  # loss of the last step (NaN if no step ran)
    samples: int  # samples processed by this call, all ranks together
    seconds: float  # wall time of this call's steps
    samples_per_s: float  # samples / seconds (all ranks)
    checkpoint: Path | None  # the last checkpoint written
    resumed_from: Path | None  # the checkpoint this call resumed from
    metrics_path: Path  # metrics.csv
    curves_path: Path | None  # curves.png, None when not plotted


@dataclass
class _Position:
    """Where the run stands: mutable, advanced by the loop."""

    step: int  # optimizer steps completed
    epoch: int  # index of the current epoch
    batches_done: int  # batches of the current epoch consumed
    epoch_state: Tensor  # data generator state at the start of the current epoch


@dataclass
class _Run:
    """The live pieces of one training call."""

    model: nn.Module  # the model itself: optimizer, checkpoints and weights refer to it
    forward_model: nn.Module  # what the objective calls: the DDP wrapper, or the model
    shard: Shard  # this rank's part of every global batch
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    config: TrainConfig
    device: torch.device
    forward_context: ForwardContext
    generator: torch.Generator
    total_steps: int
    metrics: MetricsLog | None = None
    checkpoint: Path | None = None
    loss: float = math.nan
    samples: int = 0
    tick: float = 0.0  # perf_counter at the end of the previous step


def forward_context_for(precision: str, device: torch.device) -> ForwardContext:
    """bf16 autocast when ``precision`` resolves to bf16 on ``device``, else no context."""
    dtype = resolve_dtype(precision, device)
    if dtype == torch.bfloat16:
        return functools.partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16)
    if dtype == torch.float16:
        log.warning("fp16 training needs a gradient scaler, not implemented; training in fp32")
    return nullcontext


def total_steps_for(config: TrainConfig, data: DataSource, shard: Shard | None = None) -> int:
    """``total_steps``, or the optimizer steps in ``epochs`` passes over the data.

    With a ``shard`` of several ranks an epoch is its complete global batches, the same
    number of steps on every rank.
    """
    if config.total_steps is not None:
        return config.total_steps
    n = batches_per_epoch(data, shard)
    if n is None:
        raise ConfigError("TrainConfig.epochs needs data with a length; set total_steps instead")
    steps = (config.epochs or 0) * n // config.accum_steps
    if steps < 1:
        raise ConfigError(f"{config.epochs} epoch(s) of {n} batches is not one optimizer step")
    return steps


def train(
    model: nn.Module,
    objective: Objective,
    data: DataSource,
    config: TrainConfig,
    *,
    resume: bool = False,
) -> TrainResult:
    """Train ``model`` on ``data`` with ``objective`` until ``config``'s last step.

    ``data`` is a factory ``(generator) -> batches`` (shuffled runs) or a re-iterable of
    batches (see :mod:`crossmodal.train.data_order`). ``resume=True`` continues from the
    newest checkpoint in ``config.out_dir/checkpoints`` (or starts fresh if there is none);
    a fresh start seeds torch, numpy and ``random`` with ``config.seed``.

    Raises :class:`~crossmodal.train.errors.NonFiniteLossError` when a step's loss or
    gradient norm is not finite (that update is skipped, the weights are unchanged),
    :class:`~crossmodal.errors.CheckpointError` for a checkpoint that does not fit, and
    :class:`~crossmodal.errors.ConfigError` for data the loop cannot iterate.
    """
    run = _setup(model, objective, data, config)
    out_dir = Path(config.out_dir)
    resumed = _resume(run, out_dir / "checkpoints") if resume else None
    if resumed is None:
        seed_everything(config.seed)
        pos = _Position(0, 0, 0, run.generator.get_state())
    else:
        pos = resumed
    resumed_from = run.checkpoint
    metrics_path = out_dir / "metrics.csv"
    start = time.perf_counter()
    resume_step = pos.step if resumed is not None else None
    main = distributed.is_main()
    extra = tuple(getattr(objective, "metric_columns", ()))  # the objective's own terms
    log_file = MetricsLog(metrics_path, resume_step, extra) if main else nullcontext()
    with log_file as rows:
        run.metrics = rows
        _run_epochs(run, data, pos)
    seconds = time.perf_counter() - start
    curves = plot_curves(metrics_path, out_dir / "curves.png") if config.plot and main else None
    return TrainResult(
        steps=pos.step,
        epoch=pos.epoch,
        loss=run.loss,
        samples=run.samples,
        seconds=seconds,
        samples_per_s=run.samples / seconds if seconds > 0 else 0.0,
        checkpoint=run.checkpoint,
        resumed_from=resumed_from,
        metrics_path=metrics_path,
        curves_path=curves,
    )


def _setup(model: nn.Module, objective: Objective, data: DataSource, config: TrainConfig) -> _Run:
    device = distributed.rank_device(resolve_device(config.device))
    model.to(device)
    model.train()
    if config.lock_image:
        lock_image_tower(model, config.unlocked_blocks)
    if config.lock_text:
        lock_text_tower(model, config.unlocked_blocks)
    optimizer = build_optimizer(model, config.lr, config.weight_decay, config.betas, config.eps)
    shard = live_shard()
    total = total_steps_for(config, data, shard)
    scheduler = build_scheduler(optimizer, config.warmup_steps, total, config.min_lr)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        "training %s with %s on %s (rank %d of %d): %d steps, %d trainable parameters",
        config.model,
        config.objective,
        device,
        shard.rank,
        shard.world,
        total,
        trainable,
    )
    return _Run(
        model=model,
        forward_model=_wrap_ddp(model, device),
        shard=shard,
        objective=objective,
        optimizer=optimizer,
        scheduler=scheduler,
        config=config,
        device=device,
        forward_context=forward_context_for(config.precision, device),
        generator=torch.Generator().manual_seed(config.seed),
        total_steps=total,
    )


def _wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` in a live process group (its construction
    broadcasts rank 0's weights), else ``model`` itself."""
    if not distributed.is_live():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _resume(run: _Run, directory: Path) -> _Position | None:
    path = latest_checkpoint(directory)
    if path is None:
        log.warning("resume: no checkpoint in %s; starting from scratch", directory)
        return None
    ckpt = load_checkpoint_state(path)
    changed = sorted(
        k for k, v in run.config.to_dict().items() if k in ckpt.config and ckpt.config[k] != v
    )
    if changed:
        log.warning("resume: config differs from the checkpoint's in %s", changed)
    load_weights(run.model, ckpt.model, str(path))
    # The schedule's shape (warmup, total_steps, min_lr) follows the current config, so a run
    # can be extended; its position (last_epoch, base lrs) comes from the checkpoint.
    schedule = {**ckpt.scheduler, "lr_lambdas": [None] * len(run.scheduler.lr_lambdas)}
    try:
        run.optimizer.load_state_dict(ckpt.optimizer)
        run.scheduler.load_state_dict(schedule)
        apply_schedule(run.scheduler)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: optimizer state does not fit this run ({exc}); were the locked towers "
            "or the model changed?"
        ) from exc
    restore_rng_state(ckpt.rng)
    order = DataOrder.from_dict(ckpt.rng.get("data", {}))
    run.checkpoint = path
    log.info("resumed from %s at step %d (epoch %d)", path, ckpt.step, order.epoch)
    return _Position(ckpt.step, order.epoch, order.batches_done, order.generator_state)


def _run_epochs(run: _Run, data: DataSource, pos: _Position) -> None:
    micro: list[Batch] = []
    show = run.config.progress and distributed.is_main()
    bar = tqdm(total=run.total_steps, initial=pos.step, disable=not show)
    run.tick = time.perf_counter()
    try:
        while pos.step < run.total_steps:
            run.generator.set_state(pos.epoch_state)
            seen = pos.batches_done
            for batch in epoch_batches(data, run.generator, pos.batches_done, run.shard):
                micro.append({k: v.to(run.device) for k, v in batch.items()})
                pos.batches_done += 1
                if len(micro) == run.config.accum_steps:
                    _optimizer_step(run, micro, pos)
                    micro = []
                    bar.update(1)
                    if pos.step >= run.total_steps:
                        return
            if pos.batches_done == seen == 0:
                raise ConfigError("the data yielded no batches for an epoch")
            pos.epoch += 1
            pos.batches_done = 0
            pos.epoch_state = run.generator.get_state()
    finally:
        bar.close()


def _backward(run: _Run, micro: list[Batch], params: list[nn.Parameter]) -> StepOutput:
    """The objective's accumulated backward, gradients averaged over the ranks.

    One micro-batch: DDP's reducer averages during the backward. Several: no
    synchronisation until the end, then one all-reduce (see the module docstring for why).
    """
    ddp = run.forward_model
    if len(micro) == 1 or not isinstance(ddp, nn.parallel.DistributedDataParallel):
        return run.objective.backward_step(ddp, micro, run.forward_context)
    with ddp.no_sync():
        out = run.objective.backward_step(ddp, micro, run.forward_context)
    distributed.average_gradients(params)
    return out


def _optimizer_step(run: _Run, micro: list[Batch], pos: _Position) -> None:
    params = [p for g in run.optimizer.param_groups for p in g["params"]]
    out = _backward(run, micro, params)
    loss = distributed.all_reduce_mean(float(out.loss))  # non-finite on any rank: on all
    grad_norm = clip_gradients(params, run.config.grad_clip) if math.isfinite(loss) else loss
    if distributed.any_rank(not (math.isfinite(loss) and math.isfinite(grad_norm))):
        # Synchronised gradients give every rank the same norm; report NaN here should another
        # rank alone have seen a non-finite one.
        grad_norm = grad_norm if not math.isfinite(grad_norm) else math.nan
        run.optimizer.zero_grad(set_to_none=True)
        what, value = ("loss", loss) if not math.isfinite(loss) else ("gradient norm", grad_norm)
        raise NonFiniteLossError(pos.step + 1, what, value)
    lr = float(run.optimizer.param_groups[0]["lr"])
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    pos.step += 1
    samples = sum(count_samples(b) for b in micro) * run.shard.world
    seconds = time.perf_counter() - run.tick  # data loading included, checkpointing not
    run.loss, run.samples = loss, run.samples + samples
    row = {
        "step": pos.step,
        "epoch": pos.epoch,
        "loss": loss,
        "lr": lr,
        "grad_norm": grad_norm,
        "logit_scale": out.metrics.get("logit_scale", math.nan),
        "samples_per_s": samples / seconds if seconds > 0 else math.nan,
    }
    row.update({k: v for k, v in out.metrics.items() if k not in row})
    if run.metrics is not None:
        run.metrics.write(row)
    if pos.step % run.config.log_every == 0 or pos.step == run.total_steps:
        log.info(
            "step %d/%d epoch %d loss %.4f lr %.3g grad_norm %.3g %.1f samples/s",
            pos.step,
            run.total_steps,
            pos.epoch,
            loss,
            lr,
            grad_norm,
            row["samples_per_s"],
        )
    every = run.config.checkpoint_every
    if (every and pos.step % every == 0) or pos.step == run.total_steps:
        _save(run, pos)
    run.tick = time.perf_counter()


def _save(run: _Run, pos: _Position) -> None:
    """Rank 0 writes the checkpoint; the others wait until it is complete."""
    directory = Path(run.config.out_dir) / "checkpoints"
    if not distributed.is_main():
        distributed.barrier()
        run.checkpoint = directory / checkpoint_name(pos.step)
        return
    data = DataOrder(pos.epoch, pos.epoch_state, pos.batches_done)
    run.checkpoint = save_rotating_checkpoint(
        directory,
        run.config.keep_checkpoints,
        run.model,
        run.optimizer,
        run.scheduler,
        pos.step,
        pos.epoch,
        run.config,
        {**capture_rng_state(), "data": data.to_dict()},
    )
    log.info("saved checkpoint %s", run.checkpoint)
    distributed.barrier()
