"""``crossmodal train --task rerank``: a memory re-ranker for ``crossmodal search --rerank N``.

    crossmodal train --task rerank --data train.jsonl --label-column hexcode \\
        --eval-data test.en.retrieval.jsonl --out runs/rerank

Embeds the captioned pictures of ``--data`` once with the frozen encoder (``--model``,
default the embedded emoji-mini; any backend), keeps them as the re-ranker's memory (keys:
each picture's first caption per language), and fits the re-ranker's four numbers
(:mod:`crossmodal.heads.rerank_train`). Pictures sharing a ``--label-column`` value show one
concept (never each other's negatives); a picture's folder is its gallery (a style, a
source): candidates come from one gallery, and the memory a caption trains against holds
none of its gallery's pictures. Writes ``OUT/reranker.safetensors``; with ``--eval-data`` (a
captioned retrieval set: caption i's right picture is picture i) also ``OUT/eval.json``,
Recall@1/5/10 of the embedding search before and after re-scoring its top ``--rerank-top``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_rerank_arguments", "run_rerank"]


def add_rerank_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``--task rerank`` (on the ``train`` parser)."""
    from crossmodal.heads.rerank_train import RerankTrainConfig

    g = p.add_argument_group("--task rerank (also --image-column, --text-column, --label-column)")
    g.add_argument(
        "--rerank-candidates",
        type=int,
        default=RerankTrainConfig.candidates,
        help="per training caption: its picture and this many minus one hard negatives (21)",
    )
    g.add_argument(
        "--drop-group",
        type=float,
        default=RerankTrainConfig.drop_group,
        help="fraction of captions trained with their concept missing from memory (0.3)",
    )
    g.add_argument(
        "--rerank-top", type=int, default=20, help="with --eval-data: hits re-scored (20)"
    )


def run_rerank(args: argparse.Namespace) -> int:
    """Embed, build the memory, train, save, evaluate, print a summary."""
    import torch

    from crossmodal.cli.columns import open_with_columns
    from crossmodal.encoders import DEFAULT_MODEL, load_encoder
    from crossmodal.encoders.embedder import EmbedConfig, Embedder
    from crossmodal.errors import InputError
    from crossmodal.heads.rerank import save_reranker
    from crossmodal.heads.rerank_eval import embed_samples, evaluate_reranker
    from crossmodal.heads.rerank_train import (
        RerankTrainConfig,
        build_memory,
        train_reranker,
    )
    from crossmodal.heads.timeline import model_scale

    progress = not args.no_progress and sys.stderr.isatty()
    spec = args.model or DEFAULT_MODEL
    device = "cpu" if args.device == "auto" else args.device
    encoder = load_encoder(spec, device=device)
    embedder = Embedder(encoder, EmbedConfig(on_error="skip", progress=progress))

    def embed_texts(texts: list[str]) -> torch.Tensor:
        return torch.from_numpy(embedder.embed_texts(texts))

    pictures, samples, skipped = embed_samples(embedder, open_with_columns(args.data, args))
    if not samples:
        raise InputError(f"{args.data}: no picture could be read; nothing to remember")
    memory = build_memory(
        pictures,
        [s.captions for s in samples],
        embed_texts,
        groups=[s.label if s.label is not None else n for n, s in enumerate(samples)],
        galleries=[str(Path(str(s.image)).parent) for s in samples],
    )
    config = RerankTrainConfig(
        candidates=args.rerank_candidates,
        steps=args.steps or RerankTrainConfig.steps,
        batch_size=args.batch_size or RerankTrainConfig.batch_size,
        lr=args.lr or RerankTrainConfig.lr,
        drop_group=args.drop_group,
        seed=args.seed,
    )
    reranker, result = train_reranker(
        memory, Path(args.out) / "run", config, logit_scale=model_scale(encoder)
    )
    path = save_reranker(reranker, Path(args.out) / "reranker.safetensors", encoder=spec)
    galleries = len(torch.unique(memory.galleries))
    print(
        f"memory: {len(memory.keys)} captions of {len(samples)} pictures in {galleries} "
        f"galleries, {skipped} skipped\n"
        f"trained {result.steps} steps, final loss {result.loss:.4f}; s "
        f"{float(reranker.scale):.1f}, τ {float(reranker.log_temperature.exp()):.0f}, λ "
        f"{float(reranker.weight):.3f}\n"
        f"re-ranker: {path} (crossmodal search QUERY --rerank 20 --reranker {path})"
    )
    if args.eval_data:
        source = open_with_columns(args.eval_data, args, label=False)
        report = evaluate_reranker(reranker, embedder, source, args.rerank_top)
        eval_path = Path(args.out) / "eval.json"
        eval_path.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
        print(f"{report.summary()}; {eval_path}")
    return 0
