"""etc-tile: pick the tile shape of every etc.tile, for a target with `num-sms` streaming multiprocessors.

Matches: every `etc.tile` op.
Produces: the tile-shape params that etc.tiles defines per kind: `tile_n` for linear (about one tile per
SM for all the linears that read the same x together -- q, k and v run side by side --, a multiple of
head_dim when the epilogue works per head, else of 8; with split-heads, a linear whose per-head steps
are only head_rms_norm (first), rope and kv_append and whose heads outnumber the SMs' share gets tile_n
dividing head_dim, so a head's rotate-half pairs spread over several tiles, etc.tiles), `kv_chunk` for
attention (the KV length one split covers) and `wide_rows` (with wide-kv: the rows from which a split
covers twice kv_chunk, ceildiv(num-sms, 2 * num_kv_heads), so that batches whose (row, kv head) pairs
fill half the SMs run half the attention tiles, each twice as long), `tile_c` for row-wise elementwise
kinds. Sizes need not divide evenly: the last tile is short. A linear whose 16 rows of 16-bit x do not fit
shared memory whole (the tile library stages them a segment of K at a time) and whose column sums would
not fit beside a segment is narrowed to a whole number of rounds of the SMs (Qwen3-8B's LM head: 288
columns, four rounds), so that its weights stream once per 16 rows.
Guarantees: every tile kind's coverage rules hold (a per-head epilogue sees whole heads, a norm's dim
divides its row, a linear's in_features allows 16-byte loads); a shape no tile can cover is an error
at the op, never a silently wrong tiling.

Before:
  "etc.tile"(%x, %w) {kind = "linear", params = {in_features = 2048, out_features = 8192, ...}}
After (num-sms=132):
  "etc.tile"(%x, %w) {kind = "linear", params = {in_features = 2048, out_features = 8192, tile_n = 64, ...}}
"""
from __future__ import annotations

from etc import mlir_adapter as mlir
from etc.frontend import torch_ops as T
from etc.passes.base import Option, Pass

from etc.tiles import SPLIT_HEAD_STEPS, split_head_norm_ok

PER_HEAD_STEPS = ("head_rms_norm", "rope", "kv_append")
SPLIT_UNIT = 16  # a split head's tile_n is a multiple of this (two 8-aligned halves)
# ... and at least this: a tile has a fixed cost of a few microseconds (measured on the H200: q/k/v tiles of
# 16 columns of Llama-3.2-1B took 6.6 us each for 64 KB, and their 192 tiles took two rounds of 132 SMs)
SPLIT_MIN = 32
MAX_HEAD_DIM = 256


def _ceildiv(a: int, b: int) -> int:
    return -(-a // b)


def _round_up(a: int, b: int) -> int:
    return _ceildiv(a, b) * b


class Tile(Pass):
    NAME = "etc-tile"
    SUMMARY = "Choose each tile's shape (linear tile_n, attention kv_chunk, row tile_c) for the target."
    OPTIONS = (
        Option("num-sms", int, 132, "streaming multiprocessors (workers) to fill; H200: 132"),
        Option("tile-n", int, 0, "linear output features per tile; 0 picks about one tile per SM"),
        Option("kv-chunk", int, 128, "KV slots per attention split"),
        Option("row-tile", int, 1024, "columns per tile of row-wise elementwise kinds"),
        Option("split-heads", bool, True, "let a rope / kv_append linear split heads over several tiles"),
        Option("wide-kv", bool, True, "attention splits of twice kv-chunk at batches of many rows (wide_rows)"),
    )

    def run(self, module_op) -> None:
        if self.option("num-sms") < 1 or self.option("kv-chunk") < 1 or self.option("row-tile") < 1 \
                or self.option("tile-n") < 0:
            self.error(module_op, "etc-tile options must be positive")
            return
        ops = []
        for op in mlir.ops_named(module_op, T.TILE_OP):
            problem = T.tile_problem(op)
            if problem:
                self.error(op, problem)
            else:
                ops.append(op)
        # linears reading one x (q/k/v) run side by side: they share the SMs by their output features
        xs = [T.tile_operand(op, "x") if T.tile_kind(op) == "linear" else None for op in ops]
        features: dict = {}
        for op, x in zip(ops, xs):
            if x is not None:
                features[x] = features.get(x, 0) + T.tile_params(op)["out_features"]
        for op, x in zip(ops, xs):
            params = T.tile_params(op)
            try:
                chosen = self._choose(T.tile_kind(op), params, op, features.get(x, 0))
            except ValueError as e:
                self.error(op, f"no tile covers this {T.tile_kind(op)}: {e}")
                continue
            if chosen:
                with op.location:
                    op.attributes["params"] = mlir.python_to_attr({**params, **chosen})

    def _choose(self, kind: str, params: dict, op, share: int) -> dict:
        """share: the output features of the linears that read op's x, op's own included (0: none)."""
        if kind == "linear":
            k, n = params["in_features"], params["out_features"]
            if k % 8:
                raise ValueError(f"in_features {k} is not a multiple of 8 (16-byte bf16 loads)")
            steps = [s for s in params.get("epilogue", []) if s in PER_HEAD_STEPS]
            unit = params["head_dim"] if steps else 8
            if steps and n % unit:
                raise ValueError(f"out_features {n} is not a whole number of heads of {unit}")
            want = self.option("tile-n") or _ceildiv(max(n, share), self.option("num-sms"))
            splittable = self.option("split-heads") and set(steps) <= set(SPLIT_HEAD_STEPS) \
                and split_head_norm_ok(params.get("epilogue", []))
            if steps and want < unit and splittable:  # a head over several tiles
                least = want if self.option("tile-n") else max(want, SPLIT_MIN)  # an explicit tile-n is taken
                parts = [t for t in range(SPLIT_UNIT, unit, SPLIT_UNIT) if unit % t == 0 and t >= least]
                if self.option("tile-n") and self.option("tile-n") not in parts:
                    raise ValueError(f"tile-n {want} neither holds whole heads of {unit} nor splits them "
                                     f"(a divisor of {unit} that is a multiple of {SPLIT_UNIT})")
                return {"tile_n": parts[0] if parts else unit}
            tile_n = self.option("tile-n") or _round_up(want, unit)
            if not steps and not self.option("tile-n"):
                tile_n = self._segmentable(op, k, max(n, share), tile_n, params)
            if tile_n % unit:
                raise ValueError(f"tile-n {tile_n} does not hold whole heads of {unit}" if steps else
                                 f"tile-n {tile_n} is not a multiple of 8 (16-byte bf16 loads)")
            return {"tile_n": tile_n}
        if kind == "attention":
            d = params["head_dim"]
            if d > MAX_HEAD_DIM or d % 8:
                raise ValueError(f"head_dim {d} (must be a multiple of 8, at most {MAX_HEAD_DIM})")
            wide = 0
            if self.option("wide-kv"):
                wide = max(2, _ceildiv(self.option("num-sms"), 2 * params["num_kv_heads"]))
            return {"kv_chunk": self.option("kv-chunk"), "wide_rows": wide}
        cols = _cols(op.results[0])
        if kind in ("rms_norm", "layer_norm"):
            if cols is None or cols % params["dim"]:
                raise ValueError(f"rows of {cols} values do not split into norms over {params['dim']}")
        if kind in ("rope", "kv_append"):
            x = _cols(T.tile_operand(op, "x"))
            if x is None or x % params["head_dim"] or params["head_dim"] % 2:
                raise ValueError(f"rows of {x} values do not split into heads of {params['head_dim']}")
        if kind in ("silu_mul", "gelu", "add", "elementwise"):
            if cols is None:
                raise ValueError("the row length is symbolic")
            return {"tile_c": min(cols, self.option("row-tile"))}
        return {}

    def _segmentable(self, op, k: int, features: int, tile_n: int, params: dict) -> int:
        """tile_n, narrowed to a whole number of rounds of the SMs (features / (m * num-sms)) where 16 rows of
        16-bit x do not fit shared memory whole and the tile's column sums would not fit beside a segment of
        them (etc.codegen.tiles_linear.streams_per_row_group): unsegmented, such a tile streams its weights
        once per 8 rows (Qwen3-8B's LM head, 1152 columns, twice at batch 16: 290 us of 7.4 ms)."""
        from etc.codegen.tiles_linear import streams_per_row_group
        x = T.tensor_type(T.tile_operand(op, "x"))
        if x is None or x.dtype not in ("bf16", "f16"):
            return tile_n
        roles = 2 if "silu_mul" in params.get("epilogue", []) else 1
        rounds = 1
        while streams_per_row_group(k, tile_n, roles) and tile_n > 8:
            rounds += 1
            tile_n = _round_up(_ceildiv(features, rounds * self.option("num-sms")), 8)
        return tile_n


def _cols(value) -> int | None:
    """Columns of a value viewed as [rows = first dim, cols = product of the rest]."""
    t = T.tensor_type(value)
    if t is None or any(d is None for d in t.dims[1:]):
        return None
    cols = 1
    for d in t.dims[1:]:
        cols *= d
    return cols
