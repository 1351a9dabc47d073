"""``crossmodal classify``: a head trained by the CLI, applied to new files by the CLI (25.14).

The head is trained on the embedded model (colour from the picture, shape in the text); its
predictions through the command must be the library's for the same inputs, and right.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from crossmodal.cli.main import main
from crossmodal.data.sources import open_source
from crossmodal.heads.features import extract_features, load_clip
from crossmodal.heads.task import featurize, load_classifier, predict
from tests.test_heads_task import COLOURS, _manifest


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gated head trained through the CLI; its folder holds test.jsonl, 24 new pictures."""
    root = tmp_path_factory.mktemp("classify")
    train = _manifest(root, "train", 48, 0)
    args = ["train", "--task", "classify", "--data", str(train), "--text-column", "tags"]
    args += ["--label-column", "colour", "--head", "gated", "--steps", "60"]
    args += ["--batch-size", "16", "--lr", "3e-3", "--out", str(root / "run"), "--no-progress"]
    assert main(args) == 0
    _manifest(root, "test", 24, 1)
    return root


def _rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_classify_a_manifest_gives_the_librarys_predictions(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test, out = trained / "test.jsonl", trained / "predictions.jsonl"
    args = ["classify", str(trained / "run"), str(test), "-o", str(out), "--top-k", "2"]
    args += ["--text-column", "tags", "--label-column", "colour", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr()
    rows = _rows(out)
    assert len(rows) == 24 and "24 images" in printed.out and "1 skipped" in printed.out
    assert "test.jsonl:line 25: image file not found" in printed.err  # the row, no file
    # the library, on the same inputs: the same classes and probabilities, in input order
    head, meta = load_classifier(trained / "run" / "head.safetensors")
    source = open_source(test, caption_column="tags", label_column="colour", on_missing="skip")
    data = featurize(load_clip(), source, classes=meta["classes"])
    probs = torch.softmax(predict(head, data), dim=-1)
    assert [r["image"] for r in rows] == list(data.sources)
    assert [r["label"] for r in rows] == [meta["classes"][i] for i in probs.argmax(-1)]
    got = torch.tensor([r["probability"] for r in rows])
    assert torch.allclose(got, probs.max(-1).values, atol=1e-5)
    for row, p in zip(rows, probs, strict=True):
        top = row["top_k"]
        assert isinstance(top, list) and len(top) == 2 and top[0]["label"] == row["label"]
        assert top[1]["p"] == pytest.approx(float(p.topk(2).values[1]), abs=1e-5)
    # and it is right: colour is easy for the embedded model
    correct = sum(r["label"] == r["truth"] for r in rows)
    assert correct >= 22, rows
    assert set(r["truth"] for r in rows) == set(COLOURS)
    line = next(s for s in printed.out.splitlines() if "accuracy" in s)
    assert f"accuracy {correct / 24:.4f}" in line and "macro F1" in line


def test_classify_a_folder_to_csv_skips_what_does_not_decode(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Class sub-folders give the truth; pictures alone get the empty text; a broken file
    is skipped with its reason and the rest of its batch is classified."""
    folder = trained / "folder"
    rows = _rows(trained / "test.jsonl")[:9]
    for row in rows:
        target = folder / str(row["colour"]) / Path(str(row["image"])).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(trained / str(row["image"]), target)
    (folder / "red" / "broken.png").write_bytes(b"\x89PNG not really")
    out = trained / "folder.csv"
    args = ["classify", str(trained / "run" / "head.safetensors"), str(folder), "-o", str(out)]
    assert main([*args, "--batch-size", "4", "--no-progress"]) == 0
    printed = capsys.readouterr()
    with out.open(encoding="utf-8", newline="") as f:
        got = list(csv.DictReader(f))
    assert len(got) == 9 and "1 skipped" in printed.out
    assert "broken.png" in printed.err and "broken.png" not in out.read_text()
    assert "9 images had no text" in printed.out  # the gated head reads text too: say so
    # the library on the same pictures, with the empty text
    head, meta = load_classifier(trained / "run" / "head.safetensors")
    paths = [Path(r["image"]) for r in got]
    features = extract_features(load_clip(), paths, [""] * len(paths))
    batch = {"h_i": features.h_i, "h_t": features.h_t, "image_tokens": features.image_tokens}
    with torch.inference_mode():
        probs = torch.softmax(head(batch), dim=-1)
    assert [r["label"] for r in got] == [meta["classes"][i] for i in probs.argmax(-1)]
    assert [r["truth"] for r in got] == [p.parent.name for p in paths]
    assert json.loads(got[0]["top_k"])[0]["label"] == got[0]["label"]
    assert "accuracy" in printed.out


def test_a_failed_run_leaves_the_previous_predictions(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = trained / "kept.jsonl"
    out.write_text("previous\n", encoding="utf-8")
    args = ["classify", str(trained / "run"), str(trained / "nothing_here"), "-o", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "nothing_here" in err and "Traceback" not in err
    assert out.read_text(encoding="utf-8") == "previous\n"
