"""The milvus vector index behind the whole search index: Milvus Lite embedded, and a
``milvus-lite server`` on a loopback port, against the exact backend on the same files."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crossmodal.cli.main import main
from crossmodal.index.vectors import read_vector_index_header
from crossmodal.search.index import Index, IndexConfig, SearchFilter
from tests.planted import shape_image

pytest.importorskip("pymilvus", reason="pip install 'crossmodal[scale]'")
pytest.importorskip("milvus_lite", reason="pip install 'crossmodal[scale]'")

SHAPES = [
    (c, s) for c in ("red", "blue", "green", "yellow", "purple") for s in ("circle", "square")
]
QUERIES = ["red circle", "blue square", "a green shape", "yellow", "purple square"]


def _gallery(root: Path) -> Path:
    for colour, shape in SHAPES:
        folder = root / shape
        folder.mkdir(parents=True, exist_ok=True)
        shape_image(colour, shape, 72).save(folder / f"{colour}.png")
    return root


def _answers(db: Path, **where: object) -> list[list[tuple[str, float]]]:
    with Index.open(db, create=False) as index:
        return [
            [
                (Path(h.path).name, round(h.score, 4))
                for h in index.search(q, k=6, where=SearchFilter(**where))
            ]  # type: ignore[arg-type]
            for q in QUERIES
        ]


def _index(*args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["index", *args, "--no-progress"]) == 0
    return out.getvalue()


@pytest.mark.slow
def test_milvus_lite_answers_like_the_exact_backend(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gallery = _gallery(tmp_path / "photos")
    _index(str(gallery), "--db", str(tmp_path / "exact"), "--backend", "exact")
    _index(str(gallery), "--db", str(tmp_path / "lite"), "--backend", "milvus")
    noise = [r for r in caplog.records if r.name.startswith("grpc")]  # issue 25.4: Lite's
    assert not noise, noise[0].getMessage()  # "Method not implemented!" on a good run
    assert (tmp_path / "lite" / "milvus.db").exists()
    header = read_vector_index_header(tmp_path / "lite" / "vectors.idx")
    assert (header.kind, header.count) == ("milvus", len(SHAPES))  # a handle, not vectors
    assert _answers(tmp_path / "lite") == _answers(tmp_path / "exact")
    # a new process reopens the collection (a Milvus server keeps it released until loaded)
    command = [sys.executable, "-m", "crossmodal", "search", "red circle", "--json"]
    found = subprocess.run(
        [*command, "--db", str(tmp_path / "lite")], capture_output=True, text=True, timeout=120
    )
    assert found.returncode == 0, found.stderr[-2000:]
    first = json.loads(found.stdout.splitlines()[0])
    assert Path(first["path"]).name == _answers(tmp_path / "exact")[0][0][0]
    assert "MilvusLite server" not in found.stderr and "Traceback" not in found.stderr
    folder = str(gallery / "square")  # a filter, pushed down to Milvus as `id in [...]`
    squares = _answers(tmp_path / "lite", folder=folder)
    assert squares == _answers(tmp_path / "exact", folder=folder)
    assert all(name and len(row) == 5 for row in squares for name, _ in row)
    # later runs use the recorded backend: updated in place, not rebuilt
    shape_image("brown", "circle", 72).save(gallery / "circle" / "brown.png")
    (gallery / "square" / "red.png").unlink()
    with Index.open(tmp_path / "lite", IndexConfig()) as index:
        report = index.add([gallery])
        assert (report.vectors_added, report.vectors_removed, report.index_rebuilt) == (1, 1, False)
        names = [Path(h.path).name for h in index.search("brown circle", k=3)]
        assert "brown.png" in names
    _index(str(gallery), "--db", str(tmp_path / "exact"))
    assert _answers(tmp_path / "lite") == _answers(tmp_path / "exact")
    # back to a local kind: the vectors come home
    with Index.open(tmp_path / "lite", IndexConfig(backend="exact")) as index:
        index.add([gallery])
    assert read_vector_index_header(tmp_path / "lite" / "vectors.idx").kind == "exact"
    assert _answers(tmp_path / "lite") == _answers(tmp_path / "exact")


def test_options_without_the_backend_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["index", str(tmp_path), "--milvus-uri", "x.db"]) == 1
    assert "--backend milvus" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def milvus_server(tmp_path: Path) -> Iterator[str]:
    """``milvus-lite server`` on a loopback port, as a separate process."""
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "milvus_lite",
            "server",
            "--data-dir",
            str(tmp_path / "milvus"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "milvus-lite server did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_a_milvus_server_over_the_network(tmp_path: Path, milvus_server: str) -> None:
    gallery = _gallery(tmp_path / "photos")
    _index(str(gallery), "--db", str(tmp_path / "exact"), "--backend", "exact")
    out = _index(
        str(gallery),
        "--db",
        str(tmp_path / "net"),
        "--backend",
        "milvus",
        "--milvus-uri",
        milvus_server,
        "--milvus-collection",
        "photos",
    )
    assert f"built from {len(SHAPES)}" in out
    handle = json.loads((tmp_path / "net" / "vectors.idx").read_text())
    assert handle["options"]["milvus_uri"] == milvus_server
    assert "token" not in json.dumps(handle).lower()
    assert _answers(tmp_path / "net") == _answers(tmp_path / "exact")
    from pymilvus import MilvusClient

    client = MilvusClient(uri=milvus_server)
    assert client.has_collection("photos")
    rows = client.query("photos", filter="", output_fields=["count(*)"])
    assert rows[0]["count(*)"] == len(SHAPES)


def test_the_service_and_its_index_jobs_share_one_milvus_lite_file(tmp_path: Path) -> None:
    """One process, two users of the Lite file (the service's index and a job's): a job that
    ends and closes its connection must not stop the file's server under the service."""
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    from crossmodal.service.app import running
    from crossmodal.service.settings import ServiceSettings

    gallery = _gallery(tmp_path / "photos")
    _index(str(gallery / "circle"), "--db", str(tmp_path / "db"), "--backend", "milvus")
    settings = ServiceSettings(db=tmp_path / "db", port=0, roots=(str(gallery),))
    with running(settings) as url:
        first = httpx.post(f"{url}/api/search", json={"text": "red", "k": 20}).json()["hits"]
        assert len(first) == 5
        job = httpx.post(f"{url}/api/index", json={"paths": [str(gallery / "square")]}).json()
        deadline = time.monotonic() + 120
        while (state := httpx.get(f"{url}/api/index/jobs/{job['job']}").json())["state"] in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert state["state"] == "done", state
        after = httpx.post(f"{url}/api/search", json={"text": "red", "k": 20}).json()["hits"]
        assert len(after) == 10
