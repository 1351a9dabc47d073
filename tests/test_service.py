"""``crossmodal serve``: the JSON API on a real uvicorn server on loopback, over a real index."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from crossmodal.errors import ConfigError
from crossmodal.search.index import Index
from tests.badfiles import _png_header_only
from tests.planted import THREE_SHAPES, shape_gallery, shape_image

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from crossmodal.service.app import create_app, running  # noqa: E402
from crossmodal.service.settings import ServiceSettings  # noqa: E402

TOKEN = "a-test-token-of-some-length"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass(frozen=True)
class Server:
    url: str
    gallery: Path
    secret: Path  # a file outside the indexed root, linked from inside it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("service")
    pairs = [("red", "circle"), ("blue", "square"), ("green", "circle"), ("yellow", "square")]
    gallery = shape_gallery(root / "gallery", pairs)
    outside = root / "private"
    outside.mkdir()
    secret = outside / "secret.png"
    shape_image("purple", "circle").save(secret)
    os.symlink(secret, gallery / "link.png")  # inside the root by name, outside by target
    db = root / "db"
    with Index.open(db) as index:
        index.add([gallery])
    with running(ServiceSettings(db=db, port=0, token=TOKEN, max_body_bytes=2**20)) as url:
        yield Server(url, gallery, secret)


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


def test_text_hits_are_judged_like_the_library(server: Server) -> None:
    """The service's relevance and weak flags are the query bank's, as in the library."""
    hits = _search(server, text="red circle", k=4)
    absent = _search(server, text="pizza", k=4)
    with Index.open(server.gallery.parent / "db") as index:
        expected = index.search(text="red circle", k=4)
    assert [h["name"] for h in hits] == [Path(h.path).name for h in expected]
    for got, want in zip(hits, expected, strict=True):
        assert got["relevance"] == pytest.approx(want.relevance, abs=1e-3)
        assert got["weak"] == want.weak
    assert hits[0]["weak"] is False and all(h["weak"] for h in absent)


def test_heat_map_of_a_text_over_a_hit(server: Server) -> None:
    hit = _search(server, text="red circle", k=1)[0]
    url = f"{server.url}/api/explain/{hit['id']}"
    response = httpx.get(url, params={"text": "red circle"}, headers=AUTH)
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    heat = Image.open(io.BytesIO(response.content))
    assert heat.size == (256, 256)
    assert httpx.get(url, headers=AUTH).status_code == 422  # no text
    forged = f"{server.url}/api/explain/1.0000000000000000"
    assert httpx.get(forged, params={"text": "x"}, headers=AUTH).status_code == 404


def test_image_id_and_combined_search(server: Server) -> None:
    blue = next(
        h for h in _search(server, text="blue square", k=5) if h["name"] == "blue_square.png"
    )
    same = _search(server, image_id=blue["id"], k=2)
    assert same[0]["name"] == "blue_square.png" and float(same[0]["score"]) > 0.99
    both = _search(server, text="green circle", image_id=blue["id"], k=4)
    assert {h["name"] for h in both[:2]} == {"blue_square.png", "green_circle.png"}


def test_weights_and_a_negative_text(server: Server) -> None:
    blue = _search(server, text="blue square", k=10)
    blue_id = next(h["id"] for h in blue if h["name"] == "blue_square.png")
    text_only = _search(server, text="green circle", k=4)
    weighted_out = _search(server, text="green circle", image_id=blue_id, image_weight=0, k=4)
    assert [h["name"] for h in weighted_out] == [h["name"] for h in text_only]
    image_only = _search(server, text="green circle", image_id=blue_id, text_weight=0, k=1)
    assert image_only[0]["name"] == "blue_square.png" and float(image_only[0]["score"]) > 0.99
    pushed = _search(server, text="circle", negative="red circle", negative_weight=0.5, k=10)
    plain = _search(server, text="circle", k=10)
    rank = lambda hits: [h["name"] for h in hits].index("red_circle.png")  # noqa: E731
    assert rank(pushed) > rank(plain)  # moved away from the negative
    cancelled = httpx.post(
        f"{server.url}/api/search",
        json={"text": "red circle", "negative": "red circle"},
        headers=AUTH,
    )
    assert cancelled.status_code == 400 and "cancel out" in cancelled.json()["error"]
    too_heavy = httpx.post(
        f"{server.url}/api/search", json={"text": "x", "text_weight": 1e9}, headers=AUTH
    )
    assert too_heavy.status_code == 422


def test_rerank_reorders_the_top_n(server: Server, tmp_path: Path) -> None:
    from crossmodal.heads.features import load_clip
    from crossmodal.heads.rerank import Reranker, save_reranker
    from tests.test_heads_rerank import random_memory

    memory = random_memory(load_clip().config.embed_dim)
    reverse = Reranker(memory, logit_scale=-10.0)  # −10·cos
    weights = save_reranker(reverse, tmp_path / "r.safetensors", encoder="native:emoji-mini")
    plain = [h["name"] for h in _search(server, text="red circle", k=4)]
    db = Path(str(server.gallery.parent / "db"))
    with running(ServiceSettings(db=db, port=0, reranker=weights)) as url:
        response = httpx.post(
            f"{url}/api/search", json={"text": "red circle", "k": 4, "rerank": 3}
        ).json()
        hits = response["hits"]
        assert [h["name"] for h in hits] == plain[:3][::-1] + plain[3:]
        assert [h["rerank"] for h in hits[:3]] == sorted(h["rerank"] for h in hits[:3])[::-1]
        assert "rerank" not in hits[3] and response["rerank_ms"] > 0
        mixed = httpx.post(
            f"{url}/api/search", json={"text": "x", "image_id": hits[0]["id"], "rerank": 3}
        )
        assert mixed.status_code == 400 and "text" in mixed.json()["error"]
    shipped = httpx.post(  # an emoji-mini index: the shipped re-ranker, no --reranker needed
        f"{server.url}/api/search", json={"text": "red circle", "k": 4, "rerank": 3}, headers=AUTH
    ).json()["hits"]
    assert {h["name"] for h in shipped[:3]} == set(plain[:3]) and shipped[3]["name"] == plain[3]
    assert all("rerank" in h for h in shipped[:3])


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
    for form, found in [({"kind": "video"}, 0), ({"folder": str(server.secret.parent)}, 0)]:
        filtered = httpx.post(
            f"{server.url}/api/search/upload",
            files={"file": ("q.png", png.getvalue(), "image/png")},
            data={"k": "2", **form},
            headers=AUTH,
        )
        assert filtered.status_code == 200 and len(filtered.json()["hits"]) == found, form


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


def _streamed(head: bytes = b"", size: int = 2**20 + 1, tail: bytes = b"") -> Iterator[bytes]:
    """A chunked body (no Content-Length): the limit must hold as the bytes arrive."""
    yield head
    for _ in range(size // 2**16 + 1):
        yield b" " * 2**16
    yield tail


@pytest.mark.parametrize(
    ("path", "content_type", "head", "tail"),
    [
        ("/api/search", "application/json", b"", b""),
        ("/knn-service", "application/json", b"", b""),
        (
            "/api/search/upload",
            "multipart/form-data; boundary=cut",
            b'--cut\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n',
            b"\r\n--cut--\r\n",
        ),
    ],
)
def test_a_streamed_body_over_the_limit_gets_413(
    server: Server, path: str, content_type: str, head: bytes, tail: bytes
) -> None:
    response = httpx.post(
        f"{server.url}{path}",
        content=_streamed(head, tail=tail),
        headers=AUTH | {"content-type": content_type},
        timeout=60,
    )
    assert response.status_code == 413, response.text
    assert response.json() == {"error": f"request body over {2**20} bytes"}
    assert _search(server, text="red circle", k=1)[0]["name"] == "red_circle.png"  # still serves


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


def test_prometheus_metrics(server: Server) -> None:
    hit = _search(server, text="green circle", k=1)[0]
    assert httpx.get(f"{server.url}{hit['thumbnail']}", headers=AUTH).status_code == 200
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    response = httpx.get(f"{server.url}/metrics", headers=AUTH)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'crossmodal_requests_total{method="POST",route="/api/search",status="200"}' in text
    assert 'crossmodal_request_seconds_bucket{le="0.5",method="POST",route="/api/search"}' in text
    assert "crossmodal_index_files 5.0" in text  # 4 shapes and the symlink
    assert 'route="/api/thumb/{token}"' in text  # by template: ids never become labels
    assert not re.search(r'route="/api/(thumb|file)/\d', text)


def test_management_is_off_without_roots(server: Server) -> None:
    response = httpx.post(f"{server.url}/api/index", json={"paths": ["/tmp"]}, headers=AUTH)
    assert response.status_code == 403 and "--root" in response.json()["error"]


def test_cors_only_for_named_origins(tmp_path: Path, server: Server) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    response = httpx.options(f"{server.url}/api/search", headers=preflight)
    assert "access-control-allow-origin" not in response.headers  # no CORS by default
    from fastapi.testclient import TestClient

    db = tmp_path / "db"
    with Index.open(db):
        pass
    settings = ServiceSettings(db=db, cors_origins=("https://photos.example",))
    client = TestClient(create_app(settings))
    allowed = {"Origin": "https://photos.example", "Access-Control-Request-Method": "POST"}
    ok = client.options("/api/search", headers=allowed)
    assert ok.headers["access-control-allow-origin"] == "https://photos.example"
    other = client.options("/api/search", headers=preflight)
    assert "access-control-allow-origin" not in other.headers
    with pytest.raises(ConfigError, match="any site"):
        ServiceSettings(db=db, cors_origins=("*",), token=TOKEN)


def test_settings_are_safe_by_default(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="token"):
        ServiceSettings(db=tmp_path, host="0.0.0.0")
    with pytest.raises(ConfigError, match="16 characters"):
        ServiceSettings(db=tmp_path, token="short")
    assert ServiceSettings(db=tmp_path, host="0.0.0.0", token=TOKEN).host == "0.0.0.0"


# ------------------------------------------------------------------ clip-retrieval's contract


def _clip_client_class() -> type:
    """clip-retrieval's own ClipClient, imported as its README writes it (``scripts/install dev``
    installs clip-retrieval and what its package ``__init__`` imports)."""
    try:
        from clip_retrieval.clip_client import ClipClient
    except ImportError as exc:
        pytest.skip(f"clip-retrieval's client does not import ({exc}): scripts/install dev")
    return ClipClient  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server without a token: clip-retrieval's client cannot send one."""
    root = tmp_path_factory.mktemp("open")
    gallery = shape_gallery(root / "gallery", THREE_SHAPES)
    shape_image("red", "circle").save(gallery / "red_circle_again.png")  # the same content
    with Index.open(root / "db") as index:
        index.add([gallery])
    with running(ServiceSettings(db=root / "db", port=0, name="shapes")) as url:
        yield url


@pytest.mark.filterwarnings("ignore:pkg_resources is deprecated as an API:UserWarning")
def test_clip_retrieval_client_by_text_image_and_embedding(
    open_server: str, tmp_path: Path
) -> None:
    client_class = _clip_client_class()
    options = {"indice_name": "shapes", "num_images": 2, "use_safety_model": False}
    client = client_class(url=f"{open_server}/knn-service", deduplicate=False, **options)
    by_text = client.query(text="blue square")
    assert len(by_text) == 2 and by_text[0]["caption"] == "blue_square.png"
    assert set(by_text[0]) >= {"id", "similarity", "caption", "url", "image"}
    thumb = Image.open(io.BytesIO(__import__("base64").b64decode(by_text[0]["image"])))
    assert thumb.getpixel((thumb.width // 2, thumb.height // 2))[2] > 150  # blue
    assert httpx.get(by_text[0]["url"]).content[:4] == b"\x89PNG"
    query = tmp_path / "q.png"
    shape_image("green", "circle", 72).save(query)
    assert client.query(image=str(query))[0]["caption"] == "green_circle.png"
    vector = [0.0] * 256
    by_vector = client.query(embedding_input=vector)  # all zeros: refused, as JSON
    assert "error" in by_vector
    dedup = client_class(url=f"{open_server}/knn-service", deduplicate=True, **options)
    names = [r["caption"] for r in dedup.query(text="red circle")]
    assert len(names) == 2 and len({n.startswith("red_circle") for n in names}) == 2


def test_links_never_come_from_the_host_header(
    open_server: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A forged ``Host`` must not put another site's address into the answer's links."""
    body = {"text": "green circle", "modality": "image", "num_images": 1, "indice_name": "shapes"}
    forged = httpx.post(f"{open_server}/knn-service", json=body, headers={"Host": "evil.example"})
    url = forged.json()[0]["url"]
    assert url.startswith(f"{open_server}/api/file/") and "evil" not in url
    again = {**body, "image_url": url, "text": None}
    assert httpx.post(f"{open_server}/knn-service", json=again).json()[0]["url"] == url
    relative = {**body, "image_url": url[len(open_server) :], "text": None}  # a relative link
    assert httpx.post(f"{open_server}/knn-service", json=relative).json()[0]["url"] == url
    # behind a proxy the operator names the public address; a bad one is refused
    db = tmp_path_factory.getbasetemp() / "open0" / "db"
    public = ServiceSettings(db=db, port=0, name="shapes", public_url="https://pics.example/")
    with running(public) as url2:
        hit = httpx.post(f"{url2}/knn-service", json=body, headers={"Host": "evil.example"})
        assert hit.json()[0]["url"].startswith("https://pics.example/api/file/")
    with pytest.raises(ConfigError, match="public_url"):
        ServiceSettings(db=db, public_url="pics.example")


def test_clip_retrieval_metadata_and_indices(open_server: str) -> None:
    assert httpx.get(f"{open_server}/indices-list").json() == ["shapes"]
    hits = httpx.post(
        f"{open_server}/knn-service",
        json={
            "text": "green circle",
            "modality": "image",
            "num_images": 1,
            "indice_name": "shapes",
        },
    ).json()
    meta = httpx.post(
        f"{open_server}/metadata",
        json={"ids": [hits[0]["id"], "1.forged00000000"], "indice_name": "shapes"},
    ).json()
    assert [m["id"] for m in meta] == [hits[0]["id"]]
    assert meta[0]["metadata"]["caption"] == "green_circle.png"
    for body, status in [
        ({"text": "x", "modality": "text", "num_images": 1, "indice_name": "shapes"}, 400),
        ({"text": "x", "modality": "image", "num_images": 1, "indice_name": "laion5B"}, 404),
        (
            {
                "image_url": "file:///etc/passwd",
                "modality": "image",
                "num_images": 1,
                "indice_name": "shapes",
            },
            403,  # fetching is off on this server: refused by policy, whatever the URL
        ),
        (
            {
                "image_url": "http://127.0.0.1:22/",
                "modality": "image",
                "num_images": 1,
                "indice_name": "shapes",
            },
            403,
        ),
        (
            {
                "image": "not base64!!",
                "modality": "image",
                "num_images": 1,
                "indice_name": "shapes",
            },
            400,
        ),
        ({"text": "x", "modality": "image", "num_images": 10**9, "indice_name": "shapes"}, 422),
    ]:
        response = httpx.post(f"{open_server}/knn-service", json=body)
        assert response.status_code == status, (body, response.text)


def test_more_like_this_through_a_symlinked_folder(tmp_path: Path) -> None:
    """Files indexed under a symlinked folder: ids resolve, and their stored vectors are found."""
    real = shape_gallery(tmp_path / "real", [("red", "circle"), ("blue", "square")])
    os.symlink(real, tmp_path / "linked")
    with Index.open(tmp_path / "db") as index:
        index.add([tmp_path / "linked"])
    with running(ServiceSettings(db=tmp_path / "db", port=0)) as url:
        hit = httpx.post(f"{url}/api/search", json={"text": "blue square", "k": 1}).json()
        token = hit["hits"][0]["id"]
        same = httpx.post(f"{url}/api/search", json={"image_id": token, "k": 1}).json()
        assert same["hits"][0]["name"] == "blue_square.png"
        assert float(same["hits"][0]["score"]) > 0.99
        assert httpx.get(f"{url}/api/file/{token}").status_code == 200


def test_folders_places_captions_and_larger_views(tmp_path: Path) -> None:
    """What the web page shows and filters by: the indexed folders (``GET /api/folders``), a
    hit's place under its folder, its caption (or a label-only manifest's label), and a larger
    view; a file a manifest names is served, unless it resolves out of its own folder."""
    gallery = tmp_path / "gallery"
    shape_gallery(gallery / "circles", [("red", "circle"), ("green", "circle")])
    shape_gallery(gallery / "squares", [("blue", "square")])
    labelled = tmp_path / "labelled"
    labelled.mkdir()
    shape_image("yellow", "square", 700).save(labelled / "big.png")
    secret = tmp_path / "private.png"
    shape_image("purple", "circle").save(secret)
    os.symlink(secret, labelled / "link.png")  # named by the manifest, leading out of its folder
    manifest = labelled / "labels.jsonl"
    manifest.write_text(
        '{"image": "big.png", "label": "黄色方块"}\n{"image": "link.png", "label": "secret"}\n'
    )
    with Index.open(tmp_path / "db") as index:
        index.add([gallery, manifest])
    with running(ServiceSettings(db=tmp_path / "db", port=0, preview_size=512)) as url:
        folders = httpx.get(f"{url}/api/folders").json()["folders"]
        assert [(f["label"], f["files"]) for f in folders] == [
            ("gallery", 3),
            ("gallery/circles", 2),
            ("gallery/squares", 1),
            ("labelled", 2),
        ]
        circles = folders[1]["path"]
        assert circles == str(gallery / "circles")
        hits = httpx.post(f"{url}/api/search", json={"text": "circle", "k": 10}).json()["hits"]
        by_place = {h["where"]: h for h in hits}
        assert set(by_place) == {
            "gallery/circles/red_circle.png",
            "gallery/circles/green_circle.png",
            "gallery/squares/blue_square.png",
            "labelled/big.png",
            "labelled/link.png",
        }
        assert by_place["labelled/big.png"]["caption"] == "黄色方块"  # the label, as caption
        assert by_place["gallery/circles/red_circle.png"]["caption"] is None
        assert all(str(tmp_path) not in str(h) for h in hits)  # still no path in a hit
        only = httpx.post(f"{url}/api/search", json={"text": "circle", "folder": circles}).json()
        assert {h["where"] for h in only["hits"]} == {
            "gallery/circles/red_circle.png",
            "gallery/circles/green_circle.png",
        }
        big = by_place["labelled/big.png"]
        thumb = Image.open(io.BytesIO(httpx.get(f"{url}{big['thumbnail']}").content))
        preview = Image.open(io.BytesIO(httpx.get(f"{url}{big['preview']}").content))
        assert (max(thumb.size), max(preview.size)) == (256, 512)
        too_big = httpx.get(f"{url}/api/thumb/{big['id']}?size=513")
        assert too_big.status_code == 422
        assert httpx.get(f"{url}{big['file']}").status_code == 200  # named by a manifest
        link = httpx.get(f"{url}{by_place['labelled/link.png']['file']}")
        assert link.status_code == 404 and link.content != secret.read_bytes()
