"""Does the cross-attention re-ranker raise text→image Recall@1 over the embedding search?

Issue 6: train the re-ranker (:mod:`crossmodal.heads.rerank`) on (image, caption) pairs of the
training styles (Twemoji + Noto) with hard negatives mined by the frozen encoder's own
embedding search (never an image of the caption's own emoji), then, on the held-out OpenMoji
colour style (1,911 English labels as queries, 1,911 images; or a training style with
``--eval-style``), compare the embedding ranking
with the same ranking whose top ``--top-n`` are re-scored by the re-ranker. Also reports the
re-ranking cost per query (patch tokens of the N candidates precomputed, as an index could
store them, and computed on the fly from the images).

    python benchmarks/rerank.py --data out/emoji-mini/data --out out/rerank
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from crossmodal.data.samples import Sample
from crossmodal.data.sources import open_source
from crossmodal.heads.features import extract_features, load_clip, patch_tokens, text_tokens
from crossmodal.heads.rerank import Reranker, mine_hard_negatives, save_reranker
from crossmodal.train.augment import TrainAugment
from crossmodal.train.config import TrainConfig
from crossmodal.train.data_order import build_loader_factory
from crossmodal.train.loop import train
from crossmodal.train.objective import ClassificationObjective


class _Pairs(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Caption j with its K candidates (positive first): one re-ranker item."""

    def __init__(self, words, mask, h_t, patches, h_i, candidates) -> None:  # type: ignore[no-untyped-def]
        self.words, self.mask, self.h_t = words, mask, h_t
        self.patches, self.h_i, self.candidates = patches, h_i, candidates

    def __len__(self) -> int:
        return len(self.candidates)

    def __getitem__(self, j: int) -> dict[str, torch.Tensor]:
        c = self.candidates[j]
        return {
            "words": self.words[j],
            "word_mask": self.mask[j],
            "h_t": self.h_t[j],
            "patches": self.patches[c][:, 1:],
            "h_i": self.h_i[c],
            "labels": torch.tensor(0),
        }


def recall_at(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(ranks < k))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="crossmodal data emoji output")
    p.add_argument("--out", type=Path, default=Path("out/rerank"))
    p.add_argument("--model", help="frozen encoder (default: the embedded emoji-mini)")
    p.add_argument("--candidates", type=int, default=16, help="K per training caption (16)")
    p.add_argument("--top-n", type=int, default=20, help="hits re-scored per query (20)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument(
        "--augment-copies",
        type=int,
        default=0,
        help="also train on this many style-augmented copies of each training picture",
    )
    p.add_argument(
        "--captions",
        default="all",
        choices=("all", "label"),
        help="training captions per picture: the label, templates and a tag (all), or the "
        "label alone (label: the queries' own form)",
    )
    p.add_argument(
        "--freeze-scale",
        action="store_true",
        help="keep s (the weight of the embedding cosine) at the encoder's logit scale",
    )
    p.add_argument(
        "--eval-style",
        default="openmoji",
        choices=("openmoji", "twemoji", "noto"),
        help="the pictures searched: the held-out OpenMoji colour style (default), or a "
        "training style, to tell a re-ranker that memorises from one that does not learn",
    )
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = load_clip(args.model)

    # training pairs: English captions of the training styles
    t0 = time.perf_counter()
    rows = [json.loads(line) for line in (args.data / "manifest.jsonl").open(encoding="utf-8")]
    train_rows = [r for r in rows if r["style"] in ("twemoji", "noto")]
    images = [str(args.data / r["image"]) for r in train_rows]
    codes = {code: i for i, code in enumerate(sorted({r["hexcode"] for r in rows}))}
    image_groups = torch.tensor([codes[r["hexcode"]] for r in train_rows])
    captions, positives = [], []
    for i, r in enumerate(train_rows):
        kept = r["captions_en"][: 1 if args.captions == "label" else 4]
        for caption in kept:  # the label (and its templates and a tag, with --captions all)
            captions.append(caption)
            positives.append(i)
    copies = [extract_features(model, images, [""] * len(images))]
    augment = TrainAugment(
        color_jitter=0.2, zoom_out=(0.6, 1.0), outline=0.3, line_art=0.15, grayscale=0.1
    )
    for c in range(args.augment_copies):  # the pictures in styles the encoder has not memorised
        copies.append(
            extract_features(model, images, [""] * len(images), augment=augment, seed=c + 1)
        )
    gallery_h_i = torch.cat([f.h_i for f in copies])
    gallery_tokens = torch.cat([f.image_tokens for f in copies])
    gallery_groups = image_groups.repeat(len(copies))
    words, mask, h_t = text_tokens(model, captions)
    positive = torch.tensor(positives)
    n_images = len(images)
    pairs = [  # every caption with each copy of its picture
        (j, c * n_images + int(positive[j]))
        for c in range(len(copies))
        for j in range(len(captions))
    ]
    rows = torch.tensor([j for j, _ in pairs])
    targets = torch.tensor([i for _, i in pairs])
    candidates = mine_hard_negatives(
        h_t[rows],
        gallery_h_i,
        targets,
        args.candidates,
        text_groups=image_groups[positive][rows],
        image_groups=gallery_groups,
    )
    print(
        f"{len(captions)} training captions over {len(images)} images x {len(copies)} "
        f"(clean + {args.augment_copies} augmented), {args.candidates} candidates each; "
        f"features in {time.perf_counter() - t0:.0f} s"
    )
    dataset = _Pairs(words[rows], mask[rows], h_t[rows], gallery_tokens, gallery_h_i, candidates)
    scale = float(model.logit_scale.detach().exp().clamp(max=100))
    reranker = Reranker(words.shape[-1], gallery_tokens.shape[-1], logit_scale=scale)
    if args.freeze_scale:
        reranker.scale.requires_grad_(False)
    config = TrainConfig(
        model="reranker",
        objective="classification",
        total_steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.steps // 20,
        weight_decay=0.01,
        checkpoint_every=0,
        out_dir=str(args.out / "run"),
        plot=False,
    )
    t1 = time.perf_counter()
    result = train(
        reranker,
        ClassificationObjective(input_key=None, label_key="labels"),
        build_loader_factory(dataset, args.batch_size),
        config,
    )
    print(
        f"trained {result.steps} steps in {time.perf_counter() - t1:.0f} s, "
        f"final loss {result.loss:.3f}"
    )

    # held-out: OpenMoji colour, English labels (or a training style, --eval-style)
    if args.eval_style == "openmoji":
        samples = list(open_source(args.data / "eval" / "test.en.retrieval.jsonl"))
        gallery = [s.image for s in samples]
        queries = [s.captions[0] for s in samples]
    else:  # the pictures it was trained on: memorised, or a bug if even these do not improve
        seen = [r for r in train_rows if r["style"] == args.eval_style]
        gallery = [str(args.data / r["image"]) for r in seen]
        queries = [r["captions_en"][0] for r in seen]
        samples = [Sample(image=g, source=g) for g in gallery]
    test = extract_features(model, gallery, [""] * len(gallery))
    q_words, q_mask, q_h = text_tokens(model, queries)
    scores = q_h @ test.h_i.T
    order = scores.argsort(dim=1, descending=True)
    truth = torch.arange(len(samples))
    base_rank = (order == truth[:, None]).float().argmax(dim=1).numpy()
    reranker.eval()
    n = args.top_n
    new_rank = base_rank.copy()
    per_query = []
    with torch.inference_mode():
        for j in range(len(samples)):
            top = order[j, :n]
            start = time.perf_counter()
            batch = {
                "words": q_words[j : j + 1],
                "word_mask": q_mask[j : j + 1],
                "h_t": q_h[j : j + 1],
                "patches": test.image_tokens[top][None, :, 1:],
                "h_i": test.h_i[top][None],
            }
            s = reranker(batch)[0]
            per_query.append(time.perf_counter() - start)
            if base_rank[j] < n:
                reordered = top[s.argsort(descending=True)]
                new_rank[j] = int((reordered == j).nonzero()[0, 0])
        # cost with the candidates' patch tokens computed from their pixels
        from crossmodal.data.images import load_image
        from crossmodal.encoders.native import build_preprocess

        pre = build_preprocess(model.config)
        start = time.perf_counter()
        for j in range(20):
            top = order[j, :n]
            pixels = torch.from_numpy(
                np.stack([pre(load_image(samples[int(i)].image)) for i in top])
            )
            _, toks = patch_tokens(model, pixels)
            reranker(
                {
                    "words": q_words[j : j + 1],
                    "word_mask": q_mask[j : j + 1],
                    "h_t": q_h[j : j + 1],
                    "patches": toks[None, :, 1:],
                    "h_i": test.h_i[top][None],
                }
            )
        with_tokens_ms = (time.perf_counter() - start) / 20 * 1e3
    rerank_ms = float(np.median(per_query) * 1e3)
    res = {
        "queries": len(samples),
        "top_n": n,
        "embedding": {f"R@{k}": recall_at(base_rank, k) for k in (1, 5, 10)},
        "reranked": {f"R@{k}": recall_at(new_rank, k) for k in (1, 5, 10)},
        "rerank_ms_per_query": rerank_ms,
        "rerank_with_patch_tokens_ms_per_query": with_tokens_ms,
    }
    from crossmodal.encoders import DEFAULT_MODEL

    saved = save_reranker(
        reranker, args.out / "reranker.safetensors", encoder=args.model or DEFAULT_MODEL
    )
    res["reranker"] = str(saved)
    print(json.dumps(res, indent=2))
    (args.out / "rerank.json").write_text(json.dumps(res, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
