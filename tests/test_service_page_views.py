"""What the search page of ``crossmodal serve`` shows of each hit, in a real browser: captions
first and file names second, a larger view with keyboard navigation, the folder, kind and date
filters, and Chinese captions drawn in real glyphs (Playwright driving Debian's Chromium over a
real server on loopback). The larger view is saved as a test artifact
(``out/test-artifacts/serve-page-larger-view.png``).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageChops

from crossmodal.search.index import Index
from tests.planted import shape_image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("playwright.sync_api", reason="pip install playwright")

from crossmodal.service.app import running
from crossmodal.service.settings import ServiceSettings

NEW = datetime(2023, 6, 1, 12).timestamp()
OLD = datetime(2015, 6, 1, 12).timestamp()
CAPTIONS = {  # the manifest's captions, in English and Chinese (joined by " / " in the index)
    "red_circle.png": ["a red circle", "红色的圆"],
    "blue_square.png": ["a blue square", "蓝色的方块"],
    "green_circle.png": ["绿色的圆形"],
}
ARTIFACTS = Path(__file__).resolve().parents[1] / "out" / "test-artifacts"
BIG = "green_circle.png"  # drawn at 600 px: its larger view is larger than its thumbnail


@dataclass(frozen=True)
class Library:
    url: str
    places: frozenset[str]  # every indexed file, as the page shows where it is
    video: bool  # whether a video is among them


def _write_video(path: Path) -> bool:
    """Two seconds of a red circle (mpeg4 by PyAV); False where PyAV cannot write one."""
    try:
        import av
    except ImportError:
        return False
    if "mpeg4" not in av.codecs_available:
        return False
    pixels = np.asarray(shape_image("red", "circle", 64))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.height, stream.width = pixels.shape[:2]
        stream.pix_fmt = "yuv420p"
        for _ in range(20):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return True


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    """photos/new (modified 2023) and photos/old (2015), uncaptioned, and a captioned manifest
    of three more pictures in captioned/."""
    root = tmp_path_factory.mktemp("views")
    places = set()
    for folder, stamp, colours in (("new", NEW, ("red", "blue")), ("old", OLD, ("red", "yellow"))):
        (root / "photos" / folder).mkdir(parents=True)
        for colour in colours:
            for shape in ("circle", "square"):
                path = root / "photos" / folder / f"{colour}_{shape}.png"
                shape_image(colour, shape).save(path)
                os.utime(path, (stamp, stamp))
                places.add(f"photos/{folder}/{path.name}")
    video = _write_video(root / "photos" / "new" / "clip.mp4")
    if video:
        os.utime(root / "photos" / "new" / "clip.mp4", (NEW, NEW))
        places.add("photos/new/clip.mp4")
    (root / "captioned").mkdir()
    rows = []
    for name, captions in CAPTIONS.items():
        colour, shape = name.removesuffix(".png").split("_")
        shape_image(colour, shape, 600 if name == BIG else 96).save(root / "captioned" / name)
        rows.append(json.dumps({"image": name, "caption": captions}, ensure_ascii=False))
        places.add(f"captioned/{name}")
    manifest = root / "captioned" / "captions.jsonl"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with Index.open(root / "db") as index:
        index.add([root / "photos", manifest])
    with running(ServiceSettings(db=root / "db", port=0)) as url:
        yield Library(url, frozenset(places), video)


_CARDS_JS = """cards => cards.map(c => ({
    name: c.dataset.name,
    caption: c.querySelector('.caption')?.textContent ?? null,
    where: c.querySelector('a.name').title,
    captionPx: parseFloat(getComputedStyle(c.querySelector('.caption') || c).fontSize),
    namePx: parseFloat(getComputedStyle(c.querySelector('a.name')).fontSize),
}))"""


def _cards(page: Any) -> list[dict[str, Any]]:
    cards: list[dict[str, Any]] = page.locator("#results .card").evaluate_all(_CARDS_JS)
    return cards


def _search(page: Any, text: str) -> None:
    page.locator("#q").fill(text)
    page.keyboard.press("Enter")
    page.wait_for_selector("#results .card")


def _searched(page: Any, words: str) -> list[dict[str, Any]]:
    """The cards once the status line names ``words`` (a filter just changed)."""
    page.wait_for_function(
        "w => document.querySelector('#status').textContent.includes(w)", arg=words
    )
    return _cards(page)


def test_captions_come_first_and_the_file_name_second(library: Library, page: Any) -> None:
    page.goto(library.url)
    _search(page, "a red circle")
    cards = _cards(page)
    assert {c["where"] for c in cards} == library.places  # a video may come once per frame
    for card in cards:
        if card["where"].startswith("captioned/"):
            assert card["caption"] == " / ".join(CAPTIONS[card["name"]])
            assert card["captionPx"] > card["namePx"]  # the caption is the card's title
        else:
            assert card["caption"] is None
        assert card["where"].endswith("/" + card["name"])  # the place, in the name's tooltip
    assert page.errors == []


def test_the_larger_view_steps_through_the_hits_by_keyboard(library: Library, page: Any) -> None:
    page.goto(library.url)
    _search(page, "a green circle")
    cards = _cards(page)
    big = next(i for i, c in enumerate(cards) if c["where"] == "captioned/" + BIG)
    page.locator("#results .card button.view").nth(big).click()
    viewer = page.locator("#viewer")
    assert viewer.evaluate("d => d.open")
    assert page.locator("#viewer-caption").inner_text() == "绿色的圆形"
    assert page.locator("#viewer-where").inner_text() == "captioned/" + BIG
    assert "score" in page.locator("#viewer-meta").inner_text()
    assert page.locator("#viewer-count").inner_text() == f"{big + 1} of {len(cards)}"
    assert page.evaluate("document.activeElement.closest('#viewer') !== null")  # focus moved in
    # the larger picture, not the 256-pixel thumbnail
    page.wait_for_function("() => document.querySelector('#viewer-img').naturalWidth === 600")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-page-larger-view.png"))
    # → and ← step through the hits in order
    step = 1 if big + 1 < len(cards) else -1
    page.keyboard.press("ArrowRight" if step == 1 else "ArrowLeft")
    other = cards[big + step]
    assert page.locator("#viewer-where").inner_text() == other["where"]
    assert page.locator("#viewer-caption").inner_text() == (other["caption"] or other["name"])
    assert page.locator("#viewer-count").inner_text() == f"{big + step + 1} of {len(cards)}"
    page.keyboard.press("ArrowLeft" if step == 1 else "ArrowRight")
    assert page.locator("#viewer-where").inner_text() == "captioned/" + BIG
    # "Next →" up to the last hit, where it turns itself off (dropping the focus): ← still works
    last = len(cards)
    while not page.locator("#viewer-next").is_disabled():
        page.locator("#viewer-next").click()
    assert page.locator("#viewer-count").inner_text() == f"{last} of {last}"
    page.keyboard.press("ArrowLeft")
    assert page.locator("#viewer-count").inner_text() == f"{last - 1} of {last}"
    page.keyboard.press("Escape")
    assert not viewer.evaluate("d => d.open")
    # focus is back on the card last viewed (not the one the view was opened from)
    focused = page.evaluate(
        "[...document.querySelectorAll('#results .card')]"
        ".indexOf(document.activeElement.closest('.card'))"
    )
    assert focused == last - 2
    assert page.errors == []


def test_folder_kind_and_date_filters_change_the_results(library: Library, page: Any) -> None:
    page.goto(library.url)
    page.wait_for_function("() => document.querySelector('#folder').options.length > 1")
    options = page.locator("#folder option").all_inner_texts()
    new = len([p for p in library.places if p.startswith("photos/new/")])
    assert options == [
        "all folders",
        "captioned (3)",
        f"photos ({new + 4})",
        f"photos/new ({new})",
        "photos/old (4)",
    ]
    _search(page, "a red circle")
    everything = {c["where"] for c in _cards(page)}
    assert {w.split("/")[0] for w in everything} == {"photos", "captioned"}

    page.locator("#folder").select_option(label="photos/old (4)")
    old = _searched(page, "in photos/old")
    assert {c["where"] for c in old} == {
        f"photos/old/{c}_{s}.png" for c in ("red", "yellow") for s in ("circle", "square")
    }

    page.locator("#kind").select_option("video")
    assert _searched(page, "video frames") == []  # no video in photos/old
    assert "nothing found" in page.locator("#status").inner_text()
    page.locator("#folder").select_option("")
    frames = _searched(page, "(video frames)")
    assert {c["where"] for c in frames} == ({"photos/new/clip.mp4"} if library.video else set())

    page.locator("#kind").select_option("image")
    pictures = _searched(page, "(pictures)")
    assert {c["where"] for c in pictures} == everything - {"photos/new/clip.mp4"}

    page.locator("#kind").select_option("")
    page.locator("#after").fill("2020-01-01")  # photos/old was modified in 2015
    recent = _searched(page, "(from 2020-01-01)")
    assert {c["where"] for c in recent} == {w for w in everything if "/old/" not in w}
    page.locator("#after").fill("")
    page.locator("#before").fill("2015-06-01")  # "to" includes its day
    until = _searched(page, "(to 2015-06-01)")
    assert {c["where"] for c in until} == {w for w in everything if "/old/" in w}
    assert page.errors == []


def _chinese_font() -> str | None:
    """The first font fontconfig offers for Chinese, or None."""
    try:
        listed = subprocess.run(
            ["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return listed.splitlines()[0] if listed.strip() else None


# The Han characters of a card's caption, as the page drew them, and the same number of U+E000
# (a private-use character no font here draws: the missing-glyph box) in the same style.
_HAN_AND_TOFU_JS = r"""card => {
    const caption = card.querySelector('.caption');
    const text = caption.firstChild;
    const start = text.data.search(/\p{Script=Han}/u);
    let end = start;
    while (end < text.data.length && /\p{Script=Han}/u.test(text.data[end])) end++;
    const han = document.createRange();
    han.setStart(text, start);
    han.setEnd(text, end);
    const probe = caption.cloneNode(false);
    probe.textContent = '\uE000'.repeat(end - start);
    caption.after(probe);
    const tofu = document.createRange();
    tofu.selectNodeContents(probe);
    const box = r => ({x: r.x, y: r.y, width: r.width, height: r.height});
    return {count: end - start, em: parseFloat(getComputedStyle(caption).fontSize),
            han: box(han.getBoundingClientRect()), tofu: box(tofu.getBoundingClientRect())};
}"""


def test_chinese_captions_render_in_real_glyphs(library: Library, page: Any) -> None:
    """Without a Chinese font Chromium draws every Han character as the same missing-glyph
    box, the width of a U+E000 box; with one, each is a distinct glyph one em wide."""
    font = _chinese_font()
    if font is None:
        pytest.skip(
            "no Chinese font (fc-list :lang=zh is empty): apt-get install fonts-wqy-zenhei "
            "(scripts/install dev does it as root)"
        )
    page.goto(library.url)
    _search(page, "红色的圆")
    card = page.locator("#results .card", has=page.locator("a.name[title='captioned/" + BIG + "']"))
    assert card.locator(".caption").inner_text() == "绿色的圆形"
    drawn = card.evaluate(_HAN_AND_TOFU_JS)
    assert drawn["count"] == 5
    han, tofu = drawn["han"], drawn["tofu"]
    assert han["width"] == pytest.approx(drawn["count"] * drawn["em"], abs=1), font
    assert abs(han["width"] - tofu["width"]) > drawn["em"] / 2, (han, tofu, font)
    # and the pixels: the Han characters are not the box
    shots = [
        Image.open(io.BytesIO(page.screenshot(clip={**box, "width": han["width"]}))).convert("L")
        for box in (han, tofu)
    ]
    assert ImageChops.difference(*shots).getbbox() is not None
    assert page.errors == []
