"""The HTTP service: a JSON API over one search index (FastAPI).

    app = create_app(ServiceSettings(db=Path("~/.local/share/crossmodal/index")))
    uvicorn.run(app, host="127.0.0.1", port=8000)

Routes (the API under ``/api``; OpenAPI schema at ``/openapi.json``):

- ``GET /``: the search page (``static/``: plain HTML, CSS and JS, no CDN, a strict CSP).

- ``GET /api/health``: status, files, model.
- ``GET /api/folders``: the folders holding indexed files, for the ``folder`` filter
  (:func:`crossmodal.index.folders.list_folders`).
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
  (how much hiding each part lowers the match; any model).
- ``GET /api/thumb/{id}`` (``?t=`` seconds for a video frame, ``?size=`` up to
  ``preview_size`` for a larger view) and ``GET /api/file/{id}``: a hit's thumbnail and
  original, by the opaque id of :mod:`crossmodal.service.ids` only. The file must still
  resolve (symlinks followed) inside the indexed folder it was found under (for a file a
  manifest names: inside its own folder).

Safe by default: a bearer token when one is set (required off loopback, see
:class:`ServiceSettings`), request bodies capped, ``k`` capped, uploads with too many pixels
refused before decoding, no paths in hits (a hit has a name, its place under its indexed
folder and an id; ``/api/folders`` names the folders the filter takes), no CORS unless
origins are named, and
errors as ``{"error": ...}`` with the right status code.

No ``from __future__ import annotations`` here: FastAPI reads the route functions' annotations
at run time, and some name classes local to :func:`create_app`.
"""

import contextlib
import hmac
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from crossmodal.errors import BackendUnavailableError, CrossmodalError, InputError
from crossmodal.service.core import Service
from crossmodal.service.errors import status_of
from crossmodal.service.settings import ServiceSettings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.responses import Response as StarletteResponse

__all__ = ["create_app", "running", "serve"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def create_app(settings: ServiceSettings, service: Service | None = None) -> Any:
    """The FastAPI app serving ``settings.db`` (see the module docstring); ``service`` is the
    index behind it (default: one opened from ``settings``; a test or an embedding
    application may pass its own).

    Raises:
        InputError: No index at ``settings.db``.
        BackendUnavailableError: FastAPI is not installed (``crossmodal[serve]``).
    """
    try:
        import fastapi
    except ImportError as exc:
        raise BackendUnavailableError("the HTTP service", "serve", "fastapi") from exc
    from fastapi.responses import Response

    from crossmodal.service.clip_compat import clip_retrieval_router
    from crossmodal.service.docs import docs_router
    from crossmodal.service.manage import management_router
    from crossmodal.service.routes import files_router, search_router

    service = service if service is not None else Service(settings)
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
    _add_error_handlers(app)
    authorize = bearer_auth(settings.token)

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

    app.include_router(search_router(service, authorize))
    app.include_router(files_router(service, authorize))
    app.include_router(clip_retrieval_router(service, authorize))
    app.include_router(management_router(service, authorize))
    app.include_router(docs_router())
    app.state.service = service
    return app


def _add_error_handlers(app: "FastAPI") -> None:
    """Every error as ``{"error": message}``: HTTP errors with their status, invalid requests
    422 with the fields at fault, crossmodal's errors with :func:`status_of`'s status."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @app.exception_handler(HTTPException)
    async def http_error(_: Any, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Any, exc: RequestValidationError) -> JSONResponse:
        fields = [".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in exc.errors()]
        return JSONResponse({"error": "invalid request", "fields": fields}, 422)

    @app.exception_handler(CrossmodalError)
    async def library_error(_: Any, exc: CrossmodalError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_of(exc))


def bearer_auth(token: str | None) -> Callable[..., None]:
    """The dependency that checks ``Authorization: Bearer TOKEN`` (nothing when ``token`` is
    None), answering 401 with ``WWW-Authenticate`` when it is missing or wrong."""
    import fastapi

    def authorize(authorization: str | None = fastapi.Header(default=None)) -> None:
        if token is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, token):
            raise fastapi.HTTPException(
                401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )

    return authorize


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
        over = False  # the streamed body passed the limit: the answer is 413, whatever the app says
        answered = False  # a response has started (the app's, or our 413)

        async def limited() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Stop reading as a dropped client would. Raising here instead would reach
                    # the app's body parsing (a 400, or a 500 with a traceback), not this class.
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal answered
            if over:  # the app answered a body it never saw whole: send 413 in its place
                if not answered:
                    answered = True
                    await _send_413(send, self.limit)
                return
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except Exception:
            if not over:
                raise
            if not answered:
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
