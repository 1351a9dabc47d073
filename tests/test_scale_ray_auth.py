"""A local Ray that crossmodal starts leaves no ``~/.ray/auth_token`` behind (issue 25.14).

Recent Ray turns token authentication on for a new local cluster when ``RAY_AUTH_MODE`` is
unset: it writes ``~/.ray/auth_token`` and sets ``RAY_AUTH_MODE=token`` in the process. The
engine runs here as a user runs it, in a process of its own with ``RAY_AUTH_MODE`` unset
(not through the ``local_ray`` fixture, which disables authentication itself) and ``HOME``
in a temporary folder, so the token file would land where the test looks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import crossmodal
from crossmodal.prep.extract import read_feature_shards
from crossmodal.scale.ray import RayConfig, _no_token_file, starts_local_cluster
from tests.planted import shape_image

ray = pytest.importorskip("ray", reason="pip install 'crossmodal[scale]'")
pytest.importorskip("ray.data", reason="pip install 'crossmodal[scale]'")

_RAY_ENV = ("RAY_AUTH_MODE", "RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
_CLI = """
import os, sys
from crossmodal.cli.main import main
code = main(sys.argv[1:])
print("RAY_AUTH_MODE after the run:", os.environ.get("RAY_AUTH_MODE"))
sys.exit(code)
"""


@pytest.mark.slow
def test_a_local_ray_run_leaves_no_token_file(tmp_path: Path) -> None:
    real_token = Path.home() / ".ray" / "auth_token"
    had_real_token = real_token.exists()
    home = tmp_path / "home"
    home.mkdir()
    folder = tmp_path / "pics"
    folder.mkdir()
    for i, colour in enumerate(("red", "green", "blue", "red")):
        shape_image(colour, "circle", 48).save(folder / f"{i}.png")
    src = str(Path(crossmodal.__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k not in _RAY_ENV}
    env["HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    args = ["data", "extract", str(folder), "-o", str(tmp_path / "feats"), "--engine", "ray"]
    args += ["--ray-actors", "1", "--no-progress", "--precision", "fp32"]
    run = subprocess.run(
        [sys.executable, "-c", _CLI, *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert sum(len(s.rows) for s in read_feature_shards(tmp_path / "feats")) == 4
    assert not (home / ".ray" / "auth_token").exists(), run.stderr[-3000:]
    assert "RAY_AUTH_MODE after the run: None" in run.stdout  # the environment is restored
    assert real_token.exists() == had_real_token


def test_only_a_new_local_cluster_without_a_mode_is_started_without_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in _RAY_ENV:
        monkeypatch.delenv(name, raising=False)
    assert not starts_local_cluster("ray://head:10001")
    assert not starts_local_cluster("10.0.0.5:6379")
    assert starts_local_cluster("local")
    with _no_token_file(RayConfig(address="local")):
        assert os.environ["RAY_AUTH_MODE"] == "disabled"
    assert "RAY_AUTH_MODE" not in os.environ  # restored once Ray has started
    with _no_token_file(RayConfig(address="ray://head:10001")):
        assert "RAY_AUTH_MODE" not in os.environ  # joining a cluster: its own rules
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with _no_token_file(RayConfig(address="local")):
        assert os.environ["RAY_AUTH_MODE"] == "token"  # the user's choice stands
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert not starts_local_cluster(None)  # Ray would join the cluster RAY_ADDRESS names
