"""Review decisions merged into a corrected manifest (``crossmodal data apply-review``, 25.14).

The browser half (accept / correct / export on review.html) is in tests/test_data_label.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crossmodal.cli.main import main
from crossmodal.data.sources import open_source
from crossmodal.errors import ConfigError, InputError
from crossmodal.prep.review import Decision, apply_review, merge_decisions, read_decisions
from crossmodal.prep.review_page import DECISIONS_FORMAT


def _row(source: str, label: Any, needs_review: bool) -> dict[str, Any]:
    return {
        "image": source,
        "source": source,
        "label": label,
        "confidence": 0.4 if needs_review else 0.9,
        "candidates": [],
        "needs_review": needs_review,
        "truth": None,
    }


ROWS = [
    _row("a.png", "cat", True),
    _row("b.png", "dog", True),
    _row("c.png", "cat", False),
    _row("d.png", "dog", True),
]


def _labels(root: Path, rows: list[dict[str, Any]] = ROWS) -> Path:
    """labels.jsonl as `data label` writes it: absolute image paths, to files that exist."""
    root.mkdir(parents=True, exist_ok=True)
    for row in rows:
        (root / row["source"]).write_bytes(b"")
    rows = [dict(r, image=str(root / r["source"])) for r in rows]
    path = root / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _decisions(path: Path, *entries: dict[str, Any]) -> Path:
    data = {"format": DECISIONS_FORMAT, "version": 1, "decisions": list(entries)}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_decisions_make_a_corrected_manifest_and_leave_the_labels_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = _labels(tmp_path / "labels")
    before = labels.read_bytes()
    decisions = _decisions(
        tmp_path / "decisions.json",
        {"item": "a.png", "action": "accept", "label": "cat"},
        {"item": "b.png", "action": "correct", "label": "cat"},
        {"item": "c.png", "action": "correct", "label": "fox"},  # a label the run lacked
    )
    out = tmp_path / "reviewed.jsonl"
    assert main(["data", "apply-review", str(labels.parent), str(decisions), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 accepted, 2 corrected; 1 still need review" in printed and "fox" in printed
    rows = {r["source"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert list(rows) == ["a.png", "b.png", "c.png", "d.png"]
    assert rows["a.png"]["label"] == "cat" and rows["a.png"]["review"] == "accepted"
    assert rows["a.png"]["needs_review"] is False and rows["a.png"]["confidence"] == 0.4
    assert (rows["b.png"]["label"], rows["b.png"]["auto_label"]) == ("cat", "dog")
    assert rows["b.png"]["review"] == "corrected" and rows["b.png"]["confidence"] is None
    assert rows["c.png"]["label"] == "fox"
    assert rows["d.png"]["review"] is None and rows["d.png"]["needs_review"] is True
    assert labels.read_bytes() == before  # never modified in place
    # the corrected manifest is a labelled dataset again
    assert open_source(out).class_names == ("cat", "dog", "fox")
    # --drop-unreviewed keeps only confident or checked rows
    kept = tmp_path / "kept.jsonl"
    args = ["data", "apply-review", str(labels), str(decisions), "-o", str(kept)]
    assert main([*args, "--drop-unreviewed"]) == 0
    assert [json.loads(r)["source"] for r in kept.read_text().splitlines()] == [
        "a.png",
        "b.png",
        "c.png",
    ]


def test_an_unknown_item_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    labels = _labels(tmp_path / "labels")
    decisions = _decisions(
        tmp_path / "decisions.json",
        {"item": "a.png", "action": "accept", "label": "cat"},
        {"item": "zebra.png", "action": "correct", "label": "cat"},
    )
    out = tmp_path / "reviewed.jsonl"
    with pytest.raises(InputError, match=r"decision 2 is for item 'zebra.png', which the labels"):
        apply_review(labels, decisions, out)
    assert not out.exists()


def test_the_labels_file_is_never_the_output(tmp_path: Path) -> None:
    labels = _labels(tmp_path / "labels")
    before = labels.read_bytes()
    decisions = _decisions(
        tmp_path / "d.json", {"item": "a.png", "action": "accept", "label": "cat"}
    )
    with pytest.raises(ConfigError, match="is the labels file itself"):
        apply_review(labels.parent, decisions, labels)
    with pytest.raises(ConfigError, match="is the labels file itself"):
        apply_review(labels, decisions, tmp_path / "labels" / ".." / "labels" / "labels.jsonl")
    assert labels.read_bytes() == before


def test_an_accept_of_another_label_is_refused() -> None:
    with pytest.raises(InputError, match="accepts 'dog' for item 'a.png'.*says 'cat'"):
        merge_decisions(ROWS, [Decision("a.png", "accept", "dog")])


def test_a_multi_label_row_stays_a_list() -> None:
    rows = [_row("a.png", ["cat", "dog"], True), _row("b.png", ["dog"], True)]
    result = merge_decisions(
        rows, [Decision("a.png", "correct", "cat"), Decision("b.png", "accept", ["dog"])]
    )
    assert result.rows[0]["label"] == ["cat"] and result.rows[0]["auto_label"] == ["cat", "dog"]
    assert result.rows[1]["review"] == "accepted" and result.new_labels == ()
    assert rows[0]["label"] == ["cat", "dog"] and "review" not in rows[0]  # inputs untouched


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("not json", "not valid JSON"),
        (json.dumps({"decisions": []}), "not a review decisions file"),
        (
            json.dumps({"format": DECISIONS_FORMAT, "decisions": [{"item": "a"}]}),
            "accept or correct",
        ),
        (
            json.dumps(
                {
                    "format": DECISIONS_FORMAT,
                    "decisions": [{"item": "a", "action": "correct", "label": " "}],
                }
            ),
            "label must be a class name",
        ),
        (
            json.dumps(
                {
                    "format": DECISIONS_FORMAT,
                    "decisions": [{"item": "a", "action": "accept", "label": "x"}] * 2,
                }
            ),
            "'a' is decided twice",
        ),
    ],
)
def test_bad_decisions_files_say_what_is_wrong(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "decisions.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=words):
        read_decisions(path)
