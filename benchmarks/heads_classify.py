"""Multimodal classification on the emoji data: every way of combining image and text, one table.

Task (issue 6): predict an emoji's subgroup (about 100 classes: "face-smiling", "animal-bird",
...) from its picture and its English tags. Train on the Twemoji and Noto styles, test on the
held-out OpenMoji colour style, with the encoder frozen (the embedded emoji-mini unless
``--model``). Every head sees the same frozen features, the same trunk, steps and seed
(:mod:`crossmodal.heads.classify`), so the rows differ only in how the modalities are combined:
image only, text only, linear fusion ``W_t h_t + W_i h_i``, gated fusion, attention fusion
(the text attends over the image's patch tokens), and the joint heads ``g`` (concat + MLP,
product, bilinear); each fusion head with and without modality dropout (a training
sample loses its image or its text side at random).

    python benchmarks/heads_classify.py --data out/emoji-mini/data --out out/heads
    python benchmarks/heads_classify.py --data DATA --steps 1500 --heads image text gated

Prints a table of accuracy and macro precision / recall / F1 and writes ``OUT/table.md``,
``OUT/results.json`` and ``OUT/heads.png`` (a bar chart).
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path

from crossmodal.data.sources import open_source
from crossmodal.heads.classify import CLASSIFIER_KINDS
from crossmodal.heads.features import load_clip
from crossmodal.heads.task import evaluate_classifier, featurize, train_classifier
from crossmodal.train.config import TrainConfig


def _held_out_concept(hexcode: str) -> bool:
    """One emoji in five, chosen by a stable hash of its code."""
    return zlib.crc32(hexcode.encode("ascii")) % 5 == 0


def split_manifests(data: Path, out: Path, text: str, label: str, split: str) -> tuple[Path, Path]:
    """train.jsonl (Twemoji + Noto) and test.jsonl (OpenMoji colour) from manifest.jsonl.

    ``split="concepts"`` also holds out one emoji in five: the test emoji are never seen in
    training, in any style, so neither their tags nor their pictures can be remembered.
    """
    rows = [json.loads(line) for line in (data / "manifest.jsonl").open(encoding="utf-8")]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, styles in (("train", {"twemoji", "noto"}), ("test", {"openmoji"})):
        path = out / f"{name}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for row in rows:
                if split == "concepts" and _held_out_concept(row["hexcode"]) != (name == "test"):
                    continue
                if row["style"] in styles:
                    image = str((data / row["image"]).resolve())
                    item = {"image": image, "text": row[text], "label": row[label]}
                    f.write(json.dumps(item, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths[0], paths[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="crossmodal data emoji output")
    p.add_argument("--out", type=Path, default=Path("out/heads"))
    p.add_argument("--model", help="frozen encoder (default: the embedded emoji-mini)")
    p.add_argument("--heads", nargs="+", default=list(CLASSIFIER_KINDS), choices=CLASSIFIER_KINDS)
    p.add_argument("--text", default="tags_en", help="manifest field of the text (tags_en)")
    p.add_argument("--label", default="subgroup", help="manifest field of the class (subgroup)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--split",
        choices=("styles", "concepts"),
        default="styles",
        help="styles: test on OpenMoji (the same emoji as training, in a new style); concepts: "
        "test on OpenMoji pictures of emoji held out of training (one in five)",
    )
    p.add_argument(
        "--modality-dropout",
        type=float,
        nargs="+",
        default=[0.0, 0.3],
        help="fusion heads are trained once per value (image / text heads once)",
    )
    args = p.parse_args()

    train_path, test_path = split_manifests(args.data, args.out, args.text, args.label, args.split)
    model = load_clip(args.model)
    start = time.perf_counter()
    train = featurize(model, open_source(train_path))
    test = featurize(model, open_source(test_path), classes=train.classes)
    print(
        f"features: {len(train)} train / {len(test)} test samples ({len(test.skipped)} test "
        f"samples of unseen classes skipped), {len(train.classes)} classes, "
        f"{time.perf_counter() - start:.0f} s"
    )
    results = []
    runs = [
        (kind, p)
        for kind in args.heads
        for p in (args.modality_dropout if kind not in ("image", "text") else [0.0])
    ]
    for kind, drop in runs:
        name = kind if drop == 0 else f"{kind} + md {drop:g}"
        config = TrainConfig(
            model=args.model or "emoji-mini",
            objective="classification",
            total_steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_steps=args.steps // 20,
            weight_decay=0.05,
            seed=args.seed,
            checkpoint_every=0,
            keep_checkpoints=1,
            out_dir=str(args.out / "runs" / name.replace(" ", "")),
            plot=False,
        )
        t0 = time.perf_counter()
        head, _ = train_classifier(kind, train, config, hidden=args.hidden, modality_dropout=drop)
        seconds = time.perf_counter() - t0
        report = evaluate_classifier(head, test)
        row = {
            "head": name,
            "accuracy": report.accuracy,
            "macro_precision": report.macro_precision,
            "macro_recall": report.macro_recall,
            "macro_f1": report.macro_f1,
            "train_s": seconds,
            "parameters": sum(p.numel() for p in head.parameters()),
        }
        results.append(row)
        print(
            f"{name:>20}  acc {row['accuracy']:.3f}  P {row['macro_precision']:.3f}  "
            f"R {row['macro_recall']:.3f}  F1 {row['macro_f1']:.3f}  ({seconds:.0f} s)",
            flush=True,
        )
    lines = [
        f"Subgroup from image + {args.text}: train Twemoji + Noto ({len(train)}), test OpenMoji "
        f"({len(test)}; split by {args.split}), {len(train.classes)} classes, encoder "
        f"{args.model or 'emoji-mini'} (frozen), {args.steps} steps",
        "",
        "| head | accuracy | macro precision | macro recall | macro F1 | parameters |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['head']} | {r['accuracy']:.3f} | {r['macro_precision']:.3f} | "
            f"{r['macro_recall']:.3f} | {r['macro_f1']:.3f} | {r['parameters']:,} |"
        )
    table = "\n".join(lines)
    print("\n" + table)
    (args.out / "table.md").write_text(table + "\n", encoding="utf-8")
    (args.out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(max(8, len(results) * 0.9), 3.8))
        names = [r["head"] for r in results]
        x = range(len(results))
        ax.bar([i - 0.2 for i in x], [r["accuracy"] for r in results], 0.4, label="accuracy")
        ax.bar([i + 0.2 for i in x], [r["macro_f1"] for r in results], 0.4, label="macro F1")
        ax.set_xticks(list(x), names, rotation=30, ha="right")
        ax.set_ylabel("held-out OpenMoji")
        ax.set_title(f"emoji subgroup from image + text ({len(train.classes)} classes)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out / "heads.png", dpi=120)
        print(f"wrote {args.out / 'table.md'} and {args.out / 'heads.png'}")
    except ImportError:
        print(f"wrote {args.out / 'table.md'} (no matplotlib: no plot)")


if __name__ == "__main__":
    main()
