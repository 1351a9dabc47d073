"""Write the query bank that search's relevance scores use (src/crossmodal/assets/query_bank.json).

The bank is a fixed set of short everyday texts per language: the English and Chinese emoji
tags of Emojibase (Unicode CLDR annotations), from the manifest `crossmodal data emoji` writes.
Search measures how far a text query's score for a picture stands above the scores of these
texts for the same picture (crossmodal.search.relevance).

    python scripts/make_query_bank.py --manifest DATA/manifest.jsonl \
        [--size 2048] [--out src/crossmodal/assets/query_bank.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from crossmodal.atomic import atomic_write_text

LANGUAGES = ("en", "zh")
SOURCE = (
    "Emojibase data (npm emojibase-data, MIT licence, by Miles Johnson): the English and "
    "Chinese emoji tags, from Unicode CLDR annotations (Unicode License v3)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True, help="the emoji manifest.jsonl")
    parser.add_argument("--size", type=int, default=1024, help="texts kept per language")
    parser.add_argument("--out", type=Path, default=Path("src/crossmodal/assets/query_bank.json"))
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.manifest.read_text("utf-8").splitlines() if line]
    bank: dict[str, object] = {"source": SOURCE}
    for language in LANGUAGES:
        tags = sorted({t.strip() for r in rows for t in r[f"tags_{language}"] if _wordy(t)})
        if len(tags) > args.size:  # evenly spaced over the sorted list: reproducible
            step = len(tags) / args.size
            tags = [tags[int(i * step)] for i in range(args.size)]
        bank[language] = tags
        print(f"{language}: {len(tags)} texts")
    atomic_write_text(args.out, json.dumps(bank, ensure_ascii=False, indent=0) + "\n")
    print(f"wrote {args.out}")


def _wordy(text: str) -> bool:
    """A tag with a letter in it (not "!", "100" or "10:00")."""
    return any(c.isalpha() for c in text)


if __name__ == "__main__":
    main()
