"""Issue 6 diagnostic: do the frozen tokens tell a label's picture from its neighbours?

Before training more re-rankers (benchmarks/rerank.py), fit three small probes on the same
task, each added to the embedding score ``s * cos(h_t, h_i)`` from a zero start:

* ``emb``: a bilinear form on the unit embeddings, ``h_tᵀ W h_i`` (D x D);
* ``pooled``: a bilinear form on the mean word token and the mean patch token;
* ``late``: late interaction (ColBERT-style): each word's best-matching patch under ``W``,
  averaged over the words.

Training pairs are the English label captions of the training styles (Twemoji + Noto), each
with its picture and ``--k - 1`` negatives: mined over both styles as benchmarks/rerank.py
does (``--candidates mined``, never a picture of the same emoji), or the top of the
picture's own style, as re-ranking one gallery sees them (``--candidates style``). The
script prints each probe's training loss and accuracy among the candidates, then re-ranks
the embedding search's top ``--top-n`` on the seen Twemoji pictures and on held-out
OpenMoji, and prints Recall@1 and @5 before and after.

    python benchmarks/rerank_probe.py --data DATA [--candidates style] [--k 21]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from crossmodal.data.sources import open_source
from crossmodal.heads.features import extract_features, load_clip, text_tokens
from crossmodal.heads.rerank import mine_hard_negatives


class Probe(nn.Module):
    """``s * cos(h_t, h_i)`` plus a zero-initialised correction of one ``kind``."""

    def __init__(self, kind: str, width: int, dim: int, scale: float) -> None:
        super().__init__()
        self.kind, self.scale = kind, scale
        self.W = nn.Parameter(torch.zeros((dim, dim) if kind == "emb" else (width, dim)))

    def forward(
        self, words: Tensor, mask: Tensor, h_t: Tensor, patches: Tensor, h_i: Tensor
    ) -> Tensor:
        """Scores (B, K) of B captions against their K candidates."""
        base = self.scale * torch.einsum("bkd,bd->bk", h_i, h_t)
        m = mask.float()
        if self.kind == "emb":
            correction = torch.einsum("bd,bkd->bk", h_t @ self.W, h_i)
        elif self.kind == "pooled":
            pooled = (words * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)
            correction = torch.einsum("bd,bkd->bk", pooled @ self.W, patches.mean(2))
        else:  # late interaction
            best = torch.einsum("btd,bkpd->bktp", words @ self.W, patches).amax(-1)
            correction = (best * m[:, None]).sum(-1) / m.sum(1)[:, None].clamp(min=1)
        return base + correction


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="crossmodal data emoji output")
    p.add_argument("--model", help="frozen encoder (default: the embedded emoji-mini)")
    p.add_argument("--kinds", nargs="+", default=["emb", "pooled", "late"])
    p.add_argument("--candidates", choices=("mined", "style"), default="mined")
    p.add_argument("--k", type=int, default=16, help="candidates per training caption")
    p.add_argument("--top-n", type=int, default=20, help="hits re-scored per query")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-2, 1e-1])
    args = p.parse_args()
    torch.manual_seed(0)
    model = load_clip(args.model)
    rows = [json.loads(line) for line in (args.data / "manifest.jsonl").open(encoding="utf-8")]
    train_rows = [r for r in rows if r["style"] in ("twemoji", "noto")]
    codes = {code: i for i, code in enumerate(sorted({r["hexcode"] for r in rows}))}
    groups = torch.tensor([codes[r["hexcode"]] for r in train_rows])
    images = [str(args.data / r["image"]) for r in train_rows]
    feats = extract_features(model, images, [""] * len(images))
    words, mask, h_t = text_tokens(model, [r["captions_en"][0] for r in train_rows])
    n = len(train_rows)
    if args.candidates == "mined":
        cand = mine_hard_negatives(
            h_t, feats.h_i, torch.arange(n), args.k, text_groups=groups, image_groups=groups
        )
    else:
        styles = np.array([r["style"] for r in train_rows])
        cand = torch.empty(n, args.k, dtype=torch.long)
        for style in ("twemoji", "noto"):
            idx = torch.from_numpy(np.flatnonzero(styles == style))
            scores = h_t[idx] @ feats.h_i[idx].T
            scores[torch.arange(len(idx)), torch.arange(len(idx))] = float("-inf")
            cand[idx] = torch.cat([idx[:, None], idx[scores.topk(args.k - 1, dim=1).indices]], 1)
    patches = feats.image_tokens[:, 1:]
    scale = float(model.logit_scale.detach().exp().clamp(max=100))
    seen = torch.tensor([i for i, r in enumerate(train_rows) if r["style"] == "twemoji"])
    held = list(open_source(args.data / "eval" / "test.en.retrieval.jsonl"))
    held_feats = extract_features(model, [s.image for s in held], [""] * len(held))
    held_text = text_tokens(model, [s.captions[0] for s in held])
    galleries = {
        "seen twemoji": (
            words[seen],
            mask[seen],
            h_t[seen],
            feats.image_tokens[seen],
            feats.h_i[seen],
        ),
        "held-out openmoji": (*held_text, held_feats.image_tokens, held_feats.h_i),
    }
    print(f"{n} training captions, {args.k} {args.candidates} candidates each, s = {scale:.1f}")

    def loss_and_accuracy(probe: Probe, idx: Tensor) -> tuple[Tensor, float]:
        c = cand[idx]
        out = probe(words[idx], mask[idx], h_t[idx], patches[c], feats.h_i[c])
        target = torch.zeros(len(idx), dtype=torch.long)
        return nn.functional.cross_entropy(out, target), float((out.argmax(1) == 0).float().mean())

    for kind in args.kinds:
        for lr in args.lrs:
            started = time.perf_counter()
            probe = Probe(kind, words.shape[-1], patches.shape[-1], scale)
            optimizer = torch.optim.Adam(probe.parameters(), lr=lr)
            with torch.no_grad():
                loss0, acc0 = loss_and_accuracy(probe, torch.arange(n))
            for _ in range(args.epochs):
                for batch in torch.randperm(n).split(256):
                    loss, _ = loss_and_accuracy(probe, batch)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
            with torch.no_grad():
                loss1, acc1 = loss_and_accuracy(probe, torch.arange(n))
                results = {name: _rerank(probe, *g, args.top_n) for name, g in galleries.items()}
            print(
                f"{kind:6s} lr {lr:g}: train loss {loss0:.2f} -> {loss1:.2f}, accuracy among "
                f"candidates {acc0:.3f} -> {acc1:.3f}; "
                + "; ".join(
                    f"{name} R@1 {r[0]:.3f} -> {r[1]:.3f}, R@5 {r[2]:.3f} -> {r[3]:.3f}"
                    for name, r in results.items()
                )
                + f" ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )


def _rerank(
    probe: Probe, words: Tensor, mask: Tensor, h_t: Tensor, tokens: Tensor, h_i: Tensor, top_n: int
) -> tuple[float, float, float, float]:
    """R@1 and R@5 of the embedding search, then with its top ``top_n`` re-scored."""
    order = (h_t @ h_i.T).argsort(dim=1, descending=True)
    truth = torch.arange(len(h_t))
    base = (order == truth[:, None]).float().argmax(dim=1)
    new = base.clone()
    for j in range(len(h_t)):
        if base[j] >= top_n:
            continue
        top = order[j, :top_n]
        scores = probe(
            words[j : j + 1],
            mask[j : j + 1],
            h_t[j : j + 1],
            tokens[top][None, :, 1:],
            h_i[top][None],
        )
        new[j] = int((top[scores[0].argsort(descending=True)] == j).nonzero()[0, 0])

    def recall(ranks: Tensor, k: int) -> float:
        return float((ranks < k).float().mean())

    return recall(base, 1), recall(new, 1), recall(base, 5), recall(new, 5)


if __name__ == "__main__":
    main()
