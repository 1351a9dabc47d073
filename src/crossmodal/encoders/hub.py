"""Downloading weights from the Hugging Face Hub (needs the network and ``huggingface_hub``)."""

from __future__ import annotations

from pathlib import Path

from crossmodal.errors import BackendUnavailableError, CheckpointError

_CANDIDATES = ("open_clip_model.safetensors", "model.safetensors")


def download_weights(ref: str) -> Path:
    """``org/repo`` or ``org/repo/file``: the local path of the weights (cache first).

    Only safetensors files are fetched by default; a repository with none is an error that
    names the files to ask for explicitly.
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
    errors: list[str] = []
    for name in files:
        try:
            return Path(hf_hub_download(repo, name))
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:
            errors.append(f"{name}: {exc.__class__.__name__}")
    raise CheckpointError(
        f"hf-hub:{ref}: could not fetch weights ({'; '.join(errors)}); check the name, the "
        "network, or download the file and pass its path"
    )
