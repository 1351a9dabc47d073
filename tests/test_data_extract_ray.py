"""``crossmodal data extract --engine ray`` on a real local Ray instance (2 CPUs).

The shards Ray writes equal the single-process ones, and killing an actor in the middle of
the job still leaves every shard exactly once, equal to a run that was never disturbed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crossmodal.data.sources import open_source
from crossmodal.encoders import load_encoder
from crossmodal.encoders.base import Encoder
from crossmodal.prep.extract import (
    ExtractConfig,
    ExtractReport,
    extract_features,
    read_feature_shards,
)
from tests.planted import COLOURS, shape_image

ray = pytest.importorskip("ray", reason="pip install 'crossmodal[scale]'")
pytest.importorskip("ray.data")

from crossmodal.scale.extract import SourceSpec, extract_features_ray  # noqa: E402
from crossmodal.scale.ray import RayConfig  # noqa: E402


def _folder(root: Path, n: int, size: int) -> Path:
    root.mkdir(parents=True)
    colours = list(COLOURS)
    for i in range(n):
        picture = shape_image(colours[i % len(colours)], ("circle", "square")[i % 2], size)
        picture.rotate(i * 7, fillcolor="white").save(root / f"{i:04d}.png")
    return root


def _shards(out: Path) -> tuple[list[dict[str, Any]], np.ndarray]:
    rows: list[dict[str, Any]] = []
    vectors = []
    for shard in read_feature_shards(out):
        rows += shard.rows
        vectors.append(shard.image_embeddings)
    return rows, np.concatenate(vectors)


def _actor_pids() -> list[int]:
    """Processes of the extraction's Ray actors (Ray titles them after the actor's class)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:  # gone meanwhile
            continue
        if b"_ShardWriter" in title:
            pids.append(int(entry.name))
    return pids


# fp32 throughout: under bf16 (auto, where the CPU has it) a vector depends on its batch's
# other rows, and Ray's batches need not be the single process's.
def _encoder() -> Encoder:
    return load_encoder("native:emoji-mini", device="cpu", precision="fp32")


def _on_ray(
    spec: SourceSpec, out: Path, config: ExtractConfig, ray_config: RayConfig | None = None
) -> ExtractReport:
    ray_config = ray_config or RayConfig(actors=2, num_cpus=0.5)
    return extract_features_ray(
        spec, "native:emoji-mini", out, config, ray_config, precision="fp32"
    )


def _single_process(folder: Path, out: Path, config: ExtractConfig) -> None:
    extract_features(open_source(folder, tree=True), _encoder(), out, config)


@pytest.mark.slow
def test_ray_writes_the_single_process_shards(local_ray: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "pics", 200, 64)
    config = ExtractConfig(shard_size=50, batch_size=32)
    _single_process(folder, tmp_path / "local", config)
    spec = SourceSpec(str(folder), {"tree": True})
    report = _on_ray(spec, tmp_path / "ray", config)
    assert (report.shards, report.written, report.images) == (4, 4, 200)
    rows, vectors = _shards(tmp_path / "ray")
    want_rows, want = _shards(tmp_path / "local")
    assert rows == want_rows
    np.testing.assert_allclose(vectors, want, rtol=0, atol=1e-5)
    again = _on_ray(spec, tmp_path / "ray", config)
    assert (again.written, again.skipped) == (0, 4)  # resumed: nothing left to do


@pytest.mark.slow
def test_killing_an_actor_mid_job_still_writes_every_shard_once(
    local_ray: Any, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "pics", 240, 900)  # large pictures: seconds of decoding
    config = ExtractConfig(shard_size=20, batch_size=20)
    out = tmp_path / "ray"
    spec = SourceSpec(str(folder), {"tree": True})
    result: dict[str, Any] = {}

    def job() -> None:
        try:
            result["report"] = _on_ray(spec, out, config)
        except BaseException as exc:  # reported by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=job)
    thread.start()
    deadline = time.monotonic() + 300
    killed = None
    while killed is None:
        assert time.monotonic() < deadline and thread.is_alive(), result
        done = list(out.glob("part-*.parquet"))
        alive = _actor_pids()
        if done and alive and len(done) < 12:
            killed = alive[0]
            os.kill(killed, signal.SIGKILL)  # an actor dies mid-job
        time.sleep(0.05)
    thread.join(timeout=300)
    assert "error" not in result, result.get("error")
    report = result["report"]
    assert report.shards == 12 and len(list(out.glob("part-*.parquet"))) == 12
    rows, vectors = _shards(out)
    assert len(rows) == 240 and len({r["image"] for r in rows}) == 240  # each image once
    _single_process(folder, tmp_path / "local", config)
    want_rows, want = _shards(tmp_path / "local")
    assert rows == want_rows
    np.testing.assert_allclose(vectors, want, rtol=0, atol=1e-5)
    assert not list(out.rglob("*.tmp*"))  # no half-written file left by the killed actor


@pytest.mark.slow
def test_index_with_the_ray_engine(
    local_ray: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from crossmodal.cli.main import main
    from crossmodal.search.index import Index

    folder = _folder(tmp_path / "pics", 30, 64)
    db = tmp_path / "db"
    args = ["index", str(folder), "--db", str(db), "--engine", "ray", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ray: 30 picture(s)" in out and "30 from extracted features" in out
    assert main(["index", str(folder), "--db", str(tmp_path / "local"), "--no-progress"]) == 0
    with Index.open(db) as ray_index, Index.open(tmp_path / "local") as local_index:
        for query in ("red circle", "blue square"):
            got = [(h.path, h.score) for h in ray_index.search(query, k=5)]
            want = [(h.path, h.score) for h in local_index.search(query, k=5)]
            assert [p for p, _ in got] == [p for p, _ in want]
            np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)
    assert main(args) == 0  # again: nothing to embed, the shards are complete
    assert "unchanged 30" in capsys.readouterr().out


@pytest.mark.slow
def test_one_shard_per_input_tar(local_ray: Any, tmp_path: Path) -> None:
    """WebDataset input, ``shard_by="input"``: output shard k is input tar k, on Ray too."""
    from crossmodal.errors import ConfigError
    from tests.test_eval_data import shard_members, write_shard

    for k, n in enumerate((5, 3, 7)):
        write_shard(tmp_path / f"in-{k}.tar", shard_members(f"k{k}-", n))
    pattern = str(tmp_path / "in-{0..2}.tar")
    config = ExtractConfig(shard_by="input", batch_size=8)
    local = extract_features(
        open_source(pattern),
        _encoder(),
        tmp_path / "a",
        config,
    )
    assert (local.shards, local.images) == (3, 15)
    report = _on_ray(SourceSpec(pattern, {}), tmp_path / "b", config, RayConfig(num_cpus=0.5))
    assert (report.shards, report.images) == (3, 15)
    sizes = [len(shard.rows) for shard in read_feature_shards(tmp_path / "b")]
    assert sizes == [5, 3, 7]
    rows, vectors = _shards(tmp_path / "b")
    want_rows, want = _shards(tmp_path / "a")
    assert rows == want_rows
    np.testing.assert_allclose(vectors, want, rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="WebDataset"):
        extract_features(
            open_source(_folder(tmp_path / "pics", 1, 32), tree=True),
            _encoder(),
            tmp_path / "c",
            config,
        )
