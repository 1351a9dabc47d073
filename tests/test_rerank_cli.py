"""``crossmodal train --task rerank`` end to end: pictures in two styles make the memory, a
third style is evaluated, and the saved re-ranker re-scores a real search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw, ImageOps

from crossmodal.cli.main import main
from crossmodal.heads.rerank import load_reranker
from crossmodal.search.index import Index
from crossmodal.search.query import Query
from tests.planted import COLOURS, shape_image

ZH = {"red": "红色", "blue": "蓝色", "green": "绿色", "circle": "圆形", "square": "方形"}
CONCEPTS = [(c, s) for c in ("red", "blue", "green") for s in ("circle", "square")]


def _styled(colour: str, shape: str, style: str) -> Image.Image:
    """One concept drawn flat, framed in black, or as an outline only."""
    picture = shape_image(colour, shape)
    if style == "framed":
        return ImageOps.expand(picture.resize((80, 80)), border=8, fill=(0, 0, 0))
    if style == "outline":
        out = Image.new("RGB", picture.size, (255, 255, 255))
        box = (6, 6, 90, 90)
        draw = ImageDraw.Draw(out)
        if shape == "circle":
            draw.ellipse(box, outline=COLOURS[colour], width=10)
        else:
            draw.rounded_rectangle(box, radius=8, outline=COLOURS[colour], width=10)
        return out
    return picture


def _manifest(root: Path, styles: tuple[str, ...], name: str) -> Path:
    rows = []
    for style in styles:
        (root / style).mkdir(parents=True, exist_ok=True)
        for colour, shape in CONCEPTS:
            path = root / style / f"{colour}_{shape}.png"
            _styled(colour, shape, style).save(path)
            captions = [f"a {colour} {shape}", f"{ZH[colour]}{ZH[shape]}", shape]
            rows.append({"image": str(path), "caption": captions, "label": f"{colour}-{shape}"})
    manifest = root / name
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


def test_train_a_reranker_and_search_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = _manifest(tmp_path / "train", ("flat", "framed"), "train.jsonl")
    test = _manifest(tmp_path / "test", ("outline",), "test.jsonl")
    out = tmp_path / "run"
    args = ["train", "--task", "rerank", "-d", str(train), "-o", str(out), "--no-progress"]
    extra = ["--steps", "20", "--rerank-candidates", "3", "--batch-size", "8", "--rerank-top", "4"]
    assert main([*args, *extra, "--eval-data", str(test)]) == 0
    printed = capsys.readouterr().out
    assert "24 captions of 12 pictures in 2 galleries, 0 skipped" in printed
    assert "trained 20 steps" in printed
    reranker, encoder = load_reranker(out / "reranker.safetensors")
    assert encoder == "native:emoji-mini"
    from crossmodal.heads.features import load_clip

    own = float(load_clip().logit_scale.detach().exp().clamp(max=100))
    # trained at the encoder's sharpness (to bf16's rounding of the log-scale where the CPU
    # makes "auto" load bf16 weights)
    assert float(reranker.scale) == pytest.approx(own, rel=2e-3)
    assert reranker.config["keys"] == 24 and reranker.config["pictures"] == 12  # EN + ZH keys
    report = json.loads((out / "eval.json").read_text(encoding="utf-8"))
    assert report["queries"] == 6 and report["top_n"] == 4
    for k in (1, 5, 10):
        assert 0 <= report[f"reranked R@{k}"] <= 1
    assert report["R@5"] == report["reranked R@5"]  # the top 4 only moves within itself

    db = tmp_path / "db"
    assert (
        main(["index", str(tmp_path / "test" / "outline"), "--db", str(db), "--no-progress"]) == 0
    )
    capsys.readouterr()
    weights = str(out / "reranker.safetensors")
    assert (
        main(
            [
                "search",
                "a red circle",
                "--db",
                str(db),
                "--json",
                "--rerank",
                "4",
                "--reranker",
                weights,
            ]
        )
        == 0
    )
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(hits) == 6 and all(("rerank" in h) == (i < 4) for i, h in enumerate(hits))
    reranked = [h["rerank"] for h in hits[:4]]
    assert reranked == sorted(reranked, reverse=True)
    with Index.open(db, create=False) as index:
        query = torch.from_numpy(index.query_vector(Query.of("a red circle")))
        for hit in hits[:4]:
            stored = index.store.vector_of_file(hit["path"])
            assert stored is not None
            want = float(reranker.score(query, torch.from_numpy(stored)[None])[0])
            assert hit["rerank"] == pytest.approx(want, abs=1e-3)


def test_data_without_captions_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "pictures"
    folder.mkdir()
    shape_image("red", "circle").save(folder / "a.png")
    manifest = tmp_path / "bare.jsonl"
    manifest.write_text(json.dumps({"image": str(folder / "a.png"), "caption": []}) + "\n")
    args = ["train", "--task", "rerank", "-d", str(manifest), "-o", str(tmp_path / "o")]
    assert main([*args, "--no-progress"]) == 1
    assert "no picture has a caption" in capsys.readouterr().err


def test_a_model_with_no_shipped_reranker_asks_for_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "pictures"
    folder.mkdir()
    for colour, shape in CONCEPTS[:3]:
        shape_image(colour, shape).save(folder / f"{colour}_{shape}.png")
    db = tmp_path / "db"
    index = ["index", str(folder), "--db", str(db), "-m", "native:test-tiny", "--no-progress"]
    assert main(index) == 0
    capsys.readouterr()
    assert main(["search", "red", "--db", str(db), "--rerank", "2"]) == 1
    assert "no re-ranker ships for native:test-tiny" in capsys.readouterr().err
