"""The registry of native architectures: one JSON file per model in ``configs/``.

``list_models()`` names them, ``get_model_config(name)`` returns the typed config, and
``create_model(name)`` builds the native CLIP model with random weights (load weights with
:mod:`crossmodal.models.weights`). Users add architectures with ``register_model``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from crossmodal.errors import UnknownModelError
from crossmodal.models.config import CLIPConfig, config_from_dict

if TYPE_CHECKING:
    from crossmodal.models.clip import CLIP

_extra: dict[str, CLIPConfig] = {}


@cache
def _builtin() -> dict[str, CLIPConfig]:
    import json

    found: dict[str, CLIPConfig] = {}
    for entry in resources.files("crossmodal.models.configs").iterdir():
        if entry.name.endswith(".json"):
            name = entry.name[: -len(".json")]
            found[name] = config_from_dict(json.loads(entry.read_text("utf-8")), where=name)
    return found


def list_models() -> list[str]:
    """Names of every registered native architecture, sorted."""
    return sorted({**_builtin(), **_extra})


def register_model(name: str, config: CLIPConfig) -> None:
    """Register an architecture under ``name`` (replacing a user one of the same name)."""
    _extra[name] = config.validate()


def get_model_config(name: str) -> CLIPConfig:
    """The config registered under ``name``; the error lists the valid names."""
    configs = {**_builtin(), **_extra}
    try:
        return configs[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; registered models: {', '.join(list_models())}"
        ) from None


def create_model(name_or_config: str | CLIPConfig) -> CLIP:
    """Build a native CLIP model with freshly initialised weights."""
    from crossmodal.models.clip import CLIP

    config = get_model_config(name_or_config) if isinstance(name_or_config, str) else name_or_config
    return CLIP(config.validate())
