"""Rank the embedded images for each embedded text (reads crossmodal embed's output)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(path: str) -> None:
    """Print, for each text, the images by cosine similarity."""
    vectors = np.load(path)
    items = [json.loads(line) for line in Path(path).with_suffix(".items.jsonl").open()]
    images = [i for i in items if i["kind"] == "image"]
    texts = [i for i in items if i["kind"] == "text"]
    sims = vectors[[t["row"] for t in texts]] @ vectors[[i["row"] for i in images]].T
    for t, row in zip(texts, sims, strict=True):
        order = np.argsort(-row)
        ranked = ", ".join(f"{Path(images[j]['source']).name} {row[j]:+.3f}" for j in order)
        print(f"{t['source']!r}: {ranked}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/demo/embeddings.npy")
