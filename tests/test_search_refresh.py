"""Re-indexing everything an index has (``Index.refresh``, ``crossmodal index --refresh``) and
stopping a run between commits (``Index.add(should_stop=...)``)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from crossmodal.cli.main import main
from crossmodal.search.index import Index, IndexConfig
from tests.planted import shape_image

COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "brown"]


def _folder(path: Path, n: int, shape: str = "circle") -> Path:
    path.mkdir(parents=True)
    for i in range(n):
        shape_image(COLOURS[i % len(COLOURS)], shape, 40 + 4 * i).save(path / f"{shape}{i}.png")
    return path


def _rows(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db / "index.sqlite") as con:
        return sorted(con.execute("SELECT path, hash FROM files").fetchall())


def test_a_stopped_run_keeps_its_commits_and_the_next_run_finishes(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "pics", 10)
    config = IndexConfig(commit_every=3, progress=False)
    asked = 0

    def stop_after_two_commits() -> bool:
        nonlocal asked
        asked += 1
        return asked > 2

    with Index.open(tmp_path / "db", config) as index:
        stopped = index.add([folder], should_stop=stop_after_two_commits)
        assert stopped.cancelled and stopped.embedded == 6 and len(index) == 6
        hits = index.search("red circle", k=10)
        assert len(hits) == 6  # what was committed is searchable at once
        finished = index.add([folder])
    assert not finished.cancelled
    assert (finished.embedded, finished.unchanged) == (4, 6)
    with Index.open(tmp_path / "clean", config) as clean:
        clean.add([folder])
    strip = lambda rows: [(Path(p).name, h) for p, h in rows]  # noqa: E731
    assert strip(_rows(tmp_path / "db")) == strip(_rows(tmp_path / "clean"))


def test_refresh_reindexes_every_root_it_has(tmp_path: Path) -> None:
    a = _folder(tmp_path / "a", 3)
    b = _folder(tmp_path / "b", 2, "square")
    gone = _folder(tmp_path / "gone", 2, "square")
    db = tmp_path / "db"
    with Index.open(db) as index:
        index.add([a, b, gone])
        assert index.store.roots() == sorted(str(p) for p in (a, b, gone))
    shape_image("green", "square", 90).save(a / "new.png")
    (b / "square0.png").unlink()
    shape_image("brown", "circle", 60).save(b / "square1.png")  # changed content
    shutil.rmtree(gone)
    with Index.open(db) as index:
        report = index.refresh()
        assert (report.embedded, report.removed, report.unchanged) == (2, 3, 3)
        names = sorted(Path(p).name for p, _ in _rows(db))
        assert names == ["circle0.png", "circle1.png", "circle2.png", "new.png", "square1.png"]
        only_a = index.refresh(allowed=lambda root: root == str(a))
        assert (only_a.embedded, only_a.unchanged, only_a.removed) == (0, 4, 0)


def test_refresh_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path / "pics", 2)
    db = tmp_path / "db"
    assert main(["index", str(folder), "--db", str(db), "--no-progress"]) == 0
    shape_image("blue", "square", 70).save(folder / "more.png")
    capsys.readouterr()
    assert main(["index", "--refresh", "--db", str(db), "--no-progress"]) == 0
    assert "indexed 1 new file(s)" in capsys.readouterr().out
    assert main(["index", "--refresh", str(folder), "--db", str(db)]) == 1
    assert "give no PATH" in capsys.readouterr().err
    assert main(["index", "--refresh", "--db", str(tmp_path / "no-index")]) == 1
    assert "no-index" in capsys.readouterr().err
    assert not (tmp_path / "no-index").exists()  # a refresh never creates an index
