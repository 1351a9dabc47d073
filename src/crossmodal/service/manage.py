"""Index management over HTTP: add or re-index paths under the configured roots, as jobs.

- ``POST /api/index`` ``{"paths": [...]}`` → 202 ``{"job": n}``. Every path must resolve
  (symlinks followed) inside one of ``ServiceSettings.roots``; with no roots configured the
  routes are off (403).
- ``POST /api/index/refresh`` → 202 ``{"job": n}``: re-index every root the index already
  has that lies inside the configured roots (:meth:`Index.refresh`): changed files embedded
  again, deleted ones dropped, new ones added.
- ``GET /api/index/jobs`` and ``GET /api/index/jobs/{n}`` → ``{"job", "kind", "state":
  "queued" | "running" | "done" | "failed" | "cancelled", "report" | "error"}``.
- ``DELETE /api/index/jobs/{n}``: cancel. A queued job never starts; a running one stops at
  its next commit (every 32 files), keeps what it committed (searchable at once), and ends
  ``cancelled`` with its report. Running the same paths again finishes the work.
- ``GET /api/index/stats`` → files, vectors, problems, model, roots.

Jobs run one at a time, in order, on one worker thread with its own index connection, so
searches go on meanwhile. They live in memory: a restart forgets them, and an interrupted job
is finished by posting it again (indexing is incremental).
"""

import os
import queue
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from crossmodal.errors import CrossmodalError, NotFoundError, RefusedError
from crossmodal.search.index import Index
from crossmodal.search.results import IndexConfig, IndexReport

if TYPE_CHECKING:
    from crossmodal.service.core import Service

__all__ = ["JobQueue", "management_router"]

MAX_PATHS = 100  # paths per request
COMMIT_EVERY = 32  # files per commit in jobs: a cancelled job stops within this many files
KEEP_JOBS = 1000  # finished jobs remembered


class JobQueue:
    """Index jobs run in order on one daemon thread; states readable from any thread."""

    def __init__(self, db: str, allowed: Any, config: IndexConfig | None = None) -> None:
        self.db = db
        self.config = config or IndexConfig(commit_every=COMMIT_EVERY, progress=False)
        self.allowed = allowed  # root check for refresh jobs
        self.jobs: dict[int, dict[str, Any]] = {}
        self.cancel: dict[int, threading.Event] = {}
        self.lock = threading.Lock()
        self.todo: queue.Queue[tuple[int, list[str] | None]] = queue.Queue()
        self.thread: threading.Thread | None = None

    def submit(self, kind: str, paths: list[str] | None) -> int:
        """Queue a job (``paths`` None: refresh); its number."""
        with self.lock:
            job = max(self.jobs, default=0) + 1
            self.jobs[job] = {"job": job, "kind": kind, "state": "queued"}
            self.cancel[job] = threading.Event()
            for old in sorted(self.jobs)[: max(0, len(self.jobs) - KEEP_JOBS)]:
                if self.jobs[old]["state"] not in ("queued", "running"):
                    del self.jobs[old]
                    self.cancel.pop(old, None)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._work, daemon=True)
                self.thread.start()
        self.todo.put((job, paths))
        return job

    def state(self, job: int | None = None) -> Any:
        """One job's state (None when unknown), or all of them (``job`` None)."""
        with self.lock:
            if job is None:
                return [dict(j) for _, j in sorted(self.jobs.items())]
            found = self.jobs.get(job)
            return None if found is None else dict(found)

    def request_cancel(self, job: int) -> dict[str, Any] | None:
        """Ask a job to stop; its state (None when unknown)."""
        with self.lock:
            if job not in self.jobs:
                return None
            if self.jobs[job]["state"] == "queued":
                self.jobs[job]["state"] = "cancelled"
            if job in self.cancel:
                self.cancel[job].set()
            return dict(self.jobs[job])

    def _work(self) -> None:
        while True:
            job, paths = self.todo.get()
            with self.lock:
                if self.jobs.get(job, {}).get("state") != "queued":
                    continue  # cancelled while queued
                self.jobs[job]["state"] = "running"
                stop = self.cancel[job]
            update = self._run(paths, stop)
            with self.lock:
                if job in self.jobs:
                    self.jobs[job].update(update)

    def _run(self, paths: list[str] | None, stop: threading.Event) -> dict[str, Any]:
        try:
            with Index.open(self.db, self.config, create=False) as index:
                if paths is None:
                    report = index.refresh(self.allowed, should_stop=stop.is_set)
                else:
                    report = index.add(paths, should_stop=stop.is_set)
        except CrossmodalError as exc:
            return {"state": "failed", "error": str(exc)}
        except Exception as exc:  # a job must end with a state, whatever went wrong
            return {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
        return {"state": "cancelled" if report.cancelled else "done", "report": _report(report)}


def _report(report: IndexReport) -> dict[str, Any]:
    result = asdict(report)
    result["problems"] = [p.reason for p in report.problems][:100]
    return result


def management_router(service: "Service", authorize: Any) -> Any:
    """The router of the management routes over ``service``."""
    import fastapi
    from pydantic import BaseModel, Field

    from crossmodal.service.core import inside_roots

    settings = service.settings
    roots = tuple(os.path.realpath(os.path.expanduser(r)) for r in settings.roots)
    router = fastapi.APIRouter(prefix="/api/index", dependencies=[fastapi.Depends(authorize)])

    def allowed(path: str) -> bool:
        return inside_roots(os.path.realpath(path), roots)

    jobs = JobQueue(str(settings.db), allowed)

    def need_roots() -> None:
        if not roots:
            raise RefusedError("index management is off: start the server with --root DIR")

    class AddRequest(BaseModel):  # type: ignore[misc]
        paths: list[str] = Field(min_length=1, max_length=MAX_PATHS)

    @router.post("", status_code=202)
    def add(body: AddRequest) -> dict[str, int]:
        need_roots()
        outside = [p for p in body.paths if not allowed(p)]
        if outside:
            raise RefusedError(f"{len(outside)} path(s) are not under the server's roots")
        missing = [p for p in body.paths if not os.path.lexists(p)]
        if missing:
            raise NotFoundError(f"{len(missing)} path(s) do not exist")
        return {"job": jobs.submit("add", [os.path.realpath(p) for p in body.paths])}

    @router.post("/refresh", status_code=202)
    def refresh() -> dict[str, int]:
        need_roots()
        return {"job": jobs.submit("refresh", None)}

    @router.get("/jobs")
    def all_jobs() -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = jobs.state()
        return listed

    @router.get("/jobs/{job}")
    def status(job: int) -> dict[str, Any]:
        found: dict[str, Any] | None = jobs.state(job)
        if found is None:
            raise NotFoundError("no such job")
        return found

    @router.delete("/jobs/{job}", status_code=202)
    def cancel(job: int) -> dict[str, Any]:
        found = jobs.request_cancel(job)
        if found is None:
            raise NotFoundError("no such job")
        return found

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
