"""The model a training run starts from: loaded weights, or fresh ones asked for by name.

build_model("emoji-mini")                   # the shipped weights (fine-tuning)
build_model("native:ViT-B-32@w.safetensors")  # a file's weights
build_model("emoji-mini", init="random")    # the shipped architecture, fresh weights
fresh_config("emoji-mini", "tok.json")      # the architecture --init random builds
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from crossmodal.errors import ConfigError

if TYPE_CHECKING:
    from crossmodal.models.clip import CLIP
    from crossmodal.models.config import CLIPConfig

__all__ = ["CLIP_BPE", "build_model", "fresh_config"]

CLIP_BPE = "clip-bpe"  # tokenizer value: the registered config's own CLIP BPE
log = logging.getLogger(__name__)


def build_model(spec_text: str, tokenizer: str | Path | None = None, init: str = "weights") -> CLIP:
    """The model a training run starts from.

    ``init="weights"`` (the default) loads weights: the ones a native spec names with
    ``@weights``, or a bundled model's shipped ones (``emoji-mini``). A registered
    architecture without weights is refused: random initialisation is asked for explicitly.
    ``init="random"`` builds fresh weights: a bundled name keeps the shipped architecture and
    tokenizer (so ``emoji-mini`` means one model everywhere), any other name its registered
    config. ``tokenizer`` (a trained ``tokenizer.json``, or ``clip-bpe`` for the registered
    config's own) replaces a fresh model's tokenizer.

    Raises:
        ConfigError: Not a native spec; no weights without ``init="random"``; weights with it;
            a tokenizer for a loaded model.
    """
    from crossmodal.encoders.native import resolve_weights
    from crossmodal.encoders.spec import parse_spec
    from crossmodal.models.bundled import bundled_weights
    from crossmodal.models.clip import CLIP
    from crossmodal.models.registry import create_model, get_model_config
    from crossmodal.models.weights import load_checkpoint, load_weights

    if init not in ("weights", "random"):
        raise ConfigError(f"unknown --init {init!r}; choose weights or random")
    spec = parse_spec(spec_text)
    if spec.backend != "native":
        raise ConfigError(f"train needs a native model, not {spec.backend!r} ({spec_text})")
    weights = spec.weights
    if spec.name and weights is None and (os.sep in spec.name or Path(spec.name).is_dir()):
        weights = spec.name  # a Hugging Face CLIP directory
    if init == "random":
        if weights is not None:
            raise ConfigError(
                f"--init random trains fresh weights, but {spec_text} names weights: drop "
                "'@...' to train the architecture from scratch, or drop --init random to "
                "fine-tune them"
            )
        return create_model(fresh_config(spec.name, tokenizer))
    if tokenizer is not None:
        raise ConfigError(
            "--tokenizer is for a fresh model (--init random); fine-tuning keeps the model's own"
        )
    config = None
    if weights is None:
        get_model_config(spec.name)  # an unknown name is answered with the valid ones
        packaged = bundled_weights(spec.name)
        if packaged is None:
            raise ConfigError(
                f"{spec.name} has no weights to start from: pass --init random to train it "
                f"from scratch, or name weights (native:{spec.name}@FILE.safetensors)"
            )
        log.info("fine-tuning the bundled weights of %s (%s)", spec.name, packaged)
        weights = str(packaged)  # the file records its own architecture and tokenizer
    elif spec.name and spec.name != weights:
        config = get_model_config(spec.name)
    config, sd = load_checkpoint(resolve_weights(weights), config)
    model = CLIP(config)
    load_weights(model, sd, source=weights)
    return model


def fresh_config(name: str, tokenizer: str | Path | None = None) -> CLIPConfig:
    """The architecture ``--init random`` builds for ``name``, with its tokenizer.

    A bundled model's is the one its shipped file records (architecture and trained
    tokenizer); any other name's is its registered config. ``tokenizer`` replaces the
    tokenizer: a ``tokenizer.json`` path, or ``clip-bpe`` for the registered config as it is.
    """
    from crossmodal.models.bundled import bundled_config
    from crossmodal.models.registry import get_model_config

    config = get_model_config(name)
    if tokenizer is not None and str(tokenizer) == CLIP_BPE:
        if config.text.tokenizer != CLIP_BPE:
            raise ConfigError(f"{name}'s registered config has no {CLIP_BPE} tokenizer")
        return config
    if tokenizer is not None:
        return _attach_tokenizer(config, Path(tokenizer))
    return bundled_config(name) or config


def _attach_tokenizer(config: CLIPConfig, path: Path) -> CLIPConfig:
    from crossmodal.errors import InputError
    from crossmodal.models.config import with_trained_tokenizer
    from crossmodal.text.trained import TrainedTokenizer

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the tokenizer ({exc})") from exc
    tok = TrainedTokenizer.from_str(text, context_length=config.text.context_length)
    return with_trained_tokenizer(config, text, tok.vocab_size, tok.eos_token_id)
