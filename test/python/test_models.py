"""Tests for the reference decoder (etc.models)."""

import json
import math
import time

import pytest
import torch
import torch.nn.functional as F

from etc.models import (
    CONFIGS,
    DecoderConfig,
    build_model,
    config_from_hf,
    dynamic_shapes_for,
    example_inputs,
    make_kv_caches,
)

TINY = ["tiny-llama", "tiny-qwen3", "tiny-gpt"]


# ------------------------------------------------------------ independent reference


def reference_logits(model, tokens):
    """Full-sequence causal forward in float32 without any cache: tokens [B, S] -> [B, S, vocab]."""
    c = model.config
    sd = {k: v.float() for k, v in model.state_dict().items()}
    B, S = tokens.shape

    def norm(x, name, eps=c.norm_eps, rms=(c.norm == "rms")):
        if rms:
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * sd[name + ".weight"]
        return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd.get(name + ".bias"), eps)

    def lin(x, name):
        return F.linear(x, sd[name + ".weight"], sd.get(name + ".bias"))

    half = c.head_dim // 2
    freq = c.rope_theta ** (-2.0 * torch.arange(half, dtype=torch.float64) / c.head_dim)
    ang = torch.arange(S, dtype=torch.float64)[:, None] * freq[None]
    cos, sin = ang.cos().float(), ang.sin().float()

    def rope(x):  # [B, H, S, D]
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    causal = torch.ones(S, S, dtype=torch.bool).tril()
    h = sd["model.embed_tokens.weight"][tokens]
    for i in range(c.num_layers):
        p = f"model.layers.{i}."
        x = norm(h, p + "input_layernorm")
        q = lin(x, p + "self_attn.q_proj").view(B, S, c.num_heads, c.head_dim)
        k = lin(x, p + "self_attn.k_proj").view(B, S, c.num_kv_heads, c.head_dim)
        v = lin(x, p + "self_attn.v_proj").view(B, S, c.num_kv_heads, c.head_dim)
        if c.qk_norm:
            q = norm(q, p + "self_attn.q_norm", rms=True)
            k = norm(k, p + "self_attn.k_norm", rms=True)
        q, k, v = rope(q.transpose(1, 2)), rope(k.transpose(1, 2)), v.transpose(1, 2)
        rep = c.num_heads // c.num_kv_heads
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(c.head_dim)
        attn = scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v
        h = h + lin(attn.transpose(1, 2).reshape(B, S, -1), p + "self_attn.o_proj")
        x = norm(h, p + "post_attention_layernorm")
        if c.mlp == "silu":
            x = F.silu(lin(x, p + "mlp.gate_proj")) * lin(x, p + "mlp.up_proj")
        else:
            x = F.gelu(lin(x, p + "mlp.up_proj"), approximate="tanh")
        h = h + lin(x, p + "mlp.down_proj")
    h = norm(h, "model.norm")
    head = sd["model.embed_tokens.weight"] if c.tie_embeddings else sd["lm_head.weight"]
    return h @ head.T


def decode_sequence(model, tokens, T, garbage=False):
    """Token-by-token prefill of tokens [B, S] into caches of length T; returns last logits and caches."""
    B, S = tokens.shape
    k, v = make_kv_caches(model.config, B, T)
    if garbage:  # slots not yet written must be masked out
        for t in k + v:
            t.normal_(0, 100)
    for s in range(S):
        logits, _, _ = model(tokens[:, s], torch.full((B,), s), k, v)
    return logits, k, v


# ------------------------------------------------------------ tests


@pytest.mark.parametrize("name", TINY)
def test_random_build_deterministic(name):
    a = build_model(name, seed=0).state_dict()
    b = build_model(name, seed=0).state_dict()
    c = build_model(name, seed=1).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert all(t.dtype == CONFIGS[name].dtype for t in a.values())
    assert ("lm_head.weight" in a) == (not CONFIGS[name].tie_embeddings)


def test_hf_parameter_names():
    names = set(build_model("tiny-qwen3", weights="meta").state_dict())
    for n in ["model.embed_tokens.weight", "model.norm.weight", "model.layers.1.input_layernorm.weight",
              "model.layers.0.self_attn.q_norm.weight", "model.layers.0.self_attn.k_norm.weight",
              "model.layers.0.post_attention_layernorm.weight", "model.layers.0.mlp.gate_proj.weight"]:
        assert n in names
    assert "lm_head.weight" not in names
    gpt = set(build_model("tiny-gpt", weights="meta").state_dict())
    assert "model.layers.0.mlp.up_proj.bias" in gpt and "model.layers.0.input_layernorm.bias" in gpt
    assert "model.layers.0.self_attn.q_proj.bias" in gpt
    assert not any("gate_proj" in n for n in gpt)


def test_unknown_config():
    with pytest.raises(ValueError, match="unknown model config"):
        build_model("no-such-model")


@pytest.mark.parametrize("name", TINY)
def test_cache_write_in_place(name):
    model = build_model(name, dtype=torch.float32)
    c = model.config
    tokens, positions, k, v = example_inputs(c, batch=3, ctx=12)
    positions = torch.tensor([0, 7, 11])
    k0, v0 = [t.clone() for t in k], [t.clone() for t in v]
    logits, k_out, v_out = model(tokens, positions, k, v)
    assert logits.shape == (3, c.vocab_size) and logits.dtype == torch.float32
    assert k_out is k and v_out is v and all(a is b for a, b in zip(k_out + v_out, k + v))
    written = torch.zeros(3, 1, 12, 1, dtype=torch.bool)
    written[torch.arange(3), 0, positions] = True
    for new, old in zip(k + v, k0 + v0):
        assert torch.equal(torch.where(written, old, new), old)  # nothing else changed
        assert not torch.equal(new[torch.arange(3), :, positions], old[torch.arange(3), :, positions])

    # Layer 0's k value is computable directly: rope(k_proj(norm(embed(token)))).
    sd = model.state_dict()
    with torch.no_grad():
        x = model.model.layers[0].input_layernorm(model.model.embed_tokens(tokens))
        kk = F.linear(x, sd["model.layers.0.self_attn.k_proj.weight"], sd.get("model.layers.0.self_attn.k_proj.bias"))
        kk = kk.view(3, c.num_kv_heads, c.head_dim)
        if c.qk_norm:
            kk = model.model.layers[0].self_attn.k_norm(kk)
        half = c.head_dim // 2
        ang = positions[:, None].double() * c.rope_theta ** (-2.0 * torch.arange(half, dtype=torch.float64) / c.head_dim)
        cos, sin = ang.cos().float()[:, None], ang.sin().float()[:, None]
        x1, x2 = kk[..., :half], kk[..., half:]
        kk = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)
    torch.testing.assert_close(k[0][torch.arange(3), :, positions], kk, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", TINY)
def test_decode_matches_full_causal_forward(name):
    model = build_model(name, seed=3, dtype=torch.float32)
    tokens = torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(1))
    logits, _, _ = decode_sequence(model, tokens, T=16, garbage=True)
    ref = reference_logits(model, tokens)[:, -1]
    torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen3"])
def test_per_sequence_positions(name):
    model = build_model(name, seed=5, dtype=torch.float32)
    g = torch.Generator().manual_seed(2)
    lengths, T = [3, 10], 16
    seqs = [torch.randint(0, 256, (1, n), generator=g) for n in lengths]
    # Prefill each sequence alone (all but its last token) into a garbage-filled cache.
    caches = [decode_sequence(model, s[:, :-1], T, garbage=True)[1:] for s in seqs]
    k = [torch.cat([caches[0][0][i], caches[1][0][i]]) for i in range(model.config.num_layers)]
    v = [torch.cat([caches[0][1][i], caches[1][1][i]]) for i in range(model.config.num_layers)]
    tokens = torch.tensor([s[0, -1].item() for s in seqs])
    positions = torch.tensor([n - 1 for n in lengths])
    logits, _, _ = model(tokens, positions, k, v)
    for b, s in enumerate(seqs):
        torch.testing.assert_close(logits[b], reference_logits(model, s)[0, -1], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------ checkpoints


def write_safetensors(path, tensors):
    """Minimal safetensors writer (the `safetensors` package is optional)."""
    names = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        data = t.detach().contiguous().view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def write_sharded(dir_, sd, shards=2):
    names = sorted(sd)
    weight_map = {}
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = names[i::shards]
        write_safetensors(dir_ / file, {n: sd[n] for n in part})
        weight_map.update({n: file for n in part})
    (dir_ / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def test_safetensors_round_trip(tmp_path):
    src = build_model("tiny-llama", seed=7)
    write_sharded(tmp_path, src.state_dict())
    loaded = build_model("tiny-llama", weights=str(tmp_path), seed=0)
    for n, t in src.state_dict().items():
        assert torch.equal(t, loaded.state_dict()[n]), n
    inputs = example_inputs(src.config, batch=2)
    a = src(*[x if torch.is_tensor(x) else [t.clone() for t in x] for x in inputs])[0]
    b = loaded(*inputs)[0]
    assert torch.equal(a, b)
    # A float32 checkpoint is converted to the model dtype (bf16 -> f32 -> bf16 is exact).
    f32 = tmp_path / "f32"
    f32.mkdir()
    write_safetensors(f32 / "model.safetensors", {n: t.float() for n, t in src.state_dict().items()})
    loaded = build_model("tiny-llama", weights=str(f32))
    assert all(torch.equal(t, loaded.state_dict()[n]) for n, t in src.state_dict().items())


def test_safetensors_errors(tmp_path):
    sd = build_model("tiny-llama").state_dict()
    missing = {n: t for n, t in sd.items() if n != "model.layers.1.mlp.up_proj.weight"}
    write_safetensors(tmp_path / "model.safetensors", missing)
    with pytest.raises(ValueError, match="missing tensor 'model.layers.1.mlp.up_proj.weight'"):
        build_model("tiny-llama", weights=str(tmp_path))
    bad = dict(sd, **{"model.norm.weight": torch.ones(3, dtype=torch.bfloat16)})
    write_safetensors(tmp_path / "model.safetensors", bad)
    with pytest.raises(ValueError, match="model.norm.weight.*shape"):
        build_model("tiny-llama", weights=str(tmp_path))


def test_config_from_hf(tmp_path):
    hf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
          "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
          "intermediate_size": 8192, "vocab_size": 128256, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
          "tie_word_embeddings": True, "max_position_embeddings": 131072, "attention_bias": False}
    (tmp_path / "config.json").write_text(json.dumps(hf))
    assert config_from_hf(str(tmp_path)) == CONFIGS["llama-3.2-1b"]
    hf.update(model_type="qwen3", hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, head_dim=128,
              intermediate_size=3072, vocab_size=151936, rope_theta=1e6, rms_norm_eps=1e-6, max_position_embeddings=40960)
    (tmp_path / "config.json").write_text(json.dumps(hf))
    assert config_from_hf(str(tmp_path / "config.json")) == CONFIGS["qwen3-0.6b"]


# ------------------------------------------------------------ meta / export


def test_meta_build_llama_1b():
    t = time.time()
    model = build_model("llama-3.2-1b", weights="meta")
    assert time.time() - t < 5
    assert all(p.is_meta for p in model.parameters())
    n = sum(p.numel() for p in model.parameters())
    assert n == 1_235_814_400  # 1.24e9, tied embeddings counted once
    # Forward still runs on meta tensors (shape propagation only).
    c = model.config
    tokens = torch.zeros(2, dtype=torch.int64, device="meta")
    k, v = make_kv_caches(c, 2, 32, device="meta")
    logits, _, _ = model(tokens, tokens, k, v)
    assert logits.shape == (2, c.vocab_size) and logits.dtype == torch.bfloat16


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen3"])
def test_export_dynamic(name):
    model = build_model(name)
    c = model.config
    ep = torch.export.export(model, example_inputs(c, batch=2, ctx=16), dynamic_shapes=dynamic_shapes_for(c))
    assert {str(s) for s in ep.range_constraints.values()} >= {"VR[1, 64]", f"VR[2, {c.max_context}]"}
    run = ep.module()
    for batch, ctx in [(3, 24), (1, 5), (2, c.max_context)]:
        tokens, _, k, v = example_inputs(c, batch=batch, ctx=ctx)
        positions = torch.randint(0, ctx, (batch,), generator=torch.Generator().manual_seed(batch))
        k2, v2 = [t.clone() for t in k], [t.clone() for t in v]
        want = model(tokens, positions, k, v)[0]
        got = run(tokens, positions, k2, v2)[0]
        torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2)
        for a, b in zip(k + v, k2 + v2):  # the exported program mutates the caches too
            assert torch.equal(a, b)
