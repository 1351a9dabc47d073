"""The service's state: one index, its model, the opaque-id secret and the metrics.

Routes (:mod:`crossmodal.service.app`, :mod:`~crossmodal.service.clip_compat`,
:mod:`~crossmodal.service.manage`) turn requests into calls on :class:`Service`; ``error`` is
the web framework's HTTP exception class, passed in so that this module needs no FastAPI.
"""

from __future__ import annotations

import io
import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from crossmodal.data.images import jpeg_bytes, load_image
from crossmodal.errors import CrossmodalError, InputError, NotFoundError
from crossmodal.index.folders import place_of
from crossmodal.paths import printable
from crossmodal.search.index import Index
from crossmodal.search.results import Hit
from crossmodal.service.fetch import fetch
from crossmodal.service.ids import FileIds, new_secret
from crossmodal.service.metrics import Metrics
from crossmodal.service.settings import ServiceSettings

if TYPE_CHECKING:
    from crossmodal.heads.rerank import Reranker

__all__ = ["Service", "inside_roots", "open_upload"]

_SECRET_KEY = "service_secret"  # index meta key of the id secret


class Service:
    """The index behind the app, used by one request at a time."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.index = Index.open(settings.db, create=False, threads=True)
        self.lock = threading.Lock()
        with self.lock:
            secret = self.index.store.get_meta(_SECRET_KEY)
            if secret is None:
                secret = new_secret()
                with self.index.store.transaction():
                    self.index.store.set_meta(_SECRET_KEY, secret)
        self.ids = FileIds(secret)
        from crossmodal.search.rerank import find_reranker
        from crossmodal.search.searcher import Searcher

        self.reranker: Reranker | None = find_reranker(self.index, settings.reranker)
        self.searcher = Searcher(self.index, self.reranker)
        self.metrics = Metrics(self.file_count)

    def file_count(self) -> int:
        with self.lock:
            return len(self.index)

    def hits_json(self, hits: list[Hit]) -> list[dict[str, Any]]:
        """The hits as the API answers them: names, places and opaque ids, never a path."""
        store = self.index.store
        ids = store.file_ids([h.path for h in hits])
        roots = {file_id: str(row[2]) for file_id, row in store.file_rows(ids.values()).items()}
        out = []
        for hit in hits:
            token = self.ids.issue(ids[hit.path], hit.path)
            at = f"t={hit.time:.3f}" if hit.time is not None else ""
            out.append(
                {
                    "id": token,
                    "name": printable(os.path.basename(hit.path)),
                    "where": place_of(hit.path, roots.get(ids[hit.path], hit.path)),
                    "kind": hit.kind,
                    "time": hit.time,
                    "score": round(hit.score, 6),
                    "relevance": round(hit.relevance, 4),
                    "weak": hit.weak,
                    "caption": hit.caption,
                    "mtime": hit.mtime,
                    **({} if hit.rerank is None else {"rerank": round(hit.rerank, 4)}),
                    "thumbnail": f"/api/thumb/{token}" + (f"?{at}" if at else ""),
                    "preview": f"/api/thumb/{token}?size={self.settings.preview_size}"
                    + (f"&{at}" if at else ""),
                    "file": f"/api/file/{token}",
                }
            )
        return out

    def thumbnail(self, path: str, t: float | None = None, size: int | None = None) -> bytes:
        """JPEG bytes of a thumbnail of ``path`` (a video's frame at ``t`` seconds), at most
        ``size`` pixels on its longest side (default: the settings' thumbnail size).

        Raises:
            CrossmodalError: The file no longer decodes.
        """
        side = size or self.settings.thumbnail_size
        if t is not None:
            from crossmodal.data.video import frame_at

            return jpeg_bytes(frame_at(path, t).image, side)
        return jpeg_bytes(load_image(path, draft_size=side), side)

    def heatmap(self, path: str, text: str, t: float | None = None) -> bytes:
        """JPEG of where ``text`` falls in the picture: how much hiding each part of it
        lowers the match (an occlusion heat map; any model).

        Raises:
            CrossmodalError: The file no longer decodes.
        """
        from crossmodal.heads.heatmap import query_heatmap

        side = self.settings.thumbnail_size
        image = query_heatmap(self.index.encoder, path, self.text_vector(text), time=t, size=side)
        return jpeg_bytes(image)

    def text_vector(self, text: str) -> npt.NDArray[np.float32]:
        """The unit query vector of a text."""
        from crossmodal.search.query import Query

        return self.index.query_vector(Query.of(text, None))

    def picture_vector(self, data: bytes) -> npt.NDArray[np.float32]:
        """The unit vector of an uploaded picture.

        Raises:
            InputError: Empty, not a picture, too many pixels, or it does not decode.
        """
        picture = open_upload(data, self.settings.max_image_pixels)
        encoder = self.index.encoder
        vector: npt.NDArray[np.float32] = encoder.encode_pixels(encoder.preprocess(picture)[None])[
            0
        ]
        return vector

    def url_vector(self, url: str, own_base: str) -> npt.NDArray[np.float32]:
        """The unit vector of the picture at ``url`` (take it without holding ``lock``).

        A link to this server's own ``/api/file/ID`` (clip-retrieval's front-end sends a hit's
        ``url`` back to search by it) is the indexed file's stored vector, fetched from
        nowhere. Any other URL is fetched within the settings' fetch policy (off by default),
        then checked like an upload.

        Raises:
            NotFoundError: A link to this server that names no indexed file.
            FetchError: The URL was not fetched (its ``status`` says why).
            InputError: What came back is not a picture (as :meth:`picture_vector`).
        """
        own = next(
            (f for f in (own_base.rstrip("/") + "/api/file/", "/api/file/") if url.startswith(f)),
            None,
        )
        if own is not None:
            token = url[len(own) :].partition("?")[0]
            with self.lock:
                stored = self.stored_vector(token)
            if stored is None:
                raise NotFoundError("image_url names no indexed file")
            return stored
        data = fetch(url, self.settings.fetch_policy)
        with self.lock:
            return self.picture_vector(data)

    def resolve(self, token: str) -> str | None:
        """The path behind an id, if it is valid and still inside its indexed root."""
        found = self._lookup(token)
        return None if found is None else found[0]

    def stored_vector(self, token: str) -> npt.NDArray[np.float32] | None:
        """The stored picture vector behind an id (as :meth:`resolve`, None when invalid)."""
        found = self._lookup(token)
        return None if found is None else self.index.store.vector_of_file(found[1])

    def _lookup(self, token: str) -> tuple[str, str] | None:
        """``(real path, indexed path)`` behind a valid id whose file is inside its root."""
        found: dict[int, tuple[str, str]] = {}

        def path_of(file_id: int) -> str | None:
            row = self.index.store.file_by_id(file_id)
            if row is not None:
                found[file_id] = row
            return None if row is None else row[0]

        file_id = self.ids.check(token, path_of)
        if file_id is None:
            return None
        path, root = found[file_id]
        real = os.path.realpath(path)
        # A folder root holds its files. A manifest names them wherever they lie: each must
        # then resolve inside its own folder (a symlink named there may not lead out of it).
        fence = os.path.dirname(path) if root != path and os.path.isfile(root) else root
        inside = inside_roots(real, (os.path.realpath(fence),))
        return (real, path) if inside and os.path.isfile(real) else None


def inside_roots(real: str, roots: tuple[str, ...]) -> bool:
    """Whether the resolved path ``real`` is one of ``roots`` (resolved too) or under one."""
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def open_upload(data: bytes, max_pixels: int) -> Image.Image:
    """The uploaded picture, decoded only when its header declares at most ``max_pixels``.

    Raises:
        InputError: Empty, not a picture, too many pixels declared, or it does not decode.
    """
    if not data:
        raise InputError("the uploaded file is empty")
    try:
        header = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise InputError("the picture declares too many pixels") from None
    except Exception:
        raise InputError("the upload is not a picture crossmodal can read") from None
    w, h = header.size
    if w * h > max_pixels:
        raise InputError(f"the picture declares {w}×{h} pixels, over {max_pixels:,}")
    try:
        return load_image(header)
    except CrossmodalError as exc:
        raise InputError(f"the picture does not decode: {exc}") from None
