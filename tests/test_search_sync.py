"""The vector index follows the database by updates, and rebuilds only when it must.

A real SQLite store filled with synthetic unit vectors (the model is not needed to test how
the derived index catches up), real exact and FAISS indexes; every updated index is checked
against one built from scratch on the same database.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from crossmodal.index.faiss_index import FaissIndex
from crossmodal.index.store import FileRecord, Store, VectorRecord
from crossmodal.index.sync import kind_fits, sync_vector_index
from crossmodal.index.vectors import (
    AUTO_EXACT_MAX_SCALARS,
    VectorIndexOptions,
    build_vector_index,
    load_vector_index,
)
from crossmodal.search.index import VECTORS_NAME, Index

DIM = 16
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


def _put(store: Store, names: range, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    files, vectors = [], []
    for i in names:
        v = rng.normal(size=DIM).astype(np.float32)
        files.append(FileRecord(f"/r/{i}.png", "/r", "image", 1, 1, f"h{i}"))
        vectors.append(VectorRecord(f"h{i}", None, v / np.linalg.norm(v)))
    store.put_files(files, vectors)
    store.set_meta("dim", str(DIM))


def _answers(index: object, queries: np.ndarray) -> list[list[int]]:
    _, ids = index.search(queries, k=10)  # type: ignore[attr-defined]
    return ids.tolist()  # type: ignore[no-any-return]


def _queries() -> np.ndarray:
    q = np.random.default_rng(9).normal(size=(20, DIM)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


@pytest.mark.parametrize("backend", ["exact", "flat", "hnsw", "ivfpq"])
def test_a_stale_index_is_updated_to_equal_a_fresh_build(tmp_path: Path, backend: str) -> None:
    with Store(tmp_path) as store:
        _put(store, range(1200))
        first = sync_vector_index(store, None, backend, DIM)
        assert first.rebuilt and first.added == 1200 and len(first.index) == 1200
        # 30 new files, 20 removed
        _put(store, range(1200, 1230), seed=1)
        store.remove_files([f"/r/{i}.png" for i in range(100, 120)])
        second = sync_vector_index(store, first.index, backend, DIM)
        assert not second.rebuilt and second.index is first.index
        assert (second.added, second.removed) == (30, 20)
        assert sorted(second.index.ids().tolist()) == store.vector_ids().tolist()
        ids, vectors = store.all_vectors(DIM)
        fresh = build_vector_index(ids, vectors, kind="exact")
        queries = _queries()
        if backend in ("hnsw", "ivfpq"):  # approximate: compare recall against the exact answers
            got, want = _answers(second.index, queries), _answers(fresh, queries)
            recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
            assert recall >= 0.9
        else:
            assert _answers(second.index, queries) == _answers(fresh, queries)


def test_rebuilds_when_the_kind_no_longer_fits_or_too_much_changed(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        _put(store, range(500))
        small = sync_vector_index(store, None, "hnsw", DIM).index
        assert small.kind == "flat"  # too few vectors to train HNSW
        assert kind_fits(small, "hnsw", 500) and not kind_fits(small, "hnsw", 1500)
        _put(store, range(500, 1500), seed=1)
        grown = sync_vector_index(store, small, "hnsw", DIM)
        assert grown.rebuilt and grown.index.kind == "hnsw" and len(grown.index) == 1500
        # replacing most vectors at once rebuilds (a graph trained on what is gone)
        store.remove_files([f"/r/{i}.png" for i in range(1000)])
        _put(store, range(2000, 2900), seed=2)
        churn = sync_vector_index(store, grown.index, "hnsw", DIM)
        assert churn.rebuilt and len(churn.index) == 1400
        # "auto" moves from the exact scan to IVF-PQ past AUTO_EXACT_MAX_SCALARS
        exact = build_vector_index(*store.all_vectors(DIM), kind="exact")
        limit = AUTO_EXACT_MAX_SCALARS // DIM
        assert kind_fits(exact, "auto", limit) and not kind_fits(exact, "auto", limit + 1)
        assert not kind_fits(churn.index, "auto", limit + 1)  # an HNSW an older auto built


def test_an_ivfpq_index_is_rebuilt_once_it_outgrows_its_lists(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        _put(store, range(1600))
        first = sync_vector_index(store, None, "ivfpq", DIM).index
        assert isinstance(first, FaissIndex) and first.options.nlist == 40  # sqrt(1600)
        assert kind_fits(first, "ivfpq", 4 * 1600) and not kind_fits(first, "ivfpq", 7000)
        index, n = first, 1600
        for seed, grown_to in enumerate((2400, 3600, 5400), start=1):  # +50% each: updated
            _put(store, range(n, grown_to), seed=seed)
            step = sync_vector_index(store, index, "ivfpq", DIM)
            assert not step.rebuilt and step.index is first
            index, n = step.index, grown_to
        _put(store, range(n, 8100), seed=4)  # sqrt(8100) = 90 lists wanted > 2 * 40
        last = sync_vector_index(store, index, "ivfpq", DIM)
        assert last.rebuilt and isinstance(last.index, FaissIndex)
        assert last.index.options.nlist == 90 and len(last.index) == 8100
        # a count the caller fixed is never outgrown
        fixed = VectorIndexOptions(nlist=40)
        assert kind_fits(first, "ivfpq", 10_000, fixed)


def test_index_add_updates_the_saved_index_instead_of_rebuilding(tmp_path: Path) -> None:
    gallery, db = tmp_path / "gallery", tmp_path / "db"
    shutil.copytree(EXAMPLES, gallery)
    with Index.open(db) as index:
        first = index.add([gallery])
    assert first.index_rebuilt and first.vectors_added == 4
    shutil.copy(gallery / "red-circle.png", gallery / "copy.png")  # same content: no vector
    (gallery / "green-triangle.png").unlink()
    with Index.open(db) as index:  # a new process: the saved index is loaded and updated
        second = index.add([gallery])
        hits = index.search(text="a red circle", k=10)
    assert not second.index_rebuilt and (second.vectors_added, second.vectors_removed) == (0, 1)
    saved, generation = load_vector_index(db / VECTORS_NAME)
    with Store(db) as store:
        assert generation == store.generation
        assert sorted(saved.ids().tolist()) == store.vector_ids().tolist()
    assert {Path(h.path).name for h in hits} == {
        "red-circle.png",
        "copy.png",
        "blue-square.jpg",
        "yellow-star.png",
    }


def test_a_new_database_ignores_a_vector_index_left_beside_it(tmp_path: Path) -> None:
    gallery, db = tmp_path / "gallery", tmp_path / "db"
    shutil.copytree(EXAMPLES, gallery)
    with Index.open(db) as index:
        index.add([gallery])
    (db / "index.sqlite").unlink()  # the database is gone; its derived index is not
    for extra in ("index.sqlite-wal", "index.sqlite-shm"):
        (db / extra).unlink(missing_ok=True)
    (gallery / "green-triangle.png").unlink()
    with Index.open(db) as index:
        report = index.add([gallery])
        assert report.index_rebuilt and len(index) == 3
        names = {Path(h.path).name for h in index.search(text="a shape", k=10)}
    assert names == {"red-circle.png", "blue-square.jpg", "yellow-star.png"}
