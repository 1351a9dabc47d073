"""A local Ray for the tests of the Ray engines (registered as a fixture in conftest).

Started once per test module that asks for it, on 2 CPUs, with token authentication off
(``RAY_AUTH_MODE``), and shut down at the end; the fixture checks that no token file was left
in ``~/.ray``. Tests that use it skip where Ray is not installed (``crossmodal[scale]``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["local_ray"]

TOKEN = Path.home() / ".ray" / "auth_token"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """``ray``, initialised locally with 2 CPUs and no token; shut down after the module."""
    ray = pytest.importorskip("ray", reason="pip install 'crossmodal[scale]'")
    had_token = TOKEN.exists()
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved
        assert TOKEN.exists() == had_token  # the tests leave no token behind
