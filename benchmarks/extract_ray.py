"""Embedding throughput of ``data extract`` on Ray (1 and 2 actors) against one process.

    python benchmarks/extract_ray.py [--images 600] [--size 512] [--shard-size 50]

Makes a folder of drawn pictures, extracts it once in this process (the baseline) and then
with ``--engine ray`` on a local Ray with 1 and 2 model actors, each into a fresh folder, and
prints images/s and the ratio to the baseline. Ray's own start (``ray.init``) is outside the
timings; each Ray run includes starting its actors (importing torch, loading the model), which
is what a user waits for. On 2 cores, 2 actors compete with each other for the same cores: the
ratio shows Ray's overhead here, not the speed-up of a cluster.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crossmodal.data.sources import open_source
from crossmodal.encoders import load_encoder
from crossmodal.prep.extract import ExtractConfig, extract_features
from crossmodal.scale.extract import SourceSpec, extract_features_ray
from crossmodal.scale.ray import RayConfig, start_ray
from tests.planted import COLOURS, shape_image

MODEL = "native:emoji-mini"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--size", type=int, default=512, help="picture side in pixels")
    p.add_argument("--shard-size", type=int, default=50)
    a = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "pics"
        folder.mkdir()
        colours = list(COLOURS)
        for i in range(a.images):
            picture = shape_image(colours[i % len(colours)], ("circle", "square")[i % 2], a.size)
            picture.rotate(i * 7, fillcolor="white").save(folder / f"{i:05d}.png")
        config = ExtractConfig(shard_size=a.shard_size, batch_size=32)
        started = time.perf_counter()
        encoder = load_encoder(MODEL, device="cpu")
        extract_features(open_source(folder, tree=True), encoder, root / "local", config)
        base = a.images / (time.perf_counter() - started)
        print(f"{a.images} pictures of {a.size}px, shards of {a.shard_size}, {os.cpu_count()} CPUs")
        print(f"{'run':<22} {'images/s':>9} {'vs 1 process':>13}")
        print(f"{'1 process':<22} {base:9.1f} {1.0:13.2f}")
        start_ray(RayConfig())
        for actors in (1, 2):
            started = time.perf_counter()
            extract_features_ray(
                SourceSpec(str(folder), {"tree": True}),
                MODEL,
                root / f"ray{actors}",
                config,
                RayConfig(actors=actors, num_cpus=0.5),
                device="cpu",
            )
            rate = a.images / (time.perf_counter() - started)
            print(f"{f'ray, {actors} actor(s)':<22} {rate:9.1f} {rate / base:13.2f}")


if __name__ == "__main__":
    main()
