"""Query sets (``crossmodal eval queries``): success@k, chance levels, errors, the report."""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from crossmodal.cli.main import main
from crossmodal.encoders import load_encoder
from crossmodal.encoders.embedder import Embedder
from crossmodal.errors import InputError
from crossmodal.eval.queries import chance_success, load_queries, run_queries
from tests.test_eval_data import solid
from tests.test_eval_runner import PALETTE, ColourOracle

ROOT = Path(__file__).resolve().parents[1]


def _gallery(root: Path) -> list[Path]:
    """One solid square per palette colour, named by colour (the answers' stems)."""
    root.mkdir(parents=True)
    paths = []
    for i, (name, rgb) in enumerate(PALETTE.items()):
        solid(rgb, seed=i).save(root / f"{name}.png")
        paths.append(root / f"{name}.png")
    return paths


def _queries(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return path


def test_chance_matches_counting_every_ranking() -> None:
    for n, a, k in [(6, 1, 1), (6, 2, 3), (7, 3, 2), (5, 5, 1), (6, 2, 6)]:
        tops = list(combinations(range(n), k))  # every top-k set is equally likely
        hit = sum(any(i < a for i in top) for top in tops) / len(tops)
        assert math.isclose(chance_success(n, a, k), hit), (n, a, k)
    assert chance_success(1911, 1, 10) == pytest.approx(10 / 1911)


def test_a_perfect_encoder_finds_every_answer_first(tmp_path: Path) -> None:
    images = _gallery(tmp_path / "g")
    path = _queries(
        tmp_path / "q.jsonl",
        [
            {"query": "something red", "answers": ["RED"], "lang": "en", "kind": "synonym"},
            {
                "query": "blue or cyan",
                "answers": ["blue", "cyan"],
                "lang": "en",
                "kind": "hypernym",
            },
            {"query": "green", "answers": ["green", "nothing-like-it"], "lang": "zh"},
            {"query": "yellow", "answers": ["not-in-the-gallery"], "lang": "en"},
        ],
    )
    result = run_queries(ColourOracle(), load_queries(path), images)
    assert [o.rank for o in result.outcomes] == [1, 1, 1]
    assert result.unanswerable == ["yellow"]
    assert result.success(1) == 1.0 and result.success(1, lang="zh") == 1.0
    data = result.to_dict()
    assert data["by_kind"]["hypernym"]["n"] == 1 and data["by_lang"]["en"]["n"] == 2
    assert data["chance"]["success@1"] == pytest.approx((1 / 6 + 2 / 6 + 1 / 6) / 3)  # held
    assert [len(q["top"]) for q in data["queries"]] == [5, 5, 5]


def test_ranks_follow_the_model_scores(tmp_path: Path) -> None:
    images = _gallery(tmp_path / "g")
    names = list(PALETTE)
    rows = [{"query": f"a {n} square", "answers": [n]} for n in names]
    encoder = load_encoder("native:test-tiny", device="cpu", precision="fp32")
    result = run_queries(encoder, load_queries(_queries(tmp_path / "q.jsonl", rows)), images)
    embedder = Embedder(encoder)
    scores = (
        embedder.embed_texts([r["query"] for r in rows]) @ embedder.embed_images(images).vectors.T
    )
    for q, outcome in enumerate(result.outcomes):
        expected = 1 + int((scores[q] > scores[q, q]).sum())  # image q is the answer of query q
        assert outcome.rank == expected
        assert Path(outcome.top[0]) == images[int(np.argmax(scores[q]))]


def test_bad_query_files_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "x", "answers": ["A"]}\n{"query": "y"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:2: 'answers'"):
        load_queries(bad)
    bad.write_text("not json\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:1: not JSON"):
        load_queries(bad)
    with pytest.raises(InputError, match="no queries in language 'zh'"):
        load_queries(
            _queries(tmp_path / "en.jsonl", [{"query": "x", "answers": ["a"], "lang": "en"}]), "zh"
        )


def test_the_paraphrase_set_is_bilingual_and_large_enough() -> None:
    """The issue's set: >= 150 queries, English and Chinese, each with answers."""
    queries = load_queries(ROOT / "benchmarks" / "queries" / "paraphrases.jsonl")
    assert len(queries) >= 150
    assert {q.lang for q in queries} == {"en", "zh"}
    assert all(len(a) >= 4 for q in queries for a in q.answers)  # hexcodes
    for lang in ("en", "zh"):
        assert sum(q.lang == lang for q in queries) >= 75


def test_cli_writes_results_and_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _gallery(tmp_path / "g")
    path = _queries(
        tmp_path / "q.jsonl",
        [{"query": f"a {n} square", "answers": [n], "lang": "en"} for n in PALETTE],
    )
    args = ["eval", "queries", "-m", "native:test-tiny", "-q", str(path), "-d", str(tmp_path / "g"),
            "-o", str(tmp_path / "out"), "--no-progress", "--precision", "fp32"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "all: 6 queries  success@1" in printed and "lang en" in printed
    data = json.loads((tmp_path / "out" / "results.json").read_text("utf-8"))
    assert data["n_images"] == 6 and data["n_queries"] == 6
    page = (tmp_path / "out" / "report.html").read_text("utf-8")
    assert "Success against chance" in page and "Missed the top 10 (0)" in page  # 6 < 10
