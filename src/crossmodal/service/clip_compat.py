"""clip-retrieval's backend contract, so its ``ClipClient`` works against crossmodal unchanged.

- ``POST /knn-service``: ``{"text" | "image" (base64) | "embedding_input", "modality",
  "num_images", "indice_name", "deduplicate", ...}`` → a list of ``{"id", "similarity",
  "caption", "url", "image"}`` (``image``: a base64 JPEG thumbnail, as clip-retrieval returns
  for local images; ``url``: the original, by opaque id).
- ``POST /metadata``: ``{"ids", "indice_name"}`` → ``[{"id", "metadata": {...}}]``.
- ``GET /indices-list``: ``[name]``.

Differences, on purpose: ids are crossmodal's opaque strings, not row numbers (an integer id
would let anyone enumerate the collection); ``modality: "text"`` (searching caption
embeddings) is refused, as crossmodal indexes pictures; ``image_url`` fetching is off unless
hosts are named (:mod:`crossmodal.service.fetch`: a server that fetches URLs for its callers
is an SSRF risk), except for this server's own ``/api/file/ID`` links, which the front-end
sends back for "search by this image" and which are looked up, not fetched; the safety,
violence, aesthetic and mclip options are accepted and ignored. A token, when the server has
one, is required here too (so the front-end works with servers that have none).

No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run time.
"""

import base64
import binascii
import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from crossmodal.errors import CrossmodalError, InputError, NotFoundError
from crossmodal.paths import printable
from crossmodal.search.searcher import QueryPart, SearchQuery, search_filter

if TYPE_CHECKING:
    from crossmodal.service.core import Service

__all__ = ["clip_retrieval_router"]


def clip_retrieval_router(service: "Service", authorize: Callable[..., None]) -> Any:
    """The router with clip-retrieval's three routes over ``service``."""
    import fastapi
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from pydantic import BaseModel, ConfigDict, Field, ValidationError

    settings = service.settings
    router = fastapi.APIRouter(dependencies=[fastapi.Depends(authorize)], tags=["clip-retrieval"])

    class KnnRequest(BaseModel):  # type: ignore[misc]
        model_config = ConfigDict(extra="ignore")
        text: str | None = Field(default=None, max_length=1000)
        image: str | None = None
        image_url: str | None = None
        embedding_input: list[float] | None = None
        modality: str = "image"
        num_images: int = Field(default=40, ge=1, le=settings.max_k)
        indice_name: str = settings.name
        deduplicate: bool = False
        # crossmodal's filters, as POST /api/search takes them (clip-retrieval has none)
        folder: str | None = None
        kind: Literal["image", "video"] | None = None
        suffixes: list[str] = Field(default_factory=list, max_length=50)
        after: str | None = Field(default=None, max_length=40)
        before: str | None = Field(default=None, max_length=40)

    class MetadataRequest(BaseModel):  # type: ignore[misc]
        model_config = ConfigDict(extra="ignore")
        ids: list[str] = Field(max_length=settings.max_k)
        indice_name: str = settings.name

    async def json_body(request: Request) -> Any:
        # clip-retrieval's client posts JSON without a content type, which FastAPI's own
        # body parsing refuses: read and validate it here.
        try:
            return json.loads(await request.body())
        except ValueError:
            raise InputError("the request body is not JSON") from None

    body_json = fastapi.Depends(json_body)

    def parse(model: Any, payload: Any) -> Any:
        try:
            body = model.model_validate(payload)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        if body.indice_name != settings.name:
            raise NotFoundError(f"no index {body.indice_name!r}; this server has {settings.name!r}")
        return body

    @router.post("/knn-service")
    def knn(request: Request, payload: Any = body_json) -> list[dict[str, Any]]:
        return _knn(
            service, parse(KnnRequest, payload), settings.base_url(request.scope.get("server"))
        )

    @router.post("/metadata")
    def metadata(request: Request, payload: Any = body_json) -> list[dict[str, Any]]:
        body = parse(MetadataRequest, payload)
        out = []
        with service.lock:
            for token in body.ids:
                path = service.resolve(token)
                if path is None:
                    continue
                caption = service.index.store.caption_of(path)
                meta = _metadata(
                    service, token, path, caption, settings.base_url(request.scope.get("server"))
                )
                out.append({"id": token, "metadata": meta})
        return out

    @router.get("/indices-list")
    def indices() -> list[str]:
        return [settings.name]

    return router


def _knn(service: "Service", body: Any, base: str) -> list[dict[str, Any]]:
    """``/knn-service``: the query through the service's searcher, as clip-retrieval's items."""
    if body.modality != "image":
        raise InputError("crossmodal indexes pictures: use modality 'image'")
    where = search_filter(body.folder, body.kind, body.suffixes, body.after, body.before)
    vector = None
    if body.image_url and not (body.text or body.image):
        vector = service.url_vector(body.image_url, base)  # may fetch: not locked
    with service.lock:
        if vector is None:
            asked = _query(service, body)
        else:
            asked = service.searcher.query([QueryPart(1.0, vector=vector)])
        k = body.num_images * (2 if body.deduplicate else 1)
        found = service.searcher.search(asked, min(k, service.settings.max_k), where).hits
        pairs = list(zip(service.hits_json(found), [h.path for h in found], strict=True))
        if body.deduplicate:
            pairs = _distinct(pairs)
        return [_item(service, hit, path, base) for hit, path in pairs[: body.num_images]]


def _query(service: "Service", body: Any) -> SearchQuery:
    """The query of a text, a base64 picture or an embedding (the first one given)."""
    searcher = service.searcher
    if body.text:
        return searcher.query([QueryPart(1.0, text=body.text)])
    if body.image:
        try:
            data = base64.b64decode(body.image, validate=True)
        except (binascii.Error, ValueError):
            raise InputError("image is not valid base64") from None
        return searcher.query([QueryPart(1.0, vector=service.picture_vector(data))])
    if body.embedding_input is not None:
        return searcher.vector(body.embedding_input)
    raise InputError("give text, image, image_url or embedding_input")


def _distinct(pairs: list[tuple[dict[str, Any], str]]) -> list[tuple[dict[str, Any], str]]:
    """Hits with an equal score to the one before (the same content, indexed twice) dropped."""
    out: list[tuple[dict[str, Any], str]] = []
    for hit, path in pairs:
        last = out[-1][0] if out else None
        if last is not None and (hit["score"], hit["time"]) == (last["score"], last["time"]):
            continue
        out.append((hit, path))
    return out


def _item(service: "Service", hit: dict[str, Any], path: str, base: str) -> dict[str, Any]:
    item = {"id": hit["id"], "similarity": hit["score"]}
    item.update(relevance=hit["relevance"], weak=hit["weak"])  # crossmodal's, beside
    item.update(_metadata(service, hit["id"], path, hit["caption"], base, hit["time"]))
    return item


def _metadata(
    service: "Service",
    token: str,
    path: str,
    caption: str | None,
    base: str,
    time: float | None = None,
) -> dict[str, Any]:
    import os

    meta: dict[str, Any] = {
        "caption": caption or printable(os.path.basename(path)),
        "url": f"{base.rstrip('/')}/api/file/{token}",
    }
    with contextlib.suppress(CrossmodalError):  # a file that no longer decodes: no picture
        meta["image"] = base64.b64encode(service.thumbnail(path, time)).decode("ascii")
    return meta
