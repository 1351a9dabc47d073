"""Index management over HTTP: jobs that add paths under the server's roots, re-index what
the index has, run one at a time and can be cancelled; on a real server on loopback."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from crossmodal.search.index import Index
from tests.planted import shape_image

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from crossmodal.service.app import running  # noqa: E402
from crossmodal.service.settings import ServiceSettings  # noqa: E402


def _wait(url: str, job: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (state := httpx.get(f"{url}/jobs/{job}").json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    return state  # type: ignore[no-any-return]


def test_index_management_jobs(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "a").mkdir(parents=True)
    shape_image("red", "circle").save(root / "a" / "red.png")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shape_image("blue", "square").save(outside / "blue.png")
    os.symlink(outside, root / "escape")
    with Index.open(tmp_path / "db") as index:
        index.add([root / "a"])
    settings = ServiceSettings(db=tmp_path / "db", port=0, roots=(str(root),))
    with running(settings) as base:
        url = f"{base}/api/index"
        assert httpx.get(f"{url}/stats").json()["files"] == 1
        shape_image("green", "square").save(root / "a" / "green.png")
        (root / "b").mkdir()
        shape_image("yellow", "circle").save(root / "b" / "yellow.png")
        response = httpx.post(url, json={"paths": [str(root / "a"), str(root / "b")]})
        assert response.status_code == 202
        job = response.json()["job"]
        deadline = time.monotonic() + 60
        while (state := httpx.get(f"{url}/jobs/{job}").json())["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert state["state"] == "done" and state["report"]["embedded"] == 2, state
        assert httpx.get(f"{url}/stats").json()["files"] == 3
        hits = httpx.post(f"{base}/api/search", json={"text": "yellow circle", "k": 1})
        assert hits.json()["hits"][0]["name"] == "yellow.png"  # searches see the new files
        for paths, status in [
            ([str(outside)], 403),
            ([str(root / "escape")], 403),  # a symlink out of the root
            ([str(root / ".." / "elsewhere")], 403),
            (["/etc"], 403),
            ([str(root / "nope")], 404),
            ([], 422),
        ]:
            assert httpx.post(url, json={"paths": paths}).status_code == status, paths
        assert httpx.get(f"{url}/jobs/99").status_code == 404


def test_refresh_and_cancel_jobs(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    first, second = root / "first", root / "second"
    for folder, n, shape in ((first, 120, "circle"), (second, 3, "square")):
        folder.mkdir(parents=True)
        for i in range(n):
            shape_image(["red", "blue", "green"][i % 3], shape, 32 + i).save(folder / f"{i}.png")
    with Index.open(tmp_path / "db") as index:
        index.add([second])
    settings = ServiceSettings(db=tmp_path / "db", port=0, roots=(str(root),))
    with running(settings) as base:
        url = f"{base}/api/index"
        big = httpx.post(url, json={"paths": [str(first)]}).json()["job"]
        queued = httpx.post(url, json={"paths": [str(first)]}).json()["job"]
        assert httpx.delete(f"{url}/jobs/{queued}").json()["state"] == "cancelled"
        httpx.delete(f"{url}/jobs/{big}")  # running (loading the model) or still queued
        stopped = _wait(url, big)
        assert stopped["state"] == "cancelled", stopped
        assert stopped.get("report", {"embedded": 0})["embedded"] < 120
        assert _wait(url, queued)["state"] == "cancelled"  # never started
        assert [j["job"] for j in httpx.get(f"{url}/jobs").json()] == [big, queued]
        assert httpx.delete(f"{url}/jobs/99").status_code == 404
        # the index has `second` and what the cancelled job committed of `first`
        committed = stopped.get("report", {"embedded": 0})["embedded"]
        assert httpx.get(f"{url}/stats").json()["files"] == 3 + committed
        (second / "0.png").unlink()
        shape_image("yellow", "square").save(second / "new.png")
        job = httpx.post(f"{url}/refresh").json()["job"]
        done = _wait(url, job)
        assert done["state"] == "done" and done["kind"] == "refresh", done
        report = done["report"]
        if committed:  # `first` is a root of the index now: refresh finishes it
            assert (report["embedded"], report["unchanged"]) == (120 - committed + 1, committed + 2)
            assert httpx.get(f"{url}/stats").json()["files"] == 123
        else:
            assert (report["embedded"], report["unchanged"]) == (1, 2)
        assert report["removed"] == 1
        hits = httpx.post(f"{base}/api/search", json={"text": "yellow square", "k": 1})
        assert hits.json()["hits"][0]["name"] == "new.png"
        again = _wait(url, httpx.post(url, json={"paths": [str(first)]}).json()["job"])
        assert again["state"] == "done" and again["report"]["unchanged"] == 120 - (
            0 if committed else 120
        )
        assert httpx.get(f"{url}/stats").json()["files"] == 123


def test_refresh_is_off_without_roots(tmp_path: Path) -> None:
    with Index.open(tmp_path / "db"):
        pass
    with running(ServiceSettings(db=tmp_path / "db", port=0)) as base:
        response = httpx.post(f"{base}/api/index/refresh")
        assert response.status_code == 403 and "--root" in response.json()["error"]
