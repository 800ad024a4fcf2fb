"""Test cases for the tile functions: a task, runtime sizes, random operands and the numpy reference's
results (etc.reference.run_tile over every tile of the task's grid).

Programs come from the tiny models (fused and unfused) and from hand-written one-task programs with the
Llama-3.2-1B tile shapes (hidden 2048, MLP 8192, head_dim 64, GQA 32/8, kv_chunk 128, lm_head tile_n 976)
but fewer output rows, so that the weights stay small; plus argmax, elementwise bodies and the param
variants the models do not produce.

    for case in all_cases(): case.arrays, case.expected     # buffer name -> numpy (reference storage)
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import zlib

import numpy as np

from etc import tiles as contract
from etc.codegen.tiles_harness import program_of_text, program_text, unique_tasks
from etc.reference import elementwise
from etc.reference.numerics import round_bf16, rounder
from etc.reference.tiles import Operand, TileAccess, finish_group, run_tile
from etc.reference.tiles import roles as tile_roles


@dataclasses.dataclass
class Case:
    name: str
    program: object
    task: object
    sizes: dict
    arrays: dict  # every operand buffer of the task: initial contents (bf16 as float32 values)
    expected: dict  # every buffer the task writes: contents after all its tiles
    block: int = 256

    @property
    def tiles(self) -> int:
        return self.task.tile_count(self.sizes)


# ---------------------------------------------------------------- inputs and reference


def role_map(task) -> dict[str, str]:
    reads, writes = tile_roles(task.kind, task.params, len(task.reads), len(task.writes))
    return dict(zip(reads, task.reads)) | dict(zip(writes, task.writes))


def _values(rng, shape, etype, scale=1.0, offset=0.0):
    v = (offset + scale * rng.standard_normal(shape)).astype(np.float32)
    return rounder(etype)(v) if etype in ("bf16", "f16") else v.astype(np.float64 if etype == "f64" else np.float32)


def make_inputs(program, task, sizes, seed: int) -> dict[str, np.ndarray]:
    """Random operands; each buffer from its own stream (seed, buffer name), so that cases at other sizes
    share their weights."""
    roles = role_map(task)
    by_name = {name: role for role, name in roles.items()}
    read = set(task.reads)
    kv_len = sizes.get("kv_len", 16)
    arrays = {}
    for name in task.reads + task.writes:
        if name in arrays:
            continue
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        buf = program.buffer(name)
        shape = buf.shape(sizes)
        et = buf.element_type
        role = by_name[name]
        if name not in read:  # written only: NaN / -1, so that a missing write shows
            arrays[name] = np.full(shape, -1, np.int64) if et.startswith("i") else np.full(shape, np.nan, np.float32)
            continue
        if role == "tokens":
            arrays[name] = rng.integers(0, program.buffer(roles["weight"]).shape(sizes)[0], shape).astype(np.int64)
        elif role == "positions":
            slots = kv_len
            if "cache" in roles:
                slots = program.buffer(roles["cache"]).shape(sizes)[2]
            if "k_cache" in roles:
                slots = program.buffer(roles["k_cache"]).shape(sizes)[2]
            pos = rng.integers(0, slots, shape)
            pos[0] = slots - 1  # one row sees every slot, one only the first few
            if pos.size > 1:
                pos[1] = min(3, slots - 1)
            arrays[name] = pos.astype(np.int64)
        elif role == "inv_freq":
            d = 2 * shape[0]
            arrays[name] = (1.0 / (10000.0 ** (np.arange(0, d, 2) / d))).astype(np.float32)
        elif role in ("weight", "up_weight") and task.kind == "linear":
            arrays[name] = _values(rng, shape, et, 1.0 / math.sqrt(shape[1]))
        elif role in ("bias", "up_bias", "norm_bias"):
            arrays[name] = _values(rng, shape, et, 0.1)
        elif role in ("norm_weight", "head_norm_weight", "q_norm_weight", "k_norm_weight") \
                or (role == "weight" and task.kind in ("rms_norm", "layer_norm")):
            arrays[name] = _values(rng, shape, et, 0.25, 1.0)
        elif role == "partial_stats":
            continue  # with partial_out below
        elif role == "partial_out":
            arrays.update(_partials(rng, program, roles, sizes))
        elif et.startswith("i"):
            arrays[name] = rng.integers(-5, 6, shape).astype(np.int64)
        else:
            arrays[name] = _values(rng, shape, et, 1.5)
    if task.kind == "argmax":  # ties: the first maximum wins
        x = arrays[roles["x"]]
        if x.shape[0] > 1 and x.shape[1] > 8:
            x[1, 3] = x[1, 7] = x[1].max() + 1
    return arrays


def _partials(rng, program, roles, sizes):
    """Consistent split-KV partials: per (row, head) the first k splits visible, the rest (-inf, 0, o = 0)."""
    out = program.buffer(roles["partial_out"]).shape(sizes)
    rows, heads, splits, d = out
    m = rng.standard_normal((rows, heads, splits)).astype(np.float32)
    l = rng.uniform(1.0, 8.0, (rows, heads, splits)).astype(np.float32)
    o = (rng.standard_normal(out) * l[..., None]).astype(np.float32)
    visible = rng.integers(1, splits + 1, (rows, heads))
    hidden = np.arange(splits)[None, None, :] >= visible[..., None]
    m[hidden], l[hidden] = -np.inf, 0.0
    o[hidden] = 0.0
    return {roles["partial_out"]: o, roles["partial_stats"]: np.stack([m, l], axis=-1)}


def reference_outputs(program, task, sizes, arrays) -> dict[str, np.ndarray]:
    """Every tile of the task through etc.reference.run_tile; the buffers it writes afterwards (its
    writes, and an operand it updates in place: the K row an attention tile with the q/k norm finishes)."""
    arrays = {k: v.copy() for k, v in arrays.items()}
    operands = {role: Operand(name, arrays[name], program.buffer(name).element_type)
                for role, name in role_map(task).items()}
    body_of = elementwise.resolver(program.module)
    written = list(task.writes)
    extents = task.grid_extents(sizes)
    groups = []  # the merge groups, in order (a merging attention split: the group's last tile merges it)
    group_of = contract.merge_group(task.kind, task.params)
    for coords in itertools.product(*(range(e) for e in extents)):
        access = TileAccess(operands)
        run_tile(task.kind, task.params, coords, access, body_of)
        written += [operands[w.role].buffer for w in access.writes if operands[w.role].buffer not in written]
        access.commit()
        group = group_of(coords, extents)[0] if group_of else None
        if group is not None and group not in groups:
            groups.append(group)
    for group in groups:  # after every tile of the group, as its last to arrive does
        access = TileAccess(operands)
        finish_group(task.kind, task.params, group, access)
        access.commit()
    roles = role_map(task)
    unstored = {roles[role] for role in contract.unstored_roles(task.kind, task.params, extents) if role in roles}
    return {name: arrays[name] for name in written if name not in unstored}


def make_case(name, program, task, sizes, seed=0, block=256) -> Case:
    arrays = make_inputs(program, task, sizes, seed)
    return Case(name, program, task, dict(sizes), arrays, reference_outputs(program, task, sizes, arrays), block)


# ---------------------------------------------------------------- programs


_MODEL_PROGRAMS: dict = {}


def model_program(model: str, fuse: bool):
    """The scheduled sm_task program of a tiny model (kv_chunk 8, 8 SMs)."""
    key = (model, fuse)
    if key not in _MODEL_PROGRAMS:
        import etc
        from etc.models.decoder import CONFIGS, build_model, dynamic_shapes_for, example_inputs
        from etc.sm_task_ir import SmTaskProgram

        c = CONFIGS[model]
        mod = etc.compile_to_tasks(build_model(model), example_inputs(c, batch=2, ctx=16), schedule="static",
                                   num_sms=8, dynamic_shapes=dynamic_shapes_for(c), kv_chunk=8, fuse=fuse)
        _MODEL_PROGRAMS[key] = SmTaskProgram.of(mod)
    return _MODEL_PROGRAMS[key]


DIMS = [("batch", 1, 64), ("kv_len", 2, 4096)]


def _o_proj_merge(heads: int, head_dim: int, n: int, one_row: bool = False):
    """o_proj with the attention merge folded in: x [s0, heads * head_dim] merged from the splits (KV
    chunks of 256) of `heads` heads, n output columns in tiles of 16, plus the residual. one_row: the
    merge folded at one row only (prologue attention_merge_one_row: more rows read the merged x)."""
    k = heads * head_dim
    x = [("x", "workspace", "bf16", f"s0, {k}")] if one_row else []
    return program_of_text(program_text(
        DIMS, [("po", "workspace", "f32", f"s0, {heads}, s1 ceildiv 256, {head_dim}"),
               ("ps", "workspace", "f32", f"s0, {heads}, s1 ceildiv 256, 2")] + x + [("w", "weight", "bf16", f"{n}, {k}"),
               ("res", "workspace", "bf16", f"s0, {n}"), ("y", "workspace", "bf16", f"s0, {n}")],
        "linear", f"{n // 16}", ["po", "ps"] + [b[0] for b in x] + ["w", "res"], ["y"],
        {"in_features": k, "out_features": n, "tile_n": 16, "has_bias": False,
         "prologue": "attention_merge_one_row" if one_row else "attention_merge",
         "epilogue": ["residual_add"], "x_etype": "bf16", "num_heads": heads, "head_dim": head_dim,
         "read_roles": ["partial_out", "partial_stats"] + ["x"] * bool(one_row) + ["weight", "residual"],
         "write_roles": ["y"]}))


def _o_proj_x_one_row(k: int, n: int):
    """o_proj after attention merged per batch in the last split: one row reads x_one_row, more rows x
    (prologue x_one_row), n output columns in tiles of 16, plus the residual."""
    return program_of_text(program_text(
        DIMS, [("x1", "workspace", "bf16", f"s0, {k}"), ("x", "workspace", "bf16", f"s0, {k}"),
               ("w", "weight", "bf16", f"{n}, {k}"), ("res", "workspace", "bf16", f"s0, {n}"),
               ("y", "workspace", "bf16", f"s0, {n}")],
        "linear", f"{n // 16}", ["x1", "x", "w", "res"], ["y"],
        {"in_features": k, "out_features": n, "tile_n": 16, "has_bias": False, "prologue": "x_one_row",
         "epilogue": ["residual_add"], "read_roles": ["x_one_row", "x", "weight", "residual"],
         "write_roles": ["y"]}))


def _linear(name, k, n, tile_n, *, prologue="rms_norm", epilogue=(), head_dim=64, cache_heads=0, act="bf16",
            block_size=256, **extra):
    """A Llama-shaped linear program: x [s0, k] -> y [s0, n] (or the KV cache); act: x / residual / y dtype."""
    bufs = [("x", "workspace", act, f"s0, {k}"), ("w", "weight", "bf16", f"{n}, {k}")]
    reads, rr = ["x", "w"], ["x", "weight"]
    params = {"in_features": k, "out_features": n, "tile_n": tile_n, "has_bias": bool(extra.get("bias")),
              "prologue": prologue, "epilogue": list(epilogue), "head_dim": head_dim}
    if extra.get("bias"):
        bufs.append(("b", "weight", "bf16", f"{n}")); reads.append("b"); rr.append("bias")  # noqa: E702
    if prologue != "none":
        params["prologue_eps"] = 1e-5
        bufs.append(("nw", "weight", "bf16", f"{k}")); reads.append("nw"); rr.append("norm_weight")  # noqa: E702
    if "silu_mul" in epilogue:
        bufs.append(("uw", "weight", "bf16", f"{n}, {k}")); reads.append("uw"); rr.append("up_weight")  # noqa: E702
    if "residual_add" in epilogue:
        bufs.append(("res", "workspace", act, f"s0, {n}")); reads.append("res"); rr.append("residual")  # noqa
    if "head_rms_norm" in epilogue:
        params["head_norm_eps"] = 1e-6
        bufs.append(("hw", "weight", "bf16", f"{head_dim}")); reads.append("hw"); rr.append("head_norm_weight")  # noqa
    if "rope" in epilogue or "kv_append" in epilogue:
        bufs.append(("pos", "input", "i64", "s0")); reads.append("pos"); rr.append("positions")  # noqa: E702
    if "rope" in epilogue:
        bufs.append(("invf", "weight", "f32", f"{head_dim // 2}")); reads.append("invf"); rr.append("inv_freq")  # noqa
    if "gelu" in epilogue:
        params["gelu_approximate"] = extra.get("gelu_approximate", "tanh")
    if "kv_append" in epilogue:
        bufs.append(("cache", "kv_cache", "bf16", f"s0, {cache_heads}, s1, {head_dim}"))
        writes, wr = ["cache"], ["cache"]
    else:
        bufs.append(("y", "workspace", act, f"s0, {n}"))
        writes, wr = ["y"], ["y"]
    params["read_roles"], params["write_roles"] = rr, wr
    grid = str(-(-n // tile_n))
    return program_of_text(program_text(DIMS, bufs, "linear", grid, reads, writes, params, block_size=block_size))


def llama_programs() -> dict[str, object]:
    """Llama-3.2-1B tile shapes with fewer output rows (the code depends on N only through the last tile)."""
    attn = {"head_dim": 64, "kv_chunk": 128, "num_heads": 32, "num_kv_heads": 8, "scale": 0.125}
    progs = {
        "q_proj": _linear("q", 2048, 128, 64, epilogue=["rope"]),
        "k_proj": _linear("k", 2048, 128, 64, epilogue=["rope", "kv_append"], cache_heads=2),
        "v_proj": _linear("v", 2048, 128, 64, epilogue=["kv_append"], cache_heads=2),
        "o_proj": _linear("o", 2048, 64, 16, prologue="none", epilogue=["residual_add"]),
        "gate_up": _linear("gu", 2048, 128, 64, epilogue=["silu_mul"]),
        "down": _linear("d", 8192, 32, 16, prologue="none", epilogue=["residual_add"]),
        "lm_head": _linear("lm", 2048, 976 + 8, 976),  # a full tile of 976 and a short one
        # split heads: four tiles of 16 columns per head of 64 (rotate-half pairs), as etc-tile picks for 1B
        "q_proj_split": _linear("qs", 2048, 128, 16, epilogue=["rope"]),
        "k_proj_split": _linear("ks", 2048, 128, 16, epilogue=["rope", "kv_append"], cache_heads=2),
        "v_proj_split": _linear("vs", 2048, 128, 16, epilogue=["kv_append"], cache_heads=2),
    }
    progs["attention_partial"] = program_of_text(program_text(
        DIMS, [("q", "workspace", "bf16", "s0, 2048"), ("kc", "kv_cache", "bf16", "s0, 8, s1, 64"),
               ("vc", "kv_cache", "bf16", "s0, 8, s1, 64"), ("pos", "input", "i64", "s0"),
               ("po", "workspace", "f32", "s0, 32, s1 ceildiv 256, 64"),
               ("ps", "workspace", "f32", "s0, 32, s1 ceildiv 256, 2")],
        "attention_partial", "s0, 8, s1 ceildiv 256", ["q", "kc", "vc", "pos"], ["po", "ps"],
        attn | {"read_roles": ["q", "k_cache", "v_cache", "positions"],
                "write_roles": ["partial_out", "partial_stats"]}))
    # o_proj with the attention merge folded in: x merged from the splits of 32 heads
    progs["o_proj_merge"] = _o_proj_merge(32, 64, 64)
    progs["attention_merge"] = program_of_text(program_text(
        DIMS, [("po", "workspace", "f32", "s0, 32, s1 ceildiv 256, 64"),
               ("ps", "workspace", "f32", "s0, 32, s1 ceildiv 256, 2"), ("out", "workspace", "bf16", "s0, 2048")],
        "attention_merge", "s0, 8", ["po", "ps"], ["out"],
        attn | {"read_roles": ["partial_out", "partial_stats"], "write_roles": ["out"]}))
    progs["embedding"] = program_of_text(program_text(
        DIMS, [("w", "weight", "bf16", "100, 2048"), ("tok", "input", "i64", "s0"),
               ("out", "workspace", "bf16", "s0, 2048")],
        "embedding", "s0", ["w", "tok"], ["out"], {"read_roles": ["weight", "tokens"], "write_roles": ["out"]}))
    return progs


ELEMENTWISE_BODIES = """
func.func private @scale_shift(%x: bf16, %s: bf16, %b: bf16, %c: f32) -> bf16 {
  %p = arith.mulf %x, %s : bf16
  %q = arith.addf %p, %b : bf16
  %e = math.exp %q : bf16
  %m = arith.maximumf %q, %e : bf16
  %cf = arith.truncf %c : f32 to bf16
  %y = arith.subf %m, %cf : bf16
  return %y : bf16
}
func.func private @int_mix(%x: f32, %i: i64) -> f32 {
  %zero = arith.constant 0 : i64
  %pos = arith.cmpi sgt, %i, %zero : i64
  %f = arith.sitofp %i : i64 to f32
  %t = math.tanh %x : f32
  %a = arith.mulf %t, %f : f32
  %r = math.rsqrt %f : f32
  %y = arith.select %pos, %r, %a : f32
  return %y : f32
}
"""


# attention cases also built merging by the last split (etc-form-task-grids merge-last-split)
MERGE_LAST = ("attention_d128", "attention_wide", "attention_g12", "attention_norm_d128", "attention_subchunks",
              "attention_norm_d128_c128")


def extra_programs() -> dict[str, object]:
    """Kinds and params the models do not produce."""
    progs = {}
    # wide: from 2 rows on a chunk covers 2 * kv_chunk slots (at kv_len 700: 3 of 6 chunks of 64 slots
    # empty; 128 slots of head_dim 128 with the K/V prefetch filling the whole ring; 600 slots: no prefetch;
    # head_dim 48: two 4-byte loads a k-step instead of 16 bytes for two); norm: the Qwen3 q/k norm and
    # RoPE in the attention tile (etc-fuse-head-norm-attention; its chunk holding the new K row writes
    # the row back)
    for name, (heads, kv_heads, d, chunk, wide, norm) in {"attention_subchunks": (8, 2, 64, 600, 0, False),
                                                           "attention_d128": (8, 2, 128, 64, 0, False),
                                                           "attention_wide": (8, 2, 64, 64, 2, False),
                                                           "attention_wide_d128": (8, 2, 128, 128, 2, False),
                                                           # kv groups of 12 and 16 heads: A rows 8-15 of the mma
                                                           "attention_g12": (24, 2, 64, 64, 0, False),
                                                           "attention_g16_d48": (32, 2, 48, 64, 0, False),
                                                           "attention_norm_d128": (8, 2, 128, 64, 0, True),
                                                           # Qwen3-0.6B's chunks: 32 KiB of K rows, V copied
                                                           # after the waits (V_AFTER_WAITS_BYTES)
                                                           "attention_norm_d128_c128": (8, 2, 128, 128, 0, True),
                                                           "attention_norm_wide": (4, 2, 64, 64, 2, True)}.items():
        attn = {"head_dim": d, "kv_chunk": chunk, "num_heads": heads, "num_kv_heads": kv_heads,
                "scale": 1.0 / math.sqrt(d)} | ({"wide_rows": wide} if wide else {}) \
            | ({"head_norm_eps": 1e-6} if norm else {})
        splits = f"s1 ceildiv {chunk}"
        norm_buffers = [("qn", "weight", "bf16", f"{d}"), ("kn", "weight", "bf16", f"{d}"),
                        ("inv", "weight", "f32", f"{d // 2}")] if norm else []
        buffers = [("q", "workspace", "bf16", f"s0, {heads * d}"),
                   ("kc", "kv_cache", "bf16", f"s0, {kv_heads}, s1, {d}"),
                   ("vc", "kv_cache", "bf16", f"s0, {kv_heads}, s1, {d}"), ("pos", "input", "i64", "s0"),
                   *norm_buffers,
                   ("po", "workspace", "f32", f"s0, {heads}, {splits}, {d}"),
                   ("ps", "workspace", "f32", f"s0, {heads}, {splits}, 2")]
        reads = ["q", "kc", "vc", "pos"] + [n for n, *_ in norm_buffers]
        read_roles = ["q", "k_cache", "v_cache", "positions"] + (["q_norm_weight", "k_norm_weight", "inv_freq"]
                                                                if norm else [])
        progs[name] = program_of_text(program_text(
            DIMS, buffers, "attention_partial", f"s0, {kv_heads}, {splits}", reads, ["po", "ps"],
            attn | {"read_roles": read_roles, "write_roles": ["partial_out", "partial_stats"]}))
        for suffix, one_row in (("_last", False), ("_last1", True)) if name in MERGE_LAST else ():
            # the same, its last split of each (row, kv group) merging into out (at one row only: _last1)
            progs[name + suffix] = program_of_text(program_text(
                DIMS, buffers + [("out", "workspace", "bf16", f"s0, {heads * d}")], "attention_partial",
                f"s0, {kv_heads}, {splits}", reads, ["po", "ps", "out"],
                attn | {"read_roles": read_roles, "write_roles": ["partial_out", "partial_stats", "out"]}
                | ({"merge_one_row": True} if one_row else {})))
        if norm:
            continue
        progs[name + "_merge"] = program_of_text(program_text(
            DIMS, [("po", "workspace", "f32", f"s0, {heads}, {splits}, {d}"),
                   ("ps", "workspace", "f32", f"s0, {heads}, {splits}, 2"),
                   ("out", "workspace", "bf16", f"s0, {heads * d}")],
            "attention_merge", f"s0, {kv_heads}", ["po", "ps"], ["out"],
            attn | {"read_roles": ["partial_out", "partial_stats"], "write_roles": ["out"]}))
    progs["o_proj_x_one_row"] = _o_proj_x_one_row(2048, 64)  # Qwen3-0.6B's o_proj, fewer columns
    # Qwen3-shaped split heads with a head_rms_norm: 4 tiles of 32 columns per head of 128, the last to
    # arrive normalizes the head (q: y; k: only the KV cache)
    progs["q_proj_split_norm"] = _linear("qn", 1024, 256, 32, epilogue=["head_rms_norm", "rope"], head_dim=128)
    progs["k_proj_split_norm"] = _linear("kn", 1024, 256, 32, epilogue=["head_rms_norm", "rope", "kv_append"],
                                         head_dim=128, cache_heads=2)
    # Qwen3-8B's rows of 4096: more chunks per lane than the one-pass rms_norm staging holds
    progs["linear_norm_k4096"] = _linear("k4", 4096, 64, 32)
    # Qwen3-8B-shaped: 32 heads of 128 merged into K = 4096 (x of 16 rows staged a segment of K at a time)
    progs["o_proj_merge_k4096"] = _o_proj_merge(32, 128, 32)
    # ... gate and up (two roles, each K slice of 1024 half a segment: Qwen3-8B's gate/up)
    progs["gate_up_k4096"] = _linear("gu4", 4096, 24, 16, epilogue=["silu_mul"])
    # rows of 12288 without a norm (Qwen3-8B's down_proj: x staged in six segments)
    progs["down_k12288"] = _linear("d12", 12288, 16, 16, prologue="none")
    # Qwen3-8B's LM head (untied): tiles of 1152 columns of K = 4096, too wide for a segmented tile's
    # column sums below the ring, so 2+ rows take the plain row groups
    progs["lm_head_k4096"] = _linear("lm4", 4096, 1152, 1152)
    # ... with split heads of 128 normalized by their last tile and rope (Qwen3-8B's q_proj)
    progs["q_proj_split_norm_k4096"] = _linear("q4", 4096, 128, 64, epilogue=["head_rms_norm", "rope"], head_dim=128)
    progs["argmax"] = program_of_text(program_text(
        DIMS, [("x", "workspace", "bf16", "s0, 1000"), ("out", "output", "i64", "s0")],
        "argmax", "s0", ["x"], ["out"], {"read_roles": ["x"], "write_roles": ["out"]}))
    progs["elementwise_broadcast"] = program_of_text(program_text(
        DIMS, [("x", "workspace", "bf16", "s0, 20"), ("s", "workspace", "bf16", "s0, 1"), ("b", "weight", "bf16", "20"),
               ("c", "weight", "f32", "1"), ("y", "workspace", "bf16", "s0, 20")],
        "elementwise", "s0, 3", ["x", "s", "b", "c"], ["y"],
        {"tile_c": 8, "body": "scale_shift", "broadcast": ["full", "row", "col", "scalar"],
         "read_roles": ["operand0", "operand1", "operand2", "operand3"], "write_roles": ["y"]},
        extra=ELEMENTWISE_BODIES))
    progs["elementwise_int"] = program_of_text(program_text(
        DIMS, [("x", "workspace", "f32", "s0, 24"), ("i", "workspace", "i64", "s0, 24"),
               ("y", "workspace", "f32", "s0, 24")],
        "elementwise", "s0, 2", ["x", "i"], ["y"],
        {"tile_c": 16, "body": "int_mix", "broadcast": ["full", "full"], "read_roles": ["operand0", "operand1"],
         "write_roles": ["y"]}, extra=ELEMENTWISE_BODIES))
    progs["gelu_erf"] = program_of_text(program_text(
        DIMS, [("x", "workspace", "bf16", "s0, 300"), ("y", "workspace", "bf16", "s0, 300")],
        "gelu", "s0, 3", ["x"], ["y"], {"tile_c": 128, "approximate": "none", "read_roles": ["x"],
                                        "write_roles": ["y"]}))
    progs["add_alpha"] = program_of_text(program_text(
        DIMS, [("a", "workspace", "bf16", "s0, 72"), ("b", "workspace", "bf16", "s0, 72"),
               ("y", "workspace", "bf16", "s0, 72")],
        "add", "s0, 2", ["a", "b"], ["y"], {"tile_c": 64, "alpha": 0.5, "read_roles": ["a", "b"],
                                             "write_roles": ["y"]}))
    progs["layer_norm_nobias"] = program_of_text(program_text(
        DIMS, [("x", "workspace", "bf16", "s0, 96"), ("w", "weight", "bf16", "48"),
               ("y", "workspace", "bf16", "s0, 96")],
        "layer_norm", "s0, 2", ["x", "w"], ["y"], {"dim": 48, "eps": 1e-5, "has_bias": False,
                                                    "read_roles": ["x", "weight"], "write_roles": ["y"]}))
    progs["rms_norm_odd"] = program_of_text(program_text(
        DIMS, [("x", "workspace", "bf16", "s0, 60"), ("w", "weight", "bf16", "20"),
               ("y", "workspace", "f32", "s0, 60")],
        "rms_norm", "s0, 3", ["x", "w"], ["y"], {"dim": 20, "eps": 1e-6, "read_roles": ["x", "weight"],
                                                  "write_roles": ["y"]}))
    progs["linear_gelu_erf_bias"] = _linear("g", 128, 96, 32, prologue="layer_norm", epilogue=["gelu", "residual_add"],
                                            bias=True, gelu_approximate="none")
    progs["linear_partial_k"] = _linear("pk", 72, 40, 16, prologue="none")  # K % 256 != 0, last tile short
    progs["linear_f32"] = _linear("f", 264, 48, 16, prologue="rms_norm", epilogue=["silu_mul", "residual_add"],
                                  act="f32")
    # streams (K % 256 == 0): column groups of 8 cut short (tile_n 12), a last tile of 4 columns, the SiLU*mul
    # pair's whole rows (16 rows of 1024 bf16: one 32 KiB block, a copy per role)
    progs["linear_stream_short"] = _linear("ss", 1024, 28, 12, prologue="rms_norm", epilogue=["silu_mul"])
    # two row groups (RB 10 at K 3072) of one block of whole rows each, fewer than the ring's stages (2)
    progs["linear_stream_rows"] = _linear("sr", 3072, 16, 8, prologue="none")
    progs["linear_stream_block128"] = _linear("sb", 512, 28, 12, prologue="none", block_size=128)
    progs["linear_norm_block128"] = _linear("nb", 2048, 28, 12, block_size=128)  # a row: 2 chunks per warp
    progs["linear_heads_gelu_y"] = _linear("hg", 64, 64, 32, prologue="none", head_dim=16,
                                           epilogue=["head_rms_norm", "residual_add", "rope"])
    return progs


# ---------------------------------------------------------------- the case list


def model_cases(model: str, fuse: bool, sizes=None) -> list[Case]:
    program = model_program(model, fuse)
    sizes = sizes or {"batch": 3, "kv_len": 20}
    tag = f"{model}{'' if fuse else '-unfused'}"
    return [make_case(f"{tag}/{t.id}-{t.kind}", program, t, sizes, seed=t.id) for t in unique_tasks(program)]


def all_cases(*, models=("tiny-llama", "tiny-qwen3", "tiny-gpt"), llama=True, extra=True) -> list[Case]:
    cases = []
    for model in models:
        for fuse in (True, False):
            cases += model_cases(model, fuse)
    if "tiny-llama" in models:  # batch 1 and two row groups (10 rows > 8): q_proj, down_proj, the LM head
        program = model_program("tiny-llama", True)
        for t in program.tasks:
            if t.name in ("model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj", "lm_head"):
                for batch in (1, 10):
                    cases.append(make_case(f"tiny-llama/{t.id}-linear-b{batch}", program, t,
                                           {"batch": batch, "kv_len": 20}, seed=100 + t.id))
    if llama:
        progs = llama_programs()
        for name, program in progs.items():
            # kv_len 520: chunks of 256, 256 and 8 slots
            sizes = {"batch": 2 if name.startswith("attention") else 3, "kv_len": 520}
            cases.append(make_case(f"llama-1b/{name}", program, program.tasks[0], sizes, seed=7))
        lm = progs["gate_up"]
        cases.append(make_case("llama-1b/gate_up-b9", lm, lm.tasks[0], {"batch": 9, "kv_len": 520}, seed=7))
        for name in ("gate_up", "q_proj_split"):  # batch 1: the norm spreads its one row over the warps
            cases.append(make_case(f"llama-1b/{name}-b1", progs[name], progs[name].tasks[0],
                                   {"batch": 1, "kv_len": 520}, seed=9))
        per_batch = _o_proj_merge(32, 64, 64, one_row=True)  # one row merges, more rows read x
        for batch in (1, 3):
            cases.append(make_case(f"llama-1b/o_proj_merge_one_row-b{batch}", per_batch, per_batch.tasks[0],
                                   {"batch": batch, "kv_len": 520}, seed=12))
        merge = progs["o_proj_merge"]  # 10 splits: the merge prologue's second group of splits rescales the first
        cases.append(make_case("llama-1b/o_proj_merge-long", merge, merge.tasks[0], {"batch": 2, "kv_len": 2500},
                               seed=10))
        down = progs["down"]  # 9 rows of 8192: three row groups of 4 (staged x fills 64 KiB)
        cases.append(make_case("llama-1b/down-b9", down, down.tasks[0], {"batch": 9, "kv_len": 520}, seed=8))
    if extra:
        progs = extra_programs()
        for name, program in progs.items():
            if name.endswith("block128"):
                continue  # added below, run with their 128 threads
            sizes = {"batch": 2, "kv_len": 700} if name.startswith("attention") else {"batch": 3, "kv_len": 20}
            cases.append(make_case(f"extra/{name}", program, program.tasks[0], sizes, seed=11))
        # one row: chunks of kv_chunk slots; the last split merging at one row only, and x_one_row read
        for name in ("attention_wide", "attention_wide_d128", "attention_norm_wide", "attention_d128_last1",
                     "attention_norm_d128_last1", "attention_norm_d128_c128_last1", "o_proj_x_one_row"):
            cases.append(make_case(f"extra/{name}-b1", progs[name], progs[name].tasks[0], {"batch": 1, "kv_len": 700},
                                   seed=25))
        short = progs["linear_stream_short"]  # K 1024, 2 rows: the norm spreads both rows over the warps
        cases.append(make_case("extra/linear_stream_short-b2", short, short.tasks[0], {"batch": 2, "kv_len": 20},
                               seed=15))
        rows = progs["linear_stream_rows"]  # whole rows of 3072 (48 KiB blocks): the dot loops over the slice
        for batch, seed in ((12, 14), (1, 24)):
            cases.append(make_case(f"extra/linear_stream_rows-b{batch}", rows, rows.tasks[0],
                                   {"batch": batch, "kv_len": 20}, seed=seed))
        b128 = progs["linear_stream_block128"]  # compiled for 4 warps: column groups of 4
        cases.append(make_case("extra/linear_stream_block128", b128, b128.tasks[0], {"batch": 2, "kv_len": 20},
                               seed=13, block=128))
        for name in ("q_proj_split_norm", "k_proj_split_norm"):  # batch 1 (spread norm), 2 row groups of 16
            for batch in (1, 18):
                cases.append(make_case(f"extra/{name}-b{batch}", progs[name], progs[name].tasks[0],
                                       {"batch": batch, "kv_len": 20}, seed=16 + batch))
        k4096 = progs["linear_norm_k4096"]  # one row of 4096: two chunks per warp, loaded at once
        for batch in (1, 9):  # batch 1: the one-row variant; 9 rows: one pass, x staged in two segments of K
            cases.append(make_case(f"extra/linear_norm_k4096-b{batch}", k4096, k4096.tasks[0],
                                   {"batch": batch, "kv_len": 20}, seed=19 + batch))
        # segmented passes of 16 and 2 rows (the second with the mma's upper rows unused)
        for name in ("q_proj_split_norm_k4096", "o_proj_merge_k4096", "gate_up_k4096", "down_k12288"):
            cases.append(make_case(f"extra/{name}-b18", progs[name], progs[name].tasks[0],
                                   {"batch": 18, "kv_len": 300}, seed=31))
        lm = progs["lm_head_k4096"]
        for batch in (1, 3):
            cases.append(make_case(f"extra/lm_head_k4096-b{batch}", lm, lm.tasks[0], {"batch": batch, "kv_len": 20},
                                   seed=40 + batch))
        nb = progs["linear_norm_block128"]
        for batch in (1, 3):
            cases.append(make_case(f"extra/linear_norm_block128-b{batch}", nb, nb.tasks[0],
                                   {"batch": batch, "kv_len": 20}, seed=20 + batch, block=128))
        lin = progs["linear_partial_k"]
        cases.append(make_case("extra/linear_partial_k-block128", lin, lin.tasks[0], {"batch": 5, "kv_len": 20},
                               seed=12, block=128))
    return cases


def bf16_bits(values: np.ndarray) -> np.ndarray:
    """bf16 values (float32 storage) as their uint16 bit patterns."""
    return (round_bf16(values.astype(np.float32)).view(np.uint32) >> np.uint32(16)).astype(np.uint16)
