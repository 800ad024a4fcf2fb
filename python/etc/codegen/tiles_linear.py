"""The linear tile: y[:, cols] = x @ weight[cols].T with a fused prologue norm and epilogue steps.

Layout of one tile (columns [n0, n0 + tile_n) of N, all rows), per group of RB rows (RB static, <= 16):
  1. stage:   x rows -> shared memory `xs[RB][K]` in x's dtype, normalized (rms_norm / layer_norm, one
              warp per row; an rms_norm of few rows spreads each row over the warps; in the one-row
              variant a row longer than the warps cover is loaded whole at once) and rounded as the
              unfused norm would; one barrier.
              The per-head steps' constants (positions, inv_freq, head_norm_weight) start their cp.async
              copies into shared memory here.
  2. dot:     one warp per 2 output columns (or per gate + up column pair); each lane streams 16-byte
              chunks (8 bf16) of the weight rows, 8 chunks per row in flight (16 in all), and FMAs them
              against every staged row (f32 accumulators); warp
              butterfly sums; lane rr then finishes row rr: bias, rounding, the per-column epilogue
              steps (silu_mul with the up projection computed in the same pass, gelu, residual_add),
              and stores y -- or, when per-head steps follow, stages the rounded values in `st[RB][tile_n]`.
              A residual_add reads the tile's residual slice from shared memory, copied there with
              cp.async while x stages (residual_smem), not with a global load per output.
  3. heads:   (only with head_rms_norm / rope / kv_append) one warp per (row, head) segment of `st`
              runs the remaining steps in order, then stores y and/or the KV cache. A split head with a
              head_rms_norm (whose rstd needs the whole head) stores its values unnormalized instead;
              the last of the head's tiles to arrive (an atomic arrival counter) gathers the head and
              runs the steps on all of it (gather_head), so no tile waits for another.
The dot phase is emitted for 1, 2, 4, 8 and RB rows and picked at run time, so batch 1 does no wasted work.
Row groups of 2+ rows whose 16-bit weights stream (below) take the tensor-core dot instead (mma_columns:
mma.sync with the rows as A, 8 weight rows as B, K split over the warps; measured on the H200 with
Llama-3.2-1B: batch 4 1.78 -> 1.43 ms, batch 16 5.71 -> 3.38 ms, batch 1 unchanged). Where 16 whole rows
of x do not fit X_STAGE_BYTES (K > 2048 at bf16), 2+ rows go SEGMENT_ROWS at a time and x is staged one
segment of K at a time (segmented_row_groups), so the weights stream once per 16 rows, not per RB rows.
When x's rows are a runtime size, one row runs the tile's *one-row variant* `@<tile>_one_row`, the same
tile emitted for exactly one row (one row group, no row dispatch; a normalized row of more chunks than
warps staged by `@<tile>_row`), so the code of the other batch sizes is not shaped around batch 1.
With the attention_merge prologue there is no x: stage 1 merges the attention splits (partial_out,
partial_stats) into xs, as the attention_merge tile would (the merge folded into o_proj). With
attention_merge_one_row (the merge folded per batch) only the one-row variant does that; more rows stage
x, which an attention_merge grid merged. With a split
head (tile_n < head_dim, etc.tiles) the tile's columns are its rotate-half pairs (`col`).
With a weight stream (etc.codegen.weight_stream: K a multiple of 256, 16- or 32-bit weights) the dot
phase reads the weight rows from shared-memory stages that bulk copies fill, one column per warp, the
first stages issued by the worker before the tile's waits; otherwise every lane loads them from global
memory itself. One row whose blocks all fit the ring (no refills) takes its column groups in one pass
(resident_columns): every block waited for, every group's loads in flight at once, one barrier, the warp
sums interleaved (measured on the H200, batch 1: Qwen3-0.6B 0.917 -> 0.901, 0.926 -> 0.900 and 0.934 ->
0.909 ms in three runs).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math

from etc.codegen.abi import tile_function_name
from etc.codegen.tile_library import WARP, Tile, col_span, gelu, rope_pair, silu
from etc.codegen.tiles_builder import ELEM_BYTES, FLOAT_BITS, V
from etc.codegen.weight_stream import (RING_OFFSET, SEGMENT_ROWS, STREAM_SHARED_BYTES, StreamGeometry, WeightStream,
                                       linear_column)
from etc.tiles import SPLIT_HEAD_STEPS, split_head_norm_ok, split_head_tiles

ROW_GROUP = 16  # rows sharing one pass over the weights
X_STAGE_BYTES = 64 * 1024  # shared memory for staged x rows
UNROLL = 8  # weight chunks in flight per lane and column
SLICE_UNROLL = 8  # 256-element chunks of a streamed block's slice unrolled (a longer slice loops)
COLUMNS_PER_WARP = 2  # columns a warp streams at once (gate + up count as two)
HOIST_X_VALUES = 64  # x values per lane that may stay in registers across the columns
MERGE_GROUP = 8  # attention splits whose stats and partial outputs a merge thread loads at once
COPY_UNROLL = 4  # 16-byte chunks of x a thread loads at once when staging x without a norm
# 16-byte chunks per lane up to which a normalized row is staged in one pass, its x and norm weight all
# loaded at once (16, for K = 4096, measured faster on Qwen3-8B but spills registers)
STAGE_IN_REGISTERS = 8
ONE_ROW_CHUNKS = 4  # warp chunks (8 x 32 elements) of one normalized row a warp loads at once
# 16-byte weight chunks per lane up to which one row whose blocks all fit the ring reads them in one pass
# (resident_columns): Qwen3-0.6B's q/k/v (4 groups of 4), Llama-3.2-1B's o_proj (2 of 8)
RESIDENT_CHUNKS = 32
MMA_ROWS = 2  # row groups of at least this many rows take the tensor-core dot (fewer: the FMA dot)
MMA_WARPS = 8  # the tensor-core dot's block: one column per warp, so one mma's 8 columns per column group
ELEMENTWISE_STEPS = ("silu_mul", "gelu", "residual_add")
HEAD_STEPS = ("head_rms_norm", "rope", "kv_append")


SEGMENT_SCRATCH_SLACK = 2048  # a segmented tile's other scratch: norm partials, rstd, block reduction


def streams_per_row_group(in_features: int, tile_n: int, roles: int) -> bool:
    """Whether a linear tile over 16-bit x would stream its weights once per RB rows, not per SEGMENT_ROWS:
    SEGMENT_ROWS rows of x do not fit X_STAGE_BYTES whole, and its column sums (`acc`) would not fit below
    the ring beside x's segment and the tensor-core dot's partial sums, so it cannot segment (etc-tile
    narrows such a tile)."""
    if SEGMENT_ROWS * in_features * 2 <= X_STAGE_BYTES:
        return False
    red = 2 * MMA_WARPS * roles * 16 * 8 * 4
    acc = -(-tile_n // MMA_WARPS) * red // 2 // MMA_WARPS
    return X_STAGE_BYTES + red + acc + SEGMENT_SCRATCH_SLACK > RING_OFFSET


def emit_linear(t: Tile) -> None:
    Linear(t).emit()


class Linear:
    def __init__(self, t: Tile, one_row: bool = False, parent_geometry=False):
        """one_row: emit the tile for exactly one row of x (its one-row variant); parent_geometry: the
        variant's tile's stream geometry (None: it does not stream), which the variant follows, since
        only the tile's issue function starts a stream."""
        self.t = t
        self.parent_geometry = parent_geometry
        self.b = t.b
        p = t.params
        self.K = int(t.param("in_features"))
        self.N = int(t.param("out_features"))
        self.TN = int(t.param("tile_n"))
        self.prologue = p.get("prologue", "none")
        if self.prologue not in ("none", "rms_norm", "layer_norm", "attention_merge", "attention_merge_one_row",
                                 "x_one_row"):
            t.fail(f"unknown prologue '{self.prologue}'")
        if self.prologue == "attention_merge_one_row":  # one row merges the partials, more rows read x
            rows_x = t.shape("x")[0]
            self.prologue = "attention_merge" if one_row or (isinstance(rows_x, int) and rows_x == 1) else "none"
        if self.prologue == "x_one_row":  # one row reads x_one_row, more rows x: x names x_one_row's buffer
            rows_x = t.shape("x")[0]
            if one_row or (isinstance(rows_x, int) and rows_x == 1):
                if t.shape("x_one_row")[1] != t.shape("x")[1]:
                    t.fail(f"x_one_row has {t.shape('x_one_row')[1]} columns, x {t.shape('x')[1]}")
                t.role_buffer["x"] = t.role_buffer["x_one_row"]
            self.prologue = "none"
        self.x_role = x_role = "partial_out" if self.prologue == "attention_merge" else "x"
        if x_role == "x":
            rows, kx = t.shape("x")
            self.xt = t.float_etype("x")
        else:  # x is merged from the attention splits: [rows, heads, splits, head_dim] f32
            rows, heads, _, hd = t.shape("partial_out")
            kx = heads * hd
            self.xt = str(t.param("x_etype"))
            if self.xt not in ("bf16", "f16", "f32") or hd % 8 or t.float_etype("partial_stats") != "f32":
                t.fail(f"the attention_merge prologue needs x_etype bf16/f16/f32 (got '{self.xt}'), f32 partials "
                       f"and head_dim % 8 == 0 (got {hd})")
        if kx != self.K:
            t.fail(f"x has {kx} columns, in_features is {self.K}")
        if list(t.shape("weight")) != [self.N, self.K]:
            t.fail(f"weight shape {t.shape('weight')} is not [{self.N}, {self.K}]")
        if self.K % 8:
            t.fail(f"in_features {self.K} is not a multiple of 8")
        # a static single row is the one-row tile itself
        self.one_row = one_row = one_row or (isinstance(rows, int) and rows == 1)
        self.rows = 1 if one_row else rows
        t.float_etype("weight")
        self.has_y, self.has_cache = t.has("y"), t.has("cache")
        if not self.has_y and not self.has_cache:
            t.fail("writes neither y nor cache")
        self.rt = t.float_etype("y" if self.has_y else "cache")  # the activation dtype of the unfused ops
        self.has_bias = bool(p.get("has_bias", t.has("bias")))
        self.steps = [str(s) for s in p.get("epilogue", ())]
        self.D = 0  # head_dim, when per-head steps follow
        self.check_steps()
        max_rows = 1 if one_row else int(t.max_shape(x_role)[0])
        self.one_row_variant = not one_row and max_rows > 1 and not isinstance(rows, int)
        self.RB = max(1, min(ROW_GROUP, max_rows, X_STAGE_BYTES // (self.K * ELEM_BYTES[self.xt])))
        self.variants = [v for v in (1, 2, 4, 8) if v < self.RB] + [self.RB]

    def check_steps(self) -> None:
        t = self.t
        first_head = next((i for i, s in enumerate(self.steps) if s in HEAD_STEPS), len(self.steps))
        self.prefix, self.rest = self.steps[:first_head], self.steps[first_head:]
        for s in self.steps:
            if s not in ELEMENTWISE_STEPS + HEAD_STEPS:
                t.fail(f"unknown epilogue step '{s}'")
        if "silu_mul" in self.rest:
            t.fail("epilogue 'silu_mul' after a per-head step is not supported")
        needs = {"silu_mul": ["up_weight"], "residual_add": ["residual"], "head_rms_norm": ["head_norm_weight"],
                 "rope": ["positions", "inv_freq"], "kv_append": ["positions", "cache"]}
        for s in self.steps:
            for role in needs.get(s, []):
                if not t.has(role):
                    t.fail(f"epilogue '{s}' needs a '{role}' operand")
        if "silu_mul" in self.steps and list(t.shape("up_weight")) != [self.N, self.K]:
            t.fail(f"up_weight shape {t.shape('up_weight')} is not [{self.N}, {self.K}]")
        self.split = split_head_tiles(self.t.params) if self.rest else 1
        if self.split > 1:
            self.D = int(t.param("head_dim"))
            if any(s not in SPLIT_HEAD_STEPS for s in self.rest) or self.D % self.TN or self.TN % 16 \
                    or self.N % self.D:
                t.fail(f"tile_n {self.TN} splits heads of {self.D}: that needs per-head steps among "
                       f"{', '.join(SPLIT_HEAD_STEPS)} only, tile_n dividing head_dim, tile_n % 16 == 0 and "
                       f"whole heads in out_features")
            if not split_head_norm_ok(self.steps):
                t.fail("a split head takes 'head_rms_norm' as its first epilogue step, and once")
        elif self.rest:
            self.D = int(t.param("head_dim"))
            if self.TN % self.D or self.N % self.D:
                t.fail(f"epilogue '{self.rest[0]}' needs whole heads: tile_n {self.TN} and out_features {self.N} "
                       f"must be multiples of head_dim {self.D}")
            if "rope" in self.rest and self.D % 2:
                t.fail(f"rope needs an even head_dim, not {self.D}")
        if self.has_y and t.shape("y")[1] != self.N:
            t.fail(f"y has {t.shape('y')[1]} columns, out_features is {self.N}")
        # a split head's norm needs the whole head: the head's last tile gathers it (gather_head)
        self.gather = self.split > 1 and "head_rms_norm" in self.rest
        self.row_staging = None  # (eps, chunks) once the tile calls its @<tile>_row companion

    # ------------------------------------------------------------ the tile

    def emit(self) -> None:
        t, b = self.t, self.b
        K, TN, RB, xt = self.K, self.TN, self.RB, self.xt
        j = t.coords[0]
        self.n0, self.ncols = col_span(t, j, TN, self.N)
        geometry = StreamGeometry.of(t, RB, self.x_role) if t.weight_stream else None
        if self.parent_geometry is not False:  # the one-row variant streams exactly when its tile does
            geometry = self.parent_geometry and dataclasses.replace(self.parent_geometry, row_group=RB,
                                                                    segment_k=0)
        seg_k = self.segment_k(geometry)
        if seg_k:  # a wide tile's column sums may not fit below the ring: then it does not segment
            probe = self.companion_tile(weight_stream=t.weight_stream)
            self.allocate(probe, seg_k)
            seg_k = seg_k if probe.shared_bytes <= RING_OFFSET else 0
        self.seg_k = seg_k
        self.allocate(t, seg_k)
        # a tile whose own scratch reaches the ring loads its weights without a stream
        geometry = geometry if geometry and t.shared_bytes <= RING_OFFSET else None
        if geometry and self.seg_k and self.red is not None:
            geometry = dataclasses.replace(geometry, segment_k=self.seg_k)
        else:
            self.seg_k = 0
        self.stream = WeightStream(t, geometry) if geometry else None
        with b.at_entry():
            self.lane8 = b.mul(t.lane, 8)
            self.xs_lane = b.gep(self.xs, self.lane8, xt)
            self.wptr = t.ptr("weight")
            self.uptr = t.ptr("up_weight") if "silu_mul" in self.steps else None

        if self.one_row_variant:
            # batch 1 runs @<tile>_one_row, the tile built for exactly one row: the code of the other
            # batches stays as it was (Qwen3-8B batch 4 measured 6% slower with the one-row staging in it)
            b.if_(b.cmp("eq", self.rows, 1), [], lambda: self.call_one_row() or [], lambda: self.row_groups() or [])
        else:
            self.row_groups()
        if self.row_staging:
            t.companions.append(self.row_staging_function())
        if self.one_row_variant:
            t.companions.append(self.one_row_function())
        if self.stream:
            t.ring_end = STREAM_SHARED_BYTES
            if not self.one_row:  # the tile's issue function serves its one-row variant as well
                issue = self.companion_tile(weight_stream=True)
                WeightStream(issue, self.stream.g).start()
                t.companions.append(issue.function_text(suffix="_issue"))

    def allocate(self, t: Tile, seg_k: int) -> None:
        """The tile's shared-memory scratch in tile t (this tile, or a probe of the layout), for segments
        of seg_k elements of K (0: not segmented)."""
        K, TN, RB, xt = self.K, self.TN, self.RB, self.xt
        self.RG = SEGMENT_ROWS if seg_k else RB  # rows of a row group (positions, st)
        self.xs = t.smem(max(RB * K, SEGMENT_ROWS * seg_k) * ELEM_BYTES[xt])
        self.st = t.smem(self.RG * TN * 4) if self.rest else None
        self.head_st = t.smem(RB * self.D * 4) if self.gather else None  # a gathered head per row
        self.last = t.smem(4) if self.gather else None  # 1 in the head's last tile to arrive
        self.head_consts = self.head_constants(t)
        self.res = self.residual_smem(t)
        # per warp chunk of the staged rows (stage_rms_spread), or per warp (stage_rms_row)
        self.norm_partial = t.smem(max(RB * K // (8 * WARP), t.block_max // WARP) * 4) \
            if self.prologue == "rms_norm" and K % (8 * WARP) == 0 else None
        # the tensor-core dot's per-warp partial sums, two column groups' worth (see mma_columns)
        red_bytes = 2 * MMA_WARPS * (2 if "silu_mul" in self.steps else 1) * 16 * 8 * 4
        self.red = t.smem(red_bytes) if self.mma_possible() and t.shared_bytes + red_bytes <= RING_OFFSET else None
        # a segmented tile's column sums, carried across the segments (per column group, role, row, column)
        self.rstd = t.smem(SEGMENT_ROWS * 4) if seg_k and self.prologue == "rms_norm" else None
        self.acc = t.smem(-(-TN // MMA_WARPS) * red_bytes // 2 // MMA_WARPS) if seg_k else None

    def mma_possible(self) -> bool:
        """Whether row groups of MMA_ROWS+ rows may take the tensor-core dot: streamed weights of x's
        16-bit float type and blocks of MMA_WARPS warps (a column group is then one mma's 8 columns)."""
        t = self.t
        roles = ("weight", "up_weight") if "silu_mul" in self.steps else ("weight",)
        return (not self.one_row and self.RB >= MMA_ROWS and t.weight_stream and t.block_max == MMA_WARPS * WARP
                and self.xt in ("bf16", "f16") and all(t.etype(r) == self.xt for r in roles))

    def segment_k(self, geometry: StreamGeometry | None) -> int:
        """Elements of K per segment of x when the tile is segmented: its 2+ rows take the tensor-core dot
        SEGMENT_ROWS rows at a time, x staged a segment at a time, because SEGMENT_ROWS whole rows do not
        fit X_STAGE_BYTES (which otherwise makes a pass over the weights per RB rows: Llama-3.2-1B's
        down_proj at batch 16 streamed its weights four times). 0: not segmented."""
        if not (geometry and self.one_row_variant and self.mma_possible() and geometry.columns == MMA_WARPS
                and self.prologue in ("none", "rms_norm", "attention_merge") and self.RB < SEGMENT_ROWS):
            return 0
        unit = geometry.slice_k
        if self.prologue == "attention_merge":  # a segment merges whole heads
            unit = math.lcm(unit, int(self.t.shape("partial_out")[3]))
        fits = [k for k in range(unit, self.K, unit)
                if self.K % k == 0 and SEGMENT_ROWS * k * ELEM_BYTES[self.xt] <= X_STAGE_BYTES]
        return max(fits, default=0)

    def row_groups(self) -> None:
        """Every row group: stage x, dot products, per-head steps; then the gathered heads; the stream's
        barriers invalidated."""
        if self.seg_k:
            self.segmented_row_groups()
            return
        t, b, RB = self.t, self.b, self.RB
        with b.loop(0, self.rows, RB) as rg:
            nr = b.min(b.sub(self.rows, rg), RB)
            b.barrier()  # the previous group is done with xs / st
            self.copy_head_constants(rg, nr)
            self.copy_residual(rg, nr)
            self.stage(rg, nr)
            if self.res is not None:
                b.wait_async()
            b.barrier()
            first = b.cmp("eq", rg, 0) if t.profile else None  # phases time the first row group (<= 16 rows)
            t.phase(0, first)  # x staged
            self.dispatch(rg, nr, 0)
            self.after_dot(rg, nr, first)
        self.after_row_groups()

    def after_dot(self, rg: V, nr: V, first: V | None) -> None:
        """A row group's per-head steps (a split head with a norm: its unnormalized values), after its dot
        products; profile phases 1 and 2 (first: the row group whose phases are stamped)."""
        t, b = self.t, self.b
        if self.rest:
            if self.head_consts:
                b.wait_async()
            b.barrier()
            t.phase(1, first)  # every warp's dot products
            if self.gather:
                self.store_unnormed(rg, nr)
            else:
                self.heads(rg, nr)
        else:
            t.phase(1, first)  # warp 0's dot products
        t.phase(2, first)

    def after_row_groups(self) -> None:
        """The gathered heads, then the stream's barriers invalidated."""
        if self.gather:
            self.gather_head()
        if self.stream:
            self.stream.finish()

    def segmented_row_groups(self) -> None:
        """A segmented tile's 2+ rows (segment_k): per group of SEGMENT_ROWS rows, per segment of K, stage
        x's segment and run the tensor-core dot over the segment's blocks (K-major: WeightStream), the
        column sums carried in `acc`; then the per-head steps and the gathered heads as in row_groups."""
        t, b = self.t, self.b
        segments = self.K // self.seg_k
        with b.loop(0, self.rows, SEGMENT_ROWS) as rg:
            nr = b.min(b.sub(self.rows, rg), SEGMENT_ROWS)
            b.barrier()  # the previous group is done with st and the head constants
            self.copy_head_constants(rg, nr)
            self.copy_residual(rg, nr)
            if self.rstd is not None:
                self.row_rstd(rg, nr)
            first = b.cmp("eq", rg, 0) if t.profile else None
            with b.loop(0, segments) as seg:
                b.barrier()  # the previous segment's dot is done with xs
                self.stage_segment(rg, nr, seg)
                if self.res is not None:
                    b.wait_async()
                b.barrier()
                if t.profile:
                    t.phase(0, b.land(first, b.cmp("eq", seg, 0)))  # x's first segment staged
                b.if_(b.cmp("le", nr, 8), [], lambda: self.mma_columns(rg, nr, 8, seg) or [],
                      lambda: self.mma_columns(rg, nr, SEGMENT_ROWS, seg) or [])
            self.after_dot(rg, nr, first)
        self.after_row_groups()

    def row_rstd(self, rg: V, nr: V) -> None:
        """rms_norm's 1 / rms of each row of the group, over all of K, into `rstd` (one warp per row, every
        chunk of the row in flight at once up to UNROLL per lane); ends with a barrier."""
        t, b = self.t, self.b
        K = self.K
        eps = float(t.param("prologue_eps"))
        per_lane = K // (8 * WARP)
        step = max(u for u in range(1, UNROLL + 1) if per_lane % u == 0)
        with b.loop(t.warp, nr, t.nwarps) as rr:
            row = b.add(b.mul(b.add(rg, rr), K), self.lane8)

            def chunks(it, acc):
                vals = [t.load_vec("x", b.add(row, b.add(b.mul(it, 256 * step), 256 * u))) for u in range(step)]
                ss = acc[0]
                for v in vals:
                    ss = _sumsq(b, b.unpack_f32(v), ss)
                return [ss]
            (ss,) = b.for_(0, per_lane // step, 1, [b.f32(0.0)], chunks)
            rstd = b.div(1.0, b.sqrt(b.add(b.div(b.warp_sum(ss), float(K)), eps)))
            with b.when(b.cmp("eq", t.lane, 0)):
                b.store(rstd, b.gep(self.rstd, rr, "f32"))
        b.barrier()

    def stage_segment(self, rg: V, nr: V, seg: V) -> None:
        """x[rg : rg + nr, seg * segment_k : (seg + 1) * segment_k] -> xs (rows segment_k apart), normalized
        as stage() would (rms_norm with the row's rstd over all of K) or merged from the attention splits;
        every thread's COPY_UNROLL chunks in flight at once."""
        t, b = self.t, self.b
        K, SK, xt = self.K, self.seg_k, self.xt
        k0 = b.mul(seg, SK)
        if self.prologue == "attention_merge":
            self.stage_merge(rg, nr, k0, SK)
            return
        n = b.mul(nr, SK // 8)
        if self.rstd is None and ELEM_BYTES[xt] == 2:  # x[rg + r, k0 + k] -> xs[r * SK + k]: one round trip
            per_row = SK // 8
            self.copy_x_async(b.add(b.mul(rg, K), k0), n,
                              lambda i: b.add(b.mul(b.div(i, per_row), K), b.mul(b.rem(i, per_row), 8)),
                              lambda i: b.mul(i, 8))
            return
        with b.loop(t.tid, n, b.mul(t.bd, COPY_UNROLL)) as i0:
            at = [b.add(i0, b.mul(t.bd, u)) for u in range(COPY_UNROLL)]
            idx = [b.min(i, b.sub(n, 1)) for i in at]  # past n: a repeated in-bounds load
            rows = [b.div(i, SK // 8) for i in idx]
            ks = [b.add(k0, b.mul(b.rem(i, SK // 8), 8)) for i in idx]
            vals = [t.load_vec("x", b.add(b.mul(b.add(rg, r), K), k)) for r, k in zip(rows, ks)]
            if self.rstd is not None:
                ws = [t.load_vec("norm_weight", k) for k in ks]
            for u, (i, r, k, v) in enumerate(zip(at, rows, ks, vals)):
                if self.rstd is not None:
                    rstd = b.load(b.gep(self.rstd, r, "f32"), "f32")
                    v = b.vec_from([b.cast(b.round_to(b.mul(w, b.round_to(b.mul(x, rstd), xt)), xt), xt)
                                    for x, w in zip(b.unpack_f32(v), b.unpack_f32(ws[u]))])
                with b.when(b.cmp("lt", i, n)):
                    b.store(v, b.gep(self.xs, b.add(b.mul(r, SK), b.sub(k, k0)), xt), min(16, 8 * ELEM_BYTES[xt]))

    def companion_tile(self, weight_stream: bool, profile: bool = False) -> Tile:
        """A fresh Tile of this task, for a companion function of the tile."""
        t = self.t
        return type(t)(t.task, t.program, t.buffer_index, t.symbol_index, weight_stream=weight_stream,
                       profile=profile, ring_bytes=t.ring_bytes)

    def call_companion(self, suffix: str, c1: V) -> None:
        """Call `@<tile><suffix>` with this tile's arguments, c1 as its second coordinate."""
        t = self.t
        t.b.stmt(f"func.call @{tile_function_name(t.task.id)}{suffix}(%buffers, %sizes, {t.coords[0]}, {c1}, "
                 f"{t.coords[2]}) : (!llvm.ptr, !llvm.ptr, i64, i64, i64) -> ()")

    def call_one_row(self) -> None:
        self.call_companion("_one_row", self.t.coords[1])

    def one_row_function(self) -> str:
        """The companion `@<tile>_one_row`: this tile for exactly one row of x."""
        t = self.t
        one = self.companion_tile(t.weight_stream, t.profile)
        Linear(one, one_row=True, parent_geometry=self.stream.g if self.stream else None).emit()
        t.shared_bytes = max(t.shared_bytes, one.shared_bytes)
        t.ring_end = max(t.ring_end, one.ring_end)
        return one.function_text(suffix="_one_row")

    def col(self, c) -> V:
        """The output column (and weight row) of local column c."""
        return linear_column(self.b, self.n0, self.t.coords[0], c, self.TN, self.D, self.split)

    def dispatch(self, rg: V, nr: V, i: int) -> None:
        """Run the dot phase of the smallest variant >= nr."""
        b = self.b
        v = self.variants[i]
        if i == len(self.variants) - 1:
            self.dot(rg, nr, v)
            return
        b.if_(b.cmp("le", nr, v), [], lambda: self.dot(rg, nr, v), lambda: self.dispatch(rg, nr, i + 1))

    # ------------------------------------------------------------ 1. stage x (normalized)

    def stage(self, rg: V, nr: V) -> None:
        t, b = self.t, self.b
        K, xt = self.K, self.xt
        src = b.mul(rg, K)
        if self.prologue == "attention_merge":
            self.stage_merge(rg, nr)
            return
        if self.prologue == "none" and ELEM_BYTES[xt] == 2:  # every chunk in flight at once, no registers
            self.copy_x_async(src, b.mul(nr, K // 8), lambda i: b.mul(i, 8))
            return
        if self.prologue == "none":  # COPY_UNROLL chunks per thread in flight at once
            n = b.mul(nr, K // 8)
            with b.loop(t.tid, n, b.mul(t.bd, COPY_UNROLL)) as i0:
                at = [b.add(i0, b.mul(t.bd, u)) for u in range(COPY_UNROLL)]
                offs = [b.mul(b.min(i, b.sub(n, 1)), 8) for i in at]  # past n: a repeated in-bounds load
                vals = [t.load_vec("x", b.add(src, off)) for off in offs]
                for i, off, v in zip(at, offs, vals):
                    with b.when(b.cmp("lt", i, n)):
                        b.store(v, b.gep(self.xs, off, xt), min(16, 8 * ELEM_BYTES[xt]))
            return
        eps = float(t.param("prologue_eps"))
        if self.norm_partial is not None:
            # few rows: spread each row over the warps instead of leaving most of them idle; the one-row
            # variant's row of more chunks than warps: all of it loaded at once (<= ONE_ROW_CHUNKS a warp)
            per_row = K // (8 * WARP)
            chunks = -(-per_row // max(1, t.block_max // WARP))
            at_once = b.cmp("le", per_row, b.mul(t.nwarps, chunks)) \
                if self.one_row and 1 < chunks <= ONE_ROW_CHUNKS else None
            spread = b.cmp("le", b.mul(nr, per_row), t.nwarps)

            def several_rows():
                b.if_(spread, [], lambda: self.stage_rms_spread(src, nr, eps) or [],
                      lambda: self.stage_rows(src, nr, eps) or [])
                return []
            if at_once is None:
                several_rows()
            else:
                b.if_(at_once, [], lambda: self.call_row_staging(rg, eps, chunks) or [], several_rows)
            return
        self.stage_rows(src, nr, eps)

    def call_row_staging(self, rg: V, eps: float, chunks: int) -> None:
        """Stage row rg through the companion function `@<tile>_row` (stage_rms_row), which takes rg in
        its second coordinate. Kept out of the tile function: Qwen3-8B batch 1 measured 5.04 -> 4.88 ms
        against the same staging inline."""
        self.row_staging = (eps, chunks)  # the companion is emitted once, after the tile
        self.call_companion("_row", rg)

    def row_staging_function(self) -> str:
        """The companion `@<tile>_row`: stage_rms_row of row c1 into this tile's xs."""
        t = self.t
        eps, chunks = self.row_staging
        row = self.companion_tile(t.weight_stream)
        base = row.smem_base()
        with row.b.at_entry():
            xs = row.b.gep(base, t.smem_offsets[self.xs.name], "i8")
            partial = row.b.gep(base, t.smem_offsets[self.norm_partial.name], "i8")
        stage_rms_row(row, xs, partial, row.b.mul(row.coords[1], self.K), self.K, self.xt, eps, chunks)
        # declares the tile function's shared memory (its ring is marked after this is emitted)
        row.shared_bytes, row.ring_end = t.shared_bytes, STREAM_SHARED_BYTES if self.stream else 0
        return row.function_text(suffix="_row")

    def stage_rms_spread(self, src: V, nr: V, eps: float) -> None:
        """rms_norm staging with every warp at work, in one memory round trip: the rows are cut into warp
        chunks (8 x 32 elements), at most one a warp (the caller's `spread` condition). Each warp loads its
        chunk of x and of the norm weight at once and stores the chunk's sum of squares in shared memory;
        after a barrier it sums its row's partials in chunk order (the same order in every thread),
        normalizes the chunk it holds and stores xs. (Reloading x and the norm weight after the barrier
        would be a second round trip, ~2 us under the weight streams' load: BENCHMARKS.md, sixteenth
        session.)"""
        t, b = self.t, self.b
        K, xt = self.K, self.xt
        per_row = K // (8 * WARP)
        total = b.mul(nr, per_row)
        partial = self.norm_partial
        c = b.min(t.warp, b.sub(total, 1))  # a warp past the chunks loads the last one again, in bounds
        ok = b.cmp("lt", t.warp, total)
        o = self.chunk(c)
        x = t.load_vec("x", b.add(src, o))  # packed until used
        w = t.load_vec("norm_weight", b.rem(o, K))
        ss = b.warp_sum(_sumsq(b, b.unpack_f32(x), b.f32(0.0)))
        with b.when(b.land(ok, b.cmp("eq", t.lane, 0))):
            b.store(ss, b.gep(partial, c, "f32"))
        b.barrier()
        with b.when(ok):
            first = b.mul(b.div(c, per_row), per_row)
            (ss,) = b.for_(0, per_row, 1, [b.f32(0.0)],
                           lambda j, acc: [b.add(acc[0], b.load(b.gep(partial, b.add(first, j), "f32"), "f32"))])
            rstd = b.div(1.0, b.sqrt(b.add(b.div(ss, float(K)), eps)))
            ys = [b.cast(b.round_to(b.mul(wj, b.round_to(b.mul(xj, rstd), xt)), xt), xt)
                  for xj, wj in zip(b.unpack_f32(x), b.unpack_f32(w))]
            b.store(b.vec_from(ys), b.gep(self.xs, o, xt), min(16, 8 * ELEM_BYTES[xt]))

    def chunk(self, c: V) -> V:
        """This lane's element offset in warp chunk c of the staged rows."""
        return self.b.add(self.b.mul(c, 8 * WARP), self.lane8)

    def stage_rows(self, src: V, nr: V, eps: float) -> None:
        """Norm staging with one warp per row."""
        t, b = self.t, self.b
        K, xt = self.K, self.xt
        per_lane = K // 8 // WARP
        whole_rows = self.prologue == "rms_norm" and K % (8 * WARP) == 0 and per_lane <= STAGE_IN_REGISTERS
        if whole_rows and ELEM_BYTES[xt] == 2:
            self.stage_rms_rows_async(src, nr, eps)
            return
        with b.loop(t.warp, nr, t.nwarps) as rr:  # one warp per row
            row = b.add(src, b.mul(rr, K))
            dst = b.gep(self.xs, b.mul(rr, K), xt)

            def chunks(fn, inits):
                def body(k8, acc):
                    return fn(b.mul(k8, 8), b.unpack_f32(t.load_vec("x", b.add(row, b.mul(k8, 8)))), acc)
                return b.for_(t.lane, K // 8, WARP, inits, body)

            def write(fn):
                def body(k8, _):
                    k = b.mul(k8, 8)
                    xs = b.unpack_f32(t.load_vec("x", b.add(row, k)))
                    ws = b.unpack_f32(t.load_vec("norm_weight", k))
                    bs = b.unpack_f32(t.load_vec("norm_bias", k)) if t.has("norm_bias") else [None] * 8
                    ys = [b.cast(fn(x, w, bb), xt) for x, w, bb in zip(xs, ws, bs)]
                    b.store(b.vec_from(ys), b.gep(dst, k, xt), min(16, 8 * ELEM_BYTES[xt]))
                    return []
                b.for_(t.lane, K // 8, WARP, [], body)

            if whole_rows:
                # one pass: every chunk of the row is loaded at once and stays in registers
                offs = [b.add(self.lane8, 256 * j) for j in range(per_lane)]
                xv = [t.load_vec("x", b.add(row, o)) for o in offs]  # packed until used
                wv = [t.load_vec("norm_weight", o) for o in offs]
                ss = b.f32(0.0)
                for xs in xv:
                    ss = _sumsq(b, b.unpack_f32(xs), ss)
                rstd = b.div(1.0, b.sqrt(b.add(b.div(b.warp_sum(ss), float(K)), eps)))
                for o, xs, ws in zip(offs, xv, wv):
                    ys = [b.cast(b.round_to(b.mul(w, b.round_to(b.mul(x, rstd), xt)), xt), xt)
                          for x, w in zip(b.unpack_f32(xs), b.unpack_f32(ws))]
                    b.store(b.vec_from(ys), b.gep(dst, o, xt), min(16, 8 * ELEM_BYTES[xt]))
            elif self.prologue == "rms_norm":
                (ss,) = chunks(lambda k, xs, acc: [_sumsq(b, xs, acc[0])], [b.f32(0.0)])
                rstd = b.div(1.0, b.sqrt(b.add(b.div(b.warp_sum(ss), float(K)), eps)))
                write(lambda x, w, _: b.round_to(b.mul(w, b.round_to(b.mul(x, rstd), xt)), xt))
            else:
                (s,) = chunks(lambda k, xs, acc: [_sum(b, xs, acc[0])], [b.f32(0.0)])
                mean = b.div(b.warp_sum(s), float(K))
                (ss,) = chunks(lambda k, xs, acc: [_sumsq(b, [b.sub(x, mean) for x in xs], acc[0])], [b.f32(0.0)])
                std = b.sqrt(b.add(b.div(b.warp_sum(ss), float(K)), eps))

                def ln(x, w, bias):
                    y = b.mul(b.div(b.sub(x, mean), std), w)
                    return b.round_to(y if bias is None else b.add(y, bias), xt)
                write(ln)

    def copy_x_async(self, src: V, n: V, offset, xs_offset=None) -> None:
        """cp.async of n 16-byte chunks of x into xs: chunk i from x[src + offset(i)] to xs[xs_offset(i)]
        (default offset(i); 16-bit x); then this thread waits for its copies. Every chunk is in flight at
        once and none passes through registers: one memory round trip, where loading through registers
        took one per COPY_UNROLL chunks (batch 16: 16 chunks a thread)."""
        t, b, xt = self.t, self.b, self.xt

        def one(i):
            at = offset(i)
            b.copy_async_16(b.gep(self.xs, xs_offset(i) if xs_offset else at, xt), t.elem_ptr("x", b.add(src, at)))
        t.thread_loop(n, one)
        b.wait_async()

    def stage_rms_rows_async(self, src: V, nr: V, eps: float) -> None:
        """rms_norm staging of nr rows, one warp per row, in one memory round trip however many rows a
        warp has: each lane cp.asyncs its chunks of every row of its warp into xs and loads its chunks of
        the norm weight, waits, then per row sums its chunks' squares (warp sum), and normalizes and rounds
        the chunks it copied in place. (Loading the rows through registers took a round trip per row of
        the warp: two at batch 16.) A lane reads only the chunks it copied, so no barrier is needed
        before the normalization."""
        t, b = self.t, self.b
        K, xt = self.K, self.xt
        offs = [b.add(self.lane8, 256 * j) for j in range(K // 8 // WARP)]
        with b.loop(t.warp, nr, t.nwarps) as rr:
            row = b.add(src, b.mul(rr, K))
            for o in offs:
                b.copy_async_16(b.gep(self.xs, b.add(b.mul(rr, K), o), xt), t.elem_ptr("x", b.add(row, o)))
        wv = [t.load_vec("norm_weight", o) for o in offs]  # packed until used
        b.wait_async()
        with b.loop(t.warp, nr, t.nwarps) as rr:
            dst = b.gep(self.xs, b.mul(rr, K), xt)
            xv = [b.load(b.gep(dst, o, xt), f"vector<8x{xt}>", 16) for o in offs]
            ss = b.f32(0.0)
            for xs in xv:
                ss = _sumsq(b, b.unpack_f32(xs), ss)
            rstd = b.div(1.0, b.sqrt(b.add(b.div(b.warp_sum(ss), float(K)), eps)))
            for o, xs, ws in zip(offs, xv, wv):
                # round(w * round(x * rstd)) in packed 16-bit ops: the 16-bit product is exact in f32, so
                # one packed multiply rounds as the f32 product then rounded; scalar conversions (a
                # quarter-rate instruction) made the batch-16 staging ~5 us longer
                xr = b.vec_cast(b.vec_from([b.mul(x, rstd) for x in b.unpack_f32(xs)]), xt)
                b.store(b.mul(xr, ws), b.gep(dst, o, xt), 16)

    def stage_merge(self, rg: V, nr: V, k_lo=0, width: int | None = None) -> None:
        """x rows merged from the attention splits, as attention_merge computes them: a thread per 8 values
        of a row loads the (m, l) stats and its partial outputs of MERGE_GROUP splits at once (one memory
        round trip at ctx / kv_chunk <= MERGE_GROUP), and merges group after group with a running max:
        M = max m_s, w_s = exp(m_s - M) (0 for an empty chunk), x = sum w_s o_s / sum w_s l_s."""
        t, b = self.t, self.b
        K, xt = self.K, self.xt
        W = width or K  # columns [k_lo, k_lo + W) of x, into xs rows W apart
        _, H, S, D = t.shape("partial_out")
        inf = float("-inf")

        def values(i):  # x[rg + i // (W/8), k_lo + 8 (i % (W/8)) ...][: 8]
            rr, k0 = b.div(i, W // 8), b.mul(b.rem(i, W // 8), 8)
            h, d0 = b.div(b.add(k0, k_lo), D), b.rem(k0, D)
            base = b.mul(b.add(b.mul(b.add(rg, rr), H), h), S)  # (r, h, split 0)

            def group(s0, acc):
                top, den, num = acc[0], acc[1], acc[2:]
                loads = []
                for u in range(MERGE_GROUP):  # every load of the group in flight; past S: clamped, weight 0
                    sp = b.min(b.add(s0, u), b.sub(S, 1))
                    at = b.add(b.mul(b.add(base, sp), D), d0)
                    loads.append((b.cmp("lt", b.add(s0, u), S),
                                  t.load_vec("partial_stats", b.mul(b.add(base, sp), 2), 2),
                                  t.load_vec("partial_out", at, 4), t.load_vec("partial_out", b.add(at, 4), 4)))
                ms = [b.select(ok, b.unpack_f32(st)[0], inf) for ok, st, _, _ in loads]
                new_top = top
                for m in ms:
                    new_top = b.max(new_top, m)
                alpha = b.select(b.cmp("eq", top, inf), 0.0, b.exp(b.sub(top, new_top)))  # rescale earlier groups
                den, num = b.mul(den, alpha), [b.mul(x, alpha) for x in num]
                for m, (_, st, o1, o2) in zip(ms, loads):
                    w = b.select(b.cmp("eq", m, inf), 0.0, b.exp(b.sub(m, new_top)))  # empty chunks weigh 0
                    den = b.fma(w, b.unpack_f32(st)[1], den)
                    num = [b.fma(w, x, a) for x, a in zip(b.unpack_f32(o1) + b.unpack_f32(o2), num)]
                return [new_top, den] + num
            acc = b.for_(0, S, MERGE_GROUP, [b.f32(inf), b.f32(0.0)] + [b.f32(0.0)] * 8, group)
            ys = [b.cast(b.round_to(b.div(x, acc[1]), xt), xt) for x in acc[2:]]
            b.store(b.vec_from(ys), b.gep(self.xs, b.add(b.mul(rr, W), k0), xt), min(16, 8 * ELEM_BYTES[xt]))
        t.thread_loop(b.mul(nr, W // 8), values)

    # ------------------------------------------------------------ 2. dot products and per-column epilogue

    def dot(self, rg: V, nr: V, v: int) -> list:
        if self.stream and self.red is not None and v >= MMA_ROWS and self.stream.g.columns == MMA_WARPS:
            self.mma_columns(rg, nr, v)
        elif self.stream:
            self.streamed_columns(rg, nr, v)
        else:
            self.columns(rg, nr, v, self.b.i64(0), self.ncols)
        return []

    def streamed_columns(self, rg: V, nr: V, v: int) -> None:
        """The dot phase from the weight stream: warp w takes column w of each column group; per K slice
        it waits for the block, FMAs the slice against the staged x rows, and releases the stage."""
        t, b, s = self.t, self.b, self.stream
        g = s.g
        silu_mul = self.uptr is not None
        wt = t.etype("weight")
        per_col = v * (2 if silu_mul else 1)
        hoist = v * self.K // WARP <= HOIST_X_VALUES  # x of every slice stays live across the groups
        total = s.total
        base = b.mul(b.div(rg, self.RB), s.per_row_group)
        n = g.slice_k // 256
        unroll = max(u for u in range(1, SLICE_UNROLL + 1) if n % u == 0)
        if self.one_row and isinstance(s.groups, int) and 1 < s.groups <= g.stages and g.slices == 1 \
                and s.groups * n * len(g.roles) <= RESIDENT_CHUNKS:
            self.resident_columns(rg, nr, v, n)
            return
        with b.loop(0, s.groups) as group:
            def one_slice(sl, acc):
                i = b.add(base, b.add(b.mul(group, g.slices), sl))
                rows = self.lane_rows(s.wait(i))
                xbase = b.mul(sl, g.slice_k)

                def chunks(kbase, acc):  # `unroll` 256-element chunks of the slice from kbase
                    acc = list(acc)
                    for j in range(unroll):
                        k = b.add(kbase, 256 * j)
                        vecs = [b.unpack_f32(b.load(b.gep(r, k, wt), f"vector<8x{wt}>", min(16, 8 * g.elem_bytes)))
                                for r in rows]
                        for rr in range(v):
                            at = b.gep(self.xs_lane, b.add(xbase, b.add(k, rr * self.K)), self.xt)
                            xv = b.unpack_f32(b.load(at, f"vector<8x{self.xt}>", min(16, 8 * ELEM_BYTES[self.xt]),
                                                     volatile=not hoist))
                            for c, ws in enumerate(vecs):
                                acc[c * v + rr] = _dot8(b, ws, xv, acc[c * v + rr])
                    return acc
                acc = chunks(b.i64(0), acc) if unroll == n else \
                    b.for_(0, n // unroll, 1, list(acc), lambda it, carried: chunks(b.mul(it, 256 * unroll), carried))
                b.keep(acc)  # finish the FMAs before the release: the scheduler would sink them past the
                # barrier and hold every staged value of the slice in registers
                s.release(i, total)
                return acc
            acc = b.for_(0, g.slices, 1, [b.f32(0.0)] * per_col, one_slice)
            col = b.add(b.mul(group, g.columns), t.warp)
            self.finish_columns([b.warp_sum(a) for a in acc], [col], v, rg, nr, self.ncols)

    def mma_columns(self, rg: V, nr: V, v: int, seg: V | None = None) -> None:
        """The dot phase of v >= 2 rows on the tensor cores: D[row][col] = sum_k x[row][k] W[col][k] with
        mma.sync m16n8k16, x as A (the row group's rows, padded to 16), a column group's 8 weight rows as B.
        Each warp takes every 8th 32-element chunk of a block's K slice; lane l reads 16 bytes of weight
        row l/4 and of x rows l/4, l/4 + 8 at chunk offset 8 (l%4), which feed two mmas. (That permutes k
        inside each mma, identically for A and B, so the sum is unchanged.) After a column group's last
        slice each warp stores its 16 x 8 partial sums in `red` (double-buffered by group parity, so the
        next group's stores need no extra barrier), the stage release's barrier makes them visible, and
        thread (row, col) adds the warps' sums and finishes that output. In a segmented tile (seg: the
        segment of K staged in xs) the thread adds them to its column sums in `acc` instead, finishing at
        the last segment."""
        t, b, s = self.t, self.b, self.stream
        g = s.g
        roles = len(g.roles)
        slices = g.segment_slices if seg is not None else g.slices  # per column group of this pass
        x_stride = self.seg_k if seg is not None else self.K
        et = self.xt
        chunks = g.slice_k // (32 * MMA_WARPS)  # per warp and slice
        quad, pair = b.shr(t.lane, 2), b.and_(t.lane, 3)
        k_lane = b.add(b.mul(t.warp, 32), b.mul(pair, 8))  # this lane's first element in a slice
        high = v > 8  # rows 8..15 of A are used
        x_rows = [b.min(quad, v - 1)] + ([b.min(b.add(quad, 8), v - 1)] if high else [])  # past v: a row again
        x_at = [b.gep(self.xs, b.add(b.mul(r, x_stride), k_lane), et) for r in x_rows]
        w_at = [b.mul(b.add(quad, k * g.columns), g.slice_k) for k in range(roles)]  # weight row l/4 of each role
        zero = b.i32(0)
        # x of every slice stays in registers across the column groups when it is small
        hoist = slices * chunks * len(x_rows) * 4 <= HOIST_X_VALUES

        def x_chunks(sl) -> list[list[V]]:
            """This lane's x words of slice sl: per chunk, per x row, 4 i32 (8 values)."""
            return [[b.load(b.gep(at, b.add(b.mul(sl, g.slice_k), 256 * j) if isinstance(sl, V)
                                  else sl * g.slice_k + 256 * j, et), "vector<4xi32>", 16, volatile=not hoist)
                     for at in x_at] for j in range(chunks)]
        hoisted = [x_chunks(sl) for sl in range(slices)] if hoist else None
        if seg is None:
            base = b.mul(b.div(rg, self.RB), s.per_row_group)
        else:  # K-major blocks: this segment's come after the earlier segments' of every column group
            base = b.add(b.mul(b.div(rg, SEGMENT_ROWS), s.per_row_group), b.mul(b.mul(seg, s.groups), slices))
        with b.loop(0, s.groups) as group:
            parity = b.and_(group, 1)
            red = b.gep(self.red, b.mul(parity, MMA_WARPS * roles * 16 * 8), "f32")

            def one_slice(sl, acc):
                i = b.add(base, b.add(b.mul(group, slices), sl))
                stage = s.wait(i)
                xw = hoisted[sl] if hoist else x_chunks(sl)
                acc = [list(acc[4 * k:4 * k + 4]) for k in range(roles)]
                for j in range(chunks):
                    xv = [[b.vec_extract(x, e) for e in range(4)] for x in xw[j]]
                    for k in range(roles):
                        wv = b.load(b.gep(stage, b.mul(b.add(w_at[k], b.add(k_lane, 256 * j)), g.elem_bytes), "i8"),
                                    "vector<4xi32>", 16)
                        ws = [b.vec_extract(wv, e) for e in range(4)]
                        for h in (0, 2):  # the chunk's first and second 16 values of k
                            a = [xv[0][h], xv[1][h] if high else zero, xv[0][h + 1], xv[1][h + 1] if high else zero]
                            acc[k] = b.mma_16x8x16(a, [ws[h], ws[h + 1]], acc[k], et)
                acc = [a for k in range(roles) for a in acc[k]]
                if isinstance(sl, V):  # the group's last slice: its partial sums are final
                    with b.when(b.cmp("eq", sl, slices - 1)):
                        self.store_partials(red, acc, roles, high)
                elif sl == slices - 1:
                    self.store_partials(red, acc, roles, high)
                b.keep(acc)  # the mmas (and the stage reads) before the release
                s.release(i, total=s.total)
                return acc
            acc = [b.f32(0.0)] * (4 * roles)
            if hoist:
                for sl in range(slices):
                    acc = one_slice(sl, acc)
            else:
                acc = b.for_(0, slices, 1, acc, one_slice)
            # thread (row m, column n) of the group: the warps' partial sums added
            m, n = b.shr(t.tid, 3), b.and_(t.tid, 7)
            col = b.add(b.mul(group, g.columns), n)
            with b.when(b.land(b.cmp("lt", m, nr), b.cmp("lt", col, self.ncols))):  # nr <= v: tid < 8 v
                sums = []
                for k in range(roles):
                    total = b.f32(0.0)
                    for w in range(MMA_WARPS):
                        total = b.add(total, b.load(b.gep(red, b.add(t.tid, (w * roles + k) * 128), "f32"), "f32"))
                    sums.append(total)

                def finish():
                    self.finish_column(b.add(rg, m), m, self.col(col), col, sums[0], sums[1] if roles > 1 else None)
                    return []
                if seg is None:
                    finish()
                else:  # this thread's own slots of acc: no other thread touches them
                    slots = [b.gep(self.acc, b.add(b.mul(b.add(b.mul(group, roles), k), 128), t.tid), "f32")
                             for k in range(roles)]
                    earlier = b.cmp("gt", seg, 0)
                    sums = [b.add(b.select(earlier, b.load(at, "f32"), b.f32(0.0)), x) for at, x in zip(slots, sums)]

                    def carry():
                        for at, x in zip(slots, sums):
                            b.store(x, at)
                        return []
                    b.if_(b.cmp("eq", seg, self.K // self.seg_k - 1), [], finish, carry)

    def store_partials(self, red: V, acc: list[V], roles: int, high: bool) -> None:
        """This warp's 16 x 8 partial sums of each role into red[warp][role][row][col] (rows >= 8 only when
        the mma's upper rows are used)."""
        t, b = self.t, self.b
        at = b.add(b.mul(b.shr(t.lane, 2), 8), b.mul(b.and_(t.lane, 3), 2))  # row l/4, columns 2(l%4) + {0, 1}
        for k in range(roles):
            slot = b.gep(red, b.mul(b.add(b.mul(t.warp, roles), k), 128), "f32")
            b.store(b.vec_from(acc[4 * k:4 * k + 2]), b.gep(slot, at, "f32"), 8)
            if high:
                b.store(b.vec_from(acc[4 * k + 2:4 * k + 4]), b.gep(slot, b.add(at, 64), "f32"), 8)

    def resident_columns(self, rg: V, nr: V, v: int, n: int) -> None:
        """One row whose every weight block is in the ring at once (no refills): warp w takes column w of
        every column group in one pass, all groups' loads in flight together and their warp sums
        interleaved, instead of one group after another (each a barrier and a reduction's latency)."""
        t, b, s = self.t, self.b, self.stream
        g = s.g
        wt = t.etype("weight")
        per_col = v * len(g.roles)
        rows = [self.lane_rows(st) for st in [s.wait(b.i64(gi)) for gi in range(s.groups)]]
        acc = [b.f32(0.0)] * (s.groups * per_col)
        for j in range(n):
            k = b.i64(256 * j)
            xs = [b.unpack_f32(b.load(b.gep(self.xs_lane, b.add(k, rr * self.K), self.xt), f"vector<8x{self.xt}>",
                                      min(16, 8 * ELEM_BYTES[self.xt]))) for rr in range(v)]
            for gi in range(s.groups):
                vecs = [b.unpack_f32(b.load(b.gep(r, k, wt), f"vector<8x{wt}>", min(16, 8 * g.elem_bytes)))
                        for r in rows[gi]]
                for c, ws in enumerate(vecs):
                    for rr in range(v):
                        at = gi * per_col + c * v + rr
                        acc[at] = _dot8(b, ws, xs[rr], acc[at])
        b.keep(acc)
        b.barrier()  # every block is consumed; none is refilled (the tile's blocks fit the ring)
        sums = [b.warp_sum(a) for a in acc]
        self.finish_columns(sums, [b.add(b.i64(gi * g.columns), t.warp) for gi in range(s.groups)], v, rg, nr,
                            self.ncols)

    def lane_rows(self, stage: V) -> list[V]:
        """Per role, where this lane's 16-byte chunks of its warp's column start in a landed block."""
        t, b, g = self.t, self.b, self.stream.g
        return [b.gep(stage, b.mul(b.add(self.lane8, b.mul(b.add(t.warp, k * g.columns), g.slice_k)), g.elem_bytes),
                      "i8") for k in range(len(g.roles))]

    def columns(self, rg: V, nr: V, v: int, lo: V, hi: V) -> None:
        """Columns [lo, hi) of the tile, weight rows loaded from global memory by every lane."""
        t, b = self.t, self.b
        K = self.K
        K8 = K // 8
        silu_mul = self.uptr is not None
        wt = t.etype("weight")
        ut = t.etype("up_weight") if silu_mul else None
        # Columns a warp streams at once: UNROLL chunks of each in flight per lane (16 with gate + up).
        CW = 1 if silu_mul else COLUMNS_PER_WARP
        with b.loop(b.add(lo, t.warp), hi, b.mul(t.nwarps, CW)) as c0:
            cols = [c0] + [b.add(c0, b.mul(t.nwarps, j)) for j in range(1, CW)]
            last = b.sub(hi, 1)
            # a column past the range repeats the last one's loads (in bounds) and is not stored
            cs = [b.min(c, last) for c in cols]
            wrows = [b.gep(b.gep(self.wptr, b.mul(self.col(c), K), wt), self.lane8, wt) for c in cs]
            urow = b.gep(b.gep(self.uptr, b.mul(self.col(cs[0]), K), ut), self.lane8, ut) \
                if silu_mul else None
            per_col = v * (2 if silu_mul else 1)
            # x is the same for every column: let LLVM keep it in registers when it is small
            hoist = v * K // WARP <= HOIST_X_VALUES
            def chunks(acc: list[V], kbase, indices: list[int]) -> list[V]:
                """Accumulate chunks `kbase + 256 * i` (elements, relative to this lane's 8) for i in indices.
                Every weight load of the group is issued before any use, so they are all in flight at once."""
                def offset(i):
                    return 256 * i if kbase is None else b.add(kbase, 256 * i)
                loaded = {}
                for i in indices:
                    off = offset(i)
                    loaded[i] = [b.load(b.gep(w, off, wt), f"vector<8x{wt}>", min(16, 8 * ELEM_BYTES[wt]),
                                        invariant=True) for w in wrows]
                    if silu_mul:
                        loaded[i].append(b.load(b.gep(urow, off, ut), f"vector<8x{ut}>", min(16, 8 * ELEM_BYTES[ut]),
                                                invariant=True))
                acc = list(acc)
                for i in indices:
                    vecs = [b.unpack_f32(x) for x in loaded[i]]
                    wss, us = vecs[:CW], (vecs[CW] if silu_mul else None)
                    for rr in range(v):
                        xoff = rr * K + 256 * i if kbase is None else b.add(kbase, rr * K + 256 * i)
                        xv = b.unpack_f32(b.load(b.gep(self.xs_lane, xoff, self.xt), f"vector<8x{self.xt}>",
                                                 min(16, 8 * ELEM_BYTES[self.xt]), volatile=not hoist))
                        for j, ws in enumerate(wss):
                            acc[j * per_col + rr] = _dot8(b, ws, xv, acc[j * per_col + rr])
                        if silu_mul:
                            acc[v + rr] = _dot8(b, us, xv, acc[v + rr])
                return acc

            acc = [b.f32(0.0)] * (per_col * CW)
            full = K8 // WARP  # chunks every lane has
            blocks = full // UNROLL if full > UNROLL else 0
            if blocks:
                acc = b.for_(0, blocks, 1, acc,
                             lambda it, carried: chunks(carried, b.mul(it, UNROLL * 256), list(range(UNROLL))))
            if full > blocks * UNROLL:
                acc = chunks(acc, None, list(range(blocks * UNROLL, full)))
            if K8 % WARP:  # a last partial chunk round: lanes < K8 % 32
                acc = b.if_(b.cmp("lt", t.lane, K8 % WARP), [a.type for a in acc],
                            lambda: chunks(acc, None, [full]), lambda: acc)
            self.finish_columns([b.warp_sum(a) for a in acc], cols, v, rg, nr, hi, first_in_range=True)

    def finish_columns(self, sums: list[V], cols: list[V], v: int, rg: V, nr: V, hi, first_in_range=False) -> None:
        """sums: per column, v row sums (then v up-projection sums with silu_mul), the same in every lane;
        lane rr finishes row rr of each column < hi."""
        t, b = self.t, self.b
        silu_mul = self.uptr is not None
        per_col = v * (2 if silu_mul else 1)
        for j, c in enumerate(cols):
            part = sums[j * per_col:(j + 1) * per_col]
            y = part[0]
            up = part[v] if silu_mul else None
            for rr in range(1, v):
                is_rr = b.cmp("eq", t.lane, rr)
                y = b.select(is_rr, part[rr], y)
                if silu_mul:
                    up = b.select(is_rr, part[v + rr], up)
            ok = b.cmp("lt", t.lane, nr)
            if not (first_in_range and j == 0):
                ok = b.land(ok, b.cmp("lt", c, hi))
            with b.when(ok):
                self.finish_column(b.add(rg, t.lane), t.lane, self.col(c), c, y, up)

    def finish_column(self, r: V, rr: V, n: V, c: V, y: V, up: V | None) -> None:
        t, b = self.t, self.b
        rt = self.rt
        if self.has_bias:
            y = b.add(y, t.load("bias", n))
        y = b.round_to(y, rt)
        if up is not None:
            if self.has_bias:
                up = b.add(up, t.load("up_bias", n))
            up = b.round_to(up, rt)
        for step in self.prefix:
            y = self.elementwise_step(step, y, up, r, n, rr, c)
        if self.rest:
            b.store(y, b.gep(self.st, b.add(b.mul(rr, self.TN), c), "f32"))
        elif self.has_y:
            t.store("y", b.add(b.mul(r, self.N), n), y)

    def elementwise_step(self, step: str, y: V, up: V | None, r: V, n: V, rr: V | None = None,
                         c: V | None = None) -> V:
        """rr, c: the row in the row group and the local column, where the residual is staged (copy_residual)."""
        t, b = self.t, self.b
        rt = self.rt
        if step == "silu_mul":
            return b.round_to(b.mul(b.round_to(silu(b, y), rt), up), rt)
        if step == "gelu":
            approximate = t.params.get("gelu_approximate", "none")
            if approximate not in ("none", "tanh"):
                t.fail(f"gelu_approximate must be 'none' or 'tanh', got '{approximate}'")
            return b.round_to(gelu(b, y, approximate), rt)
        # residual_add
        if self.res is not None and rr is not None:
            et = t.etype("residual")
            res = b.cast(b.load(b.gep(self.res, b.add(b.mul(rr, self.TN), c), et), et), "f32")
        else:
            res = t.load("residual", b.add(b.mul(r, t.shape("residual")[1]), n))
        return b.round_to(b.add(res, y), rt)

    def residual_smem(self, t: Tile) -> V | None:
        """Shared memory (in tile t) for the row group's slice of the residual of a residual_add before any
        per-head step, when 16-byte pieces cover every tile's slice: copy_residual fills it with cp.async
        while x stages, so the outputs do not each wait on a global load after the dot products."""
        if "residual_add" not in self.prefix or self.split > 1 or self.N % self.TN:
            return None
        eb = ELEM_BYTES[t.etype("residual")]
        cols = t.shape("residual")[1]
        if not isinstance(cols, int) or (cols * eb) % 16 or (self.TN * eb) % 16:
            return None
        return t.smem(self.RG * self.TN * eb)

    def copy_residual(self, rg: V, nr: V) -> None:
        """cp.async of residual[rg : rg + nr, n0 : n0 + tile_n] into `res` (rows tile_n apart); the tile
        waits for it (wait_async) before its barrier ahead of the dot products."""
        if self.res is None:
            return
        t, b = self.t, self.b
        eb = ELEM_BYTES[t.etype("residual")]
        pieces = self.TN * eb // 16  # per row
        cols = t.shape("residual")[1]

        def one(i):
            rr, k = b.div(i, pieces), b.rem(i, pieces)
            src = t.elem_ptr("residual", b.add(b.mul(b.add(rg, rr), cols), b.add(self.n0, b.mul(k, 16 // eb))))
            b.copy_async_16(b.gep(self.res, b.add(b.mul(rr, self.TN * eb), b.mul(k, 16)), "i8"), src)
        t.thread_loop(b.mul(nr, pieces), one)

    # ------------------------------------------------------------ 3. per-head steps

    def head_constants(self, t: Tile) -> dict:
        """Shared-memory copies (in tile t) of what the per-head steps read from global memory, {role: (smem,
        bytes)}: the row group's positions and the whole inv_freq / head_norm_weight vectors (when 16-byte
        pieces cover them). copy_head_constants fills them with cp.async while x stages and the dot products
        run, so the per-head steps do not wait on global loads."""
        if not self.rest:
            return {}
        out = {}
        if "rope" in self.rest or "kv_append" in self.rest:
            eb = ELEM_BYTES[t.etype("positions")]
            if eb in (4, 8):
                out["positions"] = (t.smem(self.RG * eb), eb)
        for role, used in (("inv_freq", "rope"), ("head_norm_weight", "head_rms_norm")):
            if used in self.rest:
                (n,) = t.max_shape(role)
                nbytes = n * ELEM_BYTES[t.etype(role)]
                if isinstance(t.shape(role)[0], int) and nbytes % 16 == 0:
                    out[role] = (t.smem(nbytes), nbytes)
        return out

    def copy_head_constants(self, rg: V, nr: V) -> None:
        t, b = self.t, self.b
        for role, (smem, nbytes) in self.head_consts.items():
            if role == "positions":
                t.thread_loop(nr, lambda i: b.copy_async(b.gep(smem, i, t.etype(role)),
                                                         t.elem_ptr(role, b.add(rg, i)), nbytes))
            else:
                t.thread_loop(nbytes // 16, lambda i: b.copy_async(b.gep(smem, b.mul(i, 16), "i8"),
                                                                   b.gep(t.ptr(role), b.mul(i, 16), "i8"), 16))

    def head_pos(self, r: V, rr: V) -> V:
        """positions[r] (row rr of the row group)."""
        return self.head_load("positions", rr) if "positions" in self.head_consts else self.t.load("positions", r)

    def head_load(self, role: str, index) -> V:
        """An element of a per-head step's operand (f32 / i64), from its shared-memory copy where it has one
        (positions: `index` is the row within the row group)."""
        t, b = self.t, self.b
        if role not in self.head_consts:
            return t.load(role, index)
        et = t.etype(role)
        v = b.load(b.gep(self.head_consts[role][0], index, et), et)
        return b.cast(v, "f32" if et in FLOAT_BITS else "i64")  # as Tile.load

    def heads(self, rg: V, nr: V) -> None:
        """One warp per (row, segment): a segment is a head, or a split head's tile_n columns (its
        rotate-half pairs sit half a segment apart, as in a whole head)."""
        t, b = self.t, self.b
        D, TN = self.D, self.TN
        W = TN if self.split > 1 else D  # segment width
        hpt = self.ncols // W if isinstance(self.ncols, int) else b.div(self.ncols, W)
        with b.loop(t.warp, b.mul(nr, hpt), t.nwarps) as s:
            rr, hl = b.div(s, hpt), b.rem(s, hpt)
            seg = b.gep(self.st, b.add(b.mul(rr, TN), b.mul(hl, W)), "f32")
            first = self.col(b.mul(hl, W))  # output column of the segment's first value

            def column(e):  # output column of the segment's value e
                return self.col(e) if self.split > 1 else b.add(first, e)
            self.head_steps(self.rest, b.add(rg, rr), rr, seg, W, column, b.div(first, D))

    def head_steps(self, steps: list[str], r: V, rr: V, seg: V, W: int, column, head: V) -> None:
        """One warp runs the per-head `steps` on a segment of W values (f32, shared memory at `seg`) of row r
        (row rr of the row group), then stores y; column(e) is the output column of value e."""
        t, b = self.t, self.b
        D, rt = self.D, self.rt

        def dim(e):  # e's place in its head
            return b.rem(column(e), D)

        def each(n_elems: int, fn):
            with b.loop(t.lane, n_elems, WARP) as e:
                fn(e)

        def at(e):
            return b.gep(seg, e, "f32")

        for k, step in enumerate(steps):
            if k:
                b.warp_sync()  # lanes read what other lanes wrote in the previous step
            if step in ("gelu", "residual_add"):
                each(W, lambda e: b.store(self.elementwise_step(step, b.load(at(e), "f32"), None, r,
                                                                column(e)), at(e)))
            elif step == "head_rms_norm":
                if W != D:
                    t.fail("internal: head_rms_norm on a segment that is not a whole head")
                eps = float(t.param("head_norm_eps"))
                (ss,) = b.for_(t.lane, D, WARP, [b.f32(0.0)],
                               lambda e, acc: [b.fma(b.load(at(e), "f32"), b.load(at(e), "f32"), acc[0])])
                rstd = b.div(1.0, b.sqrt(b.add(b.div(b.warp_sum(ss), float(D)), eps)))
                each(D, lambda e: b.store(b.round_to(b.mul(self.head_load("head_norm_weight", e),
                                                           b.round_to(b.mul(b.load(at(e), "f32"), rstd), rt)),
                                                     rt), at(e)))
            elif step == "rope":
                pos = b.cast(self.head_pos(r, rr), "f32")

                def pair(i):
                    i2 = b.add(i, W // 2)
                    y1, y2 = rope_pair(b, b.load(at(i), "f32"), b.load(at(i2), "f32"), pos,
                                       self.head_load("inv_freq", dim(i)), rt)
                    b.store(y1, at(i))
                    b.store(y2, at(i2))
                each(W // 2, pair)
            else:  # kv_append
                dst, ok = self.cache_slot(r, rr, head)
                ct = t.float_etype("cache")
                with b.when(ok):  # the reference raises
                    each(W, lambda e: t.store("cache", b.add(dst, dim(e)), b.round_to(b.load(at(e), "f32"), ct)))
        if self.has_y:
            b.warp_sync()
            yrow = b.mul(r, self.N)
            each(W, lambda e: t.store("y", b.add(yrow, column(e)), b.load(at(e), "f32")))

    def cache_slot(self, r: V, rr: V, head: V) -> tuple[V, V]:
        """The KV cache element offset of (row r, head, slot positions[r], dim 0), and whether the slot is in
        the cache (the position is clamped into it otherwise)."""
        t, b = self.t, self.b
        _, kv_heads, slots, cd = t.shape("cache")
        if cd != self.D:
            t.fail(f"cache head dim {cd} is not head_dim {self.D}")
        p = self.head_pos(r, rr)
        ok = b.land(b.cmp("ge", p, 0), b.cmp("lt", p, slots))
        p = b.min(b.max(p, 0), b.sub(slots, 1))
        return b.mul(b.add(b.mul(b.add(b.mul(r, kv_heads), head), slots), p), self.D), ok

    # ------------------------------------------------------------ 3b. a split head's norm, gathered

    def unnormed_at(self, r: V, rr: V, n: V) -> tuple[str, V, V | None]:
        """Where a split head keeps value (row r, output column n) before its norm: (role, element index,
        condition): y where the tile writes y, else its KV cache slot (only where the slot is in the cache)."""
        b = self.b
        if self.has_y:
            return "y", b.add(b.mul(r, self.N), n), None
        dst, ok = self.cache_slot(r, rr, b.div(n, self.D))
        return "cache", b.add(dst, b.rem(n, self.D)), ok

    def store_unnormed(self, rg: V, nr: V) -> None:
        """The row group's staged values (st, rounded as the unfused projection) to where gather_head reads
        them."""
        t, b = self.t, self.b
        TN = self.TN

        def one(i):
            rr, c = b.div(i, TN), b.rem(i, TN)
            role, at, ok = self.unnormed_at(b.add(rg, rr), rr, self.col(c))
            v = b.load(b.gep(self.st, i, "f32"), "f32")
            if ok is None:
                t.store(role, at, v)
            else:
                with b.when(ok):
                    t.store(role, at, v)
        t.thread_loop(b.mul(nr, TN), one)

    def gather_head(self) -> None:
        """After every row group: thread 0 releases this tile's stored values and counts the tile in its
        head's arrival counter (never reset: the count mod P says which arrival of the step this is). The
        P-th tile to arrive acquires the others' values, gathers the whole head per row into shared
        memory and runs the per-head steps on it, storing y / the KV cache for the whole head. The tiles
        signal as usual after this, so a consumer waiting on all P sees the finished head."""
        t, b = self.t, self.b
        D, P, RB = self.D, self.split, self.RB
        head = b.div(t.coords[0], P)
        b.barrier()  # every thread's values are stored
        with b.when(b.cmp("eq", t.tid, 0)):
            b.fence("release")
            before = b.atomic_add(b.gep(t.arrival_counters(), head, "i64"), b.i64(1))
            last = b.cmp("eq", b.rem(b.add(before, 1), P), 0)
            with b.when(last):
                b.fence("acquire")
            b.store(b.select(last, b.i32(1), b.i32(0)), self.last)
        b.barrier()
        # With one row group (and no segments) the head constants that group copied are still in shared
        # memory: copying them again would put a global round trip on the head's critical path.
        rows = self.rows
        again = True if self.seg_k else rows > RB if isinstance(rows, int) else b.cmp("gt", rows, RB)
        with b.when(b.cmp("eq", b.load(self.last, "i32", volatile=True), b.i32(1))):  # block-uniform
            with b.loop(0, rows, RB) as rg:
                nr = b.min(b.sub(rows, rg), RB)
                b.barrier()  # the previous group is done with head_st and the head constants
                if self.head_consts and again is not False:
                    with b.when(again) if isinstance(again, V) else contextlib.nullcontext():
                        self.copy_head_constants(rg, nr)
                    b.wait_async()
                b.barrier()

                # 16 bytes of a head's row a thread, all in flight at once (one element a thread took a
                # round trip per blockDim elements: 8 at 16 rows of heads of 128)
                role = "y" if self.has_y else "cache"
                et = t.etype(role)
                per = 16 // ELEM_BYTES[et]  # D % 8 == 0: a piece never crosses a row

                def one(i):
                    rr, e = b.div(i, D // per), b.mul(b.rem(i, D // per), per)
                    _, at, _ = self.unnormed_at(b.add(rg, rr), rr, b.add(b.mul(head, D), e))
                    # written by other SMs: volatile, not from L1
                    v = b.load(t.elem_ptr(role, at), f"vector<{per}x{et}>", 16, volatile=True)
                    for k, x in enumerate(b.unpack_f32(v)):
                        b.store(x, b.gep(self.head_st, b.add(b.mul(i, per), k), "f32"))
                t.thread_loop(b.mul(nr, D // per), one)
                b.barrier()
                with b.loop(t.warp, nr, t.nwarps) as rr:
                    self.head_steps(self.rest, b.add(rg, rr), rr, b.gep(self.head_st, b.mul(rr, D), "f32"), D,
                                    lambda e: b.add(b.mul(head, D), e), head)


def stage_rms_row(t: Tile, xs_smem: V, partial: V, src: V, K: int, xt: str, eps: float, chunks: int) -> None:
    """rms_norm staging of the row at x element `src` in one memory round trip: warp w loads warp chunks
    w, w + nwarps, ... (`chunks` of them, 8 x 32 elements each) of x and of the norm weight all at once and
    stores its sum of squares in `partial`; after a barrier every thread adds the warps' sums in warp order
    and normalizes the chunks it holds into `xs_smem`."""
    b = t.b
    per_row = K // (8 * WARP)
    lane8 = b.mul(t.lane, 8)
    cs = [b.add(t.warp, b.mul(t.nwarps, j)) for j in range(chunks)]
    valid = [b.cmp("lt", c, per_row) for c in cs]
    offs = [b.add(b.mul(b.min(c, per_row - 1), 8 * WARP), lane8) for c in cs]  # past the row: in-bounds again
    xv = [t.load_vec("x", b.add(src, o)) for o in offs]  # packed until used
    wv = [t.load_vec("norm_weight", o) for o in offs]
    ss = b.f32(0.0)
    for ok, xs in zip(valid, xv):
        ss = b.add(ss, b.select(ok, _sumsq(b, b.unpack_f32(xs), b.f32(0.0)), b.f32(0.0)))
    ss = b.warp_sum(ss)
    with b.when(b.cmp("eq", t.lane, 0)):
        b.store(ss, b.gep(partial, t.warp, "f32"))
    b.barrier()
    (total,) = b.for_(0, t.nwarps, 1, [b.f32(0.0)],
                      lambda w, acc: [b.add(acc[0], b.load(b.gep(partial, w, "f32"), "f32"))])
    rstd = b.div(1.0, b.sqrt(b.add(b.div(total, float(K)), eps)))
    for ok, o, xs, ws in zip(valid, offs, xv, wv):
        with b.when(ok):
            ys = [b.cast(b.round_to(b.mul(w, b.round_to(b.mul(x, rstd), xt)), xt), xt)
                  for x, w in zip(b.unpack_f32(xs), b.unpack_f32(ws))]
            b.store(b.vec_from(ys), b.gep(xs_smem, o, xt), min(16, 8 * ELEM_BYTES[xt]))


def _dot8(b, ws: list[V], xs: list[V], acc: V) -> V:
    for w, x in zip(ws, xs):
        acc = b.fma(w, x, acc)
    return acc


def _sum(b, xs: list[V], acc: V) -> V:
    for x in xs:
        acc = b.add(acc, x)
    return acc


def _sumsq(b, xs: list[V], acc: V) -> V:
    for x in xs:
        acc = b.fma(x, x, acc)
    return acc


def arrival_words(kind: str, params: dict) -> int:
    """Arrival counters a task's tiles use: one per head of a split head with a head_rms_norm."""
    if kind != "linear" or split_head_tiles(params) == 1 or "head_rms_norm" not in params.get("epilogue", ()):
        return 0
    return int(params["out_features"]) // int(params["head_dim"])
