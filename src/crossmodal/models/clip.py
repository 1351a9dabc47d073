"""The native CLIP dual encoder, top to bottom as in the paper (Radford et al., 2021).

Small blocks first (activation, MLP, attention, residual block, transformer), then the two
towers, then the model:

    h_i(i) = W_i · LN(ViT(i))[cls]          image tower, patch tokens kept for later heads
    h_t(t) = W_t · LN(CausalTransformer(t))[eot]   text tower, word tokens kept too
    logits = exp(τ) · normalize(h_i) · normalize(h_t)ᵀ

Parameter names follow OpenCLIP's where the structure is the same, so that checkpoints map
with few rules (see :mod:`crossmodal.models.weights`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crossmodal.models.config import CLIPConfig, TextConfig, VisionConfig


@dataclass(frozen=True)
class TowerOutput:
    """What one tower computes: the pooled embedding and the token features behind it."""

    embedding: Tensor  # (B, D) projected into the joint space, not normalised
    tokens: Tensor  # (B, T, width) final-layer-norm token features (patches or words)
    mask: Tensor  # (B, T) bool, True where a token is real (all True for images)


@dataclass(frozen=True)
class CLIPOutput:
    """The joint forward pass: unit embeddings of both towers and the temperature."""

    h_i: Tensor  # (B, D) L2-normalised image embeddings
    h_t: Tensor  # (B, D) L2-normalised text embeddings
    logit_scale: Tensor  # () exp(τ), clamped to at most 100 as in CLIP
    logit_bias: Tensor | None  # () SigLIP bias, None for the softmax (InfoNCE) objective


class QuickGELU(nn.Module):
    """OpenAI's approximation GELU(x) ≈ x·σ(1.702x); their checkpoints were trained with it."""

    def forward(self, x: Tensor) -> Tensor:
        y: Tensor = x * torch.sigmoid(x * 1.702)
        return y


class MLP(nn.Module):
    """Position-wise feed-forward: width → mlp_ratio·width → width."""

    def __init__(self, width: int, hidden: int, quick_gelu: bool) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.gelu: nn.Module = QuickGELU() if quick_gelu else nn.GELU()
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        y: Tensor = self.c_proj(self.gelu(self.c_fc(x)))
        return y


class Attention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection.

    Uses ``scaled_dot_product_attention`` instead of ``nn.MultiheadAttention``: the same math,
    with fused kernels, and no slow path when the weights are cast to bf16.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.heads, C // self.heads)  # (B, T, 3, H, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, hd)
        y = attend(q, k, v, causal)  # (B, H, T, hd)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        out: Tensor = self.out_proj(y)
        return out


def attend(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
    """softmax(q·kᵀ/√d)·v over (B, H, T, hd) heads, in fp32 when bf16 training runs on a CPU.

    PyTorch's CPU flash-attention *backward* in bf16 is about 4x slower than in fp32 at our
    sizes (emoji-mini under bf16 autocast: 195 ms of a 665 ms training step, against 44 ms
    in fp32), while the bf16 forward is fast. So when gradients flow through bf16 inputs on
    a CPU, the attention itself runs in fp32 (the projections around it stay bf16): the
    step falls to 468 ms. Inference and every other device keep the native kernel.
    """
    if q.dtype == torch.bfloat16 and q.device.type == "cpu" and q.requires_grad:
        with torch.autocast(device_type="cpu", enabled=False):
            y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal)
        return y.to(torch.bfloat16)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


class ResidualBlock(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, quick_gelu: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = MLP(width, int(width * mlp_ratio), quick_gelu)

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        x = x + self.attn(self.ln_1(x), causal=causal)
        y: Tensor = x + self.mlp(self.ln_2(x))
        return y


class Transformer(nn.Module):
    """A stack of residual blocks."""

    def __init__(
        self, width: int, layers: int, heads: int, mlp_ratio: float, quick_gelu: bool
    ) -> None:
        super().__init__()
        self.width = width
        self.resblocks = nn.ModuleList(
            ResidualBlock(width, heads, mlp_ratio, quick_gelu) for _ in range(layers)
        )

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        for block in self.resblocks:
            x = block(x, causal=causal)
        return x


class ConvStem(nn.Module):
    """Pixels → (B, width, g, g) tokens by stride-2 3x3 convolutions with GELU between them.

    Each convolution halves the side, so log2(patch_size) of them give the same g x g grid as
    a patch_size patch embedding; the last one outputs the transformer width and is linear
    (``ln_pre`` normalises the tokens next).
    """

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip((3, *channels), channels, strict=False)):
            if i:
                layers.append(nn.GELU())
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, S, S) → (B, width, S / patch_size, S / patch_size)."""
        return self.layers(x)  # type: ignore[no-any-return]


class VisionTower(nn.Module):
    """h_i: a ViT. Patches → tokens (+ class token, + positions) → transformer → [cls] → W_i."""

    def __init__(self, cfg: VisionConfig, embed_dim: int, quick_gelu: bool) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.conv1: nn.Module
        if cfg.stem == "conv":
            self.conv1 = ConvStem(cfg.stem_channels)
        else:
            self.conv1 = nn.Conv2d(3, w, cfg.patch_size, stride=cfg.patch_size, bias=False)
        scale = w**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(w))
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.grid_size**2 + 1, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, cfg.layers, cfg.heads, cfg.mlp_ratio, quick_gelu)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(scale * torch.randn(w, embed_dim))

    def forward(self, pixels: Tensor) -> TowerOutput:
        """pixels (B, 3, S, S), normalised → embedding (B, D) and tokens (B, 1 + N, width)."""
        x = self.conv1(pixels.to(self.class_embedding.dtype))  # (B, width, g, g)
        x = x.flatten(2).transpose(1, 2)  # (B, N, width), N = g*g patches
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # (B, 1, width)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # (B, 1+N, w)
        x = self.transformer(self.ln_pre(x))
        tokens = self.ln_post(x)  # (B, 1+N, width)
        embedding = tokens[:, 0] @ self.proj  # (B, D)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return TowerOutput(embedding=embedding, tokens=tokens, mask=mask)


class TextTower(nn.Module):
    """h_t: a causal transformer over token ids, pooled at the end token, → W_t."""

    def __init__(self, cfg: TextConfig, embed_dim: int, quick_gelu: bool) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.token_embedding = nn.Embedding(cfg.vocab_size, w)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, w))
        self.transformer = Transformer(w, cfg.layers, cfg.heads, cfg.mlp_ratio, quick_gelu)
        self.ln_final = nn.LayerNorm(w)
        self.text_projection = nn.Parameter(torch.empty(w, embed_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=w**-0.5)

    def pool_index(self, ids: Tensor) -> Tensor:
        """Position of the end token in each row (B,)."""
        if self.cfg.pool == "argmax":  # CLIP's end token has the highest id
            return ids.argmax(dim=-1)
        return (ids == self.cfg.eos_token_id).int().argmax(dim=-1)

    def forward(self, ids: Tensor) -> TowerOutput:
        """ids (B, T) → embedding (B, D) and tokens (B, T, width)."""
        T = ids.shape[1]
        if self.cfg.context_length < T:
            raise ValueError(f"got {T} tokens, context_length is {self.cfg.context_length}")
        x = self.token_embedding(ids) + self.positional_embedding[:T]  # (B, T, width)
        x = self.transformer(x, causal=True)
        tokens = self.ln_final(x)  # (B, T, width)
        eot = self.pool_index(ids)  # (B,)
        pooled = tokens[torch.arange(ids.shape[0], device=ids.device), eot]  # (B, width)
        embedding = pooled @ self.text_projection  # (B, D)
        mask = torch.arange(T, device=ids.device)[None, :] <= eot[:, None]  # (B, T)
        return TowerOutput(embedding=embedding, tokens=tokens, mask=mask)


class CLIP(nn.Module):
    """The dual encoder: f(t, i) = cos(h_t(t), h_i(i)) · exp(τ), with learnable τ."""

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        self.config = config
        self.visual = VisionTower(config.vision, config.embed_dim, config.quick_gelu)
        self.text = TextTower(config.text, config.embed_dim, config.quick_gelu)
        self.logit_scale = nn.Parameter(torch.tensor(config.init_logit_scale))
        self.logit_bias = (
            nn.Parameter(torch.tensor(config.init_logit_bias))
            if config.init_logit_bias is not None
            else None
        )
        self._init_blocks()

    def _init_blocks(self) -> None:
        # CLIP's initialisation: residual projections scaled down with depth.
        for tower in (self.visual.transformer, self.text.transformer):
            width, layers = tower.width, len(tower.resblocks)
            proj_std = (width**-0.5) * ((2 * layers) ** -0.5)
            attn_std = width**-0.5
            fc_std = (2 * width) ** -0.5
            for block in tower.resblocks:
                assert isinstance(block, ResidualBlock)
                nn.init.normal_(block.attn.qkv.weight, std=attn_std)
                nn.init.zeros_(block.attn.qkv.bias)
                nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
                nn.init.zeros_(block.attn.out_proj.bias)
                nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
                nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights (float32, or bfloat16 after ``.to(torch.bfloat16)``)."""
        return self.visual.class_embedding.dtype

    def encode_image(self, pixels: Tensor, normalize: bool = True) -> Tensor:
        """h_i for a batch of preprocessed images (B, 3, S, S) → (B, D)."""
        h_i = self.visual(pixels).embedding
        return F.normalize(h_i, dim=-1) if normalize else h_i

    def encode_text(self, ids: Tensor, normalize: bool = True) -> Tensor:
        """h_t for a batch of token ids (B, T) → (B, D)."""
        h_t = self.text(ids).embedding
        return F.normalize(h_t, dim=-1) if normalize else h_t

    def forward(self, pixels: Tensor, ids: Tensor) -> CLIPOutput:
        """Both towers, normalised, with the clamped temperature exp(τ) ≤ 100."""
        return CLIPOutput(
            h_i=self.encode_image(pixels),
            h_t=self.encode_text(ids),
            logit_scale=self.logit_scale.exp().clamp(max=100.0),
            logit_bias=self.logit_bias,
        )

    def similarity(self, pixels: Tensor, ids: Tensor) -> Tensor:
        """Scaled cosine logits (B_i, B_t) between every image and every text."""
        out = self(pixels, ids)
        logits: Tensor = out.logit_scale * out.h_i @ out.h_t.T
        return logits


def count_parameters(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())
