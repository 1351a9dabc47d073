"""The ``milvus`` vector index: the same protocol as the local kinds, on a Milvus collection.

For collections that outgrow one machine: the vectors live in Milvus, the metadata stays in
crossmodal's SQLite database, and searches go through the same :class:`Index` API. The URI
says which Milvus:

* a file path (``~/photos-index/milvus.db``): Milvus Lite, embedded in this process
  (``pip install milvus-lite``), for tests and small collections;
* ``http://host:19530``: a ``milvus-lite server`` or a Milvus cluster. A token, when the
  server needs one, comes from ``$CROSSMODAL_MILVUS_TOKEN`` and is never written to disk.

The collection has two fields, ``id`` (INT64, the SQLite vector id) and ``vector``
(FLOAT_VECTOR, inner product), and an ``HNSW`` index (``hnsw_m``, ``ef_construction`` and
``ef_search`` of :class:`VectorIndexOptions`; ``milvus_index="FLAT"`` for exact answers).

Saving writes a small JSON *handle* in place of the index file (URI, collection, dim, count,
generation; no vectors, no token): :func:`~crossmodal.index.vectors.load_vector_index`
reconnects through it, and the generation keeps the database and the collection in step as
for a local index. Writes are upserts by id, so a crash between writing the collection and
the handle is mended by the next sync (the diff of ids).

Filters are pushed down: a search limited to ``allowed`` ids (a folder, a date range, a file
type: the SQL of :class:`SearchFilter` resolved to vector ids) sends Milvus an
``id in [...]`` expression for sets up to :data:`PUSHDOWN_MAX_IDS` ids, so Milvus searches
only those; a larger set is searched with the widest ``limit`` Milvus allows and filtered here.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from crossmodal.atomic import atomic_write_text
from crossmodal.errors import BackendUnavailableError, ConfigError, InputError
from crossmodal.index.vector_common import (
    FloatArray,
    IdArray,
    VectorIndexOptions,
    check_ids,
    check_k,
    check_pairs,
    check_vectors,
    empty_result,
    unique_allowed_ids,
)

__all__ = ["HANDLE_FORMAT", "PUSHDOWN_MAX_IDS", "MilvusIndex", "read_handle"]

HANDLE_FORMAT = "crossmodal-milvus-handle/1"
PUSHDOWN_MAX_IDS = 100_000  # allowed sets up to this size become an `id in [...]` filter
MAX_TOPK = 16_384  # Milvus's largest limit
_BATCH = 2_000  # rows per insert, ids per delete or lookup
TOKEN_ENV = "CROSSMODAL_MILVUS_TOKEN"


_LITE_USERS: dict[str, int] = {}  # open MilvusIndex objects per Milvus Lite file, this process
_LITE_LOCK = threading.Lock()


def _client(uri: str) -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise BackendUnavailableError("milvus", "scale", "pymilvus") from exc
    logging.getLogger("milvus_lite").setLevel(logging.WARNING)  # no start/stop chatter
    if _is_lite(uri):
        try:
            import milvus_lite  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailableError("milvus (Lite)", "scale", "milvus-lite") from exc
        uri = _lite_path(uri)
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    try:
        client = MilvusClient(uri=uri, token=os.environ.get(TOKEN_ENV, ""))
    except Exception as exc:  # pymilvus raises its own types for every connection failure
        hint = (
            "; a Milvus Lite file is open in one process at a time: serve it with "
            "`milvus-lite server` and pass --milvus-uri http://HOST:PORT to share it"
            if _is_lite(uri)
            else ""
        )
        raise InputError(f"cannot connect to Milvus at {uri}: {exc}{hint}") from exc
    if _is_lite(uri):
        with _LITE_LOCK:
            _LITE_USERS[uri] = _LITE_USERS.get(uri, 0) + 1
    return client


def _is_lite(uri: str) -> bool:
    return "://" not in uri


def _lite_path(uri: str) -> str:
    return os.path.abspath(os.path.expanduser(uri))


def _release(uri: str) -> None:
    """Stop this process's Milvus Lite server for ``uri`` when its last user closes."""
    if not _is_lite(uri):
        return
    path = _lite_path(uri)
    with _LITE_LOCK:
        left = _LITE_USERS.get(path, 1) - 1
        if left > 0:
            _LITE_USERS[path] = left
            return
        _LITE_USERS.pop(path, None)
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(path)  # frees the file's lock for other processes


class MilvusIndex:
    """A :class:`~crossmodal.index.vectors.VectorIndex` on one Milvus collection."""

    kind = "milvus"

    def __init__(
        self,
        dim: int,
        options: VectorIndexOptions,
        *,
        create: bool = False,
        generation: int = 0,
    ) -> None:
        if dim < 1:
            raise ConfigError(f"dim: expected a positive vector width, got {dim}")
        if not options.milvus_uri:
            raise ConfigError("the milvus kind needs VectorIndexOptions.milvus_uri (--milvus-uri)")
        self._dim = dim
        self.options = options
        self.generation = generation
        self.collection = options.milvus_collection
        self.client = _client(options.milvus_uri)
        try:
            self._open(create)
        except BaseException:
            self.close()  # a Lite file must not stay locked by a half-opened index
            raise

    def _open(self, create: bool) -> None:
        exists = self.client.has_collection(self.collection)
        if create:
            if exists:
                self.client.drop_collection(self.collection)
            self._create()
        elif not exists:
            raise InputError(
                f"Milvus collection {self.collection!r} at {self.options.milvus_uri} is "
                "missing; it is rebuilt from the database on the next crossmodal index"
            )
        else:
            self.client.load_collection(self.collection)  # a server keeps it released until asked

    def close(self) -> None:
        """Close the connection; for Milvus Lite, this lets another process open the file."""
        if self.client is not None:
            self.client.close()
            self.client = None
            _release(self.options.milvus_uri)

    def _create(self) -> None:
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._dim)
        params = self.client.prepare_index_params()
        if self.options.milvus_index == "HNSW":
            build = {"M": self.options.hnsw_m, "efConstruction": self.options.ef_construction}
            params.add_index("vector", index_type="HNSW", metric_type="IP", params=build)
        else:
            params.add_index("vector", index_type="FLAT", metric_type="IP")
        self.client.create_collection(self.collection, schema=schema)
        # Waiting for the index asks the server for a timestamp, which Milvus Lite does not
        # implement: a gRPC "Method not implemented!" traceback in the log of a run that then
        # succeeds. Lite builds the index of an empty collection at once: no wait there.
        self.client.create_index(
            self.collection, params, sync=not _is_lite(self.options.milvus_uri)
        )
        self.client.load_collection(self.collection)

    @property
    def dim(self) -> int:
        """Width of the stored vectors."""
        return self._dim

    @property
    def needs_rebuild(self) -> bool:
        """False: Milvus compacts deletions itself."""
        return False

    def __len__(self) -> int:
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def ids(self) -> IdArray:
        """Every stored id (in Milvus's order)."""
        out: list[int] = []
        iterator = self.client.query_iterator(
            self.collection, batch_size=10_000, filter="id >= 0", output_fields=["id"]
        )
        try:
            while batch := iterator.next():
                out += [int(row["id"]) for row in batch]
        finally:
            iterator.close()
        return np.asarray(out, dtype=np.int64)

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Upsert ``vectors`` under ``ids`` (an id already stored is replaced)."""
        id_arr, vec = check_pairs(ids, vectors, self._dim)
        for start in range(0, len(id_arr), _BATCH):
            rows = [
                {"id": int(i), "vector": v.tolist()}
                for i, v in zip(
                    id_arr[start : start + _BATCH], vec[start : start + _BATCH], strict=True
                )
            ]
            self.client.upsert(self.collection, rows)

    def remove(self, ids: npt.ArrayLike) -> int:
        """Delete ``ids`` (unknown ones are ignored); return how many were stored."""
        wanted = np.unique(check_ids(ids, "ids"))
        removed = 0
        for start in range(0, len(wanted), _BATCH):
            chunk = wanted[start : start + _BATCH].tolist()
            found = self.client.query(
                self.collection, filter=f"id in {chunk}", output_fields=["id"]
            )
            present = [int(row["id"]) for row in found]
            if present:
                self.client.delete(self.collection, ids=present)
                removed += len(present)
        return removed

    def search(
        self, queries: npt.ArrayLike, k: int, allowed: npt.ArrayLike | None = None
    ) -> tuple[FloatArray, IdArray]:
        """Best ``k`` ids per query (see the protocol); ``allowed`` pushed down when small."""
        k = check_k(k)
        if k > MAX_TOPK:
            raise ConfigError(f"k: Milvus returns at most {MAX_TOPK} results, asked for {k}")
        q = check_vectors(queries, self._dim, "queries")
        scores, found = empty_result(len(q), k)
        if len(q) == 0:
            return scores, found
        expr, keep = "", None
        if allowed is not None:
            allowed_ids = unique_allowed_ids(allowed)
            if len(allowed_ids) == 0:
                return scores, found
            if len(allowed_ids) <= PUSHDOWN_MAX_IDS:
                expr = f"id in {allowed_ids.tolist()}"
            else:
                keep = allowed_ids
        limit = MAX_TOPK if keep is not None else k
        params: dict[str, Any] = {"metric_type": "IP"}
        if self.options.milvus_index == "HNSW":
            params["params"] = {"ef": max(self.options.ef_search, limit)}
        results = self.client.search(
            self.collection,
            data=q.tolist(),
            limit=limit,
            filter=expr,
            output_fields=["id"],
            search_params=params,
        )
        for row, hits in enumerate(results):
            pairs = [(float(h["distance"]), int(h["id"])) for h in hits]
            if keep is not None:
                mask = np.isin([i for _, i in pairs], keep)
                pairs = [p for p, m in zip(pairs, mask, strict=True) if m]
            pairs = sorted(pairs, key=lambda p: -p[0])[:k]
            for col, (score, label) in enumerate(pairs):
                scores[row, col], found[row, col] = score, label
        return scores, found

    def save(self, path: str | os.PathLike[str], *, generation: int = 0) -> Path:
        """Write the handle (not the vectors: they are in Milvus) to ``path`` atomically."""
        self.client.flush(self.collection)
        options = {k: v for k, v in asdict(self.options).items()}
        handle = {
            "format": HANDLE_FORMAT,
            "kind": self.kind,
            "dim": self._dim,
            "count": len(self),
            "generation": generation,
            "options": options,
        }
        written = atomic_write_text(path, json.dumps(handle, indent=1) + "\n")
        self.generation = generation
        return written


def read_handle(path: Path) -> dict[str, Any] | None:
    """The JSON handle a :class:`MilvusIndex` saved at ``path``, or None for any other file."""
    try:
        if path.stat().st_size > 65_536:
            return None
        handle = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(handle, dict) or handle.get("format") != HANDLE_FORMAT:
        return None
    return handle
