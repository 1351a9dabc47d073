"""Train the bilingual caption tokenizer on a manifest's train split and measure it.

    python scripts/train_tokenizer.py --manifest /work/emoji-data/manifest.jsonl \
        --vocab-size 8000 --out tokenizer.json [--sweep 2000,4000,8000,16000] [--variants]

Writes ``tokenizer.json`` trained on the English and Chinese captions of the ``train``
rows, then prints, per vocabulary size (and per model/CJK variant with ``--variants``),
the mean pieces per caption (``<bos>``/``<eos>`` not counted) and the ``<unk>`` rate on:

* ``test``: the captions of the test rows. In the emoji manifest the splits differ by
  image style only, so these captions are the training captions (an in-domain check).
* ``held-out``: captions of emoji (by ``hexcode``) kept out of training, about 1 in 10,
  and never seen in training: how the tokenizer copes with new text, e.g. user queries.
"""

from __future__ import annotations

import argparse
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from crossmodal.text.trained import TokenizerTrainConfig, TrainedTokenizer, train_tokenizer

LANGUAGES = ("en", "zh")
VARIANTS = {
    "bpe/chars": TokenizerTrainConfig(model="bpe", cjk="chars"),
    "bpe/runs": TokenizerTrainConfig(model="bpe", cjk="runs"),
    "unigram/chars": TokenizerTrainConfig(model="unigram", cjk="chars"),
    "unigram/runs": TokenizerTrainConfig(model="unigram", cjk="runs"),
}


@dataclass(frozen=True)
class Score:
    """Pieces per caption and the share of pieces that are ``<unk>``."""

    mean_pieces: float  # mean pieces per caption, <bos>/<eos> not counted
    unk_rate: float  # <unk> pieces / all pieces
    captions_with_unk: float  # share of captions with at least one <unk>


def read_rows(manifest: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL manifest."""
    with manifest.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def captions(rows: Iterable[dict[str, Any]], language: str) -> list[str]:
    """All captions of one language in ``rows``."""
    return [c for row in rows for c in row.get(f"captions_{language}", [])]


def is_held_out(row: dict[str, Any]) -> bool:
    """About one emoji in ten, chosen by a hash of its hexcode (stable across runs)."""
    return zlib.crc32(str(row.get("hexcode", row["key"])).encode()) % 10 == 0


def score(tokenizer: TrainedTokenizer, texts: list[str]) -> Score:
    """Measure ``tokenizer`` on ``texts``."""
    pieces = unks = with_unk = 0
    for text in texts:
        ids = tokenizer.encode(text)[1:-1]
        n_unk = sum(1 for i in ids if i == tokenizer.unk_token_id)
        pieces, unks, with_unk = pieces + len(ids), unks + n_unk, with_unk + (n_unk > 0)
    n = max(len(texts), 1)
    return Score(pieces / n, unks / max(pieces, 1), with_unk / n)


def format_score(s: Score) -> str:
    """``pieces unk% (captions with unk %)``."""
    return f"{s.mean_pieces:5.2f} {100 * s.unk_rate:5.2f} ({100 * s.captions_with_unk:4.1f})"


def measure(
    rows: list[dict[str, Any]], vocab_size: int, config: TokenizerTrainConfig, tmp: Path
) -> tuple[dict[str, Score], int]:
    """Scores per ``<set>/<language>`` for one setting, and the size of its JSON in bytes."""
    train = [r for r in rows if r["split"] == "train"]
    full = train_tokenizer(
        [c for lang in LANGUAGES for c in captions(train, lang)],
        vocab_size,
        tmp / "full.json",
        config,
        context_length=512,
    )
    fit = [r for r in train if not is_held_out(r)]
    seen = {c for lang in LANGUAGES for c in captions(fit, lang)}
    part = train_tokenizer(seen, vocab_size, tmp / "part.json", config, context_length=512)
    held = [r for r in rows if is_held_out(r)]
    test = [r for r in rows if r["split"] == "test"]
    scores: dict[str, Score] = {}
    for lang in LANGUAGES:
        scores[f"test/{lang}"] = score(full, captions(test, lang))
    for lang in LANGUAGES:
        unseen = sorted(set(captions(held, lang)) - seen)
        scores[f"held-out/{lang}"] = score(part, unseen)
    return scores, len(full.to_str().encode("utf-8"))


def main() -> None:
    """Parse arguments, print the measurements, write the tokenizer."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=Path("/work/emoji-data/manifest.jsonl"))
    parser.add_argument("--vocab-size", type=int, default=4000, help="size of the written file")
    parser.add_argument("--out", type=Path, default=Path("tokenizer.json"))
    parser.add_argument("--sweep", default="2000,4000,8000,16000", help="sizes to measure")
    parser.add_argument("--variants", action="store_true", help="also measure other models")
    args = parser.parse_args()

    rows = read_rows(args.manifest)
    sizes = [int(s) for s in args.sweep.split(",") if s]
    names = list(VARIANTS) if args.variants else ["bpe/runs"]  # the default config
    header = "variant        vocab  ids  json_kB  " + "  ".join(
        f"{s}/{lang}: len unk%" for s in ("test", "held-out") for lang in LANGUAGES
    )
    print(header)
    with TemporaryDirectory() as tmp:
        for name in names:
            for size in sizes:
                try:
                    scores, json_bytes = measure(rows, size, VARIANTS[name], Path(tmp))
                except ValueError as exc:  # e.g. Unigram needs room for every character
                    print(f"{name:13s} {size:6d}  n/a: {exc}")
                    continue
                ids = TrainedTokenizer(Path(tmp) / "full.json").vocab_size
                cells = "  ".join(format_score(s) for s in scores.values())
                print(f"{name:13s} {size:6d} {ids:5d} {json_bytes / 1024:7.0f}  {cells}")

    train = [r for r in rows if r["split"] == "train"]
    texts = [c for lang in LANGUAGES for c in captions(train, lang)]
    tokenizer = train_tokenizer(texts, args.vocab_size, args.out)
    size_kb = args.out.stat().st_size / 1024
    n_ids = tokenizer.vocab_size
    print(f"wrote {args.out}: {n_ids} ids, {size_kb:.0f} kB, trained on {len(texts)} captions")


if __name__ == "__main__":
    main()
