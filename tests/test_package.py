"""The package surface: public names, cheap import, exception tree, shipped files."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import pytest

import crossmodal
from crossmodal import errors


def test_every_public_name_resolves() -> None:
    for name in crossmodal.__all__:
        assert getattr(crossmodal, name) is not None, name
    assert sorted(dir(crossmodal)) == sorted(crossmodal.__all__)
    with pytest.raises(AttributeError):
        _ = crossmodal.no_such_name  # type: ignore[attr-defined]


def test_import_is_cheap_and_has_no_side_effects() -> None:
    code = (
        "import sys, os; before = dict(os.environ); import crossmodal; "
        "assert 'torch' not in sys.modules, 'torch imported at import time'; "
        "assert dict(os.environ) == before; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_exception_tree() -> None:
    assert issubclass(errors.UnknownModelError, errors.ConfigError)
    assert issubclass(errors.UnsafeCheckpointError, errors.CheckpointError)
    assert issubclass(errors.ImageDecodeError, errors.InputError)
    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type):
            assert issubclass(cls, errors.CrossmodalError), name
    err = errors.ImageDecodeError("/x/y.jpg", "truncated file")
    assert "/x/y.jpg" in str(err) and "truncated" in str(err)


def test_shipped_data_files() -> None:
    root = resources.files("crossmodal")
    assert root.joinpath("py.typed").is_file()
    assert root.joinpath("text/bpe_simple_vocab_16e6.txt.gz").is_file()
    assert root.joinpath("models/configs/ViT-B-32.json").is_file()
