"""``crossmodal data label``: zero-shot labels of shapes emoji-mini knows; meaningful confidence."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import crossmodal
from crossmodal.cli.main import main
from crossmodal.data.sources import open_source
from crossmodal.errors import ConfigError, InputError
from crossmodal.pages import script_csp
from crossmodal.prep.labeling import LabelConfig, auto_label, read_classes
from tests.browser import open_page as _open
from tests.planted import COLOURS, shape_image

CLASSES = [f"{colour} {shape}" for colour in COLOURS for shape in ("circle", "square")]


def _gallery(root: Path) -> Path:
    """Class folders of shapes at three sizes, and one file that does not decode."""
    for name in CLASSES:
        colour, shape = name.split()
        folder = root / name
        folder.mkdir(parents=True)
        for size in (64, 96, 128):
            shape_image(colour, shape, size).save(folder / f"{size}.png")
    (root / "blue square" / "broken.png").write_bytes(b"\x89PNG broken")
    return root


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _gallery(tmp_path_factory.mktemp("labels") / "gallery")


@pytest.fixture(scope="module")
def encoder() -> crossmodal.Encoder:
    return crossmodal.load_encoder(crossmodal.DEFAULT_MODEL)


def test_labels_are_right_and_confidence_means_something(
    gallery: Path, encoder: crossmodal.Encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    source = open_source(gallery, tree=True)
    config = LabelConfig(templates=("{}",), threshold=0.6)
    result = auto_label(source, CLASSES, encoder, config)
    stats = result.accuracy()
    with capsys.disabled():
        print(f"\nauto-label accuracy on shapes: {stats}")
    assert stats["judged"] == 14 * 3 and stats["all"] is not None and stats["all"] >= 0.85
    # the labels it gets wrong are the ones it is unsure of (a model that gets every shape
    # right has none to be unsure of: then most labels must be confident)
    assert stats["confident"] is not None
    if stats["needs_review"] is not None:
        assert stats["confident"] > stats["needs_review"]
    wrong = [i.confidence for i in result.items if not i.correct]
    right = [i.confidence for i in result.items if i.correct]
    if wrong:
        assert max(wrong) < float(np.median(right))
    assert float(np.median(right)) >= 0.6
    assert [s for s, _ in result.failures] == [str(gallery / "blue square" / "broken.png")]
    assert sum(result.counts.values()) == len(result.items)
    for item in result.items:
        probs = [p for _, p in item.candidates]
        assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1
        assert item.labels[0] == item.candidates[0][0]
        assert item.needs_review == (item.confidence < 0.6)


def test_multi_label_takes_every_class_above_the_threshold(
    gallery: Path, encoder: crossmodal.Encoder, tmp_path: Path
) -> None:
    both = Image.new("RGB", (128, 64), (255, 255, 255))
    both.paste(shape_image("red", "circle", 64), (0, 0))
    both.paste(shape_image("blue", "square", 64), (64, 0))
    (tmp_path / "pair").mkdir()
    both.save(tmp_path / "pair" / "both.png")
    config = LabelConfig(templates=("{}",), multi_label=True, multi_threshold=0.1, top_k=4)
    item = auto_label(open_source(tmp_path / "pair", tree=True), CLASSES, encoder, config).items[0]
    assert len(item.labels) >= 1
    assert all(p >= 0.1 for p in item.confidences)
    assert list(item.confidences) == sorted(item.confidences, reverse=True)
    single = auto_label(
        open_source(tmp_path / "pair", tree=True), CLASSES, encoder, LabelConfig(templates=("{}",))
    ).items[0]
    assert single.labels == item.labels[:1]


def test_read_classes(tmp_path: Path) -> None:
    path = tmp_path / "classes.txt"
    path.write_text("# colours\nred circle\n\nblue square  # a comment\n", encoding="utf-8")
    assert read_classes(path) == ["red circle", "blue square"]
    path.write_text("cat\ndog\ncat\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"classes.txt:3: class 'cat' is listed twice"):
        read_classes(path)
    path.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(InputError, match="no class names"):
        read_classes(path)
    with pytest.raises(ConfigError, match="threshold"):
        LabelConfig(threshold=1.5)


def test_cli_writes_labels_report_and_review(gallery: Path, tmp_path: Path) -> None:
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    code = main(
        [
            "data",
            "label",
            str(gallery),
            "--classes",
            str(classes),
            "--out",
            str(out),
            "--no-progress",
            "--threshold",
            "0.6",
        ]
    )
    assert code == 0
    rows = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert len(rows) == 14 * 3
    assert all(
        set(r) >= {"image", "label", "confidence", "candidates", "needs_review"} for r in rows
    )
    report = json.loads((out / "report.json").read_text())
    assert report["images"] == len(rows) and len(report["failures"]) == 1
    assert report["needs_review"] == sum(r["needs_review"] for r in rows)
    html = (out / "review.html").read_text()
    assert html.count('class="card"') == report["needs_review"]
    # one script, allowed by its hash alone (no 'unsafe-inline', no source to load from)
    assert html.count("<script") == 1 and "'unsafe-inline'" not in html.split("style-src")[0]
    script = html.split("<script>")[1].split("</script>")[0]
    assert script_csp(script) in html
    # the labels file is a manifest: it opens as a labelled dataset
    labelled = open_source(out / "labels.jsonl")
    assert set(labelled.class_names) <= set(CLASSES)


def test_cli_chinese_templates_and_bad_classes(
    gallery: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    classes = tmp_path / "zh.txt"
    classes.write_text("红色圆圈\n蓝色方块\n", encoding="utf-8")
    out = tmp_path / "zh"
    assert (
        main(
            [
                "data",
                "label",
                str(gallery / "red circle"),
                "--classes",
                str(classes),
                "--language",
                "zh",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    rows = [
        json.loads(line) for line in (out / "labels.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert len(rows) == 3 and all(r["label"] == "红色圆圈" for r in rows)
    (tmp_path / "one.txt").write_text("cat\n", encoding="utf-8")
    code = main(
        ["data", "label", str(gallery), "--classes", str(tmp_path / "one.txt"), "--out", str(out)]
    )
    assert code == 1 and "at least two classes" in capsys.readouterr().err


def test_review_page_in_a_browser(gallery: Path, tmp_path: Path, browser: Any) -> None:
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["data", "label", str(gallery), "--classes", str(classes), "--out", str(out)]
    assert main([*args, "--threshold", "0.9", "--no-progress"]) == 0
    state = _open(browser, out / "review.html")
    assert state["console"] == [] and state["scripts"] == 1 and state["requests"] == []
    report = json.loads((out / "report.json").read_text())
    assert len(state["images"]) == report["needs_review"] > 0
    assert all(complete and width > 0 for complete, width, _ in state["images"])
    assert "confident" in browser.find_element("css selector", "table").text


def _wait_for(path: Path, seconds: float = 10.0) -> bytes:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file() and path.stat().st_size > 0:
            return path.read_bytes()
        time.sleep(0.1)
    raise AssertionError(f"{path} was not downloaded")


def test_review_accept_correct_export_then_apply(
    gallery: Path, tmp_path: Path, browser: Any
) -> None:
    """A person accepts one label, corrects two (a class picked, a new one typed), changes
    their mind on a fourth, exports; the CLI writes the manifest those decisions describe."""
    from selenium.webdriver.common.keys import Keys

    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["data", "label", str(gallery), "--classes", str(classes), "--out", str(out)]
    assert main([*args, "--threshold", "0.9", "--no-progress"]) == 0
    labels_before = (out / "labels.jsonl").read_bytes()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    state = _open(browser, out / "review.html")
    assert state["console"] == [] and state["requests"] == []
    cards = browser.find_elements("css selector", ".card[data-item]")
    assert len(cards) >= 4
    items = [c.get_attribute("data-item") for c in cards]
    labels = [json.loads(c.get_attribute("data-label")) for c in cards]
    other = next(name for name in CLASSES if name != labels[1])
    export = browser.find_element("id", "review-export")
    assert not export.is_enabled()  # nothing decided yet

    cards[0].find_element("css selector", ".accept").click()
    cards[1].find_element("css selector", ".fix").send_keys(other)
    cards[1].find_element("css selector", ".correct").click()
    cards[2].find_element("css selector", ".fix").send_keys("purple star", Keys.ENTER)
    cards[3].find_element("css selector", ".accept").click()
    cards[3].find_element("css selector", ".undo").click()
    assert "accepted" in cards[0].get_attribute("class")
    assert cards[1].find_element("css selector", ".decision").text == f"corrected to {other}"
    assert "corrected" in cards[2].get_attribute("class")
    assert cards[3].find_element("css selector", ".decision").text == ""
    count = browser.find_element("id", "review-count").text
    assert count == f"3 of {len(cards)} decided"
    # the decisions survive a reload (kept in the browser for this run)
    browser.refresh()
    assert browser.find_element("id", "review-count").text == count
    browser.find_element("id", "review-export").click()
    decisions = json.loads(_wait_for(downloads / "decisions.json"))
    assert [(d["item"], d["action"]) for d in decisions["decisions"]] == [
        (items[0], "accept"),
        (items[1], "correct"),
        (items[2], "correct"),
    ]
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []

    reviewed = tmp_path / "reviewed.jsonl"
    apply = ["data", "apply-review", str(out), str(downloads / "decisions.json")]
    assert main([*apply, "-o", str(reviewed)]) == 0
    rows = {r["source"]: r for r in map(json.loads, reviewed.read_text("utf-8").splitlines())}
    assert len(rows) == 14 * 3
    assert (rows[items[0]]["label"], rows[items[0]]["review"]) == (labels[0], "accepted")
    assert (rows[items[1]]["label"], rows[items[1]]["auto_label"]) == (other, labels[1])
    assert rows[items[2]]["label"] == "purple star"
    assert rows[items[3]]["review"] is None and rows[items[3]]["needs_review"] is True
    assert (out / "labels.jsonl").read_bytes() == labels_before
