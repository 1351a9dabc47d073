"""Index management over HTTP: add or re-index paths under the configured roots, as jobs.

- ``POST /api/index`` ``{"paths": [...]}`` → 202 ``{"job": n}``. Every path must resolve
  (symlinks followed) inside one of ``ServiceSettings.roots``; with no roots configured the
  route is off (403). The job runs :meth:`Index.add` on its own thread and connection, so
  searches go on meanwhile (the index's writer lock keeps one writer at a time).
- ``GET /api/index/jobs/{n}`` → ``{"state": "running" | "done" | "failed", "report" | "error"}``.
- ``GET /api/index/stats`` → files, vectors, problems, model, roots.
"""

import os
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from crossmodal.errors import CrossmodalError
from crossmodal.search.index import Index

if TYPE_CHECKING:
    from crossmodal.service.app import _Service

__all__ = ["management_router"]

MAX_PATHS = 100  # paths per request


def management_router(service: "_Service", authorize: Any) -> Any:
    """The router of the three management routes over ``service``."""
    import fastapi
    from pydantic import BaseModel, Field

    from crossmodal.service.app import inside_roots

    settings = service.settings
    roots = tuple(os.path.realpath(os.path.expanduser(r)) for r in settings.roots)
    error = fastapi.HTTPException
    router = fastapi.APIRouter(prefix="/api/index", dependencies=[fastapi.Depends(authorize)])
    jobs: dict[int, dict[str, Any]] = {}
    jobs_lock = threading.Lock()

    class AddRequest(BaseModel):  # type: ignore[misc]
        paths: list[str] = Field(min_length=1, max_length=MAX_PATHS)

    def run(job: int, paths: list[str]) -> None:
        try:
            with Index.open(settings.db, create=False) as index:
                report = index.add(paths)
            result = asdict(report)
            result["problems"] = [p.reason for p in report.problems][:100]
            update = {"state": "done", "report": result}
        except CrossmodalError as exc:
            update = {"state": "failed", "error": str(exc)}
        except Exception as exc:  # a job must end with a state, whatever went wrong
            update = {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
        with jobs_lock:
            jobs[job].update(update)

    @router.post("", status_code=202)
    def add(body: AddRequest) -> dict[str, int]:
        if not roots:
            raise error(403, "index management is off: start the server with --root DIR")
        outside = [p for p in body.paths if not inside_roots(os.path.realpath(p), roots)]
        if outside:
            raise error(403, f"{len(outside)} path(s) are not under the server's roots")
        missing = [p for p in body.paths if not os.path.lexists(p)]
        if missing:
            raise error(404, f"{len(missing)} path(s) do not exist")
        with jobs_lock:
            job = len(jobs) + 1
            jobs[job] = {"state": "running"}
        thread = threading.Thread(target=run, args=(job, [os.path.realpath(p) for p in body.paths]))
        thread.daemon = True
        thread.start()
        return {"job": job}

    @router.get("/jobs/{job}")
    def status(job: int) -> dict[str, Any]:
        with jobs_lock:
            if job not in jobs:
                raise error(404, "no such job")
            return dict(jobs[job])

    @router.get("/stats")
    def stats() -> dict[str, Any]:
        with service.lock:
            store = service.index.store
            return {
                "files": store.file_count(),
                "vectors": store.vector_count(),
                "problems": len(store.problems()),
                "model": service.index.model,
                "roots": list(roots),
            }

    return router
