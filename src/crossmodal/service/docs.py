"""``/docs``: FastAPI's interactive API docs (Swagger UI), offline.

FastAPI's own ``/docs`` loads Swagger UI from a CDN and starts it with an inline script: no
page on a machine without internet, and against our CSP. Here the assets come from the
``fastapi-offline`` package (MIT; it ships Swagger UI 5, which reads FastAPI's OpenAPI 3.1,
and is installed with ``crossmodal[serve]``), only the files named below are served, and the
page starts Swagger UI from a packaged script file, so the CSP keeps ``script-src 'self'``.
Without the package ``/docs`` answers 501 and says what to install; ``/openapi.json`` works
either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crossmodal.errors import BackendUnavailableError

if TYPE_CHECKING:
    from fastapi import APIRouter

__all__ = ["DOCS_CSP", "docs_router"]

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; base-uri 'none'; "
    "frame-ancestors 'none'"
)  # Swagger UI sets style attributes as it renders: inline styles, never inline scripts

_ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon.png": "image/png",
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>crossmodal API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/assets/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/start.js"></script>
</body>
</html>
"""


def docs_router() -> APIRouter:
    """``GET /docs``, its start script and Swagger UI's assets (no other file)."""
    import fastapi
    from fastapi.responses import Response

    router = fastapi.APIRouter(include_in_schema=False)
    headers = {"Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff"}

    @router.get("/docs")
    def page() -> Response:
        _bundle()  # 501 when the package is missing, before a page that cannot work
        return Response(_PAGE, media_type="text/html; charset=utf-8", headers=headers)

    @router.get("/docs/start.js")
    def start() -> Response:
        from importlib.resources import files

        body = files("crossmodal.service").joinpath("static", "docs.js").read_bytes()
        return Response(body, media_type="text/javascript", headers=headers)

    @router.get("/docs/assets/{name}")
    def asset(name: str) -> Response:
        media = _ASSETS.get(name)
        if media is None:
            raise fastapi.HTTPException(404, "not found")
        body = (_bundle() / name).read_bytes()
        return Response(body, media_type=media, headers=headers | _CACHE)

    return router


_CACHE = {"Cache-Control": "public, max-age=86400"}


def _bundle() -> Any:
    """The folder of Swagger UI's files in the fastapi-offline package."""
    from importlib.resources import files

    try:
        return files("fastapi_offline").joinpath("static")
    except ModuleNotFoundError as exc:
        raise BackendUnavailableError("the API docs page", "serve", "fastapi-offline") from exc
