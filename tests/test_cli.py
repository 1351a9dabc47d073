"""The command line, end to end, in a subprocess like a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crossmodal.models.registry import create_model
from crossmodal.models.weights import save_weights

TINY = "native:test-tiny"


def crossmodal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossmodal.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture()
def gallery(tmp_path: Path) -> Path:
    root = tmp_path / "gallery"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.png", "sub/c.webp", ".hidden/d.png", "sub/notes.txt"):
        path = root / name
        if name.endswith(".txt"):
            path.write_text("not an image")
        else:
            Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(path)
    return root


def test_models_lists_registry_and_backends() -> None:
    out = crossmodal("models", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"ViT-B-32", "ViT-L-14", "test-tiny"} <= {m["name"] for m in data["models"]}
    assert set(data["backends"]) == {"native", "openclip", "hf", "onnx"}
    mini = next(m for m in data["models"] if m["name"] == "emoji-mini")
    assert mini["weights"] == "bundled" and mini["params_m"] < 12  # the shipped file's, 9.3 M
    text = crossmodal("models")
    assert "ViT-B-16" in text.stdout and "backend" in text.stdout


def test_embed_folder_and_texts_to_npy(gallery: Path, tmp_path: Path) -> None:
    weights = save_weights(create_model("test-tiny"), tmp_path / "tiny.safetensors")
    out = tmp_path / "emb.npy"
    run = crossmodal(
        "embed",
        str(gallery),
        "-t",
        "a cat",
        "-t",
        "一只猫",
        "--out",
        str(out),
        "--model",
        f"native:test-tiny@{weights}",
        "--device",
        "cpu",
    )
    assert run.returncode == 0, run.stderr
    assert "3 image(s) and 2 text(s)" in run.stdout
    vectors = np.load(out)
    assert vectors.shape == (5, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    items = [json.loads(line) for line in out.with_suffix(".items.jsonl").open()]
    assert [i["kind"] for i in items] == ["image"] * 3 + ["text"] * 2
    assert [Path(i["source"]).name for i in items[:3]] == ["a.jpg", "b.png", "c.webp"]
    assert items[4]["source"] == "一只猫"


def test_embed_to_parquet(gallery: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "emb.parquet"
    run = crossmodal("embed", str(gallery / "a.jpg"), "-t", "x", "--out", str(out), "--model", TINY)
    assert run.returncode == 0, run.stderr
    table = pq.read_table(out)
    assert table.column("kind").to_pylist() == ["image", "text"]
    assert np.asarray(table.column("embedding").to_pylist()).shape == (2, 32)
    assert table.schema.metadata[b"crossmodal_model"] == TINY.encode()


def test_bad_image_is_one_line_error_naming_the_file(gallery: Path, tmp_path: Path) -> None:
    bad = gallery / "zz-broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "emb.npy"
    run = crossmodal("embed", str(gallery), "--out", str(out), "--model", TINY)
    assert run.returncode == 1
    assert "zz-broken.jpg" in run.stderr and "Traceback" not in run.stderr
    assert not out.exists()  # nothing half-written
    skip = crossmodal("embed", str(gallery), "--out", str(out), "--model", TINY, "--skip-bad")
    assert skip.returncode == 0, skip.stderr
    assert np.load(out).shape == (3, 32)
    assert "1 image(s) skipped" in skip.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nobackend:x"], "unknown backend"),
        (["--model", "native:ViT-Q-1"], "registered models"),
        (["--model", "native:test-tiny@/does/not/exist.safetensors"], "not found"),
    ],
)
def test_bad_model_specs_are_clear_errors(
    gallery: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    run = crossmodal("embed", "-t", "x", "--out", str(tmp_path / "e.npy"), *args)
    assert run.returncode == 1
    assert message in run.stderr and "Traceback" not in run.stderr


def test_nothing_to_embed_and_missing_path(tmp_path: Path) -> None:
    run = crossmodal("embed", "--out", str(tmp_path / "e.npy"), "--model", TINY)
    assert run.returncode == 1 and "nothing to embed" in run.stderr
    run = crossmodal("embed", str(tmp_path / "nope"), "--out", str(tmp_path / "e.npy"))
    assert run.returncode == 1 and "no such file" in run.stderr


def test_eval_reads_named_manifest_columns(gallery: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    rows = [
        {"path": str(gallery / "a.jpg"), "texts_zh": ["一只猫", "猫"], "kind": "cat"},
        {"path": str(gallery / "b.png"), "texts_zh": ["一只狗"], "kind": "dog"},
    ]
    manifest.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    out = tmp_path / "eval"
    run = crossmodal(
        "eval",
        "retrieval",
        "--model",
        TINY,
        "--data",
        str(manifest),
        "--image-column",
        "path",
        "--caption-column",
        "texts_zh",
        "--language",
        "zh",
        "--out",
        str(out),
        "--no-progress",
    )
    assert run.returncode == 0, run.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["n_texts"] == 3 and results["n_images"] == 2
    assert results["language"] == "zh"
    run = crossmodal(
        "eval",
        "zeroshot",
        "--model",
        TINY,
        "--data",
        str(manifest),
        "--image-column",
        "path",
        "--label-column",
        "nope",
        "--out",
        str(out),
    )
    assert run.returncode == 1 and "nope" in run.stderr
    run = crossmodal(
        "eval",
        "zeroshot",
        "--model",
        TINY,
        "--data",
        str(gallery),
        "--label-column",
        "kind",
        "--out",
        str(out),
    )
    assert run.returncode == 1 and "--label-column only apply" in run.stderr


def _labelled_manifest(gallery: Path, tmp_path: Path, labels: tuple[str, str]) -> Path:
    """A JSONL manifest of the gallery's a.jpg and b.png with these two labels."""
    manifest = tmp_path / "m.jsonl"
    rows = [
        {"image": str(gallery / name), "label": label}
        for name, label in zip(("a.jpg", "b.png"), labels, strict=True)
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return manifest


def test_eval_zeroshot_takes_prompt_templates(gallery: Path, tmp_path: Path) -> None:
    manifest = _labelled_manifest(gallery, tmp_path, ("cat", "dog"))
    out = tmp_path / "eval"
    common = ("eval", "zeroshot", "--model", TINY, "--data", str(manifest), "--no-progress")
    run = crossmodal(
        *common, "--template", "{}", "--template", "an emoji of {}.", "--out", str(out)
    )
    assert run.returncode == 0, run.stderr
    assert json.loads((out / "results.json").read_text())["templates"] == ["{}", "an emoji of {}."]
    bad = crossmodal(*common, "--template", "no slot", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 1 and "no slot" in bad.stderr and "Traceback" not in bad.stderr


def test_eval_zeroshot_takes_subclasses(gallery: Path, tmp_path: Path) -> None:
    manifest = _labelled_manifest(gallery, tmp_path, ("animal", "food"))
    members = tmp_path / "members.json"
    members.write_text(json.dumps({"animal": ["cat", "dog"], "food": ["pizza"]}))
    out = tmp_path / "eval"
    common = ("eval", "zeroshot", "--model", TINY, "--data", str(manifest), "--no-progress")
    run = crossmodal(*common, "--subclasses", str(members), "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "hierarchical, 5 subclasses; plain prompts acc1" in run.stdout
    assert json.loads((out / "results.json").read_text())["hierarchy"]["subclasses"] == 5
    for content, expected in [
        (None, "no such file"),
        ("{not json", "not readable JSON"),
        ('{"animal": "cat"}', "list of member names"),
        ('{"plant": ["tree"]}', "none of the dataset's labels"),
    ]:
        bad = tmp_path / "bad.json"
        if content is not None:
            bad.write_text(content)
        run = crossmodal(*common, "--subclasses", str(bad), "--out", str(tmp_path / "x"))
        assert run.returncode == 1 and expected in run.stderr, run.stderr
        assert "Traceback" not in run.stderr
