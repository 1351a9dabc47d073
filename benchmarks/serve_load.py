"""A bounded load test of ``crossmodal serve`` on loopback, with an indexing job running.

Issue 8: many concurrent clients search for ``--seconds`` while ``POST /api/index`` indexes a
second folder; there must be no errors, and the script prints p50 / p99 latency and requests
per second. The baseline, measured in the same run, is one client alone on the idle server:
the loaded percentiles are also printed as ratios to its p50.

    python benchmarks/serve_load.py --clients 50 --seconds 30 --images 400 --new-images 200

The galleries are flat coloured shapes drawn by the script (so it needs no dataset); the model
is the embedded emoji-mini unless ``--model`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw

from crossmodal.search.index import Index, IndexConfig
from crossmodal.service.app import running
from crossmodal.service.settings import ServiceSettings

QUERIES = ["red circle", "blue square", "green heart", "a yellow star", "红色的圆", "purple", "sun"]


def draw(folder: Path, n: int, seed: int) -> None:
    """``n`` pictures of random coloured shapes in ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = Image.new("RGB", (96, 96), (255, 255, 255))
        pen = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 4))):
            box = sorted(rng.integers(0, 96, 2)), sorted(rng.integers(0, 96, 2))
            xy = (box[0][0], box[1][0], box[0][1] + 8, box[1][1] + 8)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (pen.ellipse if rng.random() < 0.5 else pen.rectangle)(xy, fill=colour)
        image.save(folder / f"{i:05d}.png")


def client_loop(url: str, until: float, latencies: list[float], errors: list[str]) -> None:
    rng = random.Random(threading.get_ident())
    with httpx.Client(timeout=60) as http:
        while time.perf_counter() < until:
            started = time.perf_counter()
            try:
                response = http.post(url, json={"text": rng.choice(QUERIES), "k": 10})
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:100]}")
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
            latencies.append(time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--images", type=int, default=400, help="pictures indexed before the test")
    p.add_argument("--new-images", type=int, default=200, help="pictures the job indexes")
    p.add_argument("--model", default=None, help="model spec (default: emoji-mini)")
    p.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON")
    args = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="crossmodal-load-"))
    draw(root / "photos" / "old", args.images, seed=0)
    draw(root / "photos" / "new", args.new_images, seed=1)
    with Index.open(root / "db", IndexConfig(model=args.model)) as index:
        index.add([root / "photos" / "old"])
    settings = ServiceSettings(db=root / "db", port=0, roots=(str(root / "photos"),))
    with running(settings) as url:
        # baseline: one client, idle server
        base: list[float] = []
        base_errors: list[str] = []
        client_loop(f"{url}/api/search", time.perf_counter() + 5, base, base_errors)
        # the load: an indexing job and N clients
        job = httpx.post(f"{url}/api/index", json={"paths": [str(root / "photos" / "new")]})
        job.raise_for_status()
        latencies: list[float] = []
        errors: list[str] = []
        until = time.perf_counter() + args.seconds
        clients = [
            threading.Thread(
                target=client_loop, args=(f"{url}/api/search", until, latencies, errors)
            )
            for _ in range(args.clients)
        ]
        started = time.perf_counter()
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        elapsed = time.perf_counter() - started
        state = httpx.get(f"{url}/api/index/jobs/{job.json()['job']}").json()
        base_p50 = statistics.median(base)
        result = {
            "clients": args.clients,
            "seconds": round(elapsed, 1),
            "requests": len(latencies),
            "errors": len(errors),
            "first_errors": errors[:3],
            "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(percentile(latencies, 50) * 1e3, 1),
            "p99_ms": round(percentile(latencies, 99) * 1e3, 1),
            "baseline_p50_ms": round(base_p50 * 1e3, 1),
            "baseline_requests": len(base),
            "p50_vs_baseline": round(percentile(latencies, 50) / base_p50, 1),
            "p99_vs_baseline": round(percentile(latencies, 99) / base_p50, 1),
            "index_job": state["state"],
            "indexed_during_test": (state.get("report") or {}).get("embedded"),
        }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
