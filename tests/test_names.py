"""File and folder names that are not UTF-8 (issue 25.1): indexed losslessly, shown readably.

A Latin-1 or Windows-copied name on a Linux disk is bytes Python decodes to lone surrogates;
such a name once aborted ``crossmodal index`` for its whole root. Real files, a real SQLite
index, the default model and a real HTTP server on loopback.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
from pathlib import Path

import pytest

from crossmodal.cli.main import main
from crossmodal.paths import MARK, from_text, json_text, printable, to_text
from crossmodal.search.index import Index, SearchFilter
from tests.planted import shape_image

BAD_FILE = os.fsdecode(b"caf\xe9_red.png")  # Latin-1 é
BAD_DIR = os.fsdecode(b"dir_\xff")


def test_stored_form_is_lossless_one_to_one_and_prefix_preserving() -> None:
    assert to_text("/photos/猫.jpg") == "/photos/猫.jpg"  # valid names are stored as they are
    rng = random.Random(0)
    alphabet = ["a", "/", "猫", MARK, "\udc80", "\udcff", "\udce9", "0", "f"]
    seen: dict[str, str] = {}
    for _ in range(3000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        text = to_text(name)
        text.encode("utf-8")  # storable
        assert from_text(text) == name
        assert seen.setdefault(text, name) == name  # no two names share a stored form
        cut = rng.randint(0, len(name))
        assert text.startswith(to_text(name[:cut]))  # folder filters compare prefixes
    assert printable(BAD_FILE) == "caf\\xe9_red.png" and printable("猫.png") == "猫.png"
    line = json_text(json.dumps({"path": BAD_FILE}, ensure_ascii=False))
    line.encode("utf-8")
    assert json.loads(line)["path"] == BAD_FILE


def _gallery(root: Path) -> Path:
    gallery = root / "gallery"
    (gallery / BAD_DIR).mkdir(parents=True)
    shape_image("red", "circle").save(gallery / BAD_FILE)
    shape_image("blue", "square").save(gallery / BAD_DIR / "blue_square.png")
    shape_image("green", "circle").save(gallery / "green_circle.png")
    (gallery / os.fsdecode(b"broken_\xfe.png")).write_bytes(b"\x89PNG not really")
    return gallery


def _cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


def test_a_folder_with_undecodable_names_indexes_and_searches(tmp_path: Path) -> None:
    gallery, db = _gallery(tmp_path), tmp_path / "db"
    code, out = _cli("index", str(gallery), "--db", str(db), "--no-progress", "--report")
    assert code == 0
    assert "broken_\\xfe.png" in out  # the problem report names the file readably
    code, out = _cli("search", "red circle", "--db", str(db), "--top", "3")
    assert code == 0 and "caf\\xe9_red.png" in out.splitlines()[0]
    code, out = _cli("search", "blue square", "--db", str(db), "--top", "3", "--json")
    hits = [json.loads(line) for line in out.splitlines()]
    out.encode("utf-8")
    paths = {h["path"] for h in hits}
    assert str(gallery / BAD_DIR / "blue_square.png") in paths  # lossless: it opens
    assert all(os.path.isfile(p) for p in paths)
    # a second run finds nothing new; a removed file is forgotten
    code, out = _cli("index", str(gallery), "--db", str(db), "--no-progress")
    assert code == 0 and "indexed 0 new file(s)" in out and "unchanged 3" in out
    assert "0 new problem(s) (1 from earlier runs)" in out  # the broken file, not retried
    code, out = _cli("index", str(gallery), "--db", str(db), "--no-progress", "--report")
    listed = [line for line in out.splitlines()[1:] if "broken_\\xfe.png" in line]
    assert len(listed) == 1  # --report lists it still (25.5)
    (gallery / BAD_FILE).unlink()
    with Index.open(db) as index:
        index.add([gallery])
        assert len(index) == 2
        found = index.search(text="blue square", k=1)
        assert found[0].path == str(gallery / BAD_DIR / "blue_square.png")
        inside = index.search(
            text="red circle", k=5, where=SearchFilter(folder=str(gallery / BAD_DIR))
        )
        assert [h.path for h in inside] == [found[0].path]  # a folder filter on such a folder


def test_the_service_serves_them_by_id(tmp_path: Path) -> None:
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    from crossmodal.service.app import running
    from crossmodal.service.settings import ServiceSettings

    gallery, db = _gallery(tmp_path), tmp_path / "db"
    with Index.open(db) as index:
        index.add([gallery])
        index.search(text="red circle", k=1)  # embeds the query bank once, into the index
    with running(ServiceSettings(db=db, port=0, token="t" * 24)) as url:
        auth = {"Authorization": "Bearer " + "t" * 24}
        body = {"text": "red circle", "k": 3}
        response = httpx.post(f"{url}/api/search", json=body, headers=auth, timeout=60)
        assert response.status_code == 200, response.text
        hit = next(h for h in response.json()["hits"] if h["name"] == "caf\\xe9_red.png")
        original = httpx.get(f"{url}{hit['file']}", headers=auth)
        assert original.status_code == 200
        assert original.content == (gallery / BAD_FILE).read_bytes()
        assert httpx.get(f"{url}{hit['thumbnail']}", headers=auth).status_code == 200
