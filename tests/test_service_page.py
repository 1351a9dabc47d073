"""The search page of ``crossmodal serve`` in a real browser: Playwright driving Debian's Chromium.

Type a query and see results, click "More like this", drop a picture, give the token when the
server asks for one. A screenshot is saved as a test artifact (``out/test-artifacts/``).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest

from crossmodal.search.index import Index
from tests.planted import shape_image

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("playwright.sync_api", reason="pip install playwright")

from crossmodal.service.app import running  # noqa: E402
from crossmodal.service.settings import ServiceSettings  # noqa: E402

TOKEN = "page-test-token-0123456789"
ARTIFACTS = Path(__file__).resolve().parents[1] / "out" / "test-artifacts"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("page")
    gallery = root / "gallery"
    gallery.mkdir()
    for colour in ("red", "blue", "green", "yellow", "purple"):
        for shape in ("circle", "square"):
            shape_image(colour, shape).save(gallery / f"{colour}_{shape}.png")
    with Index.open(root / "db") as index:
        index.add([gallery])
    return root / "db"


def _names(page: Any) -> list[str]:
    return [
        str(n)
        for n in page.locator("#results .card").evaluate_all("cs => cs.map(c => c.dataset.name)")
    ]


def test_type_search_more_like_this_and_drop(db: Path, page: Any) -> None:
    with running(ServiceSettings(db=db, port=0)) as url:
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url)
        page.locator("#q").fill("blue square")
        page.keyboard.press("Enter")
        page.wait_for_selector("#results .card")
        assert _names(page)[0] == "blue_square.png"
        assert not page.locator("#auth").is_visible()  # no token asked for where none is needed
        page.wait_for_function(
            "() => [...document.querySelectorAll('#results img')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        # "Where?" swaps the first picture for its heat map of the query
        first = page.locator("#results .card").first
        before = first.locator("img").get_attribute("src")
        first.locator("button.where").click()
        page.wait_for_selector("#results .card.explained")
        assert first.locator("img").get_attribute("src") != before
        assert first.locator("img").evaluate("i => i.complete && i.naturalWidth > 0")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "serve-page.png"))
        # "More like this" on the green circle: it comes first
        card = page.locator("#results .card", has_text="green_circle.png")
        card.locator("button.more").click()
        page.wait_for_function(
            "() => document.querySelector('#results .card')?.dataset.name === 'green_circle.png'"
        )
        assert "“green_circle.png”" in page.locator("#status").inner_text()
        # drop a picture onto the page
        png = io.BytesIO()
        shape_image("yellow", "square", 90).save(png, format="PNG")
        data = base64.b64encode(png.getvalue()).decode()
        page.evaluate(
            """(data) => {
                const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
                const file = new File([bytes], "query.png", {type: "image/png"});
                const transfer = new DataTransfer();
                transfer.items.add(file);
                const drop = new DragEvent("drop", {dataTransfer: transfer, bubbles: true});
                document.dispatchEvent(drop);
            }""",
            data,
        )
        page.wait_for_function(
            "() => document.querySelector('#status').textContent.includes('your picture')"
        )
        assert _names(page)[0] == "yellow_square.png"
        # keyboard: "/" focuses the box
        page.locator("#results .card button.more").first.focus()
        page.keyboard.press("/")
        assert page.evaluate("document.activeElement.id") == "q"
        assert page.errors == []
        assert all(r.startswith(url) or r.startswith("blob:") for r in requests)  # no CDN


def test_the_page_asks_for_the_token(db: Path, page: Any) -> None:
    with running(ServiceSettings(db=db, port=0, token=TOKEN)) as url:
        page.goto(url)  # the page itself is public; the API is not
        page.locator("#q").fill("red circle")
        page.keyboard.press("Enter")
        page.wait_for_selector("#auth", state="visible")
        assert "token" in page.locator("#status").inner_text()
        page.locator("#token").fill(TOKEN)
        page.keyboard.press("Enter")  # the query runs again with the token
        page.wait_for_selector("#results .card")
        assert _names(page)[0] == "red_circle.png"
        page.wait_for_function(
            "() => [...document.querySelectorAll('#results img')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        page.errors.clear()  # the 401s of the first try are expected
        header = page.request.get(url).headers["content-security-policy"]
        assert "script-src 'self'" in header and "default-src 'none'" in header
        assert page.request.get(f"{url}/static/../app.py").status == 404
        assert page.request.get(f"{url}/static/%2E%2E%2Fapp.py").status == 404


def _clip_front() -> Path:
    """clip-retrieval's built front-end, shipped in its wheel (``front/build``)."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution("clip-retrieval")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pip install --no-deps clip-retrieval (scripts/install dev does)")
    index = Path(str(dist.locate_file("front/build/index.html")))
    if not index.is_file():
        pytest.skip(f"clip-retrieval {dist.version} has no front/build")
    return index.parent


def test_clip_retrieval_front_end_works_unchanged(db: Path, page: Any) -> None:
    """clip-retrieval's own web front-end, served from its own origin, searches crossmodal."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(_clip_front()))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    front = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{front.server_address[1]}"
    settings = ServiceSettings(db=db, port=0, name="shapes", cors_origins=(origin,))
    try:
        with running(settings) as back:
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.route(  # the front's default back end is on the internet: never reach it
                "**/*",
                lambda route: (
                    route.continue_()
                    if route.request.url.startswith("http://127.0.0.1")
                    else route.abort()
                ),
            )
            page.goto(f"{origin}/?back={back}&index=shapes&query=red%20circle")
            pictures = page.locator("clip-front img.pic")
            pictures.first.wait_for()
            assert pictures.first.get_attribute("title") == "red_circle.png"
            page.wait_for_function(
                """() => [...document.querySelector('clip-front').shadowRoot
                    .querySelectorAll('img.pic')].every(i => i.complete && i.naturalWidth > 0)"""
            )
            assert pictures.count() == 10  # the whole gallery, served by crossmodal
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "clip-retrieval-front.png"))
            # "search by this image" on the blue square
            figure = page.locator(
                "clip-front figure", has=page.locator("img[title='blue_square.png']")
            )
            figure.hover()  # the front shows its buttons on hover
            figure.locator("img.subImageSearch").click()
            page.wait_for_function(
                """() => document.querySelector('clip-front').shadowRoot
                    .querySelector('img.pic')?.title === 'blue_square.png'"""
            )
            # a new text query from the search bar
            page.locator("clip-front #searchBar").fill("green circle")
            page.locator("clip-front #textSearch").click()
            page.wait_for_function(
                """() => document.querySelector('clip-front').shadowRoot
                    .querySelector('img.pic')?.title === 'green_circle.png'"""
            )
            assert any(r.startswith(f"{back}/knn-service") for r in requests)
            assert all(r.startswith(("http://127.0.0.1", "data:")) for r in requests), requests
    finally:
        front.shutdown()


def test_the_api_docs_work_offline_under_the_csp(db: Path, page: Any) -> None:
    """``/docs`` is Swagger UI from the installed package: no CDN, no CSP violation, and
    "Try it out" reaches the API (a health call without the token: 401, shown on the page)."""
    pytest.importorskip("fastapi_offline", reason="pip install 'crossmodal[serve]'")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    with running(ServiceSettings(db=db, port=0, token=TOKEN)) as url:
        page.goto(f"{url}/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=20_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/api/search" in paths and "/knn-service" in paths
        assert page.locator(".info .title").inner_text().startswith("crossmodal")
        health = page.locator(".opblock-get:has([data-path='/api/health'])")
        health.locator(".opblock-summary").click()
        health.locator("button.try-out__btn").click()
        health.locator("button.execute").click()
        page.wait_for_selector(".responses-table .response-col_status", timeout=10_000)
        assert "401" in health.locator(".live-responses-table").inner_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "api-docs.png"))
        assert page.request.get(f"{url}/docs/assets/../../settings.py").status == 404
        assert page.request.get(f"{url}/docs/assets/index.html").status == 404
    assert all(r.startswith(url) for r in requests), [r for r in requests if not r.startswith(url)]
    assert page.errors == [e for e in page.errors if "401" in e], page.errors  # no CSP report
