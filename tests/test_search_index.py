"""The search index end to end, through the CLI and the Python API, on the default model.

Real files, a real SQLite database and real vector indexes; the model is the embedded
emoji-mini (fast on a CPU), and the gallery is drawings it recognises.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from crossmodal.cli.main import main
from crossmodal.errors import InputError
from crossmodal.index.store import Store
from crossmodal.index.vectors import read_vector_index_header
from crossmodal.search.index import Index, IndexConfig, SearchFilter
from crossmodal.search.query import Query, parse_query

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


def _gallery(root: Path) -> Path:
    gallery = root / "gallery"
    shutil.copytree(EXAMPLES, gallery)
    return gallery


def _search(db: Path, *query: str, extra: tuple[str, ...] = ()) -> list[dict[str, object]]:
    """Run ``crossmodal search --json`` in-process and parse its lines."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["search", *query, "--db", str(db), "--json", *extra]) == 0
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def _vectors_by_path(db: Path) -> dict[str, set[int]]:
    with sqlite3.connect(db / "index.sqlite") as con:
        rows = con.execute(
            "SELECT f.path, v.id FROM files f JOIN vectors v ON v.hash = f.hash"
        ).fetchall()
    out: dict[str, set[int]] = {}
    for path, vid in rows:
        out.setdefault(Path(path).name, set()).add(vid)
    return out


def test_index_and_search_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gallery, db = _gallery(tmp_path), tmp_path / "db"
    assert main(["index", str(gallery), "--db", str(db), "--no-progress"]) == 0
    assert "indexed 4 new file(s)" in capsys.readouterr().out
    for query, expected in (
        (["a", "red", "circle"], "red-circle.png"),
        (["blue", "square"], "blue-square.jpg"),
        (["黄星"], "yellow-star.png"),  # "yellow star": the picture is a pentagon
    ):
        hits = _search(db, *query)
        assert Path(str(hits[0]["path"])).name == expected, (query, hits)
        assert len(hits) == 4 and hits[0]["kind"] == "image" and hits[0]["time"] is None
        scores = [float(h["score"]) for h in hits]  # type: ignore[arg-type]
        assert scores == sorted(scores, reverse=True)
    # image query: the picture itself comes first, with cosine 1
    hits = _search(db, str(gallery / "green-triangle.png"))
    assert Path(str(hits[0]["path"])).name == "green-triangle.png"
    assert float(hits[0]["score"]) == pytest.approx(1.0, abs=1e-4)  # type: ignore[arg-type]
    # --like uses the stored vector; --top limits
    hits = _search(db, extra=("--like", str(gallery / "yellow-star.png"), "--top", "2"))
    assert len(hits) == 2 and Path(str(hits[0]["path"])).name == "yellow-star.png"


def test_reindex_recomputes_exactly_what_changed(tmp_path: Path) -> None:
    gallery, db = _gallery(tmp_path), tmp_path / "db"
    with Index.open(db) as index:
        first = index.add([gallery])
    assert (first.embedded, first.reused, first.unchanged, first.removed) == (4, 0, 0, 0)
    before = _vectors_by_path(db)
    # new file, modified file, deleted file, renamed file, duplicate file
    new = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(new).ellipse((8, 8, 56, 56), fill=(40, 160, 40))
    new.save(gallery / "green-circle.png")
    modified = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(modified).rectangle((8, 8, 56, 56), fill=(220, 30, 30))
    modified.save(gallery / "red-circle.png")
    (gallery / "green-triangle.png").unlink()
    (gallery / "blue-square.jpg").rename(gallery / "renamed.jpg")
    shutil.copy(gallery / "yellow-star.png", gallery / "star-copy.png")
    with Index.open(db) as index:
        second = index.add([gallery])
        assert len(index) == 5
    assert second.embedded == 2  # green-circle, red-circle (new content)
    assert second.reused == 2  # renamed.jpg, star-copy.png: content already embedded
    assert second.unchanged == 1  # yellow-star.png
    assert second.removed == 2  # green-triangle.png, blue-square.jpg (old name)
    after = _vectors_by_path(db)
    assert after["yellow-star.png"] == before["yellow-star.png"]  # not recomputed
    assert after["renamed.jpg"] == before["blue-square.jpg"]  # vectors follow the content
    assert after["star-copy.png"] == before["yellow-star.png"]  # duplicates share
    assert after["red-circle.png"].isdisjoint(before["red-circle.png"])  # recomputed
    with Store(db) as store:
        assert store.vector_count() == 4  # star, square, green circle, new red picture
    hits = _search(db, "blue", "square")
    assert Path(str(hits[0]["path"])).name == "renamed.jpg"
    # a third run with nothing changed touches nothing
    with Index.open(db) as index:
        third = index.add([gallery])
    assert (third.embedded, third.reused, third.unchanged, third.removed) == (0, 0, 5, 0)


@pytest.mark.parametrize("backend", ["flat", "hnsw"])
def test_faiss_backends_answer_like_the_exact_one(tmp_path: Path, backend: str) -> None:
    gallery = _gallery(tmp_path)
    for name in ("red-circle.png", "yellow-star.png"):  # a few more files
        for i in range(3):
            shutil.copy(gallery / name, gallery / f"{i}-{name}")
    results = {}
    for kind in ("exact", backend):
        with Index.open(tmp_path / kind, IndexConfig(backend=kind)) as index:
            index.add([gallery])
            hits = index.search(text="a red circle", k=8)
        results[kind] = [(Path(h.path).name, round(h.score, 4)) for h in hits]
    assert sorted(results["exact"]) == sorted(results[backend])


def test_the_index_remembers_the_backend_it_was_given(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``--backend flat`` once (what hnsw and ivfpq are at this size); plain runs after it keep
    it, where ``auto`` would pick ``exact``; a new choice says so."""
    gallery, db = _gallery(tmp_path), tmp_path / "db"
    assert main(["index", str(gallery), "--db", str(db), "--backend", "flat", "--no-progress"]) == 0
    assert read_vector_index_header(db / "vectors.idx").kind == "flat"
    (gallery / "another.png").write_bytes((gallery / "red-circle.png").read_bytes() + b"\0")
    assert main(["index", str(gallery), "--db", str(db), "--no-progress"]) == 0
    assert read_vector_index_header(db / "vectors.idx").kind == "flat"  # not rebuilt as exact
    with Index.open(db) as index:  # a search (or the service) opens it the same way
        assert [Path(h.path).name for h in index.search(text="red circle", k=1)]
    assert read_vector_index_header(db / "vectors.idx").kind == "flat"
    caplog.clear()
    assert main(["index", str(gallery), "--db", str(db), "--backend", "exact"]) == 0
    assert read_vector_index_header(db / "vectors.idx").kind == "exact"
    assert "flat until now, exact from now on" in caplog.text
    assert main(["index", str(gallery), "--db", str(db), "--no-progress"]) == 0
    assert read_vector_index_header(db / "vectors.idx").kind == "exact"


def test_filters_and_python_api(tmp_path: Path) -> None:
    gallery = _gallery(tmp_path)
    sub = gallery / "sub"
    sub.mkdir()
    shutil.copy(gallery / "red-circle.png", sub / "red-circle-copy.png")
    old = gallery / "blue-square.jpg"
    os.utime(old, (1_000_000_000, 1_000_000_000))  # 2001
    with Index.open(tmp_path / "db") as index:
        index.add([gallery])
        everything = index.search(text="a red circle", k=10)
        assert len(everything) == 5
        in_sub = index.search(text="a red circle", k=10, where=SearchFilter(folder=str(sub)))
        assert [Path(h.path).name for h in in_sub] == ["red-circle-copy.png"]
        jpgs = index.search(text="circle", k=10, where=SearchFilter(suffixes=(".jpg",)))
        assert [Path(h.path).name for h in jpgs] == ["blue-square.jpg"]
        recent = index.search(text="square", k=10, where=SearchFilter(after=1_500_000_000))
        assert "blue-square.jpg" not in {Path(h.path).name for h in recent}
        assert index.search(text="x", where=SearchFilter(kind="video")) == []
        both = index.search(text="red", image=gallery / "yellow-star.png", k=2)
        assert {Path(h.path).name for h in both} <= {
            "red-circle.png",
            "red-circle-copy.png",
            "yellow-star.png",
        }
        query = parse_query(["yellow", "star", "-", "red", "circle"])
        assert Path(index.search(query=query, k=1)[0].path).name == "yellow-star.png"
        removed = index.remove([sub])
        assert removed == 1 and len(index) == 4


def test_query_language(tmp_path: Path) -> None:
    image = tmp_path / "sunset.jpg"
    Image.new("RGB", (8, 8)).save(image)
    query = parse_query(["beach", "+", f"0.5:{image}", "-", "people"])
    assert [(t.weight, t.text, t.image) for t in query.terms] == [
        (1.0, "beach", None),
        (0.5, None, image),
        (-1.0, "people", None),
    ]
    assert parse_query("a t-shirt").terms[0].text == "a t-shirt"
    assert parse_query(f'"{image}"').terms[0].text == str(image)  # quotes force text
    assert parse_query(["-", "dogs"]).terms[0].weight == -1.0
    with pytest.raises(InputError, match="no such file"):
        parse_query("./missing.jpg")
    with pytest.raises(InputError, match="empty query"):
        parse_query([])
    with pytest.raises(InputError, match="nothing after"):
        parse_query("cats +")


def test_html_page_shows_the_hits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gallery, db = _gallery(tmp_path), tmp_path / "db"
    assert main(["index", str(gallery), "--db", str(db), "--no-progress"]) == 0
    page = tmp_path / "hits.html"
    _search(db, "a", "red", "circle", extra=("--html", str(page), "--top", "3"))
    text = page.read_text(encoding="utf-8")
    assert text.count("data:image/jpeg;base64,") == 3
    assert "red-circle.png" in text and "crossmodal search: a red circle" in text
    assert 'class="heat"' not in text
    # --explain adds a heat map of the query over each hit's patches
    _search(db, "a", "red", "circle", extra=("--html", str(page), "--top", "3", "--explain"))
    text = page.read_text(encoding="utf-8")
    assert text.count('class="heat"') == 3 and text.count("data:image/jpeg;base64,") == 6
    assert main(["search", "red", "--db", str(db), "--explain"]) == 1
    assert "--explain draws heat maps into the page: give --html too" in capsys.readouterr().err


def test_captions_and_labels_lead_the_html_page(tmp_path: Path) -> None:
    """A manifest's captions, or its label where a row has none (``crossmodal data label``'s
    labels.jsonl), become the hits' captions, shown before the path on the results page."""
    gallery = _gallery(tmp_path)
    manifest = gallery / "labels.jsonl"
    rows = [
        {"image": "red-circle.png", "caption": ["a red circle", "红色的圆"]},
        {"image": "yellow-star.png", "label": "star"},
        {"image": "blue-square.jpg"},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with Index.open(tmp_path / "db") as index:
        index.add([manifest])
        hits = index.search(text="a red circle", k=3)
    captions = {Path(h.path).name: h.caption for h in hits}
    assert captions == {
        "red-circle.png": "a red circle / 红色的圆",
        "yellow-star.png": "star",
        "blue-square.jpg": None,
    }
    from crossmodal.search.page import write_results_page

    text = write_results_page(tmp_path / "hits.html", "red", [("red", hits)]).read_text("utf-8")
    red = text.index('<span class="caption">a red circle / 红色的圆</span>')
    assert red < text.index(str(gallery / "red-circle.png"), red)


def test_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "cats", "--db", str(tmp_path / "nothing")]) == 1
    assert "no crossmodal index here" in capsys.readouterr().err
    assert main(["index", str(tmp_path / "missing"), "--db", str(tmp_path / "db")]) == 1
    assert "no such file or directory" in capsys.readouterr().err
    gallery = _gallery(tmp_path)
    assert main(["index", str(gallery), "--db", str(tmp_path / "db"), "--no-progress"]) == 0
    other = ["index", str(gallery), "--db", str(tmp_path / "db"), "-m", "native:test-tiny"]
    assert main(other) == 1
    assert "was indexed with model" in capsys.readouterr().err


def test_vectors_are_the_models(tmp_path: Path) -> None:
    """Stored vectors equal the embedder's, so search scores are plain cosines."""
    import crossmodal

    gallery = _gallery(tmp_path)
    with Index.open(tmp_path / "db") as index:
        index.add([gallery])
        stored = index.store.vector_of_file(str(gallery / "red-circle.png"))
    encoder = crossmodal.load_encoder(crossmodal.DEFAULT_MODEL)
    direct = crossmodal.Embedder(encoder).embed_images([gallery / "red-circle.png"]).vectors[0]
    assert stored is not None
    np.testing.assert_allclose(stored, direct, atol=1e-5)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # a bomb on purpose
def test_a_folder_of_bad_files_is_indexed_without_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.badfiles import NOT_REGULAR_FILES, make_bad_folder, restore_permissions

    folder = tmp_path / "bad"
    expected = make_bad_folder(folder)
    for image in EXAMPLES.iterdir():
        shutil.copy(image, folder / image.name)  # good files beside the bad ones
    db = tmp_path / "db"
    try:
        with Index.open(db) as index:
            report = index.add([folder])
            indexed = {Path(p).name for p in index.store.files_under([])}
            problems = {Path(p.path).name: p.reason for p in index.problems()}
        assert {p.path for p in report.problems} == {str(folder / name) for name in problems}
        for name, reason in expected.items():
            if reason is None and name not in NOT_REGULAR_FILES:
                assert name in indexed, f"{name} should be indexed"
            elif reason is not None and name not in NOT_REGULAR_FILES:
                assert name in problems, f"{name} should be reported"
                assert reason.lower() in problems[name].lower(), (name, problems[name])
                assert name not in indexed
        assert {p.name for p in EXAMPLES.iterdir()} <= indexed
        assert "broken_link.jpg" in problems and "loop" in problems  # walk problems
        # the report lists them; a second run does not retry unchanged bad files
        assert main(["index", "--report", "--db", str(db)]) == 0
        out = capsys.readouterr().out
        assert all(str(folder / name) in out for name in problems)
        with Index.open(db) as index:
            again = index.add([folder])
        assert again.embedded == 0 and again.unchanged == len(indexed)
    finally:
        restore_permissions(folder)


def test_video_frames_are_hits_with_their_time(tmp_path: Path) -> None:
    from tests.test_search_video import COLOURS, three_colours

    gallery = _gallery(tmp_path)
    three_colours(gallery / "colours.mp4")  # red 0-1.5 s, green 1.5-3 s, blue 3-4.5 s
    red = tmp_path / "red.png"
    Image.new("RGB", (64, 64), COLOURS["red"]).save(red)
    blue = tmp_path / "blue.png"
    Image.new("RGB", (64, 64), COLOURS["blue"]).save(blue)
    with Index.open(tmp_path / "db", IndexConfig()) as index:
        report = index.add([gallery])
        assert report.frames == 3 and report.embedded == 5  # frames at 0, 2 and 4 s
        frames = index.search(image=red, k=10, where=SearchFilter(kind="video"))
        assert [h.time for h in sorted(frames, key=lambda h: h.time or 0)] == [0.0, 2.0, 4.0]
        assert all(h.kind == "video" and h.path.endswith("colours.mp4") for h in frames)
        assert frames[0].time == 0.0  # the red frame is the best match for red
        assert index.search(image=blue, k=1, where=SearchFilter(kind="video"))[0].time == 4.0
        for frame in frames:  # each frame's own stored vector (what re-ranking reads)
            stored = index.store.vector_of_file(frame.path, frame.time)
            assert stored is not None
            assert float(stored @ index.query_vector(Query.of(None, red))) == pytest.approx(
                frame.score, abs=1e-4
            )
        assert index.store.vector_of_file(frames[0].path, 1.0) is None  # no frame at 1 s
        stills = index.search(image=red, k=10, where=SearchFilter(kind="image"))
        assert all(h.time is None for h in stills) and len(stills) == 4
    page = tmp_path / "video.html"
    from crossmodal.search.page import write_results_page

    write_results_page(page, "red", [("red", frames)])
    assert "video 2.00s" in page.read_text(encoding="utf-8")


def test_video_scene_changes_through_the_cli(tmp_path: Path) -> None:
    from tests.test_search_video import COLOURS, three_colours

    gallery = tmp_path / "clips"
    gallery.mkdir()
    three_colours(gallery / "colours.mp4")  # cuts at 1.5 s (green) and 3.0 s (blue)
    db = tmp_path / "db"
    args = ["index", str(gallery), "--db", str(db), "--no-progress"]
    assert main([*args, "--video-every", "60", "--video-scene", "0.3"]) == 0
    green = tmp_path / "green.png"
    Image.new("RGB", (64, 64), COLOURS["green"]).save(green)
    hits = _search(db, str(green))
    assert sorted(float(h["time"]) for h in hits) == pytest.approx([0.0, 1.5, 3.0])  # type: ignore[arg-type]
    assert float(hits[0]["time"]) == pytest.approx(1.5)  # type: ignore[arg-type]


def test_rerank_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crossmodal.heads.features import load_clip
    from crossmodal.heads.rerank import Reranker, save_reranker
    from tests.test_heads_rerank import random_memory

    gallery, db = _gallery(tmp_path), tmp_path / "db"
    assert main(["index", str(gallery), "--db", str(db), "--no-progress"]) == 0
    untrained = Reranker(random_memory(load_clip().config.embed_dim), logit_scale=10.0)
    weights = save_reranker(untrained, tmp_path / "r.safetensors", encoder="native:emoji-mini")
    plain = _search(db, "a", "red", "circle")
    reranked = _search(
        db, "a", "red", "circle", extra=("--rerank", "3", "--reranker", str(weights))
    )
    # an untrained re-ranker scores 10 x cosine: the same order, and only the top 3 re-scored
    assert [h["path"] for h in reranked] == [h["path"] for h in plain]
    for hit in reranked[:3]:
        assert float(hit["rerank"]) == pytest.approx(10 * float(hit["score"]), abs=1e-3)  # type: ignore[arg-type]
    assert all("rerank" not in hit for hit in reranked[3:])
    assert "re-ranked the top 3" in capsys.readouterr().err
    shown = _search(  # more re-scored than shown: the top 2 of the re-ranked 3
        db, "a", "red", "circle", extra=("--top", "2", "--rerank", "3", "--reranker", str(weights))
    )
    assert [h["path"] for h in shown] == [h["path"] for h in plain[:2]]
    assert all("rerank" in hit for hit in shown)
    shipped = _search(db, "a", "red", "circle", extra=("--rerank", "3"))  # emoji-mini's own
    assert [h["path"] for h in shipped[3:]] == [h["path"] for h in plain[3:]]
    assert {h["path"] for h in shipped[:3]} == {h["path"] for h in plain[:3]}
    assert all("rerank" in h for h in shipped[:3])
    bad = ["search", "red", "--db", str(db), "--rerank", "3"]
    other = save_reranker(untrained, tmp_path / "o.safetensors", encoder="native:test-tiny")
    assert main([*bad, "--reranker", str(other)]) == 1
    assert "trained on 'native:test-tiny' features" in capsys.readouterr().err
    image = str(gallery / "red-circle.png")
    assert (
        main(["search", image, "--db", str(db), "--rerank", "3", "--reranker", str(weights)]) == 1
    )
    assert "give one text" in capsys.readouterr().err


def test_an_index_refuses_vectors_of_other_weights_under_the_same_name(tmp_path: Path) -> None:
    """A spec names a model, not its weights: replaced weights must not meet stale vectors."""
    import torch

    from crossmodal.errors import ConfigError
    from crossmodal.models.registry import create_model
    from crossmodal.models.weights import save_weights

    weights = tmp_path / "w.safetensors"
    torch.manual_seed(0)
    save_weights(create_model("test-tiny"), weights)
    spec = f"native:test-tiny@{weights}"
    gallery = _gallery(tmp_path / "g")
    with Index.open(tmp_path / "db", IndexConfig(model=spec)) as index:
        index.add([gallery])
        recorded = index.store.get_meta("weights")
        assert recorded and recorded.startswith(f"{weights.stat().st_size}:")
        assert index.search("red circle", k=1)
    torch.manual_seed(1)
    save_weights(create_model("test-tiny"), weights)  # new weights, the same name and file
    with Index.open(tmp_path / "db") as index, pytest.raises(ConfigError, match="other weights"):
        index.search("red circle", k=1)
    torch.manual_seed(0)
    save_weights(create_model("test-tiny"), weights)  # the original weights are accepted again
    with Index.open(tmp_path / "db") as index:
        assert index.search("red circle", k=1)


def test_weights_fingerprint_samples_large_files(tmp_path: Path) -> None:
    from crossmodal.encoders.fingerprint import file_fingerprint, weights_fingerprint

    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, 5 << 20, dtype=np.uint8)  # 5 MiB: sampled, not read whole
    (tmp_path / "a.bin").write_bytes(big.tobytes())
    (tmp_path / "b.bin").write_bytes(big.tobytes())
    assert file_fingerprint(tmp_path / "a.bin") == file_fingerprint(tmp_path / "b.bin")
    big[-10] ^= 1  # in the last MiB, which is always read
    (tmp_path / "b.bin").write_bytes(big.tobytes())
    assert file_fingerprint(tmp_path / "a.bin") != file_fingerprint(tmp_path / "b.bin")
    assert weights_fingerprint("native:emoji-mini")  # the bundled file
    assert weights_fingerprint("openclip:ViT-B-32/laion2b_s34b_b79k") == ""  # not here
