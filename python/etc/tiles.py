"""The tile kinds: what each task grid's tiles read, write and compute.

This is the contract between the front end (which raises torch ops to tile kinds and derives event
tensors from the regions below), the reference executor (numpy bodies) and code generation.

Buffers. Every task grid operand is a named `event_tensor.buffer`, row-major. Activations are 2-D
`[rows, cols]` with rows = the batch (tokens) dim; token ids and positions are 1-D `[rows]` i64; KV
caches are `[rows, kv_heads, kv_len, head_dim]`; attention partials are 4-D f32 (below).
A grid's `params` names its operands: `read_roles[i]` is the role of reads[i], `write_roles[j]` of
writes[j]. Runtime sizes (rows, kv_len) come from the bound buffers' shapes, never from params.

Numerics follow PyTorch's bf16 semantics: each torch op computes in f32 and rounds its result to its
dtype once. A fused tile rounds wherever the unfused ops would have rounded, so fusion never changes
results beyond f32 reassociation.

Kinds (grid; reads -> writes; params):
  embedding       (R)             weight[V,H], tokens[R] -> out[R,H]
                  out[r] = weight[tokens[r]].
  rms_norm        (R, C/dim)      x[R,C], weight[dim] -> y[R,C]                      eps, dim
                  per segment s = x[r, g*dim:(g+1)*dim]: h = f32(s); h = h * rsqrt(mean(h*h) + eps);
                  y = round(weight * round(h)).  (HF RMSNorm; with C > dim it is a per-head q/k norm.)
  layer_norm      (R, C/dim)      x, weight[dim], (bias[dim]) -> y                  eps, dim, has_bias
                  y = round((x - mean) / sqrt(var + eps) * weight + bias), in f32.
  linear          (ceildiv(N, tile_n))                                              in_features K, out_features N,
                  x[R,K], weight[N,K], (bias[N]), ... -> y[R,N] and/or cache        tile_n, has_bias, prologue,
                  prologue: "none" | "rms_norm" | "layer_norm" (reads norm_weight,   prologue_eps, epilogue
                  norm_bias; x is normalized per row as the unfused norm would)       (array of steps), head_dim,
                  | "attention_merge": no x; x = the attention_merge of partial_out, x_etype, num_heads
                  partial_stats (below) over all heads, rounded to x_etype.
                  | "attention_merge_one_row": x and the partials; one row merges the partials as
                  "attention_merge", more rows read x (merged by an attention_merge grid).
                  | "x_one_row": x and x_one_row[R,K]; one row reads x_one_row (merged by the attention's
                  last split), more rows read x (merged by an attention_merge grid).
                  acc = x @ weight[cols].T (+ bias) in f32, round -> y. Then each epilogue step in order:
                    "silu_mul":     also up = round(x @ up_weight[cols].T (+ up_bias)); y = round(round(silu(y)) * up)
                    "gelu":         y = round(gelu(y, approximate=params.gelu_approximate))
                    "residual_add": y = round(residual[:, cols] + y)
                    "head_rms_norm":per head segment of head_dim: rms_norm with head_norm_weight, head_norm_eps
                    "rope":         per head segment: rope as below (reads positions, inv_freq)
                    "kv_append":    cache[r, head, positions[r], :] = y[r, head segment] (writes cache)
                  Steps that work per head need tile_n % head_dim == 0, except a *split head*: when the
                  per-head steps are only head_rms_norm (first, if at all), rope and kv_append, tile_n may
                  divide head_dim D (tile_n % 16 == 0); then P = D / tile_n consecutive tiles share a head,
                  tile j taking its rotate-half pairs:
                  cols = h*D + q*tile_n/2 + [0, tile_n/2) and h*D + D/2 + q*tile_n/2 + [0, tile_n/2),
                  h = j // P, q = j % P (rope pairs them with inv_freq[q*tile_n/2 :][: tile_n/2]); a
                  head_rms_norm is over the whole head's values (on the GPU the last of the P tiles to
                  finish its dot products normalizes the head: etc.codegen.tiles_linear).
                  When y is only stored into the cache, write_roles has no "y".
  rope            (R, C/head_dim) x[R,C], positions[R], inv_freq[head_dim/2] -> y[R,C]      head_dim
                  f = f32(positions[r]) * inv_freq; e = cat(f, f); cos = round(cos(e)), sin = round(sin(e));
                  y = round(round(x * cos) + round(rotate_half(x) * sin)), rotate_half(x) = cat(-x2, x1).
  kv_append       (R, C/head_dim) x[R,C], positions[R] -> cache[R,KVH,T,D]                  head_dim
                  cache[r, h, positions[r], :] = x[r, h*D:(h+1)*D]   (in place; positions[r] < T).
  attention_partial (R, KVH, ceildiv(T, kv_chunk))                                  num_heads, num_kv_heads,
                  q[R,H*D], k_cache, v_cache, positions[R]                            head_dim, scale, kv_chunk,
                    -> partial_out[R,H,S,D] f32, partial_stats[R,H,S,2] f32           wide_rows (0: off)
                  Chunk s holds slots [s * c, (s + 1) * c), c = kv_chunk, or 2 * kv_chunk when the step
                  has R >= wide_rows rows (then the chunks past ceildiv(T, c) have no slot: fewer, longer
                  tiles where many rows give every SM several).
                  For the heads h of kv group g and the slots t of chunk s with t <= positions[r]:
                  z = scale * f32(q) . f32(k); m = max z; l = sum exp(z - m); o = sum exp(z - m) * f32(v).
                  stats = (m, l), unnormalized o; a chunk with no visible slot has m = -inf, l = 0, o = 0.
                  With head_norm_eps (+ q_norm_weight, k_norm_weight, inv_freq[D/2]): q and the cache row
                  at positions[r] come raw; each head of q is rms_norm'ed (q_norm_weight) then rope'd at
                  positions[r] as a linear's head_rms_norm and rope epilogue would, and the chunk holding
                  positions[r] does the same to that K row (k_norm_weight) and writes it back (in place,
                  not a result: it finishes the step's append, and no other tile reads that slot).
                  With out[R,H*D] among its writes (merged by the last split; etc-form-task-grids
                  merge-last-split): once every tile of (r, g) has its partials, the group's S partials
                  are merged into out[r, g*G*D : (g+1)*G*D] as attention_merge does, before the tiles'
                  signals (merge_group(kind, params) says which tiles make a group; on the GPU the tile
                  holding positions[r] merges, etc.codegen.tiles_attention). Every tile signals after its
                  own work, so a wait for all S tiles of (r, g) sees out. Where its groups merge so,
                  the grid leaves partial_out and partial_stats as they were (unstored_roles): the
                  partials travel to the merging tile another way, and only an attention_merge grid
                  reads those buffers.
                  With param merge_one_row (etc-form-task-grids merge-per-batch) that happens at one row
                  only: at more rows no tile counts and out is not written (an attention_merge grid merges).
  attention_merge (R, KVH)        partial_out, partial_stats -> out[R,H*D]          same as attention_partial
                  M = max_s m_s; w_s = exp(m_s - M); out = round(sum w_s o_s / sum w_s l_s).
  silu_mul        (R, ceildiv(C, tile_c))  gate, up -> y                            tile_c
                  y = round(round(silu(gate)) * up)
  gelu            (R, ceildiv(C, tile_c))  x -> y                                   tile_c, approximate
  add             (R, ceildiv(C, tile_c))  a, b -> y                                tile_c, alpha
                  y = round(a + alpha * b)
  argmax          (R)             x[R,V] -> out[R] i64: the first index of the row maximum.
  elementwise     (R, ceildiv(C, tile_c))  operands -> y[R,C]                       tile_c, body, broadcast
                  y[r, c] = body(operand values at (r, c)); `body` names a private func.func of scalar
                  arith/math ops; broadcast[i] is "full" ([R,C]), "row" ([R,1]: one value per row),
                  "col" ([C] or [1,C]) or "scalar" ([] or [1]).

`regions(kind, params, role, rank)` says which part of an operand buffer one tile touches, per buffer
dim, in terms of the tile's coordinates; the front end joins producers and consumers through it.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Full:
    """The tile touches the whole extent of this buffer dim."""


@dataclasses.dataclass(frozen=True)
class Tiled:
    """The tile touches [b * size, (b + 1) * size) of this buffer dim, b = d // share, d = tile coordinate
    `grid_dim`: each tile its own block (share 1), or `share` consecutive tiles one block together (each
    a part of it: a linear tile of a split head)."""
    grid_dim: int
    size: int
    share: int = 1


@dataclasses.dataclass(frozen=True)
class Anywhere:
    """Data-dependent: one unknown place along this dim (a KV append at a runtime position)."""


Region = tuple  # one Full | Tiled | Anywhere per buffer dim


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    reads: tuple[str, ...]  # roles, in operand order; optional ones may be absent
    writes: tuple[str, ...]


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("embedding", ("weight", "tokens"), ("out",)),
    Kind("rms_norm", ("x", "weight"), ("y",)),
    Kind("layer_norm", ("x", "weight", "bias"), ("y",)),
    Kind("linear", ("x", "weight", "bias", "norm_weight", "norm_bias", "up_weight", "up_bias", "residual",
                    "head_norm_weight", "positions", "inv_freq", "partial_out", "partial_stats", "x_one_row"),
         ("y", "cache")),
    Kind("rope", ("x", "positions", "inv_freq"), ("y",)),
    Kind("kv_append", ("x", "positions"), ("cache",)),
    Kind("attention_partial", ("q", "k_cache", "v_cache", "positions", "q_norm_weight", "k_norm_weight", "inv_freq"),
         ("partial_out", "partial_stats", "out")),
    Kind("attention_merge", ("partial_out", "partial_stats"), ("out",)),
    Kind("silu_mul", ("gate", "up"), ("y",)),
    Kind("gelu", ("x",), ("y",)),
    Kind("add", ("a", "b"), ("y",)),
    Kind("argmax", ("x",), ("out",)),
    Kind("elementwise", (), ("y",)),  # reads: operand0, operand1, ...
)}

# Roles that are never produced inside a decode step.
CONSTANT_ROLES = {"weight", "bias", "norm_weight", "norm_bias", "up_weight", "up_bias", "head_norm_weight",
                  "q_norm_weight", "k_norm_weight", "inv_freq", "tokens", "positions"}


def regions(kind: str, params: dict, role: str, rank: int) -> Region:
    """The region of an operand buffer of `rank` dims that one tile of `kind` touches."""
    full = (Full(),) * rank
    if kind == "linear":
        tn, share = params["tile_n"], split_head_tiles(params)
        if role in ("y", "residual"):
            return (Full(), Tiled(0, params["head_dim"], share) if share > 1 else Tiled(0, tn))
        if role == "cache":
            return (Full(), Tiled(0, 1, share) if share > 1 else Tiled(0, tn // params["head_dim"]), Anywhere(), Full())
        return full
    if kind in ("rms_norm", "layer_norm") and role in ("x", "y"):
        return (Tiled(0, 1), Tiled(1, params["dim"]))
    if kind in ("rope", "kv_append"):
        if role in ("x", "y"):
            return (Tiled(0, 1), Tiled(1, params["head_dim"]))
        if role == "cache":
            return (Tiled(0, 1), Tiled(1, 1), Anywhere(), Full())
        if role == "positions":
            return (Tiled(0, 1),)
        return full
    if kind == "attention_partial":
        group = params["num_heads"] // params["num_kv_heads"]
        if role == "q":
            return (Tiled(0, 1), Tiled(1, group * params["head_dim"]))
        if role in ("k_cache", "v_cache"):  # a chunk's slots depend on the step's rows (wide_rows)
            return (Tiled(0, 1), Tiled(1, 1), Anywhere() if params.get("wide_rows") else
                    Tiled(2, params["kv_chunk"]), Full())
        if role in ("partial_out", "partial_stats"):
            return (Tiled(0, 1), Tiled(1, group), Tiled(2, 1), Full())
        if role == "out":  # merged by the group's last split: every split of (r, g) counts for it
            return (Tiled(0, 1), Tiled(1, group * params["head_dim"]))
        if role == "positions":
            return (Tiled(0, 1),)
        return full
    if kind == "attention_merge":
        group = params["num_heads"] // params["num_kv_heads"]
        if role == "out":
            return (Tiled(0, 1), Tiled(1, group * params["head_dim"]))
        return (Tiled(0, 1), Tiled(1, group), Full(), Full())
    if kind in ("embedding", "argmax"):
        if role in ("out", "tokens"):
            return (Tiled(0, 1),) + (Full(),) * (rank - 1)
        if role == "x":
            return (Tiled(0, 1), Full())
        return full
    if kind in ("silu_mul", "gelu", "add", "elementwise"):
        tc = params["tile_c"]
        if kind == "elementwise" and role.startswith("operand"):
            how = params["broadcast"][int(role[len("operand"):])]
            if how == "row":
                return (Tiled(0, 1), Full())
            if how == "col":
                return (Full(),) * (rank - 1) + (Tiled(1, tc),)
            if how == "scalar":
                return full
        return (Tiled(0, 1), Tiled(1, tc))
    raise KeyError(f"unknown tile kind '{kind}'")


SPLIT_HEAD_STEPS = ("head_rms_norm", "rope", "kv_append")  # the per-head epilogue steps a split head allows


def split_head_norm_ok(epilogue) -> bool:
    """Whether a split head can take this epilogue's head_rms_norm: none, or one as the first step (the
    norm is over the whole head, which the head's last tile gathers before any other per-head step)."""
    norms = list(epilogue).count("head_rms_norm")
    return norms == 0 or (norms == 1 and epilogue[0] == "head_rms_norm")


def split_head_tiles(params: dict) -> int:
    """P, the tiles sharing one head, for a linear whose head is split (tile_n < head_dim); else 1."""
    d, tn = params.get("head_dim"), params["tile_n"]
    per_head = any(s in SPLIT_HEAD_STEPS for s in params.get("epilogue", ()))
    if not per_head or not d or tn >= d:
        return 1
    return d // tn


def merge_group(kind: str, params: dict):
    """For a grid whose tiles merge their group's work (attention_partial writing out): a function from a
    tile's coordinates and the grid extents to (its group, the group's size), or (None, 0) where the tile
    counts in no group this step; None for every other grid."""
    if kind == "attention_partial" and "out" in params.get("write_roles", ()):
        one_row = bool(params.get("merge_one_row"))  # at more rows no tile counts: (None, 0)
        return lambda coords, extents: (None, 0) if one_row and extents[0] != 1 else (tuple(coords[:2]), extents[2])
    return None


def unstored_roles(kind: str, params: dict, extents: tuple) -> tuple[str, ...]:
    """Roles among a grid's writes that its tiles leave as they were at these grid extents: a grid whose
    splits merge their group (merge_group counts its tiles) hands the partials to the merging split as
    published words, so partial_out and partial_stats, which only an attention_merge grid reads and no
    such grid has tiles at these sizes, are not stored."""
    group_of = merge_group(kind, params)
    if group_of is not None and extents and all(extents) and group_of((0,) * len(extents), extents)[0] is not None:
        return ("partial_out", "partial_stats")
    return ()


def merges_group(params: dict, coords: tuple, extents: tuple, position: int) -> bool:
    """Whether attention_partial tile `coords` (of a merge_group grid) merges its group: the split whose
    chunk holds positions[r] (`position`). It merges once the group's splits before it have their
    partials; the splits after it hold no visible slot."""
    chunk = int(params["kv_chunk"])
    wide = int(params.get("wide_rows", 0))
    if wide and extents[0] >= wide:
        chunk *= 2
    return coords[2] * chunk <= position < (coords[2] + 1) * chunk

