"""Does the memory re-ranker raise text→image Recall@1 over the embedding search?

Issue 6. The re-ranker (:mod:`crossmodal.heads.rerank`) remembers the training pictures
(Twemoji + Noto, each with its English and Chinese label as keys) and learns four numbers
(:mod:`crossmodal.heads.rerank_train`: candidates from one style, memory without that style,
a third of the captions with their concept missing from memory). Then, on the held-out
OpenMoji styles (colour: ``test``; black line art: ``test-hard``), for English and Chinese
label queries, it compares the embedding ranking with the same ranking whose top ``--top-n``
are re-scored, and counts the queries whose right picture moved into first place (gained)
or out of it (lost), with a two-sided sign test.

A second re-ranker is trained on a memory without a third of the emoji (``--unseen``):
queries for those emoji show what the re-ranker does for concepts it does not remember
(the gate should leave them as they were). The cost per query is the median time to re-score
the top N from vectors (the search reads the candidates' stored vectors; no picture is
decoded).

    python benchmarks/rerank.py --data DATA --out out/rerank
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from crossmodal.data.sources import open_source
from crossmodal.heads.features import extract_features, load_clip, text_tokens
from crossmodal.heads.rerank import Reranker, RerankMemory, save_reranker
from crossmodal.heads.rerank_train import (
    RerankTrainConfig,
    build_memory,
    rerank_ranks,
    train_reranker,
)
from crossmodal.models.clip import CLIP

TRAIN_STYLES = ("twemoji", "noto")


def sign_test(gained: int, lost: int) -> float:
    """Two-sided binomial p-value of ``gained`` vs ``lost`` under no effect."""
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(gained, lost) + 1)) / 2**n
    return min(1.0, 2 * tail)


def memory_of(model: CLIP, pictures: torch.Tensor, rows: list[dict]) -> RerankMemory:
    """The training pictures, keyed by their English and Chinese labels (as the CLI does)."""
    return build_memory(
        pictures,
        [[r["captions_en"][0], r["captions_zh"][0]] for r in rows],
        lambda texts: text_tokens(model, texts)[2],
        groups=[r["hexcode"] for r in rows],
        galleries=[r["style"] for r in rows],
    )


def measure(
    reranker: Reranker, queries: torch.Tensor, gallery: torch.Tensor, top_n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ranks before and after re-ranking (query j's right picture is gallery j)."""
    with torch.inference_mode():
        return rerank_ranks(reranker, queries, gallery, torch.arange(len(queries)), top_n)


def summary(base: np.ndarray, new: np.ndarray) -> dict[str, float]:
    gained = int(np.sum((new == 0) & (base != 0)))
    lost = int(np.sum((new != 0) & (base == 0)))
    out: dict[str, float] = {"queries": len(base)}
    for k in (1, 5, 10):
        out[f"R@{k}"] = float(np.mean(base < k))
        out[f"reranked R@{k}"] = float(np.mean(new < k))
    out.update(gained=gained, lost=lost, sign_p=sign_test(gained, lost))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="crossmodal data emoji output")
    p.add_argument("--out", type=Path, default=Path("out/rerank"))
    p.add_argument("--model", help="frozen encoder (default: the embedded emoji-mini)")
    p.add_argument("--top-n", type=int, default=20, help="hits re-scored per query (20)")
    p.add_argument("--steps", type=int, default=RerankTrainConfig.steps)
    p.add_argument("--drop-group", type=float, default=RerankTrainConfig.drop_group)
    p.add_argument("--unseen", type=float, default=1 / 3, help="emoji left out of memory")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_clip(args.model)
    scale = float(model.logit_scale.detach().exp().clamp(max=100))
    rows = [json.loads(line) for line in (args.data / "manifest.jsonl").open(encoding="utf-8")]
    train_rows = [r for r in rows if r["style"] in TRAIN_STYLES]
    codes = {code: i for i, code in enumerate(sorted({r["hexcode"] for r in rows}))}
    t0 = time.perf_counter()
    images = [str(args.data / r["image"]) for r in train_rows]
    pictures = extract_features(model, images, [""] * len(images), progress=True).h_i
    memory = memory_of(model, pictures, train_rows)
    print(
        f"memory: {len(memory.keys)} captions of {len(memory.pictures)} pictures "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    config = RerankTrainConfig(steps=args.steps, drop_group=args.drop_group, seed=args.seed)

    rng = np.random.default_rng(args.seed)
    unseen_codes = set(rng.choice(sorted(codes), int(len(codes) * args.unseen), replace=False))
    kept = [i for i, r in enumerate(train_rows) if r["hexcode"] not in unseen_codes]
    partial = memory_of(model, pictures[kept], [train_rows[i] for i in kept])
    rerankers = {}
    for name, mem in (("full memory", memory), ("memory without 1/3 of the emoji", partial)):
        t1 = time.perf_counter()
        reranker, result = train_reranker(
            mem, args.out / "run" / name.split()[0], config, logit_scale=scale
        )
        rerankers[name] = reranker
        print(
            f"{name}: trained {result.steps} steps in {time.perf_counter() - t1:.0f} s, loss "
            f"{result.loss:.3f}; τ {float(reranker.log_temperature.exp()):.0f}, λ "
            f"{float(reranker.weight):.2f}, gate a {float(reranker.gate_slope):.1f} "
            f"b {float(reranker.gate_bias):.2f}",
            flush=True,
        )

    results: dict[str, object] = {"top_n": args.top_n, "steps": args.steps}
    for split in ("test", "test-hard"):
        for lang in ("en", "zh"):
            samples = list(open_source(args.data / "eval" / f"{split}.{lang}.retrieval.jsonl"))
            gallery = extract_features(model, [s.image for s in samples], [""] * len(samples)).h_i
            queries = text_tokens(model, [s.captions[0] for s in samples])[2]
            name = f"{split} {lang}"
            full = summary(*measure(rerankers["full memory"], queries, gallery, args.top_n))
            base, new = measure(
                rerankers["memory without 1/3 of the emoji"], queries, gallery, args.top_n
            )
            code = {r["image"].rsplit("/", 1)[1]: r["hexcode"] for r in rows}
            unseen = np.array([code[Path(s.image).name] in unseen_codes for s in samples])
            results[name] = {
                "full memory": full,
                "emoji not in memory": summary(base[unseen], new[unseen]),
                "emoji in memory": summary(base[~unseen], new[~unseen]),
            }
            print(
                f"{name}: R@1 {full['R@1']:.3f} -> {full['reranked R@1']:.3f}, R@5 "
                f"{full['R@5']:.3f} -> {full['reranked R@5']:.3f}, R@10 {full['R@10']:.3f} -> "
                f"{full['reranked R@10']:.3f} (gained {full['gained']:.0f}, lost "
                f"{full['lost']:.0f}, sign test p {full['sign_p']:.2g}); "
                + "; ".join(
                    f"{part}: R@1 {r['R@1']:.3f} -> {r['reranked R@1']:.3f}"
                    for part, r in results[name].items()  # type: ignore[union-attr]
                    if part != "full memory"
                ),
                flush=True,
            )
    reranker = rerankers["full memory"]
    order = (queries @ gallery.T).argsort(dim=1, descending=True)[:, : args.top_n]
    timings = []
    for j in range(min(500, len(queries))):
        start = time.perf_counter()
        reranker.score(queries[j], gallery[order[j]])
        timings.append(time.perf_counter() - start)
    results["rerank_ms_per_query"] = float(np.median(timings) * 1e3)
    print(f"re-scoring the top {args.top_n}: {results['rerank_ms_per_query']:.2f} ms a query")
    from crossmodal.encoders import DEFAULT_MODEL

    saved = save_reranker(
        reranker, args.out / "reranker.safetensors", encoder=args.model or DEFAULT_MODEL
    )
    results["reranker"] = str(saved)
    (args.out / "rerank.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"wrote {saved} ({saved.stat().st_size / 1e6:.1f} MB) and {args.out / 'rerank.json'}")


if __name__ == "__main__":
    main()
