"""``image_url``: off by default, and when hosts are named, fenced against SSRF.

A real picture server on a loopback port plays the remote host; the service runs on another
loopback port over a real index.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from crossmodal.search.index import Index
from crossmodal.service.fetch import FetchError, FetchPolicy, fetch, host_allowed
from tests.planted import THREE_SHAPES, shape_gallery, shape_image

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from crossmodal.service.app import running  # noqa: E402
from crossmodal.service.settings import ServiceSettings  # noqa: E402

MAX_BYTES = 100_000


def _png(colour: str, shape: str) -> bytes:
    out = io.BytesIO()
    shape_image(colour, shape, 80).save(out, format="PNG")
    return out.getvalue()


class _Pictures(BaseHTTPRequestHandler):
    """The remote host: pictures, redirects, and misbehaviour."""

    other = ""  # a URL on a host the service may not fetch from

    def do_GET(self) -> None:
        path = self.path
        if path == "/green.png":
            self._send(200, _png("green", "circle"), "image/png")
        elif path == "/to-green":
            self._redirect("/green.png")
        elif path == "/to-other":
            self._redirect(self.other)
        elif path == "/loop":
            self._redirect("/loop")
        elif path == "/declared-big":
            self.send_response(200)
            self.send_header("Content-Length", str(50 * MAX_BYTES))
            self.end_headers()
        elif path == "/streamed-big":  # no Content-Length: the body runs until the close
            self.send_response(200)
            self.end_headers()
            for _ in range(30):
                self.wfile.write(b"\0" * 10_000)
        elif path == "/slow":
            time.sleep(2.5)
            self._send(200, _png("green", "circle"), "image/png")
        elif path == "/text":
            self._send(200, b"hello", "text/plain")
        else:
            self._send(404, b"no", "text/plain")

    def _send(self, status: int, body: bytes, media: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class Servers:
    pictures: str  # http://127.0.0.1:P (allowed)
    port: int
    fetching: str  # the service with fetching on
    closed: str  # the service with fetching off


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("fetch")
    gallery = shape_gallery(root / "gallery", THREE_SHAPES)
    with Index.open(root / "db") as index:
        index.add([gallery])
    pictures = ThreadingHTTPServer(("127.0.0.1", 0), _Pictures)
    threading.Thread(target=pictures.serve_forever, daemon=True).start()
    port = pictures.server_address[1]
    on = ServiceSettings(
        db=root / "db",
        port=0,
        name="shapes",
        fetch_hosts=(f"127.0.0.1:{port}",),
        fetch_max_bytes=MAX_BYTES,
        fetch_timeout=1.0,
    )
    off = ServiceSettings(db=root / "db", port=0, name="shapes")
    with running(on) as fetching, running(off) as closed:
        _Pictures.other = f"{closed}/api/health"  # loopback, but another port
        yield Servers(f"http://127.0.0.1:{port}", port, fetching, closed)
    pictures.shutdown()


def _knn(base: str, **body: object) -> httpx.Response:
    payload = {"modality": "image", "num_images": 3, "indice_name": "shapes", **body}
    return httpx.post(f"{base}/knn-service", json=payload, timeout=30)


def test_fetching_is_off_by_default(servers: Servers) -> None:
    response = _knn(servers.closed, image_url=f"{servers.pictures}/green.png")
    assert response.status_code == 403 and "off" in response.json()["error"]


def test_an_allowed_picture_is_fetched_and_searched(servers: Servers) -> None:
    by_url = _knn(servers.fetching, image_url=f"{servers.pictures}/green.png")
    assert by_url.status_code == 200, by_url.text
    by_bytes = _knn(servers.fetching, image=base64.b64encode(_png("green", "circle")).decode())
    assert [h["caption"] for h in by_url.json()] == [h["caption"] for h in by_bytes.json()]
    assert by_url.json()[0]["caption"] == "green_circle.png"
    redirected = _knn(servers.fetching, image_url=f"{servers.pictures}/to-green")
    assert redirected.status_code == 200 and redirected.json()[0]["caption"] == "green_circle.png"
    with_text = httpx.post(
        f"{servers.fetching}/api/search",
        json={"image_url": f"{servers.pictures}/green.png", "text": "red circle", "k": 2},
    )
    assert with_text.status_code == 200, with_text.text
    assert {h["name"] for h in with_text.json()["hits"]} == {"green_circle.png", "red_circle.png"}


@pytest.mark.parametrize(
    ("url", "status", "says"),
    [
        ("file:///etc/passwd", 400, "http or https"),
        ("ftp://127.0.0.1/x.png", 400, "http or https"),
        ("http://user:pw@127.0.0.1:{port}/green.png", 400, "no user"),
        ("http://127.0.0.1:22/", 403, "not allowed"),  # another port on the same host
        ("http://localhost:{port}/green.png", 403, "not allowed"),  # not listed by that name
        ("http://169.254.169.254/latest/meta-data/", 403, "not allowed"),
        ("{pictures}/to-other", 403, "not allowed"),  # a redirect to elsewhere
        ("{pictures}/loop", 502, "redirected more than"),
        ("{pictures}/declared-big", 413, "over"),
        ("{pictures}/streamed-big", 413, "over"),
        ("{pictures}/slow", 504, "too long"),
        ("{pictures}/missing", 502, "HTTP 404"),
        ("{pictures}/text", 400, "not a picture"),
    ],
)
def test_what_is_not_fetched(servers: Servers, url: str, status: int, says: str) -> None:
    url = url.format(port=servers.port, pictures=servers.pictures)
    started = time.monotonic()
    response = _knn(servers.fetching, image_url=url)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]
    assert time.monotonic() - started < 2.0  # the deadline holds (the slow server takes 2.5 s)


def test_own_file_links_are_looked_up_not_fetched(servers: Servers) -> None:
    """clip-retrieval's front-end searches "by this image" with the hit's own url."""
    for base in (servers.closed, servers.fetching):
        hit = _knn(base, text="blue square").json()[0]
        assert hit["url"].startswith(f"{base}/api/file/")
        again = _knn(base, image_url=hit["url"])
        assert again.status_code == 200, again.text
        assert again.json()[0]["caption"] == "blue_square.png"
        assert again.json()[0]["similarity"] > 0.99
        forged = _knn(base, image_url=f"{base}/api/file/1.0000000000000000")
        assert forged.status_code == 404


def test_a_listed_name_must_resolve_to_a_public_address(servers: Servers) -> None:
    policy = FetchPolicy(hosts=(f"localhost:{servers.port}",), timeout=2.0)
    with pytest.raises(FetchError, match="non-public") as caught:
        fetch(f"http://localhost:{servers.port}/green.png", policy)
    assert caught.value.status == 403
    by_address = FetchPolicy(hosts=(f"127.0.0.1:{servers.port}",), timeout=2.0)
    assert fetch(f"{servers.pictures}/green.png", by_address) == _png("green", "circle")


def test_host_entries() -> None:
    assert host_allowed("images.example.com", 443, ("Images.Example.com",))
    assert not host_allowed("images.example.com", 8443, ("images.example.com:443",))
    assert host_allowed("::1", 8080, ("[::1]:8080",))
    assert not host_allowed("evil.example.com", 443, ("example.com",))
    with pytest.raises(FetchError, match="off"):
        fetch("https://example.com/x.png", FetchPolicy())


def test_bad_fetch_hosts_are_refused(tmp_path: Path) -> None:
    from crossmodal.errors import ConfigError

    for bad in ("https://images.example.com", "*.example.com", "host:port"):
        with pytest.raises(ConfigError, match="fetch host"):
            ServiceSettings(db=tmp_path, fetch_hosts=(bad,))
