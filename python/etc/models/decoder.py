"""Reference decoder-only LLM (Llama / Qwen3 / GPT-NeoX style) for one decode step.

Written the usual Hugging Face way so that it is a realistic compiler input and HF
checkpoints load by parameter name. The KV caches are explicit forward arguments and
are updated in place.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    qk_norm: bool = False  # Qwen3: per-head RMSNorm on q and k before RoPE
    norm: str = "rms"  # "rms" or "layer"
    norm_bias: bool = False  # LayerNorm bias
    mlp: str = "silu"  # "silu" (gated) or "gelu" (fc1 -> gelu -> fc2)
    attn_bias: bool = False  # bias on q/k/v projections
    mlp_bias: bool = False
    max_context: int = 4096  # largest KV length supported
    dtype: torch.dtype = torch.bfloat16

    def __post_init__(self):
        if self.norm not in ("rms", "layer"):
            raise ValueError(f"norm must be 'rms' or 'layer', got {self.norm!r}")
        if self.mlp not in ("silu", "gelu"):
            raise ValueError(f"mlp must be 'silu' or 'gelu', got {self.mlp!r}")
        if self.num_heads % self.num_kv_heads or self.head_dim % 2:
            raise ValueError("num_heads must be a multiple of num_kv_heads and head_dim even")


_TINY = dict(vocab_size=256, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128, max_context=64)

CONFIGS: dict[str, DecoderConfig] = {
    "tiny-llama": DecoderConfig(**_TINY, num_kv_heads=2, head_dim=16),
    # heads * head_dim (128) != hidden (64), like real Qwen3 models.
    "tiny-qwen3": DecoderConfig(
        **_TINY, num_kv_heads=2, head_dim=32, rope_theta=1e6, norm_eps=1e-6, qk_norm=True, tie_embeddings=True
    ),
    # GPT-NeoX/Phi-like: LayerNorm, GELU MLP, biases, MHA; still RoPE (no learned positions).
    "tiny-gpt": DecoderConfig(
        **_TINY, num_kv_heads=4, head_dim=16, norm="layer", norm_bias=True, mlp="gelu",
        attn_bias=True, mlp_bias=True, tie_embeddings=True,
    ),
    # Llama-3.2's "llama3" rope scaling is ignored: it only changes low frequencies,
    # which matters beyond the original 8k context, far past max_context here.
    "llama-3.2-1b": DecoderConfig(
        vocab_size=128256, hidden_size=2048, num_layers=16, num_heads=32, num_kv_heads=8, head_dim=64,
        intermediate_size=8192, rope_theta=500000.0, norm_eps=1e-5, tie_embeddings=True,
    ),
    "qwen3-0.6b": DecoderConfig(
        vocab_size=151936, hidden_size=1024, num_layers=28, num_heads=16, num_kv_heads=8, head_dim=128,
        intermediate_size=3072, rope_theta=1e6, norm_eps=1e-6, qk_norm=True, tie_embeddings=True,
    ),
    "qwen3-8b": DecoderConfig(
        vocab_size=151936, hidden_size=4096, num_layers=36, num_heads=32, num_kv_heads=8, head_dim=128,
        intermediate_size=12288, rope_theta=1e6, norm_eps=1e-6, qk_norm=True, tie_embeddings=False,
    ),
}


class RMSNorm(nn.Module):
    def __init__(self, dim, eps, dtype=None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype))
        self.eps = eps

    def forward(self, x):
        h = x.to(torch.float32)  # accumulate in float32 as HF does
        var = h.pow(2).mean(-1, keepdim=True)
        h = h * torch.rsqrt(var + self.eps)
        return self.weight * h.to(x.dtype)


def _make_norm(c: DecoderConfig, dim):
    if c.norm == "rms":
        return RMSNorm(dim, c.norm_eps, dtype=c.dtype)
    return nn.LayerNorm(dim, eps=c.norm_eps, bias=c.norm_bias, dtype=c.dtype)


def rope_inv_freq(c: DecoderConfig, device=None):
    exponent = torch.arange(0, c.head_dim, 2, dtype=torch.int64, device=device).float() / c.head_dim
    return 1.0 / (c.rope_theta**exponent)


class RotaryEmbedding(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.register_buffer("inv_freq", rope_inv_freq(c), persistent=False)

    def forward(self, x, positions):
        freqs = positions[:, None].float() * self.inv_freq[None, :]  # [B, head_dim/2]
        emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]  # [B, 1 (seq), head_dim]
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


class Attention(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.head_dim = c.head_dim
        self.num_kv_groups = c.num_heads // c.num_kv_heads
        self.q_proj = nn.Linear(c.hidden_size, c.num_heads * c.head_dim, bias=c.attn_bias, dtype=c.dtype)
        self.k_proj = nn.Linear(c.hidden_size, c.num_kv_heads * c.head_dim, bias=c.attn_bias, dtype=c.dtype)
        self.v_proj = nn.Linear(c.hidden_size, c.num_kv_heads * c.head_dim, bias=c.attn_bias, dtype=c.dtype)
        self.o_proj = nn.Linear(c.num_heads * c.head_dim, c.hidden_size, bias=False, dtype=c.dtype)
        self.q_norm = RMSNorm(c.head_dim, c.norm_eps, dtype=c.dtype) if c.qk_norm else None
        self.k_norm = RMSNorm(c.head_dim, c.norm_eps, dtype=c.dtype) if c.qk_norm else None

    def forward(self, x, cos, sin, positions, k_cache, v_cache, mask):
        B = x.shape[0]
        shape = (B, 1, -1, self.head_dim)  # [B, seq=1, heads, head_dim]
        q = self.q_proj(x).view(shape)
        k = self.k_proj(x).view(shape)
        v = self.v_proj(x).view(shape).transpose(1, 2)
        if self.q_norm is not None:
            q = self.q_norm(q)
            k = self.k_norm(k)
        q, k = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)

        # Each sequence writes its new k/v into its own slot positions[b], in place
        # (exports as one aten.index_put_ per cache).
        batch = torch.arange(B, device=positions.device)
        k_cache[batch, :, positions] = k[:, :, 0]
        v_cache[batch, :, positions] = v[:, :, 0]

        out = F.scaled_dot_product_attention(
            q, k_cache, v_cache, attn_mask=mask, enable_gqa=self.num_kv_groups > 1
        )
        return self.o_proj(out.transpose(1, 2).reshape(B, 1, -1))


class MLP(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        h, i, bias = c.hidden_size, c.intermediate_size, c.mlp_bias
        self.gate_proj = nn.Linear(h, i, bias=bias, dtype=c.dtype) if c.mlp == "silu" else None
        self.up_proj = nn.Linear(h, i, bias=bias, dtype=c.dtype)
        self.down_proj = nn.Linear(i, h, bias=bias, dtype=c.dtype)

    def forward(self, x):
        if self.gate_proj is None:  # GPT-style fc1 -> gelu (tanh approx., as GPT-2/NeoX) -> fc2
            return self.down_proj(F.gelu(self.up_proj(x), approximate="tanh"))
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.input_layernorm = _make_norm(c, c.hidden_size)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = _make_norm(c, c.hidden_size)
        self.mlp = MLP(c)

    def forward(self, h, cos, sin, positions, k_cache, v_cache, mask):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, positions, k_cache, v_cache, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class DecoderModel(nn.Module):
    """The HF `model.` submodule."""

    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size, dtype=c.dtype)
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.num_layers))
        self.norm = _make_norm(c, c.hidden_size)
        self.rotary_emb = RotaryEmbedding(c)


class DecoderLM(nn.Module):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        self.model = DecoderModel(config)
        # Tied: logits use embed_tokens.weight, so no lm_head entry in the state dict.
        self.lm_head = None if config.tie_embeddings else nn.Linear(
            config.hidden_size, config.vocab_size, bias=False, dtype=config.dtype
        )

    def forward(self, tokens, positions, k_caches, v_caches):
        """One decode step.

        tokens, positions: int64 [B]; positions[b] is the cache slot written for sequence b.
        k_caches, v_caches: per layer [B, num_kv_heads, T, head_dim], updated in place.
        Returns (logits [B, vocab], k_caches, v_caches) with the very cache objects passed in.
        """
        if len(k_caches) != len(self.model.layers) or len(v_caches) != len(self.model.layers):
            raise ValueError(f"expected {len(self.model.layers)} k and v caches")
        h = self.model.embed_tokens(tokens)[:, None, :]  # [B, 1, hidden]
        cos, sin = self.model.rotary_emb(h, positions)
        T = k_caches[0].shape[2]
        # Slot t is visible to sequence b iff t <= positions[b]; later slots may hold garbage.
        mask = (torch.arange(T, device=tokens.device)[None, :] <= positions[:, None])[:, None, None, :]
        for layer, k_cache, v_cache in zip(self.model.layers, k_caches, v_caches):
            h = layer(h, cos, sin, positions, k_cache, v_cache, mask)
        h = self.model.norm(h)[:, 0]
        logits = F.linear(h, self.model.embed_tokens.weight) if self.lm_head is None else self.lm_head(h)
        return logits, k_caches, v_caches


# ---------------------------------------------------------------- inputs


def make_kv_caches(config: DecoderConfig, batch, length, device=None, dtype=None):
    shape = (batch, config.num_kv_heads, length, config.head_dim)
    dtype = dtype or config.dtype
    k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_layers)]
    v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_layers)]
    return k, v


def example_inputs(config: DecoderConfig, batch=1, ctx=16, device=None):
    """(tokens, positions, k_caches, v_caches) with every sequence at position ctx-1.

    Note: torch.export specializes size-1 dims, so export with a dynamic batch needs batch >= 2.
    """
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, config.vocab_size, (batch,), generator=g).to(device)
    positions = torch.full((batch,), ctx - 1, dtype=torch.int64, device=device)
    shape = (batch, config.num_kv_heads, ctx, config.head_dim)
    k = [torch.randn(shape, generator=g).to(device=device, dtype=config.dtype) for _ in range(config.num_layers)]
    v = [torch.randn(shape, generator=g).to(device=device, dtype=config.dtype) for _ in range(config.num_layers)]
    return tokens, positions, k, v


def dynamic_shapes_for(config: DecoderConfig, num_layers=None):
    """dynamic_shapes for torch.export matching forward(tokens, positions, k_caches, v_caches)."""
    n = config.num_layers if num_layers is None else num_layers
    batch = torch.export.Dim("batch", min=1, max=64)
    kv_len = torch.export.Dim("kv_len", min=2, max=config.max_context)
    return {
        "tokens": {0: batch},
        "positions": {0: batch},
        "k_caches": [{0: batch, 2: kv_len} for _ in range(n)],
        "v_caches": [{0: batch, 2: kv_len} for _ in range(n)],
    }


# ---------------------------------------------------------------- building / loading


def config_from_hf(path, *, max_context=4096, dtype=torch.bfloat16) -> DecoderConfig:
    """DecoderConfig from a HF config.json (LlamaForCausalLM / Qwen3ForCausalLM)."""
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    with open(path) as f:
        c = json.load(f)
    if c.get("model_type") not in ("llama", "qwen3"):
        raise ValueError(f"{path}: unsupported model_type {c.get('model_type')!r} (llama, qwen3)")
    heads = c["num_attention_heads"]
    rope_theta = c.get("rope_theta") or (c.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    return DecoderConfig(
        vocab_size=c["vocab_size"],
        hidden_size=c["hidden_size"],
        num_layers=c["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=c.get("num_key_value_heads") or heads,
        head_dim=c.get("head_dim") or c["hidden_size"] // heads,
        intermediate_size=c["intermediate_size"],
        rope_theta=float(rope_theta),
        norm_eps=c.get("rms_norm_eps", 1e-6),
        tie_embeddings=c.get("tie_word_embeddings", False),
        qk_norm=c["model_type"] == "qwen3",
        attn_bias=c.get("attention_bias", False),
        mlp_bias=c.get("mlp_bias", False),
        max_context=min(max_context, c.get("max_position_embeddings", max_context)),
        dtype=dtype,
    )


def _resolve_config(name_or_config) -> DecoderConfig:
    if isinstance(name_or_config, DecoderConfig):
        return name_or_config
    if name_or_config in CONFIGS:
        return CONFIGS[name_or_config]
    if os.path.isfile(os.path.join(str(name_or_config), "config.json")):
        return config_from_hf(name_or_config)
    raise ValueError(f"unknown model config {name_or_config!r}; known: {', '.join(CONFIGS)}")


@torch.no_grad()
def _init_random(model: DecoderLM, seed):
    g = torch.Generator().manual_seed(seed)  # CPU generator: same weights on every device
    for name, p in model.named_parameters():
        t = torch.randn(p.shape, generator=g)
        if p.dim() == 1 and name.endswith("weight"):  # norm scales
            t = 1.0 + 0.1 * t
        else:  # linears, embeddings, biases
            t = 0.02 * t
        p.copy_(t)


_ST_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}


def _safetensors_header(path):
    # Format: u64 little-endian header length, JSON header, raw little-endian data.
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n


def _read_safetensor(path, info, base):
    dtype = _ST_DTYPES.get(info["dtype"])
    if dtype is None:
        raise ValueError(f"{path}: unsupported safetensors dtype {info['dtype']}")
    start, end = info["data_offsets"]
    if start == end:
        return torch.empty(info["shape"], dtype=dtype)
    with open(path, "rb") as f:
        f.seek(base + start)
        buf = bytearray(f.read(end - start))  # writable, so torch.frombuffer does not warn
    return torch.frombuffer(buf, dtype=dtype).reshape(info["shape"])


@torch.no_grad()
def _load_safetensors_dir(model: DecoderLM, path):
    files = sorted(glob.glob(os.path.join(path, "*.safetensors")))  # covers sharded checkpoints
    if not files:
        raise ValueError(f"no *.safetensors files in {path}")
    where = {}
    for file in files:
        header, base = _safetensors_header(file)
        for name, info in header.items():
            where[name] = (file, info, base)
    params = dict(model.named_parameters())
    # Check everything before reading any data; extra checkpoint tensors are ignored.
    for name, p in params.items():
        if name not in where:
            raise ValueError(f"checkpoint {path} is missing tensor {name!r}")
        shape = list(where[name][1]["shape"])
        if shape != list(p.shape):
            raise ValueError(f"checkpoint tensor {name!r} has shape {shape}, expected {list(p.shape)}")
    for name, p in params.items():
        p.copy_(_read_safetensor(*where[name]))


def build_model(name_or_config, *, weights="random", seed=0, device=None, dtype=None) -> DecoderLM:
    """weights: "random" (seeded), "meta" (no storage), or a directory of HF *.safetensors."""
    config = _resolve_config(name_or_config)
    if dtype is not None:
        config = dataclasses.replace(config, dtype=dtype)
    with torch.device("meta"):  # no wasted default init; storage is allocated below
        model = DecoderLM(config)
    model.requires_grad_(False).eval()
    if weights == "meta":
        return model
    device = torch.device(device or "cpu")
    model.to_empty(device=device)
    model.model.rotary_emb.inv_freq = rope_inv_freq(config, device)  # to_empty left it uninitialized
    if weights == "random":
        _init_random(model, seed)
    elif isinstance(weights, (str, os.PathLike)) and os.path.isdir(weights):
        _load_safetensors_dir(model, weights)
    else:
        raise ValueError(f"weights must be 'random', 'meta' or a checkpoint directory, got {weights!r}")
    return model
