"""The Hugging Face Hub: whether it can be reached, and downloading weights from it.

Without a network, ``huggingface_hub`` retries each request five times with back-off (about
25 seconds of warnings) before it looks in its cache. :func:`hub_offline` answers at once
instead: ``HF_HUB_OFFLINE`` is set, or the endpoint refuses a TCP connection within two
seconds; the loaders then read the local cache only and say so when a file is not in it.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from crossmodal.errors import BackendUnavailableError, CheckpointError

__all__ = ["HUB_UNREACHABLE", "download_weights", "hub_offline", "hub_reachable"]

log = logging.getLogger(__name__)

_CANDIDATES = ("open_clip_model.safetensors", "model.safetensors")
_TRUTHY = ("1", "true", "yes", "on")
_PROXIES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
PROBE_TIMEOUT_S = 2.0  # a reachable endpoint answers a TCP handshake far sooner
HUB_UNREACHABLE = (
    "the Hugging Face Hub cannot be reached and it is not in the local cache: connect to the "
    "network, or download it elsewhere and name the local copy"
)


def endpoint() -> tuple[str, int]:
    """Host and port of the Hub (``HF_ENDPOINT`` honoured)."""
    url = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """Whether the Hub's endpoint accepts a TCP connection (asked once per process).

    Behind a proxy the direct connection says nothing, so the Hub counts as reachable and
    ``huggingface_hub`` finds out itself.
    """
    if any(os.environ.get(name) for name in _PROXIES):
        return True
    host, port = endpoint()
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError as exc:
        log.debug("Hugging Face Hub %s:%d unreachable (%s): local cache only", host, port, exc)
        return False


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` is set or the Hub cannot be reached: read the local cache only."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY:
        return True
    return not hub_reachable()


def download_weights(ref: str) -> Path:
    """``org/repo`` or ``org/repo/file``: the local path of the weights (cache first).

    Only safetensors files are fetched by default; a repository with none is an error that
    names the files to ask for explicitly. Offline, only the cache is read.
    """
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError as exc:
        raise BackendUnavailableError("hf-hub", "hf", "huggingface_hub") from exc
    parts = ref.split("/")
    if len(parts) < 2:
        raise CheckpointError(f"hf-hub:{ref}: expected 'hf-hub:org/repo[/file]'")
    repo = "/".join(parts[:2])
    files = ["/".join(parts[2:])] if len(parts) > 2 else list(_CANDIDATES)
    offline = hub_offline()
    errors: list[str] = []
    for name in files:
        try:
            return Path(hf_hub_download(repo, name, local_files_only=offline))
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:
            errors.append(f"{name}: {exc.__class__.__name__}")
    if offline:
        raise CheckpointError(f"hf-hub:{ref}: {HUB_UNREACHABLE} (looked for {', '.join(files)})")
    raise CheckpointError(
        f"hf-hub:{ref}: could not fetch weights ({'; '.join(errors)}); check the name, the "
        "network, or download the file and pass its path"
    )
