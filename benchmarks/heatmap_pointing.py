"""Do the search pages' heat maps point at the thing? The pointing game on emoji.

Two tasks on drawings the model never trained on (OpenMoji, white background), each query an
emoji's own name:

* **alone**: one emoji fills the picture; a hit when the hottest cell of the heat map holds
  part of the drawing (at least a quarter of the cell's pixels are not background).
* **pair**: two emoji at half size in two random quadrants of a white picture; the query
  names one. A hit when the hottest cell lies in that emoji's quadrant.

Each method is scored against baselines measured on the same pictures: the centre prior (the
cell that most often holds drawing, over all the pictures, for *alone*; the cell nearest the
centre for *pair*) and a random cell (the expected hit rate). Methods:

* ``tokens``: the cosine of the query with each patch's joint-space token (MaskCLIP's
  reading of CLIP's last layer; what the pages drew before), on the model's own patch grid;
* ``occlusion``: how much the match drops when each part is hidden
  (:func:`crossmodal.heads.heatmap.occlusion_weights`), on an 8 × 8 grid.

    python benchmarks/heatmap_pointing.py --data emoji/eval/test.en.retrieval.jsonl \\
        [--model SPEC] [--limit 400]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from crossmodal.encoders import DEFAULT_MODEL, load_encoder
from crossmodal.encoders.runtime import cpu_has_fast_bf16
from crossmodal.heads.heatmap import occlusion_weights, vector_heatmap

INK = 245  # a channel below this is drawing, not the white background
INK_SHARE = 0.25  # a cell "holds the drawing" when this share of its pixels is drawing


def _rows(data: Path, limit: int, seed: int) -> list[tuple[Path, str]]:
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line]
    picked = np.random.default_rng(seed).permutation(len(rows))[:limit]
    out = []
    for i in picked:
        caption = rows[i]["caption"]
        out.append(((data.parent / rows[i]["image"]).resolve(), caption[0]))
    return out


def _ink(picture: Image.Image) -> npt.NDArray[np.bool_]:
    """(S, S) True where the picture is drawing, not white background."""
    return np.asarray(picture.convert("RGB")).min(axis=-1) < INK


def _cell_share(mask: npt.NDArray[np.bool_], cells: int) -> npt.NDArray[np.float64]:
    """(cells, cells) share of each cell's pixels that are True."""
    edges = np.linspace(0, mask.shape[0], cells + 1).round().astype(int)
    return np.array(
        [
            [mask[edges[r] : edges[r + 1], edges[c] : edges[c + 1]].mean() for c in range(cells)]
            for r in range(cells)
        ]
    )


def _pair(
    a: Image.Image, b: Image.Image, side: int, rng: np.random.Generator
) -> tuple[Image.Image, int]:
    """``a`` and ``b`` at half size in two random quadrants; returns the picture and a's."""
    quads = rng.permutation(4)[:2]
    canvas = Image.new("RGB", (side, side), "white")
    half = side // 2
    for picture, q in ((a, quads[0]), (b, quads[1])):
        small = picture.convert("RGB").resize((half, half), Image.Resampling.LANCZOS)
        canvas.paste(small, ((q % 2) * half, (q // 2) * half))
    return canvas, int(quads[0])


def _in_quadrant(cell: tuple[int, int], cells: int, quad: int) -> bool:
    r, c = cell
    return (r * 2 // cells) == quad // 2 and (c * 2 // cells) == quad % 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a retrieval manifest (JSONL)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--limit", type=int, default=400, help="pictures per task")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    flags = "avx512_bf16/amx" if cpu_has_fast_bf16() else "no native bf16"
    print(f"cpu: {platform.processor() or platform.machine()}, {flags}; path: fp32 inference")
    torch.manual_seed(args.seed)
    encoder = load_encoder(args.model, device="cpu", precision="fp32")
    model = encoder.model.float()
    side = int(encoder.preprocess.image_size)
    rows = _rows(args.data, args.limit, args.seed)
    texts = encoder.tokenizer([t for _, t in rows])
    queries = encoder.encode_tokens(texts)  # (N, D) unit
    rng = np.random.default_rng(args.seed)

    hits: dict[str, dict[str, list[float]]] = {"alone": {}, "pair": {}}
    seconds: dict[str, float] = {"tokens": 0.0, "occlusion": 0.0}
    shares = []
    for task in ("alone", "pair"):
        for n, (path, _) in enumerate(rows):
            picture = Image.open(path).convert("RGB").resize((side, side))
            if task == "pair":
                other = Image.open(rows[(n + 1) % len(rows)][0]).convert("RGB")
                picture, quad = _pair(picture, other, side, rng)
            query = queries[n]
            t0 = time.perf_counter()
            tokens = vector_heatmap(model, picture, torch.from_numpy(query)).weights
            t1 = time.perf_counter()
            pixels = encoder.preprocess(picture)
            occlusion = occlusion_weights(encoder, pixels, query)
            t2 = time.perf_counter()
            grey = occlusion_weights(encoder, pixels, query, fill="grey")
            seconds["tokens"] += t1 - t0
            seconds["occlusion"] += t2 - t1
            for name, weights in (
                ("tokens", tokens),
                ("occlusion", occlusion),
                ("grey occluder", grey),
            ):
                cells = weights.shape[0]
                peak = np.unravel_index(int(np.argmax(weights)), weights.shape)
                if task == "alone":
                    share = _cell_share(_ink(picture), cells)
                    hit = float(share[peak] >= INK_SHARE)
                else:
                    hit = float(_in_quadrant((int(peak[0]), int(peak[1])), cells, quad))
                hits[task].setdefault(name, []).append(hit)
            if task == "alone":
                shares.append(_cell_share(_ink(picture), 8) >= INK_SHARE)
            else:
                centre = (8 // 2 - int(rng.integers(0, 2)), 8 // 2 - int(rng.integers(0, 2)))
                hits[task].setdefault("centre prior", []).append(
                    float(_in_quadrant(centre, 8, quad))
                )
                hits[task].setdefault("random cell", []).append(0.25)
    held = np.stack(shares)  # (N, 8, 8): which cells hold drawing
    prior = np.unravel_index(int(np.argmax(held.mean(axis=0))), held.shape[1:])
    hits["alone"]["centre prior"] = [float(h[prior]) for h in held]
    hits["alone"]["random cell"] = [float(h.mean()) for h in held]

    print(f"model {args.model}; {len(rows)} pictures per task from {args.data}")
    print(f"{'task':6} {'method':13} {'hit rate':>8}  {'vs centre prior':>15}")
    for task, by_method in hits.items():
        base = float(np.mean(by_method["centre prior"]))
        for name, values in by_method.items():
            rate = float(np.mean(values))
            print(f"{task:6} {name:13} {rate:8.3f}  {rate / max(base, 1e-9):14.2f}x")
    per = {k: 1000 * v / (2 * len(rows)) for k, v in seconds.items()}
    print(f"ms per heat map: tokens {per['tokens']:.1f}, occlusion {per['occlusion']:.1f}")


if __name__ == "__main__":
    main()
