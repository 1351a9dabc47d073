"""The HTTP service: a JSON API over one search index (FastAPI).

    app = create_app(ServiceSettings(db=Path("~/.local/share/crossmodal/index")))
    uvicorn.run(app, host="127.0.0.1", port=8000)

Routes (the API under ``/api``; OpenAPI schema at ``/openapi.json``):

- ``GET /``: the search page (``static/``: plain HTML, CSS and JS, no CDN, a strict CSP).

- ``GET /api/health``: status, files, model.
- ``POST /api/search``: JSON ``{"text", "image_id", "image_url", "negative", "text_weight",
  "image_weight", "negative_weight", "k"}`` and the filters ``"folder", "kind", "suffixes",
  "after", "before"`` (:func:`crossmodal.search.searcher.search_filter`): a text, an
  indexed picture, a picture by URL (fetched only from ``--fetch-host`` hosts, see
  :mod:`crossmodal.service.fetch`), or a text and a picture, minus an optional ``negative``
  text: the unit weighted sum of their vectors, as the CLI's ``a + 0.5:b - c`` makes.
  ``"rerank": N`` re-scores the top N of a text query with the server's ``--reranker``.
- ``POST /api/search/upload``: multipart ``file`` (a picture), optional ``text``,
  ``negative``, the three weights, ``k`` and the same filters. Every search goes through
  the service's :class:`~crossmodal.search.searcher.Searcher`, as the CLI's does.
- ``POST /api/index``, ``GET /api/index/jobs/{n}``, ``GET /api/index/stats``: index paths
  under the configured roots as background jobs (:mod:`crossmodal.service.manage`).
- ``GET /metrics``: Prometheus text (requests, latency histogram, index size).
- ``GET /api/explain/{id}?text=``: a heat map of where the text falls in the picture
  (attention over its patch tokens; native models).
- ``GET /api/thumb/{id}`` (``?t=`` seconds for a video frame) and ``GET /api/file/{id}``:
  a hit's thumbnail and original, by the opaque id of :mod:`crossmodal.service.ids` only.
  The file must still resolve (symlinks followed) inside the indexed root it was found under.

Safe by default: a bearer token when one is set (required off loopback, see
:class:`ServiceSettings`), request bodies capped, ``k`` capped, uploads with too many pixels
refused before decoding, no paths in responses (a hit has a name and an id), no CORS unless
origins are named, and
errors as ``{"error": ...}`` with the right status code.

No ``from __future__ import annotations`` here: FastAPI reads the route functions' annotations
at run time, and some name classes local to :func:`create_app`.
"""

import contextlib
import hmac
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, Literal

from crossmodal.errors import BackendUnavailableError, CrossmodalError, InputError
from crossmodal.search.searcher import Found, QueryPart, search_filter
from crossmodal.service.core import Service
from crossmodal.service.settings import ServiceSettings

if TYPE_CHECKING:
    from starlette.responses import Response as StarletteResponse

__all__ = ["create_app", "running", "serve"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def create_app(settings: ServiceSettings) -> Any:
    """The FastAPI app serving ``settings.db`` (see the module docstring).

    Raises:
        InputError: No index at ``settings.db``.
        BackendUnavailableError: FastAPI is not installed (``crossmodal[serve]``).
    """
    try:
        import fastapi
    except ImportError as exc:
        raise BackendUnavailableError("the HTTP service", "serve", "fastapi") from exc
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from pydantic import BaseModel, Field
    from starlette.exceptions import HTTPException

    service = Service(settings)
    app = fastapi.FastAPI(title="crossmodal", version="1", docs_url=None, redoc_url=None)
    app.middleware("http")(service.metrics.middleware)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)
    error = fastapi.HTTPException

    @app.exception_handler(HTTPException)
    async def http_error(_: Any, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Any, exc: RequestValidationError) -> JSONResponse:
        fields = [".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in exc.errors()]
        return JSONResponse({"error": "invalid request", "fields": fields}, 422)

    @app.exception_handler(CrossmodalError)
    async def bad_input(_: Any, exc: CrossmodalError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, 400)

    def authorize(authorization: str | None = fastapi.Header(default=None)) -> None:
        if settings.token is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, settings.token):
            raise error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    api = fastapi.APIRouter(prefix="/api", dependencies=[fastapi.Depends(authorize)])

    weight = Field(default=1.0, ge=-10, le=10)

    class SearchRequest(BaseModel):  # type: ignore[misc]
        text: str | None = Field(default=None, max_length=1000)
        image_id: str | None = Field(default=None, max_length=64)
        image_url: str | None = Field(default=None, max_length=2000)
        negative: str | None = Field(default=None, max_length=1000)  # a text to move away from
        text_weight: float = weight
        image_weight: float = weight
        negative_weight: float = weight
        k: int = Field(default=10, ge=1, le=settings.max_k)
        rerank: int = Field(default=0, ge=0, le=settings.max_k)  # re-score the top N (text)
        folder: str | None = None
        kind: Literal["image", "video"] | None = None
        suffixes: list[str] = Field(default_factory=list, max_length=50)  # file types: jpg, png
        after: str | None = Field(default=None, max_length=40)  # modified on or after YYYY-MM-DD
        before: str | None = Field(default=None, max_length=40)  # modified before YYYY-MM-DD

    @api.get("/health")
    def health() -> dict[str, Any]:
        with service.lock:
            return {"status": "ok", "files": len(service.index), "model": service.index.model}

    def text_parts(body: Any) -> list[QueryPart]:
        """The weighted text and negative text of a request."""
        parts = []
        if body.text:
            parts.append(QueryPart(body.text_weight, text=body.text))
        if body.negative:
            parts.append(QueryPart(-body.negative_weight, text=body.negative))
        return parts

    def found_json(found: Found) -> dict[str, Any]:
        out: dict[str, Any] = {"hits": service.hits_json(found.hits)}
        if found.rerank_ms is not None:
            out["rerank_ms"] = found.rerank_ms
        return out

    @api.post("/search")
    def search(body: SearchRequest, request: fastapi.Request) -> dict[str, Any]:
        if not body.text and not body.image_id and not body.image_url:
            raise error(400, "give a text, an image_id or an image_url (or a text and one more)")
        if body.image_id and body.image_url:
            raise error(400, "give an image_id or an image_url, not both")
        where = search_filter(body.folder, body.kind, body.suffixes, body.after, body.before)
        parts: list[QueryPart] = []
        if body.image_url:  # may fetch: outside the lock
            picture = service.url_vector(body.image_url, str(request.base_url), error)
            parts.append(QueryPart(body.image_weight, vector=picture))
        with service.lock:
            if body.image_id:
                stored = service.stored_vector(body.image_id)
                if stored is None:
                    raise error(404, "no such image id")
                parts.append(QueryPart(body.image_weight, vector=stored))
            query = service.searcher.query(parts + text_parts(body))
            return found_json(service.searcher.search(query, body.k, where, body.rerank))

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
        form = SearchRequest(
            text=text, negative=negative, text_weight=text_weight, negative_weight=negative_weight
        )
        where = search_filter(folder, kind, suffixes or (), after, before)
        with service.lock:
            parts = [QueryPart(image_weight, vector=service.picture_vector(data, error))]
            query = service.searcher.query(parts + text_parts(form))
            return found_json(service.searcher.search(query, k, where))

    @api.get("/thumb/{token}")
    def thumbnail(token: str, t: float | None = None) -> Response:
        with service.lock:
            path = service.resolve(token)
        if path is None:
            raise error(404, "no such id")
        try:
            jpeg = service.thumbnail(path, t)
        except CrossmodalError as exc:
            raise error(404, f"the file no longer decodes: {exc}") from None
        return Response(jpeg, media_type="image/jpeg")

    @api.get("/explain/{token}")
    def explain(
        token: str,
        text: str = fastapi.Query(min_length=1, max_length=1000),
        t: float | None = None,
    ) -> Response:
        with service.lock:
            path = service.resolve(token)
            if path is None:
                raise error(404, "no such id")
            try:
                jpeg = service.heatmap(path, text, t)
            except CrossmodalError as exc:
                raise error(400, str(exc)) from None
        return Response(jpeg, media_type="image/jpeg")

    @api.get("/file/{token}")
    def original(token: str) -> Any:
        with service.lock:
            path = service.resolve(token)
        if path is None:
            raise error(404, "no such id")
        return FileResponse(path, filename=os.path.basename(path))

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return _static("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        return _static(name)

    @app.get("/metrics", dependencies=[fastapi.Depends(authorize)])
    def metrics() -> Response:
        body, content_type = service.metrics.render()
        return Response(body, media_type=content_type)

    app.include_router(api)
    from crossmodal.service.clip_compat import clip_retrieval_router

    app.include_router(clip_retrieval_router(service, authorize))
    from crossmodal.service.manage import management_router

    app.include_router(management_router(service, authorize))
    app.state.service = service
    return app


_STATIC: dict[str, str] = {  # the page's files: served by name from this list only
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def _static(name: str) -> "StarletteResponse":
    """One of the page's packaged files (404 for any other name: no listing, no paths)."""
    from fastapi import HTTPException
    from fastapi.responses import Response

    media = _STATIC.get(name)
    if media is None:
        raise HTTPException(404, "not found")
    from importlib.resources import files

    body = files("crossmodal.service").joinpath("static", name).read_bytes()
    headers = {"Content-Security-Policy": _PAGE_CSP, "X-Content-Type-Options": "nosniff"}
    return Response(body, media_type=media, headers=headers)


class _TooLargeError(Exception):
    pass


class _BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, declared or streamed."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _send_413(send, self.limit)
            return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLargeError
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except _TooLargeError:
            if not started:
                await _send_413(send, self.limit)


async def _send_413(send: Send, limit: int) -> None:
    body = f'{{"error": "request body over {limit} bytes"}}'.encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def running(settings: ServiceSettings, timeout: float = 30.0) -> Iterator[str]:
    """Serve ``settings`` on a background thread; yield the base URL, stop on exit.

    ``settings.port`` 0 takes a free port. For tests, benchmarks and notebooks; the command
    line uses :func:`serve`.

    Raises:
        InputError: The server did not start within ``timeout`` seconds.
    """
    import uvicorn

    config = uvicorn.Config(
        create_app(settings), host=settings.host, port=settings.port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise InputError(f"the service did not start on {settings.host}:{settings.port}")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{settings.host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)


def serve(settings: ServiceSettings) -> None:
    """Run the service until interrupted (uvicorn)."""
    try:
        import uvicorn
    except ImportError as exc:
        raise BackendUnavailableError("the HTTP service", "serve", "uvicorn") from exc
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
