"""Weights I/O for the native model: safetensors first, pickle only with ``weights_only``.

Three layouts load into :class:`~crossmodal.models.clip.CLIP`:

- **native**: our own parameter names (what :func:`save_weights` writes), with the
  architecture stored in the safetensors metadata;
- **OpenCLIP / OpenAI**: ``visual.conv1.weight``, ``transformer.resblocks.N.attn.in_proj_weight``…
  (OpenCLIP training checkpoints wrap it in ``{"state_dict": …}`` with ``module.`` prefixes);
- **Hugging Face** ``CLIPModel``: ``vision_model.encoder.layers.N.self_attn.q_proj.weight``…,
  with the architecture read from the ``config.json`` beside the weights.

Nothing here falls back silently: a file that cannot be read safely is refused with
:class:`~crossmodal.errors.UnsafeCheckpointError`, and one whose tensors do not fit the
architecture with :class:`~crossmodal.errors.CheckpointError` naming the keys.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from crossmodal.errors import CheckpointError, ConfigError, UnsafeCheckpointError
from crossmodal.models.config import (
    CLIPConfig,
    TextConfig,
    VisionConfig,
    config_from_dict,
    config_to_dict,
)

log = logging.getLogger(__name__)

Layout = Literal["native", "openclip", "hf"]
StateDict = dict[str, Tensor]

CONFIG_METADATA_KEY = "crossmodal_config"  # safetensors metadata entry holding the config JSON
_SAFETENSORS_SUFFIXES = (".safetensors",)
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


# --------------------------------------------------------------------------- reading files


def read_state_dict(path: str | os.PathLike[str]) -> tuple[StateDict, dict[str, str]]:
    """Read tensors and metadata from a safetensors file, or a pickle with weights_only=True.

    Raises :class:`CheckpointError` for a missing or malformed file and
    :class:`UnsafeCheckpointError` for a pickle that needs code to load.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    if path.suffix in _SAFETENSORS_SUFFIXES or _looks_like_safetensors(path):
        return _read_safetensors(path)
    if path.suffix in _PICKLE_SUFFIXES or zipfile.is_zipfile(path):
        return _read_pickle(path), {}
    raise CheckpointError(
        f"{path}: unknown weights format {path.suffix!r}; use .safetensors "
        f"(or a PyTorch {'/'.join(_PICKLE_SUFFIXES)} file holding only tensors)"
    )


def _looks_like_safetensors(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> tuple[StateDict, dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: malformed safetensors file ({exc}); re-download or re-export it"
        ) from exc
    return tensors, metadata


def refused_pickle(path: str | os.PathLike[str], exc: pickle.UnpicklingError) -> Exception:
    """The error for a pickle ``torch.load(weights_only=True)`` refused (the same one for
    every backend that loads weights: native, ``openclip:…@file``, ``hf:DIR``)."""
    text = str(exc)
    if "TorchScript" in text or "jit" in text.lower():
        hint = (
            "this looks like an OpenAI TorchScript archive; load it with the OpenCLIP "
            "backend ('openclip:ViT-B-32/openai') or convert it to safetensors"
        )
    else:
        hint = "convert it to safetensors with a trusted tool, or use a safetensors file"
    return UnsafeCheckpointError(
        f"{path}: refused to load: the pickle holds more than tensors and loading it could "
        f"run code ({text.splitlines()[0] if text else 'unsafe global'}); {hint}"
    )


def _read_pickle(path: Path) -> StateDict:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise refused_pickle(path, exc) from exc
    except RuntimeError as exc:
        if "TorchScript" in str(exc) or "constants.pkl" in str(exc):
            raise UnsafeCheckpointError(
                f"{path}: refused: TorchScript archives run code when loaded; load it with the "
                "OpenCLIP backend ('openclip:ViT-B-32/openai') or convert it to safetensors"
            ) from exc
        raise CheckpointError(f"{path}: malformed PyTorch checkpoint ({exc})") from exc
    except (EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: malformed PyTorch checkpoint ({exc})") from exc
    return _unwrap(obj, path)


def _unwrap(obj: Any, path: Path) -> StateDict:
    """Accept a bare state dict or a training checkpoint holding one."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, Tensor) for v in inner.values())
            ):
                obj = inner
                break
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
        if tensors:
            return tensors
    raise CheckpointError(f"{path}: holds no tensors (expected a state dict)")


def _strip_prefixes(sd: StateDict) -> StateDict:
    for prefix in ("module.", "_orig_mod.", "model."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


# --------------------------------------------------------------------------- layouts


def detect_layout(sd: Mapping[str, Tensor]) -> Layout:
    """Which naming scheme a state dict uses."""
    if "visual.transformer.resblocks.0.attn.qkv.weight" in sd:
        return "native"
    if "visual.conv1.weight" in sd and "token_embedding.weight" in sd:
        return "openclip"
    if "vision_model.embeddings.patch_embedding.weight" in sd:
        return "hf"
    sample = ", ".join(sorted(sd)[:5])
    raise CheckpointError(
        f"unrecognised checkpoint layout (first keys: {sample}); expected a native, "
        "OpenCLIP/OpenAI or Hugging Face CLIPModel state dict"
    )


def openclip_to_native(sd: Mapping[str, Tensor]) -> StateDict:
    """Rename OpenCLIP/OpenAI keys to native ones (the tensors are shared, not copied)."""
    out: StateDict = {}
    for key, value in sd.items():
        if key == "attn_mask" or key.endswith(".attn_mask"):
            continue  # a buffer OpenCLIP rebuilds; ours is implicit (is_causal)
        new = key.replace(".attn.in_proj_weight", ".attn.qkv.weight").replace(
            ".attn.in_proj_bias", ".attn.qkv.bias"
        )
        if not new.startswith(("visual.", "logit_scale", "logit_bias")):
            new = "text." + new
        out[new] = value
    return out


def native_to_openclip(sd: Mapping[str, Tensor]) -> StateDict:
    """Inverse of :func:`openclip_to_native`, for exporting to OpenCLIP."""
    out: StateDict = {}
    for key, value in sd.items():
        new = key.replace(".attn.qkv.weight", ".attn.in_proj_weight").replace(
            ".attn.qkv.bias", ".attn.in_proj_bias"
        )
        if new.startswith("text."):
            new = new[len("text.") :]
        out[new] = value
    return out


def hf_to_native(sd: Mapping[str, Tensor]) -> StateDict:
    """Rename and reshape Hugging Face ``CLIPModel`` tensors into native ones."""
    out: StateDict = {}
    towers = (("vision_model", "visual"), ("text_model", "text"))
    for hf_tower, tower in towers:
        prefix = f"{hf_tower}.encoder.layers."
        layers = {int(k[len(prefix) :].split(".")[0]) for k in sd if k.startswith(prefix)}
        for n in sorted(layers):
            src = f"{prefix}{n}."
            dst = f"{tower}.transformer.resblocks.{n}."
            for kind in ("weight", "bias"):
                out[dst + f"attn.qkv.{kind}"] = torch.cat(
                    [sd[src + f"self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")], dim=0
                )
                pairs = {
                    "self_attn.out_proj": "attn.out_proj",
                    "layer_norm1": "ln_1",
                    "layer_norm2": "ln_2",
                    "mlp.fc1": "mlp.c_fc",
                    "mlp.fc2": "mlp.c_proj",
                }
                for a, b in pairs.items():
                    out[dst + f"{b}.{kind}"] = sd[src + f"{a}.{kind}"]
    v, t = "vision_model.", "text_model."
    out["visual.conv1.weight"] = sd[v + "embeddings.patch_embedding.weight"]
    out["visual.class_embedding"] = sd[v + "embeddings.class_embedding"]
    out["visual.positional_embedding"] = sd[v + "embeddings.position_embedding.weight"]
    for kind in ("weight", "bias"):
        out[f"visual.ln_pre.{kind}"] = sd[v + f"pre_layrnorm.{kind}"]
        out[f"visual.ln_post.{kind}"] = sd[v + f"post_layernorm.{kind}"]
        out[f"text.ln_final.{kind}"] = sd[t + f"final_layer_norm.{kind}"]
    out["visual.proj"] = sd["visual_projection.weight"].T.contiguous()  # (width, D)
    out["text.token_embedding.weight"] = sd[t + "embeddings.token_embedding.weight"]
    out["text.positional_embedding"] = sd[t + "embeddings.position_embedding.weight"]
    out["text.text_projection"] = sd["text_projection.weight"].T.contiguous()  # (width, D)
    out["logit_scale"] = sd["logit_scale"]
    return out


def to_native(sd: Mapping[str, Tensor]) -> StateDict:
    """Convert any supported layout to native names."""
    sd = _strip_prefixes(dict(sd))
    layout = detect_layout(sd)
    if layout == "openclip":
        return openclip_to_native(sd)
    if layout == "hf":
        try:
            return hf_to_native(sd)
        except KeyError as exc:
            raise CheckpointError(f"Hugging Face CLIP checkpoint lacks tensor {exc}") from exc
    return dict(sd)


# --------------------------------------------------------------------------- configs


def config_from_hf(hf_config: Mapping[str, Any]) -> CLIPConfig:
    """Translate a Hugging Face ``CLIPConfig`` (``config.json``) into ours."""
    try:
        v = hf_config["vision_config"]
        t = hf_config["text_config"]
        acts = {v.get("hidden_act", "quick_gelu"), t.get("hidden_act", "quick_gelu")}
        if len(acts) != 1 or not acts <= {"quick_gelu", "gelu"}:
            raise ConfigError(f"unsupported hidden_act {sorted(acts)} (quick_gelu or gelu)")
        eos = int(t.get("eos_token_id", 2))
        config = CLIPConfig(
            embed_dim=int(hf_config.get("projection_dim", 512)),
            quick_gelu=acts == {"quick_gelu"},
            init_logit_scale=float(hf_config.get("logit_scale_init_value", 2.6592)),
            vision=VisionConfig(
                image_size=int(v["image_size"]),
                patch_size=int(v["patch_size"]),
                width=int(v["hidden_size"]),
                layers=int(v["num_hidden_layers"]),
                heads=int(v["num_attention_heads"]),
                mlp_ratio=int(v["intermediate_size"]) / int(v["hidden_size"]),
            ),
            text=TextConfig(
                context_length=int(t["max_position_embeddings"]),
                vocab_size=int(t["vocab_size"]),
                width=int(t["hidden_size"]),
                layers=int(t["num_hidden_layers"]),
                heads=int(t["num_attention_heads"]),
                mlp_ratio=int(t["intermediate_size"]) / int(t["hidden_size"]),
                # HF keeps the legacy argmax pooling when eos_token_id == 2.
                pool="argmax" if eos == 2 else "eos",
                eos_token_id=eos if eos != 2 else 49407,
            ),
        )
    except KeyError as exc:
        raise ConfigError(f"Hugging Face CLIP config lacks field {exc}") from exc
    return config.validate()


def config_from_state_dict(sd: Mapping[str, Tensor], quick_gelu: bool = False) -> CLIPConfig:
    """Infer the architecture from native tensor shapes (heads assume a head width of 64)."""
    try:
        conv = sd["visual.conv1.weight"]  # (width, 3, p, p)
        width, patch = int(conv.shape[0]), int(conv.shape[-1])
        grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        v_layers = _count_blocks(sd, "visual.transformer.resblocks.")
        t_width = int(sd["text.ln_final.weight"].shape[0])
        config = CLIPConfig(
            embed_dim=int(sd["visual.proj"].shape[1]),
            quick_gelu=quick_gelu,
            vision=VisionConfig(
                image_size=grid * patch,
                patch_size=patch,
                width=width,
                layers=v_layers,
                heads=max(1, width // 64),
                mlp_ratio=sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width,
            ),
            text=TextConfig(
                context_length=int(sd["text.positional_embedding"].shape[0]),
                vocab_size=int(sd["text.token_embedding.weight"].shape[0]),
                width=t_width,
                layers=_count_blocks(sd, "text.transformer.resblocks."),
                heads=max(1, t_width // 64),
                mlp_ratio=sd["text.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / t_width,
            ),
        )
    except KeyError as exc:
        raise CheckpointError(f"cannot infer the architecture: tensor {exc} missing") from exc
    return config.validate()


def _count_blocks(sd: Mapping[str, Tensor], prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in sd if k.startswith(prefix)})


# --------------------------------------------------------------------------- public API


def read_config(path: str | os.PathLike[str]) -> CLIPConfig:
    """The architecture a safetensors file written by :func:`save_weights` records, no tensors read.

    Raises:
        CheckpointError: Not a readable safetensors file, or one that records no architecture.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if CONFIG_METADATA_KEY not in metadata:
        raise CheckpointError(f"{path}: the file does not record its architecture")
    return config_from_dict(json.loads(metadata[CONFIG_METADATA_KEY]), where=str(path))


def load_checkpoint(
    path: str | os.PathLike[str], config: CLIPConfig | None = None
) -> tuple[CLIPConfig, StateDict]:
    """Read weights in any supported layout; return the architecture and native tensors.

    ``path`` is a weights file or a Hugging Face model directory (``config.json`` beside
    ``model.safetensors`` or ``pytorch_model.bin``). The architecture comes from ``config``
    when given, else from the directory's ``config.json``, else from the safetensors
    metadata written by :func:`save_weights`.
    """
    path = Path(path)
    hf_config: dict[str, Any] | None = None
    if path.is_dir():
        cfg_file = path / "config.json"
        weights = next((path / n for n in _HF_WEIGHT_FILES if (path / n).is_file()), None)
        if weights is None:
            raise CheckpointError(f"{path}: no {' or '.join(_HF_WEIGHT_FILES)} in this directory")
        if cfg_file.is_file():
            hf_config = json.loads(cfg_file.read_text(encoding="utf-8"))
        path = weights
    raw, metadata = read_state_dict(path)
    sd = to_native(raw)
    if config is None:
        if CONFIG_METADATA_KEY in metadata:
            config = config_from_dict(json.loads(metadata[CONFIG_METADATA_KEY]), where=str(path))
        elif hf_config is not None:
            config = config_from_hf(hf_config)
        else:
            raise CheckpointError(
                f"{path}: the file does not say its architecture; name it in the spec, "
                "e.g. 'native:ViT-B-32@" + str(path) + "'"
            )
    return config, sd


def load_weights(model: torch.nn.Module, sd: Mapping[str, Tensor], source: str) -> None:
    """Copy native tensors into ``model``, strictly: every key present, every shape equal."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = sorted(
        f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and sd[k].shape != v.shape
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' …' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' …' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append(f"shape mismatch {wrong[:3]}")
        raise CheckpointError(
            f"{source}: weights do not fit the architecture: {'; '.join(parts)}; "
            "check the model name in the spec"
        )
    model.load_state_dict(dict(sd), strict=True)


def save_weights(
    model: torch.nn.Module, path: str | os.PathLike[str], dtype: torch.dtype | None = None
) -> Path:
    """Write native weights and the architecture to a safetensors file, atomically.

    ``dtype`` (e.g. ``torch.bfloat16``) stores floating-point tensors at that precision to halve
    the file; loading casts them back to the model's dtype.
    """
    from safetensors.torch import save

    from crossmodal.atomic import atomic_write_bytes

    config = getattr(model, "config", None)
    metadata = {}
    if isinstance(config, CLIPConfig):
        metadata[CONFIG_METADATA_KEY] = json.dumps(config_to_dict(config))
    tensors = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous()
        for k, v in model.state_dict().items()
    }
    return atomic_write_bytes(path, save(tensors, metadata=metadata))
