"""Relevance and the weak-match flag: the query bank for text queries, the collection for images.

Real index, real default model (emoji-mini), real pictures of flat shapes drawn like emoji.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossmodal.encoders import DEFAULT_MODEL, load_encoder
from crossmodal.encoders.embedder import EmbedConfig, Embedder
from crossmodal.search.index import NULL_SAMPLE, Index
from crossmodal.search.relevance import (
    MIN_SAMPLE,
    WEAK_RELEVANCE_COLLECTION,
    QueryBank,
    bank_relevance,
    bank_texts,
    sample_relevance,
)
from crossmodal.text.language import query_language
from tests.planted import COLOURS, THREE_SHAPES, shape_gallery, shape_image

ABSENT = ["pizza", "airplane", "dog", "a cat", "披萨"]  # nothing in a gallery of shapes


def test_query_language() -> None:
    assert query_language(["a red car"]) == "en"
    assert query_language(["红色的车"]) == "zh"
    assert query_language(["红色的 car"]) == "zh"  # three ideographs, three Latin letters
    assert query_language(["a red 车"]) == "en"
    assert query_language(["", "123 !"]) == "en"


def test_the_shipped_bank() -> None:
    for language in ("en", "zh"):
        texts = bank_texts(language)
        assert len(texts) == 1024 and len(set(texts)) == 1024
        assert all(any(c.isalpha() for c in t) for t in texts)
        assert query_language(list(texts)) == language
    with pytest.raises(ValueError, match="no query bank"):
        bank_texts("fr")


def test_relevance_formulas() -> None:
    rng = np.random.default_rng(0)
    pictures, bank = rng.normal(size=(4, 8)), rng.normal(size=(50, 8))
    scores = rng.normal(size=4)
    z = bank_relevance(scores, pictures, bank)
    for k in range(4):
        reference = [float(pictures[k] @ b) for b in bank]
        assert z[k] == pytest.approx((scores[k] - np.mean(reference)) / np.std(reference))
    sample = rng.normal(size=30)
    assert sample_relevance(scores, sample) == pytest.approx(
        (scores - sample.mean()) / sample.std()
    )


@pytest.fixture()
def three(tmp_path: Path) -> Index:
    index = Index.open(tmp_path / "db")
    index.add([shape_gallery(tmp_path / "gallery", THREE_SHAPES)])
    return index


def test_a_tiny_collection_tells_matches_from_misses(three: Index) -> None:
    with three:
        for query, name in [
            ("red circle", "red_circle"),
            ("blue square", "blue_square"),
            ("green circle", "green_circle"),
            ("红色圆形", "red_circle"),
        ]:
            hits = three.search(text=query, k=3)
            assert Path(hits[0].path).stem == name
            assert not hits[0].weak, (query, hits[0].relevance)
            for hit in hits[1:]:
                relevance = (query, [(Path(h.path).stem, h.relevance) for h in hits])
                if Path(hit.path).stem.split("_")[1] != name.split("_")[1]:
                    assert hit.weak, relevance  # another shape: a miss
                else:  # the same shape in another colour: a partial match, a clear second
                    assert hit.weak or hit.relevance < hits[0].relevance - 0.5, relevance
        for query in ABSENT:
            hits = three.search(text=query, k=3)
            assert all(hit.weak for hit in hits), (query, [h.relevance for h in hits])


def test_text_relevance_is_the_pictures_standing_against_the_bank(
    three: Index, tmp_path: Path
) -> None:
    with three:
        before = {Path(h.path).stem: h for h in three.search(text="red circle", k=3)}
        red = before["red_circle"]
        stored = three.store.vector_of_file(red.path)
        assert stored is not None
        bank = three.query_bank.vectors("en")
        reference = bank @ stored
        assert red.relevance == pytest.approx(
            (red.score - reference.mean()) / reference.std(), abs=1e-5
        )
        # adding other pictures changes neither a hit's relevance nor its flag
        more = [(c, s) for c in COLOURS for s in ("circle", "square")]
        three.add([shape_gallery(tmp_path / "more", more)])
        assert len(three) == 3 + len(more)
        after = three.search(text="red circle", k=30)
        for hit in after:
            if Path(hit.path).parent.name == "gallery":
                old = before[Path(hit.path).stem]
                assert (hit.relevance, hit.weak) == pytest.approx((old.relevance, old.weak))


def test_the_bank_is_kept_per_language_and_model(three: Index, tmp_path: Path) -> None:
    directory = three.directory
    with three:
        assert not list(directory.glob("query-bank.*"))
        three.search(text="red circle")
        (english,) = directory.glob("query-bank.en.*.npy")
        assert not list(directory.glob("query-bank.zh.*"))  # made when first needed
        three.search(text="红色圆形")
        assert len(list(directory.glob("query-bank.zh.*.npy"))) == 1
    made = english.stat().st_mtime_ns
    with Index.open(directory) as again:  # a new process would load it, not embed again
        hits = again.search(text="red circle", k=1)
        assert not hits[0].weak and english.stat().st_mtime_ns == made

    embed = Embedder(load_encoder(DEFAULT_MODEL), EmbedConfig()).embed_texts
    first = QueryBank(embed, "model-a", tmp_path)
    vectors = first.vectors("en")
    path_a = first.path("en")
    assert path_a is not None and np.array_equal(np.load(path_a), vectors)
    second = QueryBank(embed, "model-b", tmp_path)  # another model: its own file
    second.vectors("en")
    path_b = second.path("en")
    assert path_b is not None and path_b != path_a and path_b.is_file()
    assert not path_a.exists()  # the other model's file is gone
    path_b.write_bytes(path_b.read_bytes()[:100])  # cut short: made again, with a warning
    third = QueryBank(embed, "model-b", tmp_path)
    assert np.array_equal(third.vectors("en"), vectors)
    assert np.load(path_b).shape == vectors.shape
    assert QueryBank(embed, "model-c", None).vectors("en").shape == vectors.shape  # in memory


def test_image_queries_use_the_collection(three: Index, tmp_path: Path) -> None:
    with three:
        gallery = tmp_path / "gallery"
        hits = three.more_like(gallery / "red_circle.png", k=3)
        assert Path(hits[0].path).stem == "red_circle"
        assert not any(hit.weak for hit in hits)  # 3 pictures: no spread to judge by
        big = tmp_path / "big"
        big.mkdir()
        for colour in COLOURS:
            for shape in ("circle", "square"):
                for size in (96, 128):
                    shape_image(colour, shape, size).save(big / f"{colour}_{shape}_{size}.png")
        three.add([big])
        assert three.store.vector_count() >= MIN_SAMPLE
        query = three.store.vector_of_file(str(gallery / "red_circle.png"))
        assert query is not None
        hits = three.more_like(gallery / "red_circle.png", k=len(three))
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        sample = three.store.sample_vectors(len(query), NULL_SAMPLE) @ query
        for hit in hits:
            z = (hit.score - sample.mean()) / sample.std()
            assert hit.relevance == pytest.approx(z, abs=1e-5)
            assert hit.weak == (z < WEAK_RELEVANCE_COLLECTION)
        assert any(hit.weak for hit in hits)  # judged again once the sample is big enough
