"""Vector indexes: FAISS backends against the exact numpy oracle, filters, removal, files.

The data is a low-rank proxy of CLIP embeddings (Gaussian latents of rank 32 times a random
matrix, plus a little noise, unit norm): uniform random vectors have no neighbourhood
structure and make every approximate index look broken.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from crossmodal.errors import BackendUnavailableError, ConfigError, InputError
from crossmodal.index.vectors import (
    AUTO_EXACT_MAX_SCALARS,
    MIN_TRAIN_VECTORS,
    ExactIndex,
    FaissIndex,
    VectorIndex,
    VectorIndexOptions,
    build_vector_index,
    choose_kind,
    load_vector_index,
    read_vector_index_header,
)

DIM = 256
N = 3_000
FAISS_KINDS = ("flat", "hnsw", "ivfpq")
ALL_KINDS = ("exact", *FAISS_KINDS, "milvus")  # milvus: Milvus Lite, embedded (crossmodal[scale])
_MILVUS: dict[str, object] = {"root": None, "n": 0}


def clip_like(n: int, dim: int = DIM, rank: int = 32, seed: int = 0) -> npt.NDArray[np.float32]:
    """``n`` unit vectors near a random ``rank``-dimensional subspace (noise 1% of the power)."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((rank, dim), dtype=np.float32)
    x = rng.standard_normal((n, rank), dtype=np.float32) @ basis  # (n, dim), rank `rank`
    x += 0.1 * np.sqrt(rank) * rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall_at_k(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    """Mean share of each row of ``truth`` (ignoring -1 padding) that ``found`` contains."""
    hits = [
        len(set(f.tolist()) & set(t[t >= 0].tolist())) / max(1, int((t >= 0).sum()))
        for f, t in zip(found, truth, strict=True)
    ]
    return float(np.mean(hits))


@pytest.fixture(scope="module", autouse=True)
def _milvus_root(tmp_path_factory: pytest.TempPathFactory) -> None:
    _MILVUS["root"] = tmp_path_factory.mktemp("milvus")


def _build(ids: npt.ArrayLike, vectors: npt.ArrayLike, kind: str) -> VectorIndex:
    """``build_vector_index``; the milvus kind in a Milvus Lite file of its own."""
    if kind != "milvus":
        return build_vector_index(ids, vectors, kind)
    pytest.importorskip("pymilvus", reason="pip install 'crossmodal[scale]'")
    pytest.importorskip("milvus_lite", reason="pip install 'crossmodal[scale]'")
    _MILVUS["n"] = int(str(_MILVUS["n"])) + 1
    uri = Path(str(_MILVUS["root"])) / f"m{_MILVUS['n']}.db"
    return build_vector_index(ids, vectors, kind, options=VectorIndexOptions(milvus_uri=str(uri)))


@pytest.fixture(scope="module", autouse=True)
def _one_faiss_thread() -> Iterator[None]:
    """One OpenMP thread: the CI machine is shared and OpenMP spin-waits when oversubscribed."""
    try:
        import faiss
    except ImportError:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Sparse large ids (like rowids after deletions), N stored vectors, 100 queries."""
    vectors = clip_like(N + 100)
    ids = np.random.default_rng(1).choice(10**12, N, replace=False).astype(np.int64)
    return ids, vectors[:N], vectors[N:]


@pytest.fixture(scope="module")
def built(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, VectorIndex]:
    """One index of each kind over the same data (read-only: tests that modify build their own)."""
    ids, vectors, _ = data
    kinds = ALL_KINDS if _has_faiss() and _has_milvus() else ("exact", *FAISS_KINDS)
    kinds = kinds if _has_faiss() else ("exact",)
    return {kind: _build(ids, vectors, kind) for kind in kinds}


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _has_milvus() -> bool:
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError:
        return False
    return True


needs_faiss = pytest.mark.skipif(not _has_faiss(), reason="faiss-cpu is not installed")


def _brute_force(
    vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The plain full-sort answer the exact index must give."""
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


# --------------------------------------------------------------------------------------------
# kind choice and the exact oracle


def test_choose_kind_by_size() -> None:
    assert choose_kind(0, 512) == "exact"
    assert choose_kind(AUTO_EXACT_MAX_SCALARS // 512, 512) == "exact"
    assert choose_kind(AUTO_EXACT_MAX_SCALARS // 512 + 1, 512) == "ivfpq"
    assert choose_kind(1_000_000, 512) == "ivfpq"
    assert choose_kind(30_000, 256) == "exact"  # the budget is in floats scanned
    with pytest.raises(ConfigError):
        choose_kind(10, 0)


def test_auto_builds_exact_when_small(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    ids, vectors, _ = data
    index = build_vector_index(ids, vectors)
    assert index.kind == "exact" and isinstance(index, ExactIndex) and len(index) == N
    assert isinstance(index, VectorIndex)


def test_exact_equals_brute_force(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    ids, vectors, queries = data
    index = build_vector_index(ids, vectors, "exact")
    scores, found = index.search(queries, 10)
    want_scores, want_ids = _brute_force(vectors, ids, queries, 10)
    assert scores.dtype == np.float32 and found.dtype == np.int64
    assert scores.shape == found.shape == (len(queries), 10)
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()  # best first


def test_exact_filtered_equals_brute_force(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    ids, vectors, queries = data
    index = build_vector_index(ids, vectors, "exact")
    for step in (2, 13):  # a dense filter (scored in place, masked) and a sparse one (gathered)
        rows = np.arange(0, N, step)
        allowed = np.concatenate([ids[rows], [10**13]])  # an unknown id is ignored
        _, found = index.search(queries, 10, allowed=allowed)
        _, want = _brute_force(vectors[rows], ids[rows], queries, 10)
        np.testing.assert_array_equal(found, want)


# --------------------------------------------------------------------------------------------
# FAISS against the oracle


@needs_faiss
def test_flat_gives_the_exact_ids(
    built: dict[str, VectorIndex], data: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    queries = data[2]
    want_scores, want_ids = built["exact"].search(queries, 10)
    scores, found = built["flat"].search(queries, 10)
    assert isinstance(built["flat"], FaissIndex)
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-5)


@needs_faiss
@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_approximate_recall_at_10(
    built: dict[str, VectorIndex], data: tuple[np.ndarray, np.ndarray, np.ndarray], kind: str
) -> None:
    queries = data[2]
    _, truth = built["exact"].search(queries, 10)
    scores, found = built[kind].search(queries, 10)
    assert built[kind].kind == kind
    assert recall_at_k(found, truth) >= 0.95
    assert (np.diff(scores, axis=1) <= 1e-6).all()


@needs_faiss
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_allowed_restricts_results(
    built: dict[str, VectorIndex], data: tuple[np.ndarray, np.ndarray, np.ndarray], kind: str
) -> None:
    ids, _, queries = data
    index = built[kind]
    rng = np.random.default_rng(2)
    if kind not in built:
        pytest.skip(f"{kind} is not installed")
    for size in (5, 40, 1_500):  # fewer than k, a few times k, half the index
        allowed = rng.choice(ids, size, replace=False)
        _, truth = built["exact"].search(queries, 10, allowed=allowed)
        _, found = index.search(queries, 10, allowed=allowed)
        returned = found[found >= 0]
        assert np.isin(returned, allowed).all()
        assert ((found >= 0).sum(axis=1) == min(10, size)).all()
        if kind in ("exact", "flat"):
            np.testing.assert_array_equal(found, truth)
        else:
            assert recall_at_k(found, truth) >= 0.9


@needs_faiss
@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_filtered_graph_search_still_fills_k(
    built: dict[str, VectorIndex], data: tuple[np.ndarray, np.ndarray, np.ndarray], kind: str
) -> None:
    """With the exact scan switched off, a selective filter goes through the graph or lists."""
    ids, _, queries = data
    index = built[kind]
    assert isinstance(index, FaissIndex)
    saved = index.options
    index.options = replace(saved, exact_scan_limit=0)
    try:
        for size in (12, 300):  # 0.4% and 10% of the index
            allowed = ids[np.arange(0, N, N // size)][:size]
            _, truth = built["exact"].search(queries, 10, allowed=allowed)
            _, found = index.search(queries, 10, allowed=allowed)
            assert np.isin(found, allowed).all()  # no -1: k results whenever k are allowed
            assert recall_at_k(found, truth) >= 0.9
    finally:
        index.options = saved


@needs_faiss
def test_starved_graph_search_falls_back_to_the_scan(
    built: dict[str, VectorIndex],
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A beam too narrow for the filter returns short rows; the exact scan completes them."""
    import crossmodal.index.faiss_index as faiss_index_module

    ids, _, queries = data
    index = built["hnsw"]
    assert isinstance(index, FaissIndex)
    scans: list[int] = []
    scan = FaissIndex._scan

    def counted_scan(self: FaissIndex, q: np.ndarray, k: int, bitmap: np.ndarray) -> object:
        scans.append(len(q))
        return scan(self, q, k, bitmap)

    monkeypatch.setattr(FaissIndex, "_scan", counted_scan)
    monkeypatch.setattr(faiss_index_module, "_MAX_FILTERED_EF", 16)
    saved = index.options
    index.options = replace(saved, exact_scan_limit=0, ef_search=16)
    try:
        allowed = ids[::250]  # 12 ids
        _, truth = built["exact"].search(queries, 10, allowed=allowed)
        _, found = index.search(queries, 10, allowed=allowed)
    finally:
        index.options = saved
    assert scans and 0 < scans[0] <= len(queries)  # some rows came back short
    assert np.isin(found, allowed).all()
    assert recall_at_k(found, truth) >= 0.95


@needs_faiss
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_padding_when_k_exceeds_the_index(kind: str) -> None:
    vectors = clip_like(MIN_TRAIN_VECTORS + 5, seed=3)
    ids = np.arange(len(vectors), dtype=np.int64) + 100
    index = _build(ids, vectors, kind)
    k = len(vectors) + 7
    scores, found = index.search(vectors[:2], k)
    assert found.shape == scores.shape == (2, k)
    assert (found[:, : len(vectors)] >= 0).all()
    assert (found[:, len(vectors) :] == -1).all()
    assert np.isneginf(scores[:, len(vectors) :]).all()
    assert sorted(found[0, : len(vectors)].tolist()) == ids.tolist()
    assert found[0, 0] == ids[0]  # a stored vector finds itself first
    _, few = index.search(vectors[:1], 10, allowed=ids[:3])
    assert sorted(few[0, :3].tolist()) == ids[:3].tolist() and (few[0, 3:] == -1).all()


# --------------------------------------------------------------------------------------------
# updates


@needs_faiss
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_removed_ids_are_never_returned(kind: str) -> None:
    n = 1_500
    vectors = clip_like(n + 50, seed=4)
    ids = np.arange(n, dtype=np.int64) * 7 + 1
    queries = vectors[n:]
    index = _build(ids, vectors[:n], kind)
    _, before = index.search(queries, 10)
    gone = np.unique(before[:, :5])  # the best answers: their removal matters most
    assert index.remove(np.concatenate([gone, [3, 10**15]])) == len(gone)  # unknown: ignored
    assert len(index) == n - len(gone)
    _, found = index.search(queries, 10)
    assert not np.isin(found, gone).any() and (found >= 0).all()
    _, found = index.search(queries, 10, allowed=np.concatenate([gone, ids[:20]]))
    assert not np.isin(found, gone).any()
    keep = ~np.isin(ids, gone)
    _, truth = _brute_force(vectors[:n][keep], ids[keep], queries, 10)
    _, found = index.search(queries, 10)
    assert recall_at_k(found, truth) >= (1.0 if kind in ("exact", "flat") else 0.9)
    if kind in ("hnsw", "ivfpq"):
        assert isinstance(index, FaissIndex) and index.tombstones == len(gone)
        assert not index.needs_rebuild
        index.remove(ids[: n // 2])
        assert index.needs_rebuild  # over a quarter of the stored vectors are tombstones
    else:
        assert not index.needs_rebuild


@needs_faiss
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_adding_a_stored_id_replaces_it(kind: str) -> None:
    n = 1_200
    vectors = clip_like(n + 1, seed=5)
    ids = np.arange(n, dtype=np.int64)
    index = _build(ids, vectors[:n], kind)
    index.remove([7])
    index.add([7, 3, n + 5], vectors[[n, n, 0]])  # 7 comes back, 3 moves, n + 5 is new
    assert len(index) == n + 1
    _, found = index.search(vectors[n:], 5)
    assert set(found[0, :2].tolist()) == {3, 7}  # both now hold the query vector
    assert len(set(found[0].tolist())) == 5  # no id twice
    _, found = index.search(vectors[:1], 2)
    assert set(found[0].tolist()) == {0, n + 5}


def test_exact_grows_and_compacts() -> None:
    index = ExactIndex(DIM)
    vectors = clip_like(3_000, seed=6)
    for start in range(0, 3_000, 250):  # many small adds, as an indexer does
        index.add(np.arange(start, start + 250), vectors[start : start + 250])
    assert len(index) == 3_000
    index.remove(np.arange(0, 3_000, 2))
    assert len(index) == 1_500
    np.testing.assert_array_equal(index.ids(), np.arange(1, 3_000, 2))
    np.testing.assert_array_equal(index.vectors(), vectors[1::2])


# --------------------------------------------------------------------------------------------
# files


@needs_faiss
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_save_load_round_trip(tmp_path: Path, kind: str) -> None:
    n = 1_200
    vectors = clip_like(n + 20, seed=7)
    ids = np.arange(n, dtype=np.int64) * 3 + 11
    queries = vectors[n:]
    index = _build(ids, vectors[:n], kind)
    index.remove(ids[:10])
    path = tmp_path / "sub" / "vectors.idx"
    assert index.save(path, generation=12345678901) == path
    assert [p.name for p in path.parent.iterdir()] == ["vectors.idx"]  # no temp file left
    header = read_vector_index_header(path)
    assert (header.kind, header.dim, header.count, header.generation) == (
        kind,
        DIM,
        n - 10,
        12345678901,
    )
    assert header.tombstones == (10 if kind in ("hnsw", "ivfpq") else 0)
    loaded, generation = load_vector_index(path)
    assert generation == loaded.generation == 12345678901
    assert (loaded.kind, loaded.dim, len(loaded)) == (kind, DIM, n - 10)
    allowed = ids[::3]
    for args in ((queries, 10), (queries, 10, allowed)):
        want = index.search(*args)
        got = loaded.search(*args)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
    loaded.add(ids[:1], vectors[:1])  # a loaded index stays writable
    assert len(loaded) == n - 9


@needs_faiss
@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_damaged_files_name_the_file(tmp_path: Path, kind: str) -> None:
    vectors = clip_like(1_100, seed=8)
    index = build_vector_index(np.arange(1_100), vectors, kind)
    path = tmp_path / "vectors.idx"
    index.save(path, generation=3)
    data = path.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "cut at the end": data[:-1],
        "a flipped byte": data[:5000] + bytes([data[5000] ^ 0xFF]) + data[5001:],
        "a flipped byte late": data[:-3000] + bytes([data[-3000] ^ 0xFF]) + data[-2999:],
        "empty": b"",
        "not an index": b"\x80\x04\x95 pickle? never" * 10,
    }
    for what, content in damaged.items():
        path.write_bytes(content)
        with pytest.raises(InputError, match="vectors.idx: cannot load the vector index") as e:
            load_vector_index(path)
        assert "rebuild" in str(e.value), what
    with pytest.raises(InputError, match="missing.idx"):
        load_vector_index(tmp_path / "missing.idx")


# --------------------------------------------------------------------------------------------
# errors


def test_bad_arguments_raise_clear_errors() -> None:
    vectors = clip_like(20, seed=9)
    ids = np.arange(20)
    with pytest.raises(ConfigError, match="use one of auto, exact, flat, hnsw, ivfpq, milvus"):
        build_vector_index(ids, vectors, "annoy")
    with pytest.raises(ConfigError, match="holds 128-d vectors, got 256-d"):
        build_vector_index(ids, vectors, dim=128)
    bad = vectors.copy()
    bad[4, 0] = np.nan
    with pytest.raises(InputError, match="row 4 has a NaN"):
        build_vector_index(ids, bad)
    with pytest.raises(InputError, match="id 3 appears more than once"):
        build_vector_index(np.array([0, 1, 2, 3, 3]), vectors[:5])
    with pytest.raises(InputError, match="non-negative"):
        build_vector_index(ids - 1, vectors)
    with pytest.raises(InputError, match="20 ids for 19 vectors"):
        build_vector_index(ids, vectors[:19])
    index = build_vector_index(ids, vectors)
    with pytest.raises(ConfigError, match="holds 256-d vectors, got 8-d"):
        index.search(np.zeros((1, 8), np.float32), 5)
    with pytest.raises(InputError, match="k: expected a positive int"):
        index.search(vectors[:1], 0)
    with pytest.raises(ConfigError, match="ef_search"):
        VectorIndexOptions(ef_search=0)
    empty = build_vector_index(np.zeros(0, np.int64), np.zeros((0, DIM), np.float32), dim=DIM)
    scores, found = empty.search(vectors[:2], 3)
    assert (found == -1).all() and np.isneginf(scores).all()


@needs_faiss
def test_trained_kinds_fall_back_to_flat_when_too_small() -> None:
    vectors = clip_like(50, seed=10)
    index = build_vector_index(np.arange(50), vectors, "hnsw")
    assert index.kind == "flat"
    _, found = index.search(vectors[:1], 1)
    assert found[0, 0] == 0


def test_faiss_missing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    with pytest.raises(BackendUnavailableError, match=r"pip install 'crossmodal\[search\]'"):
        build_vector_index(np.arange(5), clip_like(5), "flat")
    assert build_vector_index(np.arange(5), clip_like(5)).kind == "exact"  # needs no faiss
