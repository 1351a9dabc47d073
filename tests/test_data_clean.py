"""``crossmodal data clean``: every planted problem found, no clean item dropped, same bytes twice.

The corpus (:mod:`tests.planted`) is coloured circles and squares captioned with their names,
which the embedded emoji-mini model recognises, plus one planted problem of each kind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import crossmodal
from crossmodal.cli.main import main
from crossmodal.data.sources import open_source
from crossmodal.errors import ConfigError
from crossmodal.prep.cleaning import (
    RULES,
    CaptionRules,
    CleanConfig,
    ImageRules,
    clean,
    detect_language,
    repair_text,
)
from crossmodal.prep.cleaning.captions import check_caption
from crossmodal.prep.cleaning.duplicates import (
    exact_duplicate_groups,
    group_pairs,
    near_duplicate_pairs,
    pick_representatives,
)
from crossmodal.prep.cleaning.images import check_image
from tests.browser import open_page as _open
from tests.planted import PlantedCorpus, make_planted_corpus

AGREEMENT = 0.35  # image-text cosine cut on the planted corpus: mismatches <= 0.18, matches >= 0.5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> PlantedCorpus:
    return make_planted_corpus(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def encoder() -> crossmodal.Encoder:
    return crossmodal.load_encoder(crossmodal.DEFAULT_MODEL)


# ------------------------------------------------------------------ the rules one by one


def test_caption_rules() -> None:
    rules = CaptionRules()
    assert check_caption("  a red circle ", rules).reason is None
    assert check_caption("  a red circle ", rules).text == "a red circle"
    assert check_caption("", rules).rule == "caption_empty"
    assert check_caption("a", rules).rule == "caption_length"
    assert check_caption("x" * 1001, rules).rule == "caption_length"
    assert check_caption("12:30 -- #42 !!", rules).rule == "caption_non_text"
    assert check_caption("😀😀😀", rules).rule == "caption_non_text"
    kept = CaptionRules(languages=("en", "zh"))
    assert check_caption("红色的圆", kept).reason is None
    assert check_caption("красный круг", kept).rule == "caption_language"
    with pytest.raises(ConfigError, match="unknown language"):
        CaptionRules(languages=("english",))


def test_repair_and_language() -> None:
    assert repair_text("cafÃ©") == "café"
    assert check_caption("cafÃ© au lait", CaptionRules()).repaired
    assert check_caption("cafÃ© au lait", CaptionRules(repair=False)).text == "cafÃ© au lait"
    assert detect_language("a red circle") == "en"
    assert detect_language("café au lait") == "latin"
    assert detect_language("红色的圆") == "zh"
    assert detect_language("赤い丸") == "ja"
    assert detect_language("빨간 원") == "ko"
    assert detect_language("красный круг") == "ru"
    assert detect_language("1234 !!") == "und"
    assert detect_language("emoji 红色的圆圈") == "zh"  # more Han letters than Latin ones


def test_image_rules(tmp_path: Path) -> None:
    from PIL import Image

    ok = tmp_path / "ok.png"
    Image.new("CMYK", (64, 48), (0, 255, 0, 0)).save(tmp_path / "ok.jpg")
    Image.new("RGB", (64, 48), (1, 2, 3)).save(ok)
    verdict = check_image(ok, ImageRules())
    assert verdict.reason is None and (verdict.width, verdict.height) == (64, 48)
    assert verdict.image is not None and verdict.image.mode == "RGB"
    cmyk = check_image(tmp_path / "ok.jpg", ImageRules())
    assert cmyk.reason is None and cmyk.mode == "CMYK" and cmyk.format == "JPEG"
    assert check_image(ok, ImageRules(min_side=49)).rule == "image_size"
    assert check_image(ok, ImageRules(max_aspect=1.2)).rule == "image_aspect"
    assert check_image(ok, ImageRules(max_pixels=1000)).rule == "image_bomb"
    # the digest is over pixels: the same picture in another file format is the same digest
    Image.new("RGB", (64, 48), (1, 2, 3)).save(tmp_path / "same.bmp")
    assert check_image(tmp_path / "same.bmp", ImageRules()).digest == verdict.digest


def test_duplicate_groups_against_a_plain_scan() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    x[50] = x[7] + 0.01 * rng.normal(size=16)  # near copies of 7
    x[120] = x[7] + 0.02 * rng.normal(size=16)
    x[299] = x[3]  # an exact copy of 3
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    threshold = 0.99
    sims = x @ x.T
    plain = sorted(
        (i, j) for i in range(len(x)) for j in range(i + 1, len(x)) if sims[i, j] >= threshold
    )
    pairs = near_duplicate_pairs(x, threshold)
    assert pairs == plain
    assert {(7, 50), (7, 120), (3, 299)} <= set(pairs)
    groups = group_pairs(len(x), pairs)
    assert [7, 50, 120] in groups and [3, 299] in groups
    sizes = [100] * len(x)
    sizes[120] = 400  # the largest copy is kept
    replaced = pick_representatives(groups, sizes)
    assert replaced[7] == 120 and replaced[50] == 120 and 120 not in replaced
    assert replaced[299] == 3  # ties keep the first
    assert exact_duplicate_groups(["a", "", "b", "a", "", "a"]) == [[0, 3, 5]]


def test_large_sets_use_neighbours_and_find_the_copies() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    originals = rng.choice(3000, size=60, replace=False)
    copies = rng.choice(np.setdiff1d(np.arange(3000), originals), size=60, replace=False)
    x[copies] = x[originals] + 0.05 * rng.normal(size=(60, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    exact = near_duplicate_pairs(x, 0.95)
    approximate = near_duplicate_pairs(x, 0.95, exact_limit=1000)  # the HNSW path
    planted = {(min(a, b), max(a, b)) for a, b in zip(originals, copies, strict=True)}
    assert planted <= set(exact)
    assert set(approximate) <= set(exact)  # never a pair under the threshold
    assert len(planted & set(approximate)) / len(planted) >= 0.98


def test_threshold_is_checked() -> None:
    with pytest.raises(ConfigError, match="near_duplicate"):
        CleanConfig(near_duplicate=1.5)
    with pytest.raises(ConfigError, match="drop_percentile"):
        CleanConfig(drop_percentile=100)


def test_a_model_rule_needs_a_model(corpus: PlantedCorpus) -> None:
    with pytest.raises(ConfigError, match="need a model"):
        clean(open_source(corpus.manifest, on_missing="skip"), CleanConfig())


# ------------------------------------------------------------------ the planted corpus


def _run(
    corpus: PlantedCorpus, encoder: crossmodal.Encoder
) -> crossmodal.prep.cleaning.CleanResult:
    source = open_source(corpus.manifest, on_missing="skip")
    captions = CaptionRules(languages=("en", "zh"))
    return clean(source, CleanConfig(captions=captions, min_similarity=AGREEMENT), encoder)


def test_every_planted_problem_is_found(
    corpus: PlantedCorpus, encoder: crossmodal.Encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _run(corpus, encoder)
    found = {item.source: item.rule for item in result.items if item.sample is not None}
    assert found.keys() == corpus.expected.keys()
    rows = []
    for rule in [None, *RULES]:
        if rule == "source":  # the missing file's row is named by its manifest line
            flagged_rows = [i for i in result.items if i.rule == "source"]
            hit = sum(corpus.missing_row in i.reason for i in flagged_rows)
            rows.append(("source", 1, len(flagged_rows), hit / max(len(flagged_rows), 1), hit))
            continue
        planted = {s for s, r in corpus.expected.items() if r == rule}
        flagged = {s for s, r in found.items() if r == rule}
        if not planted and not flagged:
            continue
        hit = len(planted & flagged)
        precision = hit / len(flagged) if flagged else 0.0
        recall = hit / len(planted) if planted else 0.0
        rows.append((rule or "kept", len(planted), len(flagged), precision, recall))
    with capsys.disabled():
        print("\nrule                planted  flagged  precision  recall")
        for rule, n_planted, n_flagged, precision, recall in rows:
            print(f"{rule:18s} {n_planted:8d} {n_flagged:8d} {precision:10.2f} {recall:7.2f}")
    wrong = {s: (corpus.expected[s], r) for s, r in found.items() if corpus.expected[s] != r}
    assert not wrong, f"expected vs found: {wrong}"
    assert all(precision == recall == 1.0 for _, _, _, precision, recall in rows), rows


def test_kept_items_are_normalised_and_carry_their_copies(
    corpus: PlantedCorpus, encoder: crossmodal.Encoder
) -> None:
    result = _run(corpus, encoder)
    kept = {item.source: item for item in result.kept}
    for path, mode in corpus.modes.items():
        assert kept[path].image is not None and kept[path].image.mode == mode
    red = next(item for item in result.kept if item.source.endswith("red_circle.png"))
    assert any(
        i.source.endswith("red_circle_copy.png") for i in (result.items[p] for p in red.merged_from)
    )
    orange = next(item for item in result.kept if item.source.endswith("orange_square.png"))
    assert "orange square emoji" in orange.captions  # a duplicate's caption moved to the keeper
    dropped = {text: rule for item in result.kept for text, rule, _ in item.dropped_captions}
    assert dropped == corpus.dropped_captions
    assert all(s >= AGREEMENT for item in result.kept for s in item.scores)
    assert all(len(i.scores) == len(i.captions) == len(i.languages) for i in result.kept)


def test_scores_separate_matches_from_mismatches(
    corpus: PlantedCorpus, encoder: crossmodal.Encoder
) -> None:
    """The cut AGREEMENT sits in a real gap of the scores, not on the edge of one side."""
    source = open_source(corpus.manifest, on_missing="skip")
    # scores only: nothing cut, no near-duplicate merging (which would move captions around)
    config = CleanConfig(captions=CaptionRules(languages=("en", "zh")), near_duplicate=None)
    result = clean(source, config, encoder)
    mismatched = {s for s, r in corpus.expected.items() if r == "mismatch"}
    bad = [max(i.scores) for i in result.items if i.source in mismatched]
    good = [
        min(i.scores) for i in result.items if corpus.expected.get(i.source) is None and i.scores
    ]
    assert max(bad) + 0.03 < AGREEMENT < min(good) - 0.03, (sorted(bad), sorted(good)[:5])


def test_percentile_cut_drops_the_lowest_scores(
    corpus: PlantedCorpus, encoder: crossmodal.Encoder
) -> None:
    source = open_source(corpus.manifest, on_missing="skip")
    # The model reads English and Chinese; a caption in another language (the planted 赤い丸)
    # scores low for that reason alone, so the language rule removes it before the cut ranks
    # what is left, as `crossmodal data clean --languages en,zh` does.
    captions = CaptionRules(languages=("en", "zh"))
    config = CleanConfig(captions=captions, near_duplicate=None, drop_percentile=10)
    result = clean(source, config, encoder)
    kept = [s for i in result.items for s in i.scores]
    cut = [s for i in result.items for s in i.mismatch_scores]
    total = len(kept) + len(cut)
    assert result.similarity_threshold is not None
    assert max(cut) < result.similarity_threshold <= min(kept)
    assert int(0.08 * total) <= len(cut) <= int(0.12 * total) + 1  # about a tenth of them
    mismatched = {s for s, r in corpus.expected.items() if r == "mismatch"}
    assert {i.source for i in result.items if i.rule == "mismatch"} == mismatched


def test_cli_writes_the_same_bytes_twice(corpus: PlantedCorpus, tmp_path: Path) -> None:
    args = [
        "data",
        "clean",
        str(corpus.manifest),
        "--min-similarity",
        str(AGREEMENT),
        "--languages",
        "en,zh",
        "--split-languages",
        "--no-progress",
    ]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(
        ["manifest.jsonl", "manifest.en.jsonl", "rejected.jsonl", "report.json", "report.html"]
    )
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["counts"]["kept"] == sum(r is None for r in corpus.expected.values())
    assert report["counts"]["duplicate_near"] == 2 and report["counts"]["image_bomb"] == 2
    assert report["modes_normalised"] == {"CMYK": 1, "I;16": 1, "P": 1, "RGBA": 1}
    rows = [
        json.loads(line) for line in (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()
    ]
    assert all(Path(r["image"]).is_absolute() and r["clip_score"] for r in rows)
    # the cleaned manifest is a dataset again
    again = open_source(tmp_path / "a" / "manifest.jsonl")
    assert len(list(again)) == len(rows)
    html = (tmp_path / "a" / "report.html").read_text()
    assert "data:image/jpeg;base64," in html and "duplicate_near" in html and "<script" not in html
    rejected = [
        json.loads(line) for line in (tmp_path / "a" / "rejected.jsonl").read_text().splitlines()
    ]
    near = [r for r in rejected if r["rule"] == "duplicate_near"]
    assert all(r["duplicate_of"].endswith("_square.png") for r in near)


def test_cli_folder_without_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.planted import shape_image

    gallery = tmp_path / "gallery"
    (gallery / "trip").mkdir(parents=True)
    shape_image("red", "circle").save(gallery / "a.png")
    shape_image("red", "circle").save(gallery / "trip" / "b.png")  # an exact copy, in a folder
    shape_image("blue", "square").save(gallery / "trip" / "c.png")
    (gallery / "broken.jpg").write_bytes(b"not a jpeg")
    code = main(["data", "clean", str(gallery), "--out", str(tmp_path / "out"), "--no-model"])
    assert code == 0
    out = capsys.readouterr().out
    assert "kept 2 of 4 images" in out and "duplicate_exact" in out and "image_corrupt" in out
    rows = [
        json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    ]
    assert [Path(r["image"]).name for r in rows] == ["a.png", "c.png"]
    assert rows[1]["label"] == "trip" and rows[0]["duplicates"][0].endswith("b.png")


def test_cli_bad_source_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["data", "clean", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")])
    assert code == 1
    assert "not a dataset crossmodal can read" in capsys.readouterr().err


def test_report_page_in_a_browser(corpus: PlantedCorpus, tmp_path: Path, browser: Any) -> None:
    out = tmp_path / "out"
    args = ["data", "clean", str(corpus.manifest), "--out", str(out), "--no-progress"]
    assert main([*args, "--min-similarity", str(AGREEMENT)]) == 0
    state = _open(browser, out / "report.html")
    assert state["console"] == [] and state["scripts"] == 0 and state["requests"] == []
    assert len(state["images"]) >= 8
    assert all(complete and width > 0 for complete, width, _ in state["images"])
    bars = browser.execute_script("return document.querySelectorAll('svg rect').length")
    cut = browser.execute_script("return document.querySelectorAll('svg line').length")
    assert bars == 40 and cut == 1  # the similarity histogram, with the cut drawn in
    text = browser.find_element("css selector", "body").text
    assert "duplicate_near (2 of 2)" in text and "decompression bomb" in text


def test_cli_webdataset_shards_are_saved_as_files(tmp_path: Path) -> None:
    import io
    import tarfile

    from tests.planted import shape_image

    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        for key, (colour, shape) in enumerate(
            [("red", "circle"), ("blue", "square"), ("red", "circle"), ("green", "square")]
        ):
            png = io.BytesIO()
            shape_image(colour, shape).save(png, format="PNG")
            for name, data in (
                (f"{key:04d}.png", png.getvalue()),
                (f"{key:04d}.txt", f"{colour} {shape}".encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    for run in ("a", "b"):
        assert (
            main(["data", "clean", str(shard), "--out", str(tmp_path / run), "--no-progress"]) == 0
        )
    rows = [
        json.loads(line) for line in (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()
    ]
    assert [r["caption"] for r in rows] == [["red circle"], ["blue square"], ["green square"]]
    assert all(
        Path(r["image"]).is_file() and Path(r["image"]).parent.name == "images" for r in rows
    )
    assert rows[0]["source"].endswith("shard-000.tar:0000") and rows[0]["duplicates"][0].endswith(
        ":0002"
    )
    for a, b in zip(
        sorted((tmp_path / "a").rglob("*.*")), sorted((tmp_path / "b").rglob("*.*")), strict=True
    ):
        if a.suffix != ".jsonl":  # the manifests name their own folder
            assert a.read_bytes() == b.read_bytes(), a.name
    again = open_source(tmp_path / "a" / "manifest.jsonl")
    assert [s.captions for s in again] == [("red circle",), ("blue square",), ("green square",)]
