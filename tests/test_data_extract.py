"""``crossmodal data extract``: shards equal to the embedder's vectors, resumable after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import crossmodal
from crossmodal.cli.main import main
from crossmodal.data.sources import open_source
from crossmodal.encoders.embedder import Embedder
from crossmodal.errors import ConfigError
from crossmodal.prep.extract import ExtractConfig, extract_features, read_feature_shards
from tests.planted import COLOURS, shape_image

pytest.importorskip("pyarrow")


def _manifest(root: Path, copies: int = 1) -> Path:
    """Shapes at several sizes, captioned (some not), and one file that does not decode."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in range(copies):
        for colour in COLOURS:
            for shape in ("circle", "square"):
                for size in (48, 64, 80):
                    path = root / f"{colour}_{shape}_{size}_{c}.png"
                    shape_image(colour, shape, size).save(path)
                    caption = [f"a {colour} {shape}"] if size != 80 else []
                    rows.append({"image": str(path), "caption": caption, "label": colour})
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    rows.insert(5, {"image": str(root / "broken.png"), "caption": ["broken"]})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


@pytest.fixture(scope="module")
def encoder() -> crossmodal.Encoder:
    # fp32: the features are compared with load_clip's fp32 model (on a CPU with
    # AVX512-BF16, "auto" would embed in bf16)
    return crossmodal.load_encoder(crossmodal.DEFAULT_MODEL, precision="fp32")


def test_shards_hold_the_embedders_vectors(tmp_path: Path, encoder: crossmodal.Encoder) -> None:
    manifest = _manifest(tmp_path / "data")
    source = open_source(manifest)
    report = extract_features(source, encoder, tmp_path / "out", ExtractConfig(shard_size=10))
    samples = list(source)
    assert report.shards == 5 and report.written == 5 and report.skipped == 0
    assert report.images == len(samples) - 1 and len(report.failures) == 1
    assert report.failures[0][0].endswith("broken.png")
    shards = list(read_feature_shards(tmp_path / "out"))
    rows = [r for s in shards for r in s.rows]
    image_emb = np.concatenate([s.image_embeddings for s in shards])
    text_emb = np.concatenate([s.text_embeddings for s in shards])
    good = [s for s in samples if not str(s.image).endswith("broken.png")]
    assert [r["image"] for r in rows] == [str(s.image) for s in good]
    embedder = Embedder(encoder)
    expected = embedder.embed_images([s.image for s in good]).vectors
    np.testing.assert_allclose(image_emb, expected, atol=1e-5)
    captioned = [i for i, s in enumerate(good) if s.captions]
    np.testing.assert_allclose(
        text_emb[captioned],
        embedder.embed_texts([good[i].captions[0] for i in captioned]),
        atol=1e-5,
    )
    uncaptioned = [i for i, s in enumerate(good) if not s.captions]
    assert uncaptioned and np.isnan(text_emb[uncaptioned]).all()
    assert all(r["hash"] and len(r["hash"]) == 32 for r in rows)
    failures = (tmp_path / "out" / "failures" / "part-00000.jsonl").read_text()
    assert "broken.png" in failures


def test_npy_layout_matches_parquet(tmp_path: Path, encoder: crossmodal.Encoder) -> None:
    manifest = _manifest(tmp_path / "data")
    for layout in ("parquet", "npy"):
        config = ExtractConfig(shard_size=16, layout=layout)  # type: ignore[arg-type]
        extract_features(open_source(manifest), encoder, tmp_path / layout, config)
    assert (tmp_path / "npy" / "img_emb" / "img_emb_00000.npy").exists()
    assert (tmp_path / "npy" / "metadata" / "metadata_00002.parquet").exists()
    a = list(read_feature_shards(tmp_path / "parquet"))
    b = list(read_feature_shards(tmp_path / "npy"))
    assert [s.rows for s in a] == [s.rows for s in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image_embeddings, y.image_embeddings)
        np.testing.assert_array_equal(x.text_embeddings, y.text_embeddings)


def test_other_settings_are_refused(tmp_path: Path, encoder: crossmodal.Encoder) -> None:
    manifest = _manifest(tmp_path / "data")
    extract_features(open_source(manifest), encoder, tmp_path / "out", ExtractConfig(shard_size=20))
    with pytest.raises(ConfigError, match="shard_size 20"):
        extract_features(
            open_source(manifest), encoder, tmp_path / "out", ExtractConfig(shard_size=30)
        )
    again = extract_features(
        open_source(manifest), encoder, tmp_path / "out", ExtractConfig(shard_size=20)
    )
    assert again.written == 0 and again.skipped == again.shards == 3


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "extract.json"
    }


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_bytes(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "data", copies=6)  # 253 images
    command = [
        sys.executable, "-m", "crossmodal", "data", "extract", str(manifest),
        "--shard-size", "8", "--batch-size", "4", "--workers", "1", "--no-progress",
    ]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    subprocess.run([*command, "--out", str(tmp_path / "whole")], check=True, env=env)
    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, "--out", str(killed)], env=env)
    deadline = time.monotonic() + 120
    while not (killed / "part-00002.parquet").exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = len(list(killed.glob("part-*.parquet")))
    assert 3 <= before < 32, f"the kill came too late: {before} of 32 shards written"
    done = subprocess.run(
        [*command, "--out", str(killed)], env=env, check=True, capture_output=True, text=True
    )
    assert f"{before} already complete" in done.stdout
    assert _files(killed) == _files(tmp_path / "whole")


def test_index_reuses_extracted_features(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for colour in COLOURS:
        shape_image(colour, "circle").save(gallery / f"{colour}.png")
    assert (
        main(["data", "extract", str(gallery), "--out", str(tmp_path / "f"), "--no-progress"]) == 0
    )
    capsys.readouterr()
    code = main(
        ["index", str(gallery), "--db", str(tmp_path / "db"), "--features", str(tmp_path / "f"),
         "--no-progress"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "indexed 0 new file(s)" in out and "7 from extracted features" in out
    assert main(["index", str(gallery), "--db", str(tmp_path / "db2"), "--no-progress"]) == 0
    capsys.readouterr()
    hits = []
    for db in ("db", "db2"):
        assert main(["search", "red circle", "--db", str(tmp_path / db), "--json", "-k", "3"]) == 0
        hits.append([json.loads(line)["path"] for line in capsys.readouterr().out.splitlines()])
    assert hits[0] == hits[1] and hits[0][0].endswith("red.png")
    bad = main(
        ["index", str(gallery), "--db", str(tmp_path / "db3"), "--features", str(tmp_path / "f"),
         "-m", "native:test-tiny"]
    )  # fmt: skip
    assert bad == 1 and "extracted with" in capsys.readouterr().err


def test_heads_train_on_extracted_features(tmp_path: Path, encoder: crossmodal.Encoder) -> None:
    from crossmodal.heads.features import load_clip
    from crossmodal.heads.task import features_from_extraction, featurize

    manifest = _manifest(tmp_path / "data")
    extract_features(open_source(manifest), encoder, tmp_path / "f", ExtractConfig(shard_size=16))
    given = features_from_extraction(tmp_path / "f")
    direct = featurize(load_clip(), open_source(manifest))
    captioned = [i for i, s in enumerate(direct.sources) if s in set(given.sources)]
    assert list(given.sources) == [direct.sources[i] for i in captioned]
    assert given.classes == direct.classes and len(given.skipped) == 14  # the uncaptioned rows
    np.testing.assert_allclose(given.features.h_i, direct.features.h_i[captioned], atol=1e-5)
    np.testing.assert_allclose(given.features.h_t, direct.features.h_t[captioned], atol=1e-5)
    out = tmp_path / "head"
    args = ["train", "--task", "classify", "--data", str(tmp_path / "f"), "--eval-data",
            str(tmp_path / "f"), "--head", "linear", "--steps", "60", "--lr", "1e-2",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["samples"] == len(given) and report["accuracy"] >= 0.9
    assert main([*args[:-3], "--head", "attention", "--out", str(tmp_path / "a")]) == 1
