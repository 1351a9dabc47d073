"""Evaluation reports: results.json, the self-contained HTML page, a real browser, the CLI."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from crossmodal.errors import BackendUnavailableError
from crossmodal.eval import plots
from crossmodal.eval.metrics import (
    classification_report,
    pairs_from_image_index,
    retrieval_metrics,
    top_k_accuracy,
)
from crossmodal.eval.report import write_report
from crossmodal.eval.results import RetrievalExample, RetrievalResult, Skipped, ZeroShotResult
from tests.browser import open_page as _open

pytest.importorskip("matplotlib", reason="the report needs crossmodal[report] (matplotlib)")

EVIL = "<script>alert('x')</script>"  # a user string that must never reach the page as markup
DATA_URI = re.compile(r'src="data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)"')


def _save_images(root: Path, n: int, size: tuple[int, int] = (200, 150)) -> list[str]:
    """``n`` distinct PNG files of plain colours, returned as paths."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        colour = ((37 * i) % 256, (91 * i + 60) % 256, (53 * i + 120) % 256)
        path = root / f"img{i}.png"
        Image.new("RGB", size, colour).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture()
def zeroshot_result(tmp_path: Path) -> ZeroShotResult:
    """Eight images of four classes (one class name is hostile), one image file missing."""
    names = ["cat", "dog", EVIL, "bird"]
    y_true = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    y_pred = np.array([0, 1, 1, 2, 2, 0, 3, 3])
    scores = np.eye(4)[y_pred] + 0.01 * np.arange(4)
    images = _save_images(tmp_path / "zs", 8)
    images[5] = str(tmp_path / "zs" / "gone.png")  # misclassified and missing: placeholder
    return ZeroShotResult(
        model="native:test-tiny",
        dataset=f"/data/{EVIL}",
        language="en",
        templates=("a photo of a {}.",),
        report=classification_report(y_true, y_pred, 4, names),
        top_k=top_k_accuracy(scores, y_true, (1, 3)),
        y_true=y_true,
        y_pred=y_pred,
        images=tuple(images),
        skipped=(Skipped(f"{tmp_path}/bad.jpg", f"cannot decode {EVIL}"),),
        seconds=1.25,
    )


@pytest.fixture()
def retrieval_result(tmp_path: Path) -> RetrievalResult:
    """Four images with two captions each; worst queries name real and missing images."""
    rng = np.random.default_rng(0)
    image_emb = rng.normal(size=(4, 8))
    text_emb = np.repeat(image_emb, 2, axis=0) + rng.normal(scale=1.5, size=(8, 8))
    report = retrieval_metrics(text_emb, image_emb, pairs_from_image_index(np.repeat(range(4), 2)))
    images = _save_images(tmp_path / "rt", 4)
    missing = str(tmp_path / "rt" / "missing.jpg")
    worst = (
        RetrievalExample(
            "text_to_image", f"a dog {EVIL}", 3, (images[1],), (images[0], missing, images[1])
        ),
        RetrievalExample(
            "image_to_text", images[2], 2, ("a red car",), (f"cap {EVIL}", "a red car")
        ),
    )
    return RetrievalResult(
        model="native:test-tiny",
        dataset="captions.csv",
        report=report,
        n_texts=8,
        n_images=4,
        worst=worst,
        skipped=(Skipped("captions.csv:7", "empty caption"), Skipped(EVIL, "not found")),
        seconds=0.5,
        extra={"language": "en"},
    )


def _data_uris(page: str) -> list[tuple[str, bytes]]:
    return [(kind, base64.b64decode(data)) for kind, data in DATA_URI.findall(page)]


# --------------------------------------------------------------------------------------------
# (a) files and page content


def test_zeroshot_report_files(zeroshot_result: ZeroShotResult, tmp_path: Path) -> None:
    page_path = write_report(zeroshot_result, tmp_path / "out")
    assert page_path == tmp_path / "out" / "report.html"
    data = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert data["task"] == "zeroshot_classification" and data["n_samples"] == 8
    assert {"acc1", "acc5", "mean_per_class_recall", "macro", "per_class"} <= set(data["metrics"])
    assert data["n_skipped"] == 1 and EVIL in data["skipped"][0]["reason"]
    assert not list((tmp_path / "out").glob(".*tmp"))  # no temporary files left behind
    page = page_path.read_text(encoding="utf-8")
    uris = _data_uris(page)
    pngs = [blob for kind, blob in uris if kind == "png"]
    jpegs = [blob for kind, blob in uris if kind == "jpeg"]
    assert len(pngs) == 2 and all(Image.open(io.BytesIO(b)).size[0] > 300 for b in pngs)
    assert len(jpegs) == 2  # three misclassified images, one of them missing
    assert all(max(Image.open(io.BytesIO(b)).size) == 96 for b in jpegs)
    assert page.count('class="thumb missing"') == 1
    assert "<script" not in page.lower()
    assert html.escape(EVIL) in page and "1 skipped" in page and "<details>" in page
    assert "http://" not in page and "https://" not in page


def test_retrieval_report_files(retrieval_result: RetrievalResult, tmp_path: Path) -> None:
    page = write_report(retrieval_result, tmp_path).read_text(encoding="utf-8")
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert data["task"] == "zeroshot_retrieval" and data["n_images"] == 4
    assert {"image_retrieval_recall@1", "text_retrieval_recall@10", "text_to_image_map"} <= set(
        data["metrics"]
    )
    kinds = [kind for kind, _ in _data_uris(page)]
    assert kinds.count("png") == 1  # the Recall@K curve
    assert kinds.count("jpeg") == 4  # gold, two retrieved (one is the gold), the query image
    assert page.count('class="thumb missing"') == 1
    assert page.count('class="thumb gold"') == 2  # the gold image and its retrieved copy
    assert '<li class="gold">a red car</li>' in page
    assert "<script" not in page.lower() and html.escape(EVIL) in page
    assert "image_retrieval_recall@5" in page and "2 skipped" in page


def test_rewrite_replaces_files(zeroshot_result: ZeroShotResult, tmp_path: Path) -> None:
    write_report(zeroshot_result, tmp_path)
    (tmp_path / "results.json").write_text("stale")
    write_report(zeroshot_result, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["n_samples"] == 8


def test_many_classes_plot_most_confused() -> None:
    rng = np.random.default_rng(1)
    y_true = np.repeat(np.arange(120), 3)
    y_pred = np.where(rng.random(y_true.size) < 0.3, rng.integers(0, 120, y_true.size), y_true)
    report = classification_report(y_true, y_pred, 120, [f"class {i}" for i in range(120)])
    shown = plots.most_confused_classes(report.confusion, 50)
    assert shown.size == 50 and np.all(np.diff(shown) > 0)
    errors = report.confusion.sum(0) + report.confusion.sum(1) - 2 * np.diag(report.confusion)
    assert errors[shown].min() >= np.delete(errors, shown).max()
    for png in (plots.confusion_matrix_png(report), plots.per_class_f1_png(report)):
        assert png.startswith(b"\x89PNG")


def test_chinese_class_names_are_drawn_with_a_chinese_font() -> None:
    if len(plots.font_families()) == 1:
        pytest.skip("no font with Chinese glyphs on this system (e.g. apt install fonts-noto-cjk)")
    names = ["嘿嘿", "哈哈", "大笑", "猫脸"]
    report = classification_report(np.arange(4), np.array([0, 1, 3, 2]), 4, names)
    import matplotlib

    before = list(matplotlib.rcParams["font.family"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for png in (plots.confusion_matrix_png(report), plots.per_class_f1_png(report)):
            assert png.startswith(b"\x89PNG")
    assert not [w for w in caught if "missing from font" in str(w.message)]
    assert matplotlib.rcParams["font.family"] == before  # set for the drawing only


def test_missing_matplotlib_names_the_extra(
    zeroshot_result: ZeroShotResult, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import now raises ImportError
    with pytest.raises(BackendUnavailableError, match=r"crossmodal\[report\]"):
        write_report(zeroshot_result, tmp_path)
    assert (tmp_path / "results.json").is_file() and not (tmp_path / "report.html").exists()


def test_recall_curve_tiny_gallery() -> None:
    report = retrieval_metrics(np.eye(2), np.eye(2), [[0, 0], [1, 1]], ks=(1, 5))
    assert plots.recall_curve_png(report, n_images=1 + 1, n_texts=2).startswith(b"\x89PNG")


# --------------------------------------------------------------------------------------------
# (b) a real headless browser


def _assert_clean(state: dict[str, Any], n_images: int, n_placeholders: int) -> None:
    assert state["console"] == []
    assert len(state["images"]) == n_images
    broken = [img for img in state["images"] if not (img[0] and img[1] > 0)]
    assert broken == []  # every image finished loading and decoded to a real bitmap
    assert state["placeholders"] == n_placeholders
    assert state["scripts"] == 0 and state["requests"] == []


def test_report_in_headless_chromium(
    browser: Any,
    zeroshot_result: ZeroShotResult,
    retrieval_result: RetrievalResult,
    tmp_path: Path,
) -> None:
    # The checks catch what they look for: a script, an external image and a broken image.
    bad = tmp_path / "bad.html"
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    bad.write_text(
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<img src="https://example.com/x.png"><img src="data:image/png;base64,AAAA">'
        "<script>console.error('boom')</script>"
    )
    state = _open(browser, bad)
    assert len(state["console"]) == 2 and all(img[1] == 0 for img in state["images"])

    zeroshot = _open(browser, write_report(zeroshot_result, tmp_path / "zs"))
    _assert_clean(zeroshot, n_images=4, n_placeholders=1)  # 2 plots, 2 thumbnails
    assert EVIL not in zeroshot["title"] and "native:test-tiny" in zeroshot["title"]
    summary = browser.find_element("css selector", "details summary")
    skipped = browser.find_element("css selector", "details li")
    assert not skipped.is_displayed()
    summary.click()  # the skipped list is collapsible without any script
    assert skipped.is_displayed() and EVIL in skipped.text  # shown as text, not run
    shot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("L")
    assert np.asarray(shot).std() > 10  # the page drew something, not a blank screen

    retrieval = _open(browser, write_report(retrieval_result, tmp_path / "rt"))
    _assert_clean(retrieval, n_images=5, n_placeholders=1)  # 1 plot, 4 thumbnails


# --------------------------------------------------------------------------------------------
# (c) the command line, end to end


def start_crossmodal(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """Start the CLI in a subprocess, as a user runs it (runs overlap to save time)."""
    command = [sys.executable, "-m", "crossmodal.cli.main", *args]
    return subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Wait for a started CLI run: exit code, stdout, stderr."""
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    """``classes/<label>/<n>.png`` for three classes, one undecodable file, and a manifest."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    rows = ["image,caption,label"]
    for label in ("cat", "dog", "bird"):
        (root / "classes" / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "classes" / label / f"{i}.png")
            rows += [f"classes/{label}/{i}.png,a photo of a {label},{label}"]
            rows += [f'classes/{label}/{i}.png,"a {label}, number {i}",{label}']
    (root / "classes" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    rows.append("classes/missing.png,gone,cat")
    (root / "captions.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def test_cli_eval_zeroshot_and_retrieval(dataset: Path, tmp_path: Path) -> None:
    options = ("--model", "native:test-tiny", "--device", "cpu", "--no-progress")
    classes, manifest, rt_out = dataset / "classes", dataset / "captions.csv", tmp_path / "rt"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    zeroshot = start_crossmodal("eval", "zeroshot", *options, "--data", str(classes), cwd=tmp_path)
    retrieval = start_crossmodal(
        "eval", "retrieval", *options, "--data", str(manifest), "--out", str(rt_out), cwd=tmp_path
    )
    missing = start_crossmodal("eval", "zeroshot", *options, "--data", "nowhere", cwd=elsewhere)

    code, stdout, stderr = finish(zeroshot)
    assert code == 0, stderr
    assert "acc1" in stdout and str(Path("eval-out/zeroshot/report.html")) in stdout
    out = tmp_path / "eval-out" / "zeroshot"  # the default --out
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert data["n_samples"] == 9 and data["n_skipped"] == 1
    assert data["skipped"][0]["source"].endswith("broken.jpg")
    assert data["metrics"]["class_names"] == ["bird", "cat", "dog"]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Confusion matrix" in page and "broken.jpg" in page

    code, stdout, stderr = finish(retrieval)
    assert code == 0, stderr
    assert "text->image: R@1" in stdout and "image->text: R@1" in stdout
    data = json.loads((rt_out / "results.json").read_text(encoding="utf-8"))
    assert (data["n_images"], data["n_texts"], data["n_skipped"]) == (9, 18, 1)
    assert "image_retrieval_recall@5" in data["metrics"]
    page = (rt_out / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in page and "data:image/jpeg;base64," in page

    # A dataset path that does not exist: exit 1, one error line, no traceback, no output.
    code, stdout, stderr = finish(missing)
    assert code == 1 and stdout == ""
    errors = [line for line in stderr.splitlines() if line.startswith("crossmodal: error:")]
    assert len(errors) == 1 and "nowhere" in errors[0] and "Traceback" not in stderr
    assert list(elsewhere.iterdir()) == []
