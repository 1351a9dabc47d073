"""The search API's routes under ``/api``: health, the indexed folders, search (JSON and
upload), thumbnails and larger views, heat maps and originals, over one
:class:`~crossmodal.service.core.Service`.

Errors are raised as crossmodal's typed errors (:mod:`crossmodal.errors`); the app's one
handler turns them into status codes (:mod:`crossmodal.service.errors`).

No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run time.
"""

import os
from collections.abc import Callable
from typing import Any, Literal

from crossmodal.errors import CrossmodalError, InputError, NotFoundError
from crossmodal.index.folders import list_folders
from crossmodal.paths import printable
from crossmodal.search.searcher import Found, QueryPart, search_filter
from crossmodal.service.core import Service

__all__ = ["files_router", "search_router"]


def search_router(service: Service, authorize: Callable[..., None]) -> Any:
    """The ``/api`` router of health, folders and search (JSON and upload) over ``service``."""
    import fastapi
    from pydantic import Field

    from crossmodal.service.requests import SearchFields

    settings = service.settings
    api = fastapi.APIRouter(prefix="/api", dependencies=[fastapi.Depends(authorize)])

    class SearchRequest(SearchFields):  # type: ignore[misc]
        k: int = Field(default=10, ge=1, le=settings.max_k)
        rerank: int = Field(default=0, ge=0, le=settings.max_k)

    @api.get("/health")
    def health() -> dict[str, Any]:
        with service.lock:
            return {"status": "ok", "files": len(service.index), "model": service.index.model}

    @api.get("/folders")
    def folders() -> dict[str, Any]:
        """The folders holding indexed files (each indexed folder, then its sub-folders):
        ``path`` is what a search's ``folder`` filter takes, ``label`` what to show."""
        with service.lock:
            found = list_folders(service.index.store)
        return {
            "folders": [
                {"path": printable(f.path), "label": f.label, "files": f.files} for f in found
            ]
        }

    @api.post("/search")
    def search(body: SearchRequest, request: fastapi.Request) -> dict[str, Any]:
        return _search(service, body, settings.base_url(request.scope.get("server")))

    @api.post("/search/upload")
    def search_upload(
        file: fastapi.UploadFile,
        text: str | None = fastapi.Form(default=None, max_length=1000),
        negative: str | None = fastapi.Form(default=None, max_length=1000),
        text_weight: float = fastapi.Form(default=1.0, ge=-10, le=10),
        image_weight: float = fastapi.Form(default=1.0, ge=-10, le=10),
        negative_weight: float = fastapi.Form(default=1.0, ge=-10, le=10),
        k: int = fastapi.Form(default=10, ge=1, le=settings.max_k),
        folder: str | None = fastapi.Form(default=None),
        kind: Literal["image", "video"] | None = fastapi.Form(default=None),
        suffixes: list[str] | None = fastapi.Form(default=None),  # noqa: B008 (FastAPI idiom)
        after: str | None = fastapi.Form(default=None, max_length=40),
        before: str | None = fastapi.Form(default=None, max_length=40),
    ) -> dict[str, Any]:
        data = file.file.read()
        form = SearchFields(
            text=text, negative=negative, text_weight=text_weight, negative_weight=negative_weight
        )
        where = search_filter(folder, kind, suffixes or (), after, before)
        with service.lock:
            parts = [QueryPart(image_weight, vector=service.picture_vector(data))]
            query = service.searcher.query(parts + _text_parts(form))
            return _found_json(service, service.searcher.search(query, k, where))

    return api


def files_router(service: Service, authorize: Callable[..., None]) -> Any:
    """The ``/api`` router of a hit's thumbnail, heat map and original, by opaque id."""
    import fastapi
    from fastapi.responses import FileResponse, Response

    api = fastapi.APIRouter(prefix="/api", dependencies=[fastapi.Depends(authorize)])

    def resolve(token: str) -> str:
        with service.lock:
            path = service.resolve(token)
        if path is None:
            raise NotFoundError("no such id")
        return path

    @api.get("/thumb/{token}")
    def thumbnail(
        token: str,
        t: float | None = None,
        size: int | None = fastapi.Query(default=None, ge=16, le=service.settings.preview_size),
    ) -> Response:
        path = resolve(token)
        try:
            jpeg = service.thumbnail(path, t, size)
        except CrossmodalError as exc:
            raise NotFoundError(f"the file no longer decodes: {exc}") from None
        return Response(jpeg, media_type="image/jpeg")

    @api.get("/explain/{token}")
    def explain(
        token: str,
        text: str = fastapi.Query(min_length=1, max_length=1000),
        t: float | None = None,
    ) -> Response:
        path = resolve(token)
        with service.lock:
            try:
                jpeg = service.heatmap(path, text, t)
            except CrossmodalError as exc:
                raise InputError(str(exc)) from None
        return Response(jpeg, media_type="image/jpeg")

    @api.get("/file/{token}")
    def original(token: str) -> Any:
        path = resolve(token)
        return FileResponse(path, filename=printable(os.path.basename(path)))

    return api


def _search(service: Service, body: Any, base_url: str) -> dict[str, Any]:
    """``POST /api/search``: a text, a stored or fetched picture, or both, minus a negative."""
    if not body.text and not body.image_id and not body.image_url:
        raise InputError("give a text, an image_id or an image_url (or a text and one more)")
    if body.image_id and body.image_url:
        raise InputError("give an image_id or an image_url, not both")
    if body.rerank and (not body.text or body.image_id or body.image_url or body.negative):
        raise InputError("rerank re-scores a text query: give a text and nothing else")
    where = search_filter(body.folder, body.kind, body.suffixes, body.after, body.before)
    parts: list[QueryPart] = []
    if body.image_url:  # may fetch: outside the lock
        picture = service.url_vector(body.image_url, base_url)
        parts.append(QueryPart(body.image_weight, vector=picture))
    with service.lock:
        if body.image_id:
            stored = service.stored_vector(body.image_id)
            if stored is None:
                raise NotFoundError("no such image id")
            parts.append(QueryPart(body.image_weight, vector=stored))
        query = service.searcher.query(parts + _text_parts(body))
        return _found_json(service, service.searcher.search(query, body.k, where, body.rerank))


def _text_parts(body: Any) -> list[QueryPart]:
    """The weighted text and negative text of a request."""
    parts = []
    if body.text:
        parts.append(QueryPart(body.text_weight, text=body.text))
    if body.negative:
        parts.append(QueryPart(-body.negative_weight, text=body.negative))
    return parts


def _found_json(service: Service, found: Found) -> dict[str, Any]:
    """The response: the hits as JSON, and the re-ranking time when there was one."""
    out: dict[str, Any] = {"hits": service.hits_json(found.hits)}
    if found.rerank_ms is not None:
        out["rerank_ms"] = found.rerank_ms
    return out
