"""The numpy tile bodies (etc.reference.tiles) against the equivalent PyTorch bf16 ops.

Each kind runs over all its tiles (uneven tile sizes included) and must match torch within bf16
rounding: the bodies round where torch rounds, so only f32 reassociation may differ.
"""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from etc import mlir_adapter as mlir
from etc.errors import EtcError
from etc.reference import elementwise
from etc.reference.numerics import round_bf16
from etc.reference.tiles import Operand, TileAccess, run_tile

BF = torch.bfloat16


def bf(*shape, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed + 1000 * len(shape) + sum(shape))
    return (torch.randn(*shape, generator=g) * scale).to(BF)


def np_(t: torch.Tensor) -> np.ndarray:
    return t.float().numpy().copy() if t.is_floating_point() else t.numpy().copy()


def etype(t: torch.Tensor) -> str:
    return {BF: "bf16", torch.float32: "f32", torch.int64: "i64"}[t.dtype]


def run_all(kind, params, grid, operands, body_of=None):
    """Run every tile of `grid` (row-major), committing after each; returns the operand arrays by role."""
    ops = {}
    for role, value in operands.items():
        if isinstance(value, torch.Tensor):
            ops[role] = Operand(role, np_(value), etype(value))
        else:  # (shape, etype) of an output, filled with NaN
            shape, et = value
            ops[role] = Operand(role, np.full(shape, np.nan, np.float32) if et != "i64" else
                                np.full(shape, -1, np.int64), et)
    for coords in itertools.product(*(range(n) for n in grid)):
        access = TileAccess(ops)
        run_tile(kind, params, coords, access, body_of)
        access.commit()
    return {role: op.array for role, op in ops.items()}


def assert_bf16_close(got, want: torch.Tensor, ulps=1.0, atol=1e-6):
    want = want.float().numpy()
    assert got.shape == want.shape
    assert not np.isnan(got).any(), "unwritten (NaN) elements"
    np.testing.assert_allclose(got, want, rtol=ulps * 2.0 ** -7, atol=atol)


def hf_rms(x, w, eps):
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(x.dtype)


def hf_rope(x, positions, inv_freq):
    """x [R, heads, D] bf16, the HF formula with bf16 cos/sin."""
    f = positions[:, None].float() * inv_freq[None, :]
    e = torch.cat([f, f], -1)[:, None, :]
    cos, sin = e.cos().to(x.dtype), e.sin().to(x.dtype)
    d = x.shape[-1]
    rot = torch.cat([-x[..., d // 2:], x[..., : d // 2]], -1)
    return x * cos + rot * sin


def inv_freq_of(d, theta=10000.0):
    return 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))


# ---------------------------------------------------------------- bf16 rounding


def test_round_bf16_matches_torch():
    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.randn(10000, generator=g) * 10.0 ** torch.randint(-40, 38, (10000,), generator=g),
                   torch.tensor([0.0, -0.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 3.4e38, -3.4e38, 1e-40, -1e-45,
                                 math.inf, -math.inf])])
    got = round_bf16(x.numpy())
    want = x.to(BF).float().numpy()
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    nan = round_bf16(np.array([np.nan, -np.nan], np.float32))
    assert np.isnan(nan).all() and np.signbit(nan[1])
    assert round_bf16(np.float32(1.5)).shape == ()


# ---------------------------------------------------------------- kinds


def test_embedding():
    w, tokens = bf(50, 24), torch.tensor([3, 0, 49, 3])
    out = run_all("embedding", {}, (4,), {"weight": w, "tokens": tokens, "out": ((4, 24), "bf16")})
    np.testing.assert_array_equal(out["out"], np_(F.embedding(tokens, w)))
    with pytest.raises(EtcError, match=r"tokens\[0\] = 50 is outside the vocabulary of 50"):
        run_all("embedding", {}, (1,), {"weight": w, "tokens": torch.tensor([50]), "out": ((1, 24), "bf16")})


@pytest.mark.parametrize("dim,cols", [(64, 64), (16, 64)])
def test_rms_norm(dim, cols):
    x, w = bf(3, cols, scale=3.0), bf(dim)
    out = run_all("rms_norm", {"eps": 1e-6, "dim": dim}, (3, cols // dim),
                  {"x": x, "weight": w, "y": ((3, cols), "bf16")})
    want = hf_rms(x.view(3, cols // dim, dim), w, 1e-6).reshape(3, cols)
    assert_bf16_close(out["y"], want)


@pytest.mark.parametrize("has_bias", [False, True])
def test_layer_norm(has_bias):
    x, w, b = bf(3, 48, scale=2.0) + 1.0, bf(48), bf(48)
    ops = {"x": x, "weight": w, "y": ((3, 48), "bf16")}
    if has_bias:
        ops["bias"] = b
    out = run_all("layer_norm", {"eps": 1e-5, "dim": 48, "has_bias": has_bias}, (3, 1), ops)
    want = F.layer_norm(x, (48,), w, b if has_bias else None, 1e-5)
    assert_bf16_close(out["y"], want)


def linear_params(n, k, tile_n, **kw):
    return {"in_features": k, "out_features": n, "tile_n": tile_n, "has_bias": False, "prologue": "none",
            "epilogue": [], **kw}


@pytest.mark.parametrize("has_bias", [False, True])
def test_linear_uneven_tiles(has_bias):
    r, k, n, tn = 3, 64, 100, 16
    x, w, b = bf(r, k), bf(n, k, scale=0.2), bf(n)
    ops = {"x": x, "weight": w, "y": ((r, n), "bf16")}
    if has_bias:
        ops["bias"] = b
    out = run_all("linear", linear_params(n, k, tn, has_bias=has_bias), (math.ceil(n / tn),), ops)
    assert_bf16_close(out["y"], F.linear(x, w, b if has_bias else None))


def test_linear_rms_norm_prologue_silu_mul_epilogue():
    r, k, n, tn = 2, 64, 100, 16
    x, nw = bf(r, k, scale=4.0), bf(k)
    wg, wu, bg, bu = bf(n, k, scale=0.2), bf(n, k, scale=0.2), bf(n), bf(n)
    params = linear_params(n, k, tn, has_bias=True, prologue="rms_norm", prologue_eps=1e-5, epilogue=["silu_mul"])
    out = run_all("linear", params, (7,), {"x": x, "weight": wg, "bias": bg, "norm_weight": nw, "up_weight": wu,
                                          "up_bias": bu, "y": ((r, n), "bf16")})
    xn = hf_rms(x, nw, 1e-5)
    assert_bf16_close(out["y"], F.silu(F.linear(xn, wg, bg)) * F.linear(xn, wu, bu), ulps=2)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_linear_layer_norm_prologue_gelu_residual_epilogue(approximate):
    r, k, n, tn = 3, 48, 100, 32
    x, nw, nb, w, b, res = bf(r, k) + 0.5, bf(k), bf(k), bf(n, k, scale=0.3), bf(n), bf(r, n)
    params = linear_params(n, k, tn, has_bias=True, prologue="layer_norm", prologue_eps=1e-5,
                           epilogue=["gelu", "residual_add"], gelu_approximate=approximate)
    out = run_all("linear", params, (4,), {"x": x, "weight": w, "bias": b, "norm_weight": nw, "norm_bias": nb,
                                          "residual": res, "y": ((r, n), "bf16")})
    xn = F.layer_norm(x, (k,), nw, nb, 1e-5)
    assert_bf16_close(out["y"], res + F.gelu(F.linear(xn, w, b), approximate=approximate), ulps=2)


@pytest.mark.parametrize("write_y", [True, False])
@pytest.mark.parametrize("d, heads, tn", [(16, 5, 32), (32, 2, 8)])
def test_linear_head_rms_norm_rope_kv_append_epilogue(write_y, d, heads, tn):
    """Whole heads (3 tiles, the last one holds one head) or split heads (4 tiles of 8 columns, rotate-half
    pairs, per head of 32: each tile's norm is over its whole head, as HF's per-head RMSNorm)."""
    r, k, slots = 3, 64, 12
    n = heads * d
    x, w, hw = bf(r, k), bf(n, k, scale=0.2), bf(d)
    positions, inv_freq = torch.tensor([0, 7, 11]), inv_freq_of(d)
    cache = bf(r, heads, slots, d)
    params = linear_params(n, k, tn, epilogue=["head_rms_norm", "rope", "kv_append"], head_dim=d, head_norm_eps=1e-6)
    ops = {"x": x, "weight": w, "head_norm_weight": hw, "positions": positions, "inv_freq": inv_freq,
           "cache": cache}
    if write_y:
        ops["y"] = ((r, n), "bf16")
    out = run_all("linear", params, (-(-n // tn),), ops)
    y = hf_rope(hf_rms(F.linear(x, w).view(r, heads, d), hw, 1e-6), positions, inv_freq)
    want_cache = cache.clone()
    want_cache[torch.arange(r), :, positions] = y
    assert_bf16_close(out["cache"], want_cache, ulps=2)
    if write_y:
        assert_bf16_close(out["y"], y.reshape(r, n), ulps=2)


def test_linear_split_head_norm_must_come_first():
    x, w = bf(1, 16), bf(16, 16)
    params = linear_params(16, 16, 4, epilogue=["rope", "head_rms_norm"], head_dim=8, head_norm_eps=1e-6)
    with pytest.raises(EtcError, match="a split head takes 'head_rms_norm' as its first epilogue step"):
        run_all("linear", params, (4,), {"x": x, "weight": w, "head_norm_weight": bf(8), "positions": torch.tensor([0]),
                                         "inv_freq": inv_freq_of(8), "y": ((1, 16), "bf16")})


def test_linear_rejects_partial_heads():
    x, w = bf(1, 16), bf(24, 16)
    params = linear_params(24, 16, 12, epilogue=["rope"], head_dim=8)
    with pytest.raises(EtcError, match="not a multiple of head_dim 8"):
        run_all("linear", params, (2,), {"x": x, "weight": w, "positions": torch.tensor([0]),
                                         "inv_freq": inv_freq_of(8), "y": ((1, 24), "bf16")})


def test_rope():
    r, heads, d = 3, 4, 16
    x, positions, inv_freq = bf(r, heads * d, scale=2.0), torch.tensor([0, 5, 1000]), inv_freq_of(d, 1e6)
    out = run_all("rope", {"head_dim": d}, (r, heads), {"x": x, "positions": positions, "inv_freq": inv_freq,
                                                         "y": ((r, heads * d), "bf16")})
    assert_bf16_close(out["y"], hf_rope(x.view(r, heads, d), positions, inv_freq).reshape(r, -1))


def test_kv_append():
    r, kvh, d, slots = 3, 2, 8, 10
    x, positions, cache = bf(r, kvh * d), torch.tensor([9, 0, 4]), bf(r, kvh, slots, d)
    out = run_all("kv_append", {"head_dim": d}, (r, kvh), {"x": x, "positions": positions, "cache": cache})
    want = cache.clone()
    want[torch.arange(r), :, positions] = x.view(r, kvh, d)
    np.testing.assert_array_equal(out["cache"], np_(want))
    with pytest.raises(EtcError, match=r"positions\[0\] = 10 is outside the KV cache of 10 slots"):
        run_all("kv_append", {"head_dim": d}, (1, 1), {"x": x, "positions": torch.tensor([10]), "cache": cache})


@pytest.mark.parametrize("kv_chunk", [1, 7, 16, 64])
def test_attention_partial_and_merge(kv_chunk):
    r, heads, kvh, d, slots = 3, 4, 2, 16, 40
    q, kc, vc = bf(r, heads * d, scale=2.0), bf(r, kvh, slots, d, scale=2.0), bf(r, kvh, slots, d)
    positions = torch.tensor([0, 17, 39])
    chunks = math.ceil(slots / kv_chunk)
    params = {"num_heads": heads, "num_kv_heads": kvh, "head_dim": d, "scale": 1 / math.sqrt(d), "kv_chunk": kv_chunk}
    part = run_all("attention_partial", params, (r, kvh, chunks),
                   {"q": q, "k_cache": kc, "v_cache": vc, "positions": positions,
                    "partial_out": ((r, heads, chunks, d), "f32"), "partial_stats": ((r, heads, chunks, 2), "f32")})
    ops = {"partial_out": torch.from_numpy(part["partial_out"]),
           "partial_stats": torch.from_numpy(part["partial_stats"]), "out": ((r, heads * d), "bf16")}
    out = run_all("attention_merge", params, (r, kvh), ops)
    mask = torch.arange(slots)[None, None, None, :] <= positions[:, None, None, None]
    want = F.scaled_dot_product_attention(q.view(r, heads, 1, d), kc, vc, attn_mask=mask, enable_gqa=True)
    assert_bf16_close(out["out"], want.reshape(r, heads * d), ulps=2, atol=1e-3)


def test_splits_merging_their_group_leave_the_partial_buffers_unstored():
    """etc.tiles.unstored_roles: a grid whose splits merge their group (out among its writes) leaves
    partial_out and partial_stats unstored wherever it merges (every batch; at one row only with
    merge_one_row), and stores them where an attention_merge grid merges."""
    from etc.tiles import unstored_roles
    base = {"num_heads": 4, "num_kv_heads": 2, "head_dim": 16, "kv_chunk": 8,
            "write_roles": ["partial_out", "partial_stats"]}
    merging = dict(base, write_roles=["partial_out", "partial_stats", "out"])
    one_row = dict(merging, merge_one_row=True)
    partials = ("partial_out", "partial_stats")
    assert unstored_roles("attention_partial", base, (1, 2, 4)) == ()
    assert unstored_roles("attention_partial", merging, (1, 2, 4)) == partials
    assert unstored_roles("attention_partial", merging, (3, 2, 4)) == partials
    assert unstored_roles("attention_partial", one_row, (1, 2, 4)) == partials
    assert unstored_roles("attention_partial", one_row, (3, 2, 4)) == ()
    assert unstored_roles("attention_merge", merging, (1, 2)) == ()


def test_silu_mul_gelu_add_uneven_tiles():
    r, c, tc = 3, 100, 16
    gate, up, b = bf(r, c, scale=3.0), bf(r, c), bf(r, c)
    grid = (r, math.ceil(c / tc))
    out = run_all("silu_mul", {"tile_c": tc}, grid, {"gate": gate, "up": up, "y": ((r, c), "bf16")})
    assert_bf16_close(out["y"], F.silu(gate) * up, ulps=0)
    for approximate in ("none", "tanh"):
        out = run_all("gelu", {"tile_c": tc, "approximate": approximate}, grid, {"x": gate, "y": ((r, c), "bf16")})
        assert_bf16_close(out["y"], F.gelu(gate, approximate=approximate))
    out = run_all("add", {"tile_c": tc, "alpha": 0.5}, grid, {"a": gate, "b": b, "y": ((r, c), "bf16")})
    assert_bf16_close(out["y"], torch.add(gate, b, alpha=0.5), ulps=0)


def test_argmax_first_maximum():
    x = bf(4, 300)
    x[1, 7] = x[1, 200] = 50.0  # a tie: the first index wins
    out = run_all("argmax", {}, (4,), {"x": x, "out": ((4,), "i64")})
    np.testing.assert_array_equal(out["out"], torch.argmax(x, -1).numpy())
    assert out["out"][1] == 7


# ---------------------------------------------------------------- elementwise bodies


BODIES = """
func.func private @scaled_silu(%x: bf16, %s: bf16, %b: f32) -> bf16 {
  %xf = arith.extf %x : bf16 to f32
  %neg = arith.negf %xf : f32
  %e = math.exp %neg : f32
  %one = arith.constant 1.0 : f32
  %den = arith.addf %e, %one : f32
  %silu = arith.divf %xf, %den : f32
  %r = arith.truncf %silu : f32 to bf16
  %p = arith.mulf %r, %s : bf16
  %pf = arith.extf %p : bf16 to f32
  %q = arith.addf %pf, %b : f32
  %out = arith.truncf %q : f32 to bf16
  return %out : bf16
}
func.func private @clamp_count(%x: f32, %i: i64) -> f32 {
  %zero = arith.constant 0.0 : f32
  %neg = arith.cmpf olt, %x, %zero : f32
  %relu = arith.select %neg, %zero, %x : f32
  %two = arith.constant 2 : i64
  %j = arith.muli %i, %two : i64
  %t = arith.trunci %j : i64 to i8
  %two8 = arith.constant 2 : i8
  %big = arith.cmpi sgt, %t, %two8 : i8
  %u = arith.extui %big : i1 to i32
  %uf = arith.uitofp %u : i32 to f32
  %jf = arith.sitofp %t : i8 to f32
  %s = arith.addf %relu, %uf : f32
  %r = arith.addf %s, %jf : f32
  %m = math.tanh %r : f32
  %sq = math.sqrt %m : f32
  %rs = math.rsqrt %sq : f32
  %erf = math.erf %rs : f32
  %mx = arith.maximumf %erf, %zero : f32
  return %mx : f32
}
func.func private @bad(%x: f32) -> f32 {
  %y = math.atan %x : f32
  return %y : f32
}
"""


@pytest.fixture(scope="module")
def body_module():
    return mlir.parse(BODIES, mlir.new_context(), "bodies.mlir")


def test_elementwise_body_with_broadcasts(body_module):
    r, c, tc = 3, 50, 16
    x, s, b = bf(r, c, scale=3.0), bf(r, 1), torch.randn(c)
    params = {"tile_c": tc, "body": "scaled_silu", "broadcast": ["full", "row", "col"]}
    out = run_all("elementwise", params, (r, 4), {"operand0": x, "operand1": s, "operand2": b,
                                                   "y": ((r, c), "bf16")}, elementwise.resolver(body_module))
    want = ((F.silu(x) * s).float() + b).to(BF)
    assert_bf16_close(out["y"], want, ulps=0)


def test_elementwise_integer_ops_and_scalar_broadcast(body_module):
    x, i = torch.randn(2, 20), torch.tensor([70])  # 140 wraps to -116 as i8
    params = {"tile_c": 8, "body": "@clamp_count", "broadcast": ["full", "scalar"]}
    out = run_all("elementwise", params, (2, 3), {"operand0": x, "operand1": i, "y": ((2, 20), "f32")},
                  elementwise.resolver(body_module))
    t = torch.tensor(140).to(torch.int8).float()
    want = torch.erf(torch.rsqrt(torch.sqrt(torch.tanh(torch.relu(x) + float(t > 2) + t)))).clamp_min(0)
    np.testing.assert_allclose(out["y"], want.numpy(), rtol=1e-5, equal_nan=True)


def test_elementwise_unknown_op_names_op_and_location(body_module):
    body_of = elementwise.resolver(body_module)
    line = BODIES.splitlines().index("  %y = math.atan %x : f32") + 1
    with pytest.raises(EtcError, match=rf"elementwise body @bad: unsupported op 'math.atan' at bodies.mlir:{line}:8"):
        body_of("bad")
    with pytest.raises(EtcError, match="@missing is not a func.func"):
        body_of("missing")
