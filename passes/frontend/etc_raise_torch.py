"""etc-raise-torch: raise the torch ops of a decoder into `etc.tile` ops of named tile kinds.

Matches, by a pattern set keyed on each cluster's root op (see etc.tiles for the kinds):
  embedding        aten.embedding(weight, tokens)
  rms_norm         HF RMSNorm: weight * convert(h * rsqrt(mean(h^2, -1, keepdim) + eps)), h = f32(x);
                   aten.rms_norm
  layer_norm       aten.layer_norm (with or without weight/bias)
  linear           aten.linear (with or without bias)
  rope             x * cos + cat(-x2, x1) * sin, where cos/sin = cos/sin(cat(f, f)) of
                   f = f32(positions)[:, None] * inv_freq[None, :]
  kv_append        aten.index_put(cache, [arange(B), None, positions], k) written back in place
  attention        aten.scaled_dot_product_attention(q, k_cache, v_cache, mask) with the decode mask
                   arange(T)[None, :] <= positions[:, None], one query per sequence
  silu_mul         silu(gate) * up
  gelu             aten.gelu
  add              a + b of one shape (the residual add)
  argmax           aten.argmax over the last dim
Produces: one `etc.tile` per cluster (kind, params with operand/result roles), at the root's place and
location; the cluster's now-dead ops are erased.
Guarantees: each tile computes what its cluster computed (the numerics of etc.tiles); ops that match
no pattern are left for etc-raise-elementwise. A near miss that would change results (an attention
mask of another form, dropout) is an error here, not left to later passes.

Before:
  %1 = "torch.aten.linear"(%x, %w, %none) : (...) -> !torch.vtensor<[?,1,64],bf16>
After:
  %1 = "etc.tile"(%x, %w) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"],
        has_bias = false, in_features = 64 : i64, out_features = 64 : i64}} : (...) -> !torch.vtensor<[?,1,64],bf16>
"""
from __future__ import annotations

import math

from mlir import ir

from etc.frontend import torch_ops as T
from etc.passes.base import Pass


class _Reject(Exception):
    """The cluster matched a root but cannot be raised faithfully: an error at the root."""


def _only_ops(block: ir.Block):
    return [op.operation for op in block.operations]


def _is_f32_of(value: ir.Value, x: ir.Value | None = None) -> ir.Value | None:
    """If value = convert_element_type(x, f32) (or x itself is f32), return x."""
    op = T.producer(value, "torch.prims.convert_element_type")
    if op is not None:
        return op.operands[0]
    t = T.tensor_type(value)
    return value if t is not None and t.dtype == "f32" else None


def _last_dim(value: ir.Value) -> int | None:
    t = T.tensor_type(value)
    return t.dims[-1] if t and t.dims else None


def _dims_arg(value: ir.Value, rank: int) -> list[int] | None:
    dims = T.constant(value, None)
    if not isinstance(dims, list):
        return None
    return [d % rank for d in dims]


# ---------------------------------------------------------------- patterns


def raise_embedding(op):
    weight, tokens = op.operands[0], op.operands[1]
    if T.tensor_type(tokens).rank != 1:
        raise _Reject("embedding indices must be 1-D (one token per sequence)")
    return "embedding", [("weight", weight), ("tokens", tokens)], {}


def raise_rms_norm_aten(op):
    x, shape, weight, eps = op.operands[:4]
    if weight is None or T.constant(weight, 0) is None:
        raise _Reject("rms_norm without a weight is not supported")
    dim = _last_dim(x)
    if T.constant(shape, None) != [dim]:
        raise _Reject("rms_norm must normalize over the last dim only")
    eps_value = T.constant(eps, None)
    return "rms_norm", [("x", x), ("weight", weight)], {
        "eps": float(eps_value if eps_value is not None else 1e-6), "dim": dim}


def raise_rms_norm_hf(op):
    """weight * convert(h * rsqrt(mean(h^2) + eps)) (either operand order of both muls)."""
    a, b = op.operands[0], op.operands[1]
    for weight, normed in ((a, b), (b, a)):
        wt = T.tensor_type(weight)
        if wt is None or wt.rank != 1:
            continue
        inner = normed
        conv = T.producer(inner, "torch.prims.convert_element_type")
        if conv is not None:
            inner = conv.operands[0]
        mul = T.producer(inner, "torch.aten.mul.Tensor")
        if mul is None:
            continue
        for h, r in ((mul.operands[0], mul.operands[1]), (mul.operands[1], mul.operands[0])):
            rsqrt = T.producer(r, "torch.aten.rsqrt")
            add = rsqrt and T.producer(rsqrt.operands[0], "torch.aten.add.Scalar")
            mean = add and T.producer(add.operands[0], "torch.aten.mean.dim")
            pow_ = mean and T.producer(mean.operands[0], "torch.aten.pow.Tensor_Scalar")
            if not pow_ or pow_.operands[0] != h or T.constant(pow_.operands[1], None) != 2:
                continue
            x = _is_f32_of(h)
            rank = T.tensor_type(h).rank
            if x is None or _dims_arg(mean.operands[1], rank) != [rank - 1] or not T.constant(mean.operands[2], False):
                continue
            if T.constant(add.operands[2], None) != 1 or _last_dim(h) != wt.dims[0]:
                continue
            return "rms_norm", [("x", x), ("weight", weight)], {
                "eps": float(T.constant(add.operands[1])), "dim": wt.dims[0]}
    return None


def raise_layer_norm(op):
    x, shape, weight, bias, eps = op.operands[:5]
    dim = _last_dim(x)
    if T.constant(shape, None) != [dim]:
        raise _Reject("layer_norm must normalize over the last dim only")
    if T.is_constant(weight):
        raise _Reject("layer_norm without a weight is not supported")
    operands = [("x", x), ("weight", weight)] + ([] if T.is_constant(bias) else [("bias", bias)])
    return "layer_norm", operands, {"eps": float(T.constant(eps)), "dim": dim, "has_bias": len(operands) == 3}


def raise_linear(op):
    x, weight, bias = op.operands[0], op.operands[1], op.operands[2]
    wt = T.tensor_type(weight)
    if wt is None or wt.rank != 2:
        raise _Reject("linear weight must be 2-D")
    has_bias = not T.is_constant(bias)
    operands = [("x", x), ("weight", weight)] + ([("bias", bias)] if has_bias else [])
    return "linear", operands, {"in_features": wt.dims[1], "out_features": wt.dims[0], "has_bias": has_bias}


def _rope_table(value: ir.Value, fn: str):
    """cos/sin table: [unsqueeze*] convert(fn(E)) with E = [unsqueeze*] cat([f, f], -1),
    f = mul(unsqueeze(convert(positions)), unsqueeze(inv_freq)). Returns (positions, inv_freq) or None."""
    v = T.strip_views(value)
    conv = T.producer(v, "torch.prims.convert_element_type")
    if conv is not None:
        v = conv.operands[0]
    trig = T.producer(v, fn)
    cat = trig and T.producer(T.strip_views(trig.operands[0]), "torch.aten.cat")
    if not cat:
        return None
    parts = T.producer(cat.operands[0], "torch.prim.ListConstruct")
    if not parts or len(parts.operands) != 2 or parts.operands[0] != parts.operands[1]:
        return None
    mul = T.producer(parts.operands[0], "torch.aten.mul.Tensor")
    if not mul:
        return None
    for p, f in ((mul.operands[0], mul.operands[1]), (mul.operands[1], mul.operands[0])):
        p = T.strip_views(p)
        pc = T.producer(p, "torch.prims.convert_element_type")
        positions = T.strip_views(pc.operands[0]) if pc else None
        inv_freq = T.strip_views(f)
        pt, ft = positions is not None and T.tensor_type(positions), T.tensor_type(inv_freq)
        if pt and pt.rank == 1 and pt.dtype in ("si64", "si32") and ft and ft.rank == 1:
            return positions, inv_freq
    return None


def raise_rope(op):
    """x * cos + rotate_half(x) * sin."""
    if T.constant(op.operands[2], None) != 1:
        return None
    for a, b in ((op.operands[0], op.operands[1]), (op.operands[1], op.operands[0])):
        ma, mb = T.producer(a, "torch.aten.mul.Tensor"), T.producer(b, "torch.aten.mul.Tensor")
        if not ma or not mb:
            continue
        for x, cos in ((ma.operands[0], ma.operands[1]), (ma.operands[1], ma.operands[0])):
            for rot, sin in ((mb.operands[0], mb.operands[1]), (mb.operands[1], mb.operands[0])):
                if _is_rotate_half(rot, x):
                    tc, ts = _rope_table(cos, "torch.aten.cos"), _rope_table(sin, "torch.aten.sin")
                    if tc and ts and tc == ts:
                        d = _last_dim(x)
                        if _last_dim(T.strip_views(tc[1])) * 2 != d:
                            raise _Reject(f"rope frequencies do not match head_dim {d}")
                        return "rope", [("x", x), ("positions", tc[0]), ("inv_freq", tc[1])], {"head_dim": d}
    return None


def _is_rotate_half(value: ir.Value, x: ir.Value) -> bool:
    """value = cat([-x[..., d/2:], x[..., :d/2]], -1)."""
    cat = T.producer(value, "torch.aten.cat")
    parts = cat and T.producer(cat.operands[0], "torch.prim.ListConstruct")
    if not parts or len(parts.operands) != 2:
        return False
    rank, d = T.tensor_type(x).rank, _last_dim(x)
    if d is None or T.constant(cat.operands[1], None) % rank != rank - 1:
        return False
    neg = T.producer(parts.operands[0], "torch.aten.neg")
    hi = neg and T.producer(neg.operands[0], "torch.aten.slice.Tensor")
    lo = T.producer(parts.operands[1], "torch.aten.slice.Tensor")

    def is_slice(s, start, end):
        if not s or s.operands[0] != x:
            return False
        dim, s0, e0, step = (T.constant(v, None) for v in s.operands[1:5])
        return dim is not None and dim % rank == rank - 1 and step == 1 and s0 == start and \
            (e0 == end or (end == d and e0 is not None and e0 >= d))

    return is_slice(hi, d // 2, d) and is_slice(lo, 0, d // 2)


def raise_kv_append(op):
    cache, indices, values, accumulate = op.operands[:4]
    if T.constant(accumulate, None):
        raise _Reject("index_put with accumulate=True is not a KV append")
    ct = T.tensor_type(cache)
    idx = T.producer(indices, "torch.prim.ListConstruct")
    if ct is None or ct.rank != 4 or not idx or len(idx.operands) != 3:
        return None
    batch, heads, positions = idx.operands
    arange = T.producer(batch, "torch.aten.arange.start_step")
    if not arange or T.constant(arange.operands[0], None) != 0 or T.constant(arange.operands[2], None) != 1:
        return None
    if not T.is_constant(heads) or T.constant(heads) is not None:
        return None
    pt = T.tensor_type(positions)
    if pt is None or pt.rank != 1:
        return None
    source = T.producer(cache, "torch.copy.to_vtensor")
    if source is None or not T.tensor_type(source.operands[0]).mutable:
        raise _Reject("a KV append must write a cache passed in by the caller (a mutable input)")
    x = values
    sel = T.producer(values, "torch.aten.select.int")
    if sel is not None and T.constant(sel.operands[2], None) == 0:
        x = sel.operands[0]
    return "kv_append", [("x", x), ("positions", positions), ("cache", cache)], {"head_dim": ct.dims[3]}, \
        [("cache", op.results[0].type)]


def raise_attention(op):
    q, k, v, mask, dropout, is_causal, scale = op.operands[:7]
    gqa = T.constant(op.operands[7], False) if len(op.operands) > 7 else False
    qt, kt = T.tensor_type(q), T.tensor_type(k)
    if qt.rank != 4 or kt.rank != 4 or qt.dims[2] != 1:
        raise _Reject("attention must be decode attention: q [batch, heads, 1, head_dim], caches 4-D")
    if T.constant(dropout, 0.0) or T.constant(is_causal, False):
        raise _Reject("attention with dropout or is_causal is not supported")
    positions = _decode_mask_positions(mask)
    if positions is None:
        raise _Reject("attention needs the decode mask arange(kv_len) <= positions[:, None]")
    heads, kv_heads, d = qt.dims[1], kt.dims[1], qt.dims[3]
    if heads % kv_heads or (heads != kv_heads and not gqa):
        raise _Reject(f"{heads} query heads do not group onto {kv_heads} KV heads")
    s = T.constant(scale, None)
    return "attention", [("q", q), ("k_cache", k), ("v_cache", v), ("positions", positions)], {
        "num_heads": heads, "num_kv_heads": kv_heads, "head_dim": d,
        "scale": float(s if s is not None else 1.0 / math.sqrt(d))}


def _decode_mask_positions(mask: ir.Value) -> ir.Value | None:
    le = T.producer(T.strip_views(mask), "torch.aten.le.Tensor")
    if not le:
        return None
    slots, positions = T.strip_views(le.operands[0]), T.strip_views(le.operands[1])
    arange = T.producer(slots, "torch.aten.arange.start_step", "torch.aten.arange")
    if not arange or T.tensor_type(positions).rank != 1:
        return None
    if arange.name == "torch.aten.arange.start_step" and (T.constant(arange.operands[0], None) != 0 or
                                                          T.constant(arange.operands[2], None) != 1):
        return None
    return positions


def raise_silu_mul(op):
    a, b = op.operands[0], op.operands[1]
    for gate, up in ((a, b), (b, a)):
        silu = T.producer(gate, "torch.aten.silu")
        if silu and T.tensor_type(silu.operands[0]) == T.tensor_type(up) == T.tensor_type(op.results[0]):
            return "silu_mul", [("gate", silu.operands[0]), ("up", up)], {}
    return None


def raise_gelu(op):
    approximate = T.constant(op.operands[1], "none") if len(op.operands) > 1 else "none"
    return "gelu", [("x", op.operands[0])], {"approximate": approximate}


def raise_add(op):
    a, b, alpha = op.operands[:3]
    ta, tb, tr = T.tensor_type(a), T.tensor_type(b), T.tensor_type(op.results[0])
    if ta is None or not (ta == tb == tr) or ta.dtype not in ("bf16", "f16", "f32"):
        return None
    return "add", [("a", a), ("b", b)], {"alpha": float(T.constant(alpha, 1))}


def raise_argmax(op):
    x, dim, keepdim = op.operands[:3]
    xt = T.tensor_type(x)
    d = T.constant(dim, None)
    if d is None or d % xt.rank != xt.rank - 1 or T.constant(keepdim, False):
        raise _Reject("argmax must reduce the last dim without keepdim")
    return "argmax", [("x", x)], {}


# Root op name -> patterns tried in order. A pattern returns (kind, operands, params[, results]) or None.
PATTERNS: dict[str, tuple] = {
    "torch.aten.embedding": (raise_embedding,),
    "torch.aten.mul.Tensor": (raise_rms_norm_hf, raise_silu_mul),
    "torch.aten.rms_norm": (raise_rms_norm_aten,),
    "torch.aten.layer_norm": (raise_layer_norm,),
    "torch.aten.linear": (raise_linear,),
    "torch.aten.add.Tensor": (raise_rope, raise_add),
    "torch.aten.index_put": (raise_kv_append,),
    "torch.aten.scaled_dot_product_attention": (raise_attention,),
    "torch.aten.gelu": (raise_gelu,),
    "torch.aten.argmax": (raise_argmax,),
}


class RaiseTorch(Pass):
    NAME = "etc-raise-torch"
    SUMMARY = "Raise torch ops of decoder layers into etc.tile ops of named tile kinds."

    def run(self, module_op) -> None:
        for func in _funcs(module_op):
            block = func.regions[0].blocks[0]
            for op in _only_ops(block):
                for pattern in PATTERNS.get(op.name, ()):
                    try:
                        found = pattern(op)
                    except _Reject as e:
                        self.error(op, f"cannot raise '{op.name}': {e}")
                        break
                    if found is None:
                        continue
                    kind, operands, params, *results = found
                    results = results[0] if results else [("y" if kind not in ("embedding", "argmax") else "out",
                                                           op.results[0].type)]
                    tile = T.create_tile(kind, operands, results, params, op.location, op)
                    T.replace_op(op, list(tile.results))
                    break
            T.erase_dead(block)


def _funcs(module_op) -> list[ir.Operation]:
    return [op.operation for op in module_op.regions[0].blocks[0].operations if op.operation.name == "func.func"]
