"""The HTTP service: a JSON API over one search index (FastAPI).

    app = create_app(ServiceSettings(db=Path("~/.local/share/crossmodal/index")))
    uvicorn.run(app, host="127.0.0.1", port=8000)

Routes (the API under ``/api``; OpenAPI schema at ``/openapi.json``):

- ``GET /``: the search page (``static/``: plain HTML, CSS and JS, no CDN, a strict CSP).

- ``GET /api/health``: status, files, model.
- ``POST /api/search``: JSON ``{"text", "image_id", "k", "folder", "kind"}``; text, an
  indexed picture, or both (their vectors summed, as the CLI's ``a + b`` does).
- ``POST /api/search/upload``: multipart ``file`` (a picture), optional ``text`` and ``k``.
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
import io
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

from crossmodal.data.images import jpeg_bytes, load_image
from crossmodal.errors import BackendUnavailableError, CrossmodalError, InputError
from crossmodal.search.index import Index
from crossmodal.search.results import Hit, SearchFilter
from crossmodal.service.ids import FileIds, new_secret
from crossmodal.service.metrics import Metrics
from crossmodal.service.settings import ServiceSettings

if TYPE_CHECKING:
    from starlette.responses import Response as StarletteResponse

__all__ = ["create_app", "running", "serve"]

_SECRET_KEY = "service_secret"  # index meta key of the id secret

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Service:
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
        self.metrics = Metrics(self.file_count)

    def file_count(self) -> int:
        with self.lock:
            return len(self.index)

    def hits_json(self, hits: list[Hit]) -> list[dict[str, Any]]:
        ids = self.index.store.file_ids([h.path for h in hits])
        out = []
        for hit in hits:
            token = self.ids.issue(ids[hit.path], hit.path)
            time = f"?t={hit.time:.3f}" if hit.time is not None else ""
            out.append(
                {
                    "id": token,
                    "name": os.path.basename(hit.path),
                    "kind": hit.kind,
                    "time": hit.time,
                    "score": round(hit.score, 6),
                    "relevance": round(hit.relevance, 4),
                    "weak": hit.weak,
                    "caption": hit.caption,
                    "thumbnail": f"/api/thumb/{token}{time}",
                    "file": f"/api/file/{token}",
                }
            )
        return out

    def thumbnail(self, path: str, t: float | None = None) -> bytes:
        """JPEG bytes of a thumbnail of ``path`` (a video's frame at ``t`` seconds).

        Raises:
            CrossmodalError: The file no longer decodes.
        """
        side = self.settings.thumbnail_size
        if t is not None:
            from crossmodal.search.video import frame_at

            return jpeg_bytes(frame_at(path, t).image, side)
        return jpeg_bytes(load_image(path, draft_size=side), side)

    def heatmap(self, path: str, text: str, t: float | None = None) -> bytes:
        """JPEG of where ``text`` falls in the picture: attention over its patches.

        Raises:
            ConfigError: The index's model is not a native one (no patch tokens).
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

    def picture_vector(self, data: bytes, error: Any) -> npt.NDArray[np.float32]:
        """The unit vector of an uploaded picture (refused with ``error(400)`` when bad)."""
        picture = _open_upload(data, self.settings.max_image_pixels, error)
        encoder = self.index.encoder
        vector: npt.NDArray[np.float32] = encoder.encode_pixels(encoder.preprocess(picture)[None])[
            0
        ]
        return vector

    def resolve(self, token: str) -> str | None:
        """The path behind an id, if it is valid and still inside its indexed root."""
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
        inside = inside_roots(real, (os.path.realpath(root),))
        return real if inside and os.path.isfile(real) else None


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

    service = _Service(settings)
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

    class SearchRequest(BaseModel):  # type: ignore[misc]
        text: str | None = Field(default=None, max_length=1000)
        image_id: str | None = Field(default=None, max_length=64)
        k: int = Field(default=10, ge=1, le=settings.max_k)
        folder: str | None = None
        kind: Literal["image", "video"] | None = None

    @api.get("/health")
    def health() -> dict[str, Any]:
        with service.lock:
            return {"status": "ok", "files": len(service.index), "model": service.index.model}

    @api.post("/search")
    def search(request: SearchRequest) -> dict[str, Any]:
        if not request.text and not request.image_id:
            raise error(400, "give a text, an image_id, or both")
        image = None
        with service.lock:
            if request.image_id:
                image = service.resolve(request.image_id)
                if image is None:
                    raise error(404, "no such image id")
            where = SearchFilter(folder=request.folder, kind=request.kind)
            hits = service.index.search(request.text or None, image, k=request.k, where=where)
            return {"hits": service.hits_json(hits)}

    @api.post("/search/upload")
    def search_upload(
        file: fastapi.UploadFile,
        text: str | None = fastapi.Form(default=None, max_length=1000),
        k: int = fastapi.Form(default=10, ge=1, le=settings.max_k),
    ) -> dict[str, Any]:
        data = file.file.read()
        with service.lock:
            vector = service.picture_vector(data, error)
            if text:
                vector = vector + service.text_vector(text)
                vector = (vector / np.linalg.norm(vector)).astype(np.float32)
            hits = service.index.search(vector=vector, k=k)
            return {"hits": service.hits_json(hits)}

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


def inside_roots(real: str, roots: tuple[str, ...]) -> bool:
    """Whether the resolved path ``real`` is one of ``roots`` (resolved too) or under one."""
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _open_upload(data: bytes, max_pixels: int, error: Any) -> Image.Image:
    """The uploaded picture, decoded only when its header declares at most ``max_pixels``."""
    if not data:
        raise error(400, "the uploaded file is empty")
    try:
        header = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise error(400, "the picture declares too many pixels") from None
    except Exception:
        raise error(400, "the upload is not a picture crossmodal can read") from None
    w, h = header.size
    if w * h > max_pixels:
        raise error(400, f"the picture declares {w}×{h} pixels, over {max_pixels:,}")
    try:
        return load_image(header)
    except CrossmodalError as exc:
        raise error(400, f"the picture does not decode: {exc}") from None


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
    import time

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
