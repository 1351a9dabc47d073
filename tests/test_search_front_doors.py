"""One searcher behind every front door: the CLI, ``POST /api/search`` and ``/knn-service``
return the same hits, scores and relevance for the same query and filters (a real index, a
real uvicorn server on loopback)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crossmodal.cli.main import main
from crossmodal.errors import ConfigError, InputError
from crossmodal.search.index import Index
from crossmodal.search.searcher import QueryPart, Searcher, search_filter
from tests.planted import shape_image

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from crossmodal.service.app import running  # noqa: E402
from crossmodal.service.settings import ServiceSettings  # noqa: E402

OLD, NEW = 1_500_000_000, 1_700_000_000  # 2017 and 2023


@dataclass(frozen=True)
class Doors:
    url: str
    db: Path
    gallery: Path
    query_picture: Path


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doors]:
    root = tmp_path_factory.mktemp("doors")
    gallery = root / "gallery"
    for folder, stamp in (("new", NEW), ("old", OLD)):
        (gallery / folder).mkdir(parents=True)
        for colour in ("red", "blue", "green", "yellow"):
            for shape, suffix in (("circle", ".png"), ("square", ".jpg")):
                path = gallery / folder / f"{colour}_{shape}{suffix}"
                shape_image(colour, shape).convert("RGB").save(path)
                os.utime(path, (stamp, stamp))
    picture = root / "query.png"
    shape_image("red", "circle", 80).save(picture)
    db = root / "db"
    with Index.open(db) as index:
        index.add([gallery])
    with running(ServiceSettings(db=db, port=0, name="doors")) as url:
        yield Doors(url, db, gallery, picture)


FILTERS = {"folder": "new", "suffixes": ["png"], "after": "2020-01-01"}  # 4 of 16 files pass


def _cli(doors: Doors, capsys: pytest.CaptureFixture[str], *query: str) -> list[dict[str, object]]:
    argv = ["search", *query, "--db", str(doors.db), "--json", "--top", "3"]
    argv += ["--folder", str(doors.gallery / "new"), "--type", "png", "--after", "2020-01-01"]
    capsys.readouterr()
    assert main(argv) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _api(doors: Doors, **body: object) -> list[dict[str, object]]:
    filters = {**FILTERS, "folder": str(doors.gallery / "new")}
    response = httpx.post(f"{doors.url}/api/search", json={**body, **filters, "k": 3})
    assert response.status_code == 200, response.text
    hits: list[dict[str, object]] = response.json()["hits"]
    return hits


def _knn(doors: Doors, **body: object) -> list[dict[str, object]]:
    filters = {**FILTERS, "folder": str(doors.gallery / "new")}
    payload = {**body, **filters, "num_images": 3, "indice_name": "doors"}
    response = httpx.post(f"{doors.url}/knn-service", json=payload)
    assert response.status_code == 200, response.text
    items: list[dict[str, object]] = response.json()
    return items


def _same(
    cli: list[dict[str, object]], api: list[dict[str, object]], knn: list[dict[str, object]]
) -> None:
    names = [os.path.basename(str(h["path"])) for h in cli]
    assert names == [h["name"] for h in api] == [h["caption"] for h in knn]
    assert len(names) == 3 and all(n.endswith(".png") for n in names)
    for c, a, k in zip(cli, api, knn, strict=True):
        assert float(c["score"]) == pytest.approx(float(a["score"]), abs=1e-5)  # type: ignore[arg-type]
        assert float(a["score"]) == pytest.approx(float(k["similarity"]), abs=1e-5)  # type: ignore[arg-type]
        assert float(c["relevance"]) == pytest.approx(float(a["relevance"]), abs=1e-3)  # type: ignore[arg-type]
        assert a["relevance"] == k["relevance"] and c["weak"] == a["weak"] == k["weak"]


def test_a_text_query_is_the_same_through_every_door(
    doors: Doors, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _cli(doors, capsys, "red", "circle")
    _same(cli, _api(doors, text="red circle"), _knn(doors, text="red circle"))
    assert cli[0]["path"] == str(doors.gallery / "new" / "red_circle.png")


def test_a_picture_query_is_the_same_through_every_door(
    doors: Doors, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = _cli(doors, capsys, str(doors.query_picture))
    data = base64.b64encode(doors.query_picture.read_bytes()).decode("ascii")
    uploaded = httpx.post(
        f"{doors.url}/api/search/upload",
        files={"file": ("q.png", doors.query_picture.read_bytes(), "image/png")},
        data={
            "k": "3",
            "folder": str(doors.gallery / "new"),
            "suffixes": ["png"],
            "after": "2020-01-01",
        },
    )
    assert uploaded.status_code == 200, uploaded.text
    _same(cli, uploaded.json()["hits"], _knn(doors, image=data))
    assert cli[0]["path"] == str(doors.gallery / "new" / "red_circle.png")


def test_filters_and_their_errors_are_the_same(doors: Doors) -> None:
    with Index.open(doors.db, create=False) as index:
        searcher = Searcher(index)
        query = searcher.query([QueryPart(1.0, text="a circle")])
        assert query.texts == ("a circle",) and query.rerankable
        everything = searcher.search(query, k=16).hits
        old = searcher.search(query, k=16, where=search_filter(before="2020-01-01")).hits
        jpgs = searcher.search(query, k=16, where=search_filter(suffixes=[".JPG"])).hits
        assert len(everything) == 16 and len(old) == 8 and len(jpgs) == 8
        assert all("/old/" in h.path for h in old) and all(h.path.endswith(".jpg") for h in jpgs)
        stored = index.store.vector_of_file(everything[0].path)
        assert stored is not None
        mixed = searcher.query([QueryPart(1.0, text="red"), QueryPart(0.5, vector=stored)])
        assert mixed.texts is None and not mixed.rerankable  # relevance against the collection
        with pytest.raises(InputError, match="one text, nothing else"):
            Searcher(index, reranker=object()).search(mixed, rerank=5)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="no re-ranker"):
            searcher.search(query, rerank=5)
        with pytest.raises(InputError, match="cancel out"):
            searcher.query([QueryPart(1.0, text="red"), QueryPart(-1.0, text="red")])
    bad = httpx.post(f"{doors.url}/api/search", json={"text": "red", "after": "last week"})
    assert bad.status_code == 400 and "after 'last week': not a date" in bad.json()["error"]
    knn = httpx.post(f"{doors.url}/knn-service", json={"text": "red", "before": "soon"})
    assert knn.status_code == 400 and "before 'soon': not a date" in knn.json()["error"]


def test_the_app_takes_a_service_and_maps_library_errors_to_status_codes(doors: Doors) -> None:
    from fastapi.testclient import TestClient

    from crossmodal.errors import BackendUnavailableError, NotFoundError, RefusedError
    from crossmodal.service.app import create_app
    from crossmodal.service.core import Service
    from crossmodal.service.errors import status_of
    from crossmodal.service.fetch import FetchError

    settings = ServiceSettings(db=doors.db, port=0)
    service = Service(settings)
    app = create_app(settings, service)
    assert app.state.service is service
    with TestClient(app) as client:
        assert client.post("/api/search", json={"text": "red"}).status_code == 200
        assert client.get("/api/thumb/forged").status_code == 404
        assert client.post("/api/index", json={"paths": ["/"]}).status_code == 403  # no roots
        reranked = client.post("/api/search", json={"text": "red", "rerank": 3})  # shipped one
        assert reranked.status_code == 200 and "rerank" in reranked.json()["hits"][0]
        bad = client.post("/api/search", json={"text": "red", "negative": "blue", "rerank": 3})
        assert bad.status_code == 400 and "nothing else" in bad.json()["error"]
    assert status_of(NotFoundError("x")) == 404 and status_of(RefusedError("x")) == 403
    assert status_of(FetchError(504, "slow")) == 504 and status_of(InputError("x")) == 400
    assert status_of(BackendUnavailableError("b", "e", "m")) == 501
