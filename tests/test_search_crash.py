"""The index survives SIGKILL at any moment, and readers search while a writer indexes.

The indexer runs as a real ``crossmodal index`` process, killed with SIGKILL at random
moments (20 times, each run continuing the last); a final run then finishes, and the index
must equal one built in a single clean run: the same files with the same content hashes,
the same vectors, no duplicates, and the same search results.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from crossmodal.errors import InputError
from crossmodal.index.lock import writer_lock
from crossmodal.search.index import Index, IndexConfig

N_IMAGES = 200
COMMIT_EVERY = 4


def _shapes(root: Path, n: int) -> Path:
    """``n`` distinct small drawings (random shapes and colours, seeded)."""
    gallery = root / "shapes"
    rng = random.Random(0)
    for i in range(n):
        image = Image.new("RGB", (64, 64), "white")
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            box = sorted(rng.sample(range(4, 60), 2))
            boy = sorted(rng.sample(range(4, 60), 2))
            colour = tuple(rng.randrange(256) for _ in range(3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape((box[0], boy[0], box[1], boy[1]), fill=colour)
        folder = gallery / f"part{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"shape{i:03d}.png")
    return gallery


def _indexer(gallery: Path, db: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "crossmodal", "-q", "index", str(gallery), "--db", str(db)]
    argv += ["--no-progress", "--commit-every", str(COMMIT_EVERY), "--batch-size", "8"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _count(db: Path) -> int:
    """Files committed so far (0 before the database exists)."""
    if not (db / "index.sqlite").is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{db / 'index.sqlite'}?mode=ro", uri=True) as con:
            return int(con.execute("SELECT count(*) FROM files").fetchone()[0])
    except sqlite3.Error:  # the schema is being created
        return 0


def _state(db: Path) -> tuple[dict[str, str], dict[tuple[str, float], bytes]]:
    with sqlite3.connect(db / "index.sqlite") as con:
        files = dict(con.execute("SELECT path, hash FROM files").fetchall())
        vectors = {(h, t): v for h, t, v in con.execute("SELECT hash, time, vector FROM vectors")}
        count = con.execute("SELECT count(*) FROM vectors").fetchone()[0]
    assert count == len(vectors)  # no duplicate (hash, time)
    return files, vectors


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    gallery = _shapes(tmp_path, N_IMAGES)
    clean = tmp_path / "clean"
    with Index.open(clean, IndexConfig(commit_every=COMMIT_EVERY, batch_size=8)) as index:
        index.add([gallery])
        expected_hits = [(h.path, round(h.score, 5)) for h in index.search(text="red", k=10)]

    crashed = tmp_path / "crashed"
    rng = random.Random(1)
    kills = 0
    # Kill i once the index holds about i/22 of the files, plus a random few ms (so it lands
    # anywhere: embedding, mid-transaction, saving the vector index); the last kill comes
    # after every file is in, while the vector index is being written.
    targets = [N_IMAGES * i // 22 for i in range(1, 21)] + [N_IMAGES]
    for target in targets:
        proc = _indexer(gallery, crashed)
        deadline = time.time() + 120
        while proc.poll() is None and _count(crashed) < target and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.08))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    assert kills >= 20  # the runs were really cut short
    clean_files, clean_vectors = _state(clean)
    files, vectors = _state(crashed)
    assert files == clean_files and len(files) == N_IMAGES
    assert vectors.keys() == clean_vectors.keys()
    for key, blob in vectors.items():
        np.testing.assert_allclose(
            np.frombuffer(blob, np.float32),
            np.frombuffer(clean_vectors[key], np.float32),
            atol=1e-5,
        )
    with Index.open(crashed) as index:
        hits = [(h.path, round(h.score, 5)) for h in index.search(text="red", k=10)]
        assert index.problems() == []
    assert hits == expected_hits


@pytest.mark.slow
def test_readers_search_while_one_writer_indexes(tmp_path: Path) -> None:
    gallery = _shapes(tmp_path, N_IMAGES)
    db = tmp_path / "db"
    first = gallery / "part0"
    with Index.open(db) as index:
        index.add([first])  # something to search from the start
        start = len(index)
    proc = _indexer(gallery, db)
    searches = refusals = 0
    try:
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            with Index.open(db, create=False) as reader:
                hits = reader.search(text="a blue square", k=5)
                assert len(hits) == 5
                searches += 1
            # a second writer is refused at once, with a clear message
            if proc.poll() is None and start < _count(db) < N_IMAGES:  # mid-indexing
                try:
                    with writer_lock(db):
                        assert proc.poll() is not None, "two writers held the lock"
                except InputError as exc:
                    assert "is indexing into this index" in str(exc)
                    refusals += 1
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=300) == 0, proc.stderr.read() if proc.stderr else ""
    assert searches >= 2 and refusals >= 1
    with Index.open(db) as index:
        assert len(index) == N_IMAGES
