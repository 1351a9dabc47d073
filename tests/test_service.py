"""``crossmodal serve``: the JSON API on a real uvicorn server on loopback, over a real index."""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from crossmodal.errors import ConfigError
from crossmodal.search.index import Index
from tests.badfiles import _png_header_only
from tests.planted import shape_image

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from crossmodal.service.app import create_app  # noqa: E402
from crossmodal.service.settings import ServiceSettings  # noqa: E402

TOKEN = "a-test-token-of-some-length"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass(frozen=True)
class Server:
    url: str
    gallery: Path
    secret: Path  # a file outside the indexed root, linked from inside it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("service")
    gallery = root / "gallery"
    gallery.mkdir()
    for colour, shape in [
        ("red", "circle"),
        ("blue", "square"),
        ("green", "circle"),
        ("yellow", "square"),
    ]:
        shape_image(colour, shape).save(gallery / f"{colour}_{shape}.png")
    outside = root / "private"
    outside.mkdir()
    secret = outside / "secret.png"
    shape_image("purple", "circle").save(secret)
    os.symlink(secret, gallery / "link.png")  # inside the root by name, outside by target
    db = root / "db"
    with Index.open(db) as index:
        index.add([gallery])
    port = _free_port()
    app = create_app(ServiceSettings(db=db, port=port, token=TOKEN, max_body_bytes=2**20))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield Server(f"http://127.0.0.1:{port}", gallery, secret)
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


def _search(server: Server, **body: object) -> list[dict[str, object]]:
    response = httpx.post(f"{server.url}/api/search", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    hits: list[dict[str, object]] = response.json()["hits"]
    return hits


def test_token_is_required(server: Server) -> None:
    assert httpx.get(f"{server.url}/api/health").status_code == 401
    wrong = httpx.get(f"{server.url}/api/health", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json() == {"error": "missing or wrong bearer token"}
    ok = httpx.get(f"{server.url}/api/health", headers=AUTH)
    assert ok.status_code == 200 and ok.json()["status"] == "ok" and ok.json()["files"] >= 4
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert "/api/search" in schema["paths"] and "/api/search/upload" in schema["paths"]


def test_text_search_and_files_by_opaque_id(server: Server) -> None:
    hits = _search(server, text="red circle", k=3)
    assert len(hits) == 3 and hits[0]["name"] == "red_circle.png"
    assert all("path" not in hit and str(server.gallery) not in str(hit) for hit in hits)
    thumb = httpx.get(f"{server.url}{hits[0]['thumbnail']}", headers=AUTH)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    picture = Image.open(io.BytesIO(thumb.content))
    assert max(picture.size) <= 256 and picture.getpixel((48, 48))[0] > 150  # red
    original = httpx.get(f"{server.url}{hits[0]['file']}", headers=AUTH)
    assert original.content == (server.gallery / "red_circle.png").read_bytes()
    assert httpx.get(f"{server.url}{hits[0]['file']}").status_code == 401


def test_image_id_and_combined_search(server: Server) -> None:
    blue = next(
        h for h in _search(server, text="blue square", k=5) if h["name"] == "blue_square.png"
    )
    same = _search(server, image_id=blue["id"], k=2)
    assert same[0]["name"] == "blue_square.png" and float(same[0]["score"]) > 0.99
    both = _search(server, text="green circle", image_id=blue["id"], k=4)
    assert {h["name"] for h in both[:2]} == {"blue_square.png", "green_circle.png"}


def test_upload_search(server: Server) -> None:
    png = io.BytesIO()
    shape_image("yellow", "square", 80).save(png, format="PNG")
    response = httpx.post(
        f"{server.url}/api/search/upload",
        files={"file": ("q.png", png.getvalue(), "image/png")},
        data={"k": "2"},
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    assert response.json()["hits"][0]["name"] == "yellow_square.png"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (_png_header_only(30000, 30000), "too many pixels"),
        (_png_header_only(9000, 9000), "over 40,000,000"),
        (b"not a picture at all", "not a picture"),
        (b"", "empty"),
    ],
)
def test_bad_uploads_are_refused(server: Server, content: bytes, message: str) -> None:
    response = httpx.post(
        f"{server.url}/api/search/upload", files={"file": ("x.png", content)}, headers=AUTH
    )
    assert response.status_code == 400 and message in response.json()["error"]


def test_limits(server: Server) -> None:
    for k in (0, 10**9):
        response = httpx.post(f"{server.url}/api/search", json={"text": "x", "k": k}, headers=AUTH)
        assert response.status_code == 422 and "k" in str(response.json()["fields"])
    empty = httpx.post(f"{server.url}/api/search", json={}, headers=AUTH)
    assert empty.status_code == 400
    big = httpx.post(
        f"{server.url}/api/search",
        content=b"x" * (2**20 + 1),
        headers=AUTH | {"content-type": "application/json"},
    )
    assert big.status_code == 413 and "over" in big.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/thumb/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/file/%2Fetc%2Fpasswd",
        "/api/file/..%252F..%252Fetc%252Fpasswd",
        "/api/thumb/1.0000000000000000",  # a forged id
        "/api/file/1",
        "/api/file/99999999999999999999.0123456789abcdef",
    ],
)
def test_paths_and_forged_ids_are_refused(server: Server, path: str) -> None:
    response = httpx.get(f"{server.url}{path}", headers=AUTH)
    assert response.status_code == 404
    assert b"root:" not in response.content and b"PNG" not in response.content


def test_symlink_out_of_the_root_is_not_served(server: Server) -> None:
    hits = _search(server, text="purple circle", k=10)
    link = [h for h in hits if h["name"] == "link.png"]
    if not link:
        pytest.skip("the walker did not index the symlink")
    response = httpx.get(f"{server.url}{link[0]['file']}", headers=AUTH)
    assert response.status_code == 404 and response.content != server.secret.read_bytes()


def test_settings_are_safe_by_default(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="token"):
        ServiceSettings(db=tmp_path, host="0.0.0.0")
    with pytest.raises(ConfigError, match="16 characters"):
        ServiceSettings(db=tmp_path, token="short")
    assert ServiceSettings(db=tmp_path, host="0.0.0.0", token=TOKEN).host == "0.0.0.0"
