"""numpy bodies of the tile kinds of etc.tiles: each runs ONE tile, following that contract's numerics.

A body sees its operands only through a TileAccess, which records every read and stages every write
(with the index ranges touched), so that an executor can check races and commit writes when it
chooses. Runtime sizes (rows, kv_len) come from the operands' shapes, never from params.

    access = TileAccess({"x": Operand("h", h, "bf16"), "weight": ..., "y": ...})
    run_tile("rms_norm", params, (r, g), access)
    access.commit()
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping

import numpy as np

from etc import tiles as contract
from etc.errors import EtcError
from etc.reference.numerics import cos_sin, f32, gelu, rounder, silu

Ranges = tuple  # one (start, stop) per buffer dim


@dataclasses.dataclass
class Operand:
    buffer: str  # the buffer's name, for messages and race tracking
    array: np.ndarray  # storage (bf16 as float32 holding bf16 values)
    etype: str  # MLIR element type: "bf16", "f32", "i64", ...


@dataclasses.dataclass
class Write:
    role: str
    index: tuple  # numpy index: ints and unit-step slices
    ranges: Ranges
    value: np.ndarray


class TileAccess:
    """One tile's view of its operands, by role. Reads are recorded (and reported to `on_read` before the
    data is used); writes are staged until commit()."""

    def __init__(self, operands: Mapping[str, Operand],
                 on_read: Callable[[str, tuple, Ranges], None] | None = None):
        self.operands = dict(operands)
        self.on_read = on_read
        self.reads: list[tuple[str, Ranges]] = []
        self.writes: list[Write] = []

    def has(self, role: str) -> bool:
        return role in self.operands

    def operand(self, role: str) -> Operand:
        try:
            return self.operands[role]
        except KeyError:
            raise EtcError(f"the tile has no '{role}' operand") from None

    def shape(self, role: str) -> tuple[int, ...]:
        return self.operand(role).array.shape

    def etype(self, role: str) -> str:
        return self.operand(role).etype

    def read(self, role: str, index: tuple) -> np.ndarray:
        op = self.operand(role)
        index, ranges = normalize_index(op, index)
        self.reads.append((role, ranges))
        if self.on_read is not None:
            self.on_read(role, index, ranges)
        return np.array(op.array[index], copy=True)

    def write(self, role: str, index: tuple, value) -> None:
        op = self.operand(role)
        index, ranges = normalize_index(op, index)
        shape = np.empty(op.array.shape, dtype=np.bool_)[index].shape
        value = np.asarray(value)
        try:
            value = np.broadcast_to(value, shape).astype(op.array.dtype)
        except ValueError:
            raise EtcError(f"tile writes a value of shape {value.shape} into '{op.buffer}' region {ranges}") from None
        self.writes.append(Write(role, index, ranges, value))

    def commit(self) -> None:
        """Make the staged writes visible (executors that track commits do this themselves)."""
        for w in self.writes:
            self.operands[w.role].array[w.index] = w.value


def normalize_index(op: Operand, index) -> tuple[tuple, Ranges]:
    """Bounds-checked numpy index (ints and unit-step slices) and the (start, stop) range per dim."""
    if not isinstance(index, tuple):
        index = (index,)
    shape = op.array.shape
    if len(index) != len(shape):
        raise EtcError(f"tile indexes '{op.buffer}' with {len(index)} coordinates, but it has {len(shape)} dims")
    out, ranges = [], []
    for i, extent in zip(index, shape):
        if isinstance(i, slice):
            start, stop, step = i.indices(extent)
            if step != 1:
                raise EtcError(f"tile indexes '{op.buffer}' with step {step}")
            stop = max(start, stop)
            out.append(slice(start, stop))
            ranges.append((start, stop))
        else:
            i = int(i)
            if not 0 <= i < extent:
                raise EtcError(f"tile index {i} is outside '{op.buffer}' dim of size {extent}")
            out.append(i)
            ranges.append((i, i + 1))
    return tuple(out), tuple(ranges)


# ---------------------------------------------------------------- helpers


def param(kind: str, params: Mapping, name: str):
    try:
        return params[name]
    except KeyError:
        raise EtcError(f"{kind} tile: missing param '{name}'") from None


def span(tile: int, size: int, total: int) -> slice:
    """Columns of tile `tile` of `size` each, clipped at `total` (the last tile may be short)."""
    start = tile * size
    return slice(min(start, total), min(start + size, total))


def all_(n: int) -> tuple:
    return (slice(None),) * n


def act_rounder(a: TileAccess, *roles: str):
    """Rounding to the dtype of the first present role (the activation dtype of the unfused ops)."""
    for role in roles:
        if a.has(role):
            return rounder(a.etype(role))
    raise EtcError(f"the tile has none of the operands {', '.join(roles)}")


def rms_norm(x, weight, eps: float, round_x, round_y) -> np.ndarray:
    """HF RMSNorm over the last axis: h = f32(x) * rsqrt(mean(h*h) + eps); y = round(weight * round(h))."""
    h = f32(x)
    var = np.mean(h * h, axis=-1, keepdims=True, dtype=np.float32)
    h = h * (np.float32(1) / np.sqrt(var + np.float32(eps)))
    return round_y(f32(weight) * round_x(h))


def layer_norm(x, weight, bias, eps: float, round_y) -> np.ndarray:
    """LayerNorm over the last axis in f32, rounded once."""
    h = f32(x)
    mean = np.mean(h, axis=-1, keepdims=True, dtype=np.float32)
    d = h - mean
    var = np.mean(d * d, axis=-1, keepdims=True, dtype=np.float32)
    y = d / np.sqrt(var + np.float32(eps)) * f32(weight)
    if bias is not None:
        y = y + f32(bias)
    return round_y(y)


def rope(x, positions, inv_freq, rnd) -> np.ndarray:
    """RoPE over the last axis (head_dim); positions broadcast against x's leading axes."""
    d = x.shape[-1]
    freqs = f32(positions)[..., None] * f32(inv_freq)
    cos, sin = cos_sin(np.concatenate([freqs, freqs], axis=-1))
    cos, sin = rnd(cos), rnd(sin)
    x = f32(x)
    rotated = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], axis=-1)
    return rnd(rnd(x * cos) + rnd(rotated * sin))


def check_position(kind: str, p: int, r: int, slots: int) -> int:
    if not 0 <= p < slots:
        raise EtcError(f"{kind} tile: positions[{r}] = {p} is outside the KV cache of {slots} slots")
    return p


# ---------------------------------------------------------------- bodies


def embedding(params, coords, a: TileAccess) -> None:
    (r,) = coords
    vocab = a.shape("weight")[0]
    token = int(a.read("tokens", (r,)))
    if not 0 <= token < vocab:
        raise EtcError(f"embedding tile: tokens[{r}] = {token} is outside the vocabulary of {vocab}")
    row = a.read("weight", (token, slice(None)))
    a.write("out", (r, slice(None)), rounder(a.etype("out"))(row))


def rms_norm_tile(params, coords, a: TileAccess) -> None:
    r, g = coords
    dim = param("rms_norm", params, "dim")
    cols = span(g, dim, a.shape("x")[1])
    x = a.read("x", (r, cols))
    w = a.read("weight", (slice(None),))
    a.write("y", (r, cols), rms_norm(x, w, param("rms_norm", params, "eps"), rounder(a.etype("x")),
                                     rounder(a.etype("y"))))


def layer_norm_tile(params, coords, a: TileAccess) -> None:
    r, g = coords
    dim = param("layer_norm", params, "dim")
    cols = span(g, dim, a.shape("x")[1])
    x = a.read("x", (r, cols))
    w = a.read("weight", (slice(None),))
    b = a.read("bias", (slice(None),)) if params.get("has_bias", a.has("bias")) else None
    a.write("y", (r, cols), layer_norm(x, w, b, param("layer_norm", params, "eps"), rounder(a.etype("y"))))


def linear_column_runs(params, j: int, n: int) -> list[slice]:
    """The output columns of linear tile j: one run, or a split head's two rotate-half runs (etc.tiles)."""
    tile_n = param("linear", params, "tile_n")
    parts = contract.split_head_tiles(params)
    if parts == 1:
        return [span(j, tile_n, n)]
    d, half = params["head_dim"], tile_n // 2
    first = (j // parts) * d + (j % parts) * half
    return [slice(first, first + half), slice(first + d // 2, first + d // 2 + half)]


def linear(params, coords, a: TileAccess) -> None:
    (j,) = coords
    n = param("linear", params, "out_features")
    k = param("linear", params, "in_features")
    prologue = params.get("prologue", "none")
    if prologue == "attention_merge_one_row":  # one row merges the splits itself; more rows read x (etc.tiles)
        prologue = "attention_merge" if a.shape("x")[0] == 1 else "none"
    x_role = "x"
    if prologue == "x_one_row":  # one row reads x_one_row, more rows x (etc.tiles)
        prologue, x_role = "none", "x_one_row" if a.shape("x")[0] == 1 else "x"
    if prologue == "attention_merge":  # x is the merge of the attention splits (etc.tiles)
        o, stats = f32(a.read("partial_out", all_(4))), f32(a.read("partial_stats", all_(4)))
        rows = o.shape[0]
        x = rounder(param("linear", params, "x_etype"))(
            np.stack([merge_partials(o[r], stats[r]).reshape(-1) for r in range(rows)]).reshape(rows, -1))
        k_got = x.shape[1]
    else:
        rows, k_got = a.shape(x_role)
        x = f32(a.read(x_role, all_(2)))
    if k_got != k:
        raise EtcError(f"linear tile: x has {k_got} columns, in_features is {k}")
    runs = linear_column_runs(params, j, n)
    split = len(runs) > 1
    rnd = act_rounder(a, "y", "cache", "x")
    if prologue in ("none", "attention_merge"):
        pass
    elif prologue == "rms_norm":
        x = rms_norm(x, a.read("norm_weight", (slice(None),)), param("linear", params, "prologue_eps"),
                     rounder(a.etype("x")), rounder(a.etype("x")))
    elif prologue == "layer_norm":
        bias = a.read("norm_bias", (slice(None),)) if a.has("norm_bias") else None
        x = layer_norm(x, a.read("norm_weight", (slice(None),)), bias, param("linear", params, "prologue_eps"),
                       rounder(a.etype("x")))
    elif prologue != "none":
        raise EtcError(f"linear tile: unknown prologue '{prologue}'")
    has_bias = params.get("has_bias", a.has("bias"))

    def gather(role: str, index, axis: int = -1, over=None) -> np.ndarray:
        """The operand's values at the tile's columns (index(run) -> the read index), runs side by side."""
        return np.concatenate([f32(a.read(role, index(run))) for run in (over or runs)], axis=axis)

    def project(weight_role: str, bias_role: str, over=None) -> np.ndarray:
        acc = f32(x) @ gather(weight_role, lambda run: (run, slice(None)), axis=0, over=over).T
        if has_bias:
            acc = acc + gather(bias_role, lambda run: (run,), over=over)
        return rnd(acc)

    steps = list(params.get("epilogue", ()))
    if split and "head_rms_norm" in steps:  # the norm of a split head is over the whole head (etc.tiles)
        if not contract.split_head_norm_ok(steps):
            raise EtcError("linear tile: a split head takes 'head_rms_norm' as its first epilogue step, and once")
        d = param("linear", params, "head_dim")
        h0 = runs[0].start // d * d
        whole = rms_norm(project("weight", "bias", [slice(h0, h0 + d)]), a.read("head_norm_weight", (slice(None),)),
                         param("linear", params, "head_norm_eps"), rnd, rnd)
        y = np.concatenate([whole[:, run.start - h0:run.stop - h0] for run in runs], axis=1)
        steps = steps[1:]
    else:
        y = project("weight", "bias")
    width = y.shape[1]
    for step in steps:
        if step == "silu_mul":
            up = project("up_weight", "up_bias")
            y = rnd(rnd(silu(y)) * up)
        elif step == "gelu":
            y = rnd(gelu(y, params.get("gelu_approximate", "none")))
        elif step == "residual_add":
            y = rnd(gather("residual", lambda run: (slice(None), run)) + y)
        elif step in ("head_rms_norm", "rope", "kv_append"):
            d = param("linear", params, "head_dim")
            if split and step not in contract.SPLIT_HEAD_STEPS:
                raise EtcError(f"linear tile: epilogue '{step}' needs whole heads, but tile_n "
                               f"{params['tile_n']} splits heads of {d}")
            if not split and (runs[0].start % d or width % d):
                raise EtcError(f"linear tile: epilogue '{step}' needs whole heads, but columns "
                               f"[{runs[0].start}, {runs[0].stop}) are not a multiple of head_dim {d}")
            seg = width if split else d  # a split head's pairs sit half a segment apart, as in a whole head
            heads = y.reshape(rows, width // seg, seg)
            if step == "head_rms_norm":
                heads = rms_norm(heads, a.read("head_norm_weight", (slice(None),)),
                                 param("linear", params, "head_norm_eps"), rnd, rnd)
            elif step == "rope":
                positions = a.read("positions", (slice(None),))
                freq = a.read("inv_freq", (slice(runs[0].start % d, runs[0].start % d + seg // 2),))
                heads = rope(heads, positions[:, None], freq, rnd)
            else:
                positions = a.read("positions", (slice(None),))
                slots = a.shape("cache")[2]
                write = rounder(a.etype("cache"))
                for r in range(rows):
                    p = check_position("linear", int(positions[r]), r, slots)
                    if split:
                        head = runs[0].start // d
                        for run, part in zip(runs, np.split(heads[r, 0], 2)):
                            a.write("cache", (r, head, p, slice(run.start % d, run.stop - head * d)), write(part))
                    else:
                        head0 = runs[0].start // d
                        a.write("cache", (r, slice(head0, head0 + width // d), p, slice(None)), write(heads[r]))
            y = heads.reshape(rows, width)
        else:
            raise EtcError(f"linear tile: unknown epilogue step '{step}'")
    if a.has("y"):
        at = 0
        for run in runs:
            a.write("y", (slice(None), run), y[:, at:at + run.stop - run.start])
            at += run.stop - run.start


def rope_tile(params, coords, a: TileAccess) -> None:
    r, h = coords
    d = param("rope", params, "head_dim")
    cols = span(h, d, a.shape("x")[1])
    x = a.read("x", (r, cols))
    p = a.read("positions", (r,))
    a.write("y", (r, cols), rope(x, p, a.read("inv_freq", (slice(None),)), rounder(a.etype("y"))))


def kv_append(params, coords, a: TileAccess) -> None:
    r, h = coords
    d = param("kv_append", params, "head_dim")
    x = a.read("x", (r, span(h, d, a.shape("x")[1])))
    p = check_position("kv_append", int(a.read("positions", (r,))), r, a.shape("cache")[2])
    a.write("cache", (r, h, p, slice(None)), rounder(a.etype("cache"))(x))


def _attention_params(kind: str, params) -> tuple[int, int, int]:
    heads = param(kind, params, "num_heads")
    kv_heads = param(kind, params, "num_kv_heads")
    d = param(kind, params, "head_dim")
    if heads % kv_heads:
        raise EtcError(f"{kind} tile: num_heads {heads} is not a multiple of num_kv_heads {kv_heads}")
    return heads // kv_heads, d, kv_heads


def attention_partial(params, coords, a: TileAccess) -> None:
    r, g, s = coords
    group, d, _ = _attention_params("attention_partial", params)
    chunk = param("attention_partial", params, "kv_chunk")
    wide = int(params.get("wide_rows", 0))
    if wide and a.shape("q")[0] >= wide:  # many rows: chunks twice as long, the later ones empty
        chunk *= 2
    scale = np.float32(params.get("scale", 1.0 / math.sqrt(d)))
    q = f32(a.read("q", (r, slice(g * group * d, (g + 1) * group * d)))).reshape(group, d)
    slots = a.shape("k_cache")[2]
    p = check_position("attention_partial", int(a.read("positions", (r,))), r, slots)
    # Only the visible slots (t <= positions[r]) of this chunk are read.
    t0, t1 = s * chunk, min(slots, (s + 1) * chunk, p + 1)
    heads = slice(g * group, (g + 1) * group)
    eps = params.get("head_norm_eps")  # q and k's new row unnormalized, without RoPE (etc.tiles)
    if t1 > t0:
        k = f32(a.read("k_cache", (r, g, slice(t0, t1), slice(None))))
        if eps is not None:
            rnd, pos, freq = rounder(a.etype("q")), np.float32(p), a.read("inv_freq", (slice(None),))
            q = rope(rms_norm(q, a.read("q_norm_weight", (slice(None),)), eps, rnd, rnd), pos, freq, rnd)
        if eps is not None and p < t1:  # this chunk holds the new row: it finishes the append
            new = rope(rms_norm(k[p - t0], a.read("k_norm_weight", (slice(None),)), eps, rnd, rnd), pos, freq, rnd)
            new = rounder(a.etype("k_cache"))(new)
            a.write("k_cache", (r, g, p, slice(None)), new)
            k[p - t0] = f32(new)
        v = f32(a.read("v_cache", (r, g, slice(t0, t1), slice(None))))
        z = scale * (q @ k.T)
        m = z.max(axis=-1)
        e = np.exp(z - m[:, None])
        stats = np.stack([m, e.sum(axis=-1, dtype=np.float32)], axis=-1)
        o = e @ v
    else:
        stats = np.tile(np.array([-np.inf, 0.0], dtype=np.float32), (group, 1))
        o = np.zeros((group, d), dtype=np.float32)
    a.write("partial_out", (r, heads, s, slice(None)), rounder(a.etype("partial_out"))(o))
    a.write("partial_stats", (r, heads, s, slice(None)), rounder(a.etype("partial_stats"))(stats))


def attention_merge(params, coords, a: TileAccess, splits: int | None = None) -> None:
    """Merge (row, kv group) `coords` from its splits 0 .. splits - 1 (None: all; the splits past those
    hold no visible slot and weigh nothing)."""
    r, g = coords
    group, d, _ = _attention_params("attention_merge", params)
    heads = slice(g * group, (g + 1) * group)
    o = f32(a.read("partial_out", (r, heads, slice(splits), slice(None))))  # [group, S, D]
    stats = f32(a.read("partial_stats", (r, heads, slice(splits), slice(None))))  # [group, S, 2]
    out = merge_partials(o, stats)
    a.write("out", (r, slice(g * group * d, (g + 1) * group * d)), rounder(a.etype("out"))(out.reshape(-1)))


def merge_partials(o: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """Attention splits merged: o [heads, S, D], stats [heads, S, 2] (m, l) -> [heads, D] f32."""
    m, l = stats[..., 0], stats[..., 1]
    top = m.max(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        w = np.exp(m - top)  # chunks with no visible slot: exp(-inf) = 0
    w = np.where(np.isneginf(m), np.float32(0), w)
    return (w[..., None] * o).sum(axis=1, dtype=np.float32) / (w * l).sum(axis=-1, dtype=np.float32)[:, None]


def _row_tile(kind: str, params, coords, a: TileAccess) -> tuple[int, slice]:
    r, c = coords
    return r, span(c, param(kind, params, "tile_c"), a.shape("y")[1])


def silu_mul(params, coords, a: TileAccess) -> None:
    r, cols = _row_tile("silu_mul", params, coords, a)
    rnd = rounder(a.etype("y"))
    gate, up = a.read("gate", (r, cols)), a.read("up", (r, cols))
    a.write("y", (r, cols), rnd(rnd(silu(gate)) * f32(up)))


def gelu_tile(params, coords, a: TileAccess) -> None:
    r, cols = _row_tile("gelu", params, coords, a)
    a.write("y", (r, cols), rounder(a.etype("y"))(gelu(a.read("x", (r, cols)), params.get("approximate", "none"))))


def add(params, coords, a: TileAccess) -> None:
    r, cols = _row_tile("add", params, coords, a)
    alpha = np.float32(params.get("alpha", 1.0))
    y = f32(a.read("a", (r, cols))) + alpha * f32(a.read("b", (r, cols)))
    a.write("y", (r, cols), rounder(a.etype("y"))(y))


def argmax(params, coords, a: TileAccess) -> None:
    (r,) = coords
    x = a.read("x", (r, slice(None)))
    a.write("out", (r,), np.int64(np.argmax(x)))  # first maximum; NaN counts as the maximum, as in torch


def elementwise(params, coords, a: TileAccess, body_of: Callable | None = None) -> None:
    r, cols = _row_tile("elementwise", params, coords, a)
    if body_of is None:
        raise EtcError("elementwise tile: no module to find its body function in")
    body = body_of(param("elementwise", params, "body"))
    broadcast = param("elementwise", params, "broadcast")
    values = []
    for i, how in enumerate(broadcast):
        role = f"operand{i}"
        rank = len(a.shape(role))
        if how == "full":
            index = (r, cols)
        elif how == "row":
            index = (r, 0)
        elif how == "col":
            index = (cols,) if rank == 1 else (0, cols)
        elif how == "scalar":
            index = () if rank == 0 else (0,) * rank
        else:
            raise EtcError(f"elementwise tile: unknown broadcast '{how}' of operand {i}")
        values.append(a.read(role, index))
    width = cols.stop - cols.start
    y = np.broadcast_to(body(values), (width,))
    a.write("y", (r, cols), rounder(a.etype("y"))(y))


BODIES: dict[str, Callable] = {
    "embedding": embedding,
    "rms_norm": rms_norm_tile,
    "layer_norm": layer_norm_tile,
    "linear": linear,
    "rope": rope_tile,
    "kv_append": kv_append,
    "attention_partial": attention_partial,
    "attention_merge": attention_merge,
    "silu_mul": silu_mul,
    "gelu": gelu_tile,
    "add": add,
    "argmax": argmax,
    "elementwise": elementwise,
}
assert set(BODIES) == set(contract.KINDS), "every tile kind of etc.tiles needs a body"


def roles(kind: str, params: Mapping, n_reads: int, n_writes: int) -> tuple[list[str], list[str]]:
    """The operand roles of a tile kind: params read_roles/write_roles, else the contract's order."""
    if kind not in contract.KINDS:
        raise EtcError(f"unknown tile kind '{kind}'")
    spec = contract.KINDS[kind]
    default_reads = [f"operand{i}" for i in range(n_reads)] if kind == "elementwise" else list(spec.reads[:n_reads])
    read_roles = list(params.get("read_roles", default_reads))
    write_roles = list(params.get("write_roles", spec.writes[:n_writes]))
    if len(read_roles) != n_reads or len(write_roles) != n_writes:
        raise EtcError(f"{kind} task: {n_reads} reads and {n_writes} writes, but roles {read_roles} and {write_roles}")
    return read_roles, write_roles


def run_tile(kind: str, params: Mapping, coords: tuple[int, ...], access: TileAccess,
             body_of: Callable | None = None) -> None:
    """Run one tile of `kind` at `coords`: reads through `access`, writes staged in it.

    body_of(symbol) -> callable resolves elementwise bodies (see elementwise.compile_body).
    """
    try:
        body = BODIES[kind]
    except KeyError:
        raise EtcError(f"unknown tile kind '{kind}'") from None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if kind == "elementwise":
            body(params, tuple(coords), access, body_of)
        else:
            body(params, tuple(coords), access)


def finish_group(kind: str, params: Mapping, group: tuple[int, ...], access: TileAccess,
                 splits: int | None = None) -> None:
    """What a merge group's (etc.tiles.merge_group) merging tile does after its own work: attention_partial
    writing out merges its (row, kv group)'s splits 0 .. splits - 1 (None: all), as attention_merge does."""
    if kind != "attention_partial":
        raise EtcError(f"{kind} tiles have no merge group")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        attention_merge(params, tuple(group), access, splits)

