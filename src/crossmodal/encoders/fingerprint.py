"""Which weights a model spec loads: a fingerprint, so stored vectors know what made them.

A spec names a model (``native:emoji-mini``), not its weights: a new release of the package
can ship other weights under the same name, and a local ``@file`` can be overwritten. An
index records :func:`weights_fingerprint` beside the spec and refuses to mix vectors of two
fingerprints (:class:`~crossmodal.search.index.Index`).

The fingerprint reads the file's size and a sample of its bytes (the first and last MiB and
16 chunks between), so a 600 MB checkpoint costs milliseconds; any retrained weights change
far more than that sample misses. Weights the process cannot see (a hub download not yet
made, a remote backend) give ``""``: unknown, never compared.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["file_fingerprint", "weights_fingerprint"]

_EDGE = 1 << 20  # bytes read at each end of the file
_CHUNK = 1 << 16  # bytes read at each of the samples between
_SAMPLES = 16


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """``size:sha256`` of a sample of the file's bytes (all of it when small)."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as f:
        if size <= 2 * _EDGE + _SAMPLES * _CHUNK:
            digest.update(f.read())
        else:
            digest.update(f.read(_EDGE))
            step = (size - 2 * _EDGE) // (_SAMPLES + 1)
            for i in range(1, _SAMPLES + 1):
                f.seek(_EDGE + i * step)
                digest.update(f.read(_CHUNK))
            f.seek(size - _EDGE)
            digest.update(f.read(_EDGE))
    return f"{size}:{digest.hexdigest()[:32]}"


def weights_fingerprint(spec: str) -> str:
    """The fingerprint of the weights file ``spec`` loads, or ``""`` when there is none here.

    A native spec's ``@file`` (a weights file, or a Hugging Face folder's weights), or a
    bundled model's packaged file; other backends give ``""``.
    """
    from crossmodal.encoders.spec import parse_spec
    from crossmodal.models.bundled import bundled_weights

    parsed = parse_spec(spec)
    if parsed.backend != "native":
        return ""
    target = parsed.weights
    if target is None and parsed.name and (os.sep in parsed.name or Path(parsed.name).is_dir()):
        target = parsed.name
    if target is None:
        packaged = bundled_weights(parsed.name)
        return file_fingerprint(packaged) if packaged is not None else ""
    if target.startswith("hf-hub:"):
        return ""
    path = Path(os.path.expanduser(target))
    if path.is_dir():
        found = [
            path / n for n in ("model.safetensors", "pytorch_model.bin") if (path / n).is_file()
        ]
        path = found[0] if found else path
    return file_fingerprint(path) if path.is_file() else ""
