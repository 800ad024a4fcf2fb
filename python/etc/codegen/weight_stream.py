"""Weight streaming for linear tiles: the tile's weight rows flow HBM -> shared memory through a ring of
stages filled by bulk copies (`cp.async.bulk`), each stage completing on its own mbarrier.

A linear tile reads columns [n0, n0 + ncols) of the weight (rows of the [N, K] matrix, plus the same rows
of up_weight in a fused SiLU*mul). They are cut into *blocks*: a block is one *column group* (one column
per warp) times one *K slice* (`slice_k` elements of each of those rows); block i of a tile goes to stage
i % stages. The order is: per row group of x, per column group, per K slice (a segmented tile with 2+
rows: per group of SEGMENT_ROWS rows, per segment of K, per column group, per K slice of the segment).
A column group's whole rows of up to WHOLE_ROW_STAGE_BYTES make one slice; if its columns are adjacent
rows (`contiguous`), each role's part of a block is one bulk copy, else every row slice is a copy of its
own.

    issue function (every thread calls it), run by the worker BEFORE the tile's waits:
        thread 0 inits the stage barriers; barrier; warp w issues blocks w, w + warps, ... of blocks
        0 .. stages-1 (its lane 0: expect_tx on the block's barrier; then its lanes issue the copies)
    tile function, for each block i:
        every thread waits on barrier i % stages for phase parity (i / stages) & 1
        each warp multiplies its column's slice with the staged x rows (shared memory -> registers)
        barrier (the stage is free); warp 0 issues block i + stages into it
    at the end thread 0 invalidates the barriers: every issued block has been consumed.

So the first `stages` blocks of HBM traffic overlap the tile's waits (the anchors' "start the next
instruction's weight loads before its inputs are ready"), and afterwards up to `stages` blocks (128 KB)
are in flight per SM whatever the warps are doing. The stages use `ring_bytes` of the ring
(etc-lower-to-gpu ring-kib; 64 KiB for small models). The copies carry an L2 evict-first policy: weights
are read once a step, so their lines leave L2 before the kernel's code, activations and counters, which
later tiles fetch again (measured on the H200: Llama-3.2-1B batch 1 1.158 -> 1.033 ms).

Shared memory: the ring sits at [RING_OFFSET, RING_OFFSET + RING_BYTES), the barriers right after it; a
streaming tile's own scratch (staged x, per-head values) must end below RING_OFFSET.
"""
from __future__ import annotations

import dataclasses
import math

from etc.codegen import abi
from etc.codegen.tile_library import col_span
from etc.codegen.tiles_builder import ELEM_BYTES, V
from etc.tiles import split_head_tiles

SEGMENT_ROWS = 16  # rows of x per pass over the weights of a segmented tile (StreamGeometry.segment_k)
RING_OFFSET = 96 * 1024
RING_BYTES = 128 * 1024
STAGE_BYTES = 32 * 1024  # the largest block of row slices
# The largest block of whole rows (adjacent whole rows are one bulk copy; a block of row slices is one copy
# per row). Measured on the H200, batch 1: 48 KiB blocks (Qwen3-0.6B's down_proj, 2 stages) 1.102 -> 1.076
# ms; 64 KiB blocks (Llama-3.2-1B's gate/up, Qwen3-8B's K = 4096) 1.005 -> 1.034 ms and 4.617 -> 4.651 ms.
WHOLE_ROW_STAGE_BYTES = 48 * 1024
MAX_STAGES = 8
# The automatic ring (etc-lower-to-gpu ring-kib=0): models with at most SMALL_MODEL_BYTES_PER_WORKER of
# weights per worker stream through 64 KiB of the ring, larger ones through all of it. Measured on the H200
# (BENCHMARKS.md, fourteenth session), 64 against 128 KiB: Llama-3.2-1B (19 MB a worker) batch 1 0.958 ->
# 0.927 ms and 0.962 -> 0.919, Qwen3-0.6B (9 MB) 0.986 -> 0.969, but Qwen3-8B (124 MB) 4.559 -> 4.671:
# fewer bytes in flight shorten the latency-bound stages of small models, while a large model's stages
# are bandwidth-bound and need the depth. The threshold sits between the measured models.
SMALL_MODEL_BYTES_PER_WORKER = 64 << 20
SMALL_MODEL_RING_BYTES = 64 * 1024
BARRIER_OFFSET = RING_OFFSET + RING_BYTES
STREAM_SHARED_BYTES = BARRIER_OFFSET + 8 * MAX_STAGES  # what a kernel with streaming tiles launches with
assert STREAM_SHARED_BYTES <= abi.PROFILE_PHASE_SMEM, "the profiling build's phase slots follow the barriers"
LANE_CHUNK = 8 * 32  # elements one pass of a warp covers: 16 bytes (8 x 16-bit) per lane


@dataclasses.dataclass(frozen=True)
class StreamGeometry:
    roles: tuple[str, ...]  # "weight", then "up_weight" for a fused SiLU*mul
    in_features: int
    out_features: int
    tile_n: int
    columns: int  # per column group: one per warp
    slice_k: int  # elements of each row in one block
    elem_bytes: int
    stages: int
    head_dim: int = 0
    split: int = 1  # tiles per head of a split head (etc.tiles.split_head_tiles)
    row_group: int = 1  # rows of x per pass over the weights (the linear tile's RB)
    x_role: str = "x"  # the operand whose first extent is the rows ("partial_out" for a merge prologue)
    # Segmented tiles (x of SEGMENT_ROWS rows does not fit shared memory whole): with 2+ rows of x the
    # tile passes over its weights once per SEGMENT_ROWS rows, its blocks ordered per segment of
    # segment_k elements of K (a multiple of slice_k), then per column group, then per slice; one row
    # keeps the order above. 0: not segmented.
    segment_k: int = 0

    @property
    def slices(self) -> int:
        return self.in_features // self.slice_k

    @property
    def segment_slices(self) -> int:
        return self.segment_k // self.slice_k

    @property
    def row_bytes(self) -> int:
        """Bytes of one row's slice."""
        return self.slice_k * self.elem_bytes

    @property
    def stage_bytes(self) -> int:
        return self.columns * len(self.roles) * self.row_bytes

    @property
    def contiguous(self) -> bool:
        """Whether a block's rows of one role are adjacent whole rows in memory (one bulk copy): one K
        slice, and a split head's column groups inside one rotate-half (linear_column)."""
        return self.slices == 1 and (self.split == 1 or (self.tile_n // 2) % self.columns == 0)

    @classmethod
    def of(cls, t, row_group: int, x_role: str) -> "StreamGeometry | None":
        """The geometry of linear tile `t` (an etc.codegen.tile_library.Tile) passing over its weights once
        per `row_group` rows of `x_role`, or None when its weights cannot stream: buffers that are not
        model weights (written during the step), 8-byte or 1-byte elements, or in_features not a
        multiple of 256."""
        roles = ("weight", "up_weight") if "silu_mul" in t.params.get("epilogue", ()) else ("weight",)
        etypes = {t.etype(r) for r in roles if t.has(r)}
        if len(etypes) != 1 or not all(t.has(r) for r in roles):
            return None
        if any(t.buffer(r).role != "weight" for r in roles):
            return None  # computed in the step: copying it before the tile's waits would read stale values
        eb = ELEM_BYTES[etypes.pop()]
        K = int(t.param("in_features"))
        columns = max(1, int(t.program.kernel.block_size) // 32)
        if eb not in (2, 4) or K % LANE_CHUNK:
            return None
        fits = [s for s in range(LANE_CHUNK, K + 1, LANE_CHUNK)
                if K % s == 0 and columns * len(roles) * s * eb <= STAGE_BYTES]
        slice_k = K if columns * len(roles) * K * eb <= WHOLE_ROW_STAGE_BYTES else max(fits, default=0)
        if not slice_k:
            return None
        g = cls(roles, K, int(t.param("out_features")), int(t.param("tile_n")), columns, slice_k, eb, 1,
                int(t.params.get("head_dim", 0) or 0), split_head_tiles(t.params), row_group, x_role)
        ring = t.ring_bytes or RING_BYTES  # the stages use at most this much of the ring's space
        return dataclasses.replace(g, stages=max(1, min(MAX_STAGES, ring // g.stage_bytes)))


def linear_column(b, n0: V, j: V, c, tile_n: int, head_dim: int, parts: int) -> V:
    """The output column (= weight row) of a linear tile's local column c: n0 + c, or for a split head
    (`parts` tiles per head, etc.tiles) the rotate-half pair layout: the first tile_n/2 columns from
    h*D + q*tile_n/2, the rest D/2 further."""
    if parts == 1:
        return b.add(n0, c)
    half = tile_n // 2
    first = b.add(b.mul(b.div(j, parts), head_dim), b.mul(b.rem(j, parts), half))
    return b.add(b.add(first, c), b.select(b.cmp("ge", c, half), b.i64(head_dim // 2 - half), b.i64(0)))


class WeightStream:
    """The emitters of one tile function (or its issue function) for geometry `g`."""

    def __init__(self, t, g: StreamGeometry):

        self.t, self.b, self.g = t, t.b, g
        b = self.b
        base = t.smem_base()
        with b.at_entry():
            self.ring = b.gep(base, RING_OFFSET, "i8")
            self.bars = b.gep(base, BARRIER_OFFSET, "i8")
            self.ptrs = [t.ptr(role) for role in g.roles]
            self.n0, self.ncols = col_span(t, t.coords[0], g.tile_n, g.out_features)
            self.groups = -(-self.ncols // g.columns) if isinstance(self.ncols, int) else \
                b.div(b.add(self.ncols, g.columns - 1), g.columns)
            self.per_row_group = self.groups * g.slices if isinstance(self.groups, int) else \
                b.mul(self.groups, g.slices)
            rows = t.shape(g.x_role)[0]

            def passes(row_group):
                return b.div(b.add(rows, row_group - 1), row_group) if isinstance(rows, V) else -(-rows // row_group)
            self.total = b.mul(passes(g.row_group), self.per_row_group)
            # segmented: K-major blocks for 2+ rows (the one-row variant shares this order's issue function)
            self.k_major = b.cmp("gt", rows, 1) if g.segment_k and isinstance(rows, V) else None
            if self.k_major is not None:
                self.total = b.select(self.k_major, b.mul(passes(SEGMENT_ROWS), self.per_row_group), self.total)
            self.leader = b.cmp("eq", t.tid, 0)  # thread 0 invalidates the barriers
            # weights are read once a step: their lines leave L2 first, before the code, activations and
            # counters that later tiles reuse
            self.policy = b.l2_evict_first()

    def column(self, c) -> V:
        """The weight row of the tile's local column c."""
        g = self.g
        return linear_column(self.b, self.n0, self.t.coords[0], c, g.tile_n, g.head_dim, g.split)

    def bar(self, slot) -> V:
        return self.b.gep(self.bars, self.b.mul(slot, 8) if isinstance(slot, V) else slot * 8, "i8")

    def stage(self, i: V) -> V:
        """The shared-memory stage block i lands in."""
        return self.b.gep(self.ring, self.b.mul(self.b.rem(i, self.g.stages), self.g.stage_bytes), "i8")

    # ------------------------------------------------------------ producers

    def issue(self, i: V) -> None:
        """One warp: bulk-copy block i (its rows past ncols are skipped) into its stage; lane 0 arms the
        barrier, then lane k copies role k's rows at once (contiguous geometry) or every lane issues some
        of the block's row copies."""
        b, g, t = self.b, self.g, self.t
        blk = b.rem(i, self.per_row_group)
        group, sl = b.div(blk, g.slices), b.rem(blk, g.slices)
        if self.k_major is not None:  # per segment, per column group, per slice of the segment
            n = g.segment_slices
            per_segment = self.groups * n if isinstance(self.groups, int) else b.mul(self.groups, n)
            seg, rest = b.div(blk, per_segment), b.rem(blk, per_segment)
            group = b.select(self.k_major, b.div(rest, n), group)
            sl = b.select(self.k_major, b.add(b.mul(seg, n), b.rem(rest, n)), sl)
        first = b.mul(group, g.columns)
        valid = b.min(b.sub(self.ncols, first), g.columns)
        bar = self.bar(b.rem(i, g.stages))
        dst0 = self.stage(i)
        with b.when(b.cmp("eq", t.lane, 0)):
            b.mbarrier_expect_tx(bar, b.cast(b.mul(valid, len(g.roles) * g.row_bytes), "i32"))
        b.warp_sync()
        b.fence_proxy_async()  # the stage was last read through the generic proxy
        if g.contiguous:
            src = b.mul(self.column(first), g.in_features)
            nbytes = b.cast(b.mul(valid, g.row_bytes), "i32")
            for k, ptr in enumerate(self.ptrs):
                with b.when(b.cmp("eq", t.lane, k)):
                    b.copy_bulk(b.gep(dst0, k * g.columns * g.row_bytes, "i8"),
                                b.gep(ptr, b.mul(src, g.elem_bytes), "i8"), nbytes, bar, self.policy)
            return
        with b.loop(t.lane, b.mul(valid, len(g.roles)), 32) as q:
            k, w = b.div(q, valid), b.rem(q, valid)
            row = self.column(b.add(first, w))
            src = b.add(b.mul(row, g.in_features), b.mul(sl, g.slice_k))
            ptr = self.ptrs[0] if len(self.ptrs) == 1 else b.select(b.cmp("eq", k, 0), self.ptrs[0], self.ptrs[1])
            dst = b.gep(dst0, b.mul(b.add(w, b.mul(k, g.columns)), g.row_bytes), "i8")
            b.copy_bulk(dst, b.gep(ptr, b.mul(src, g.elem_bytes), "i8"), b.i32(g.row_bytes), bar, self.policy)

    def check_block(self) -> None:
        """Trap unless the block has one warp per column of a group (the runtime launches the bundle's
        block_size, which the geometry was made for)."""
        b = self.b
        with b.when(b.cmp("ne", self.t.nwarps, self.g.columns)):
            b.trap()

    def start(self) -> None:
        """The issue function's body: thread 0 inits the barriers; after a block barrier warp w issues
        blocks w, w + warps, ... of the first `stages` (of every row group: a row group may have fewer
        blocks than the ring has stages). The blocks' arming and copies go out in parallel, not one block
        after another from warp 0, which took 2.4 us for Llama-3.2-1B's gate/up tiles (16 row-slice copies
        a block): measured 2-6% faster steps (BENCHMARKS.md, eleventh session)."""
        b, g, t = self.b, self.g, self.t
        self.check_block()
        with b.when(self.leader):
            for s in range(g.stages):
                b.mbarrier_init(self.bar(s), 1)
            b.fence_proxy_async()  # the bulk copies see the initialized barriers
        b.barrier()  # ... and so do the other warps' expect_tx
        first = b.min(self.total, g.stages) if isinstance(self.total, V) else min(self.total, g.stages)
        with b.loop(t.warp, first, t.nwarps) as i:  # fewer warps than stages: some issue two
            self.issue(i)

    # ------------------------------------------------------------ consumers (every thread)

    def wait(self, i: V) -> V:
        """Wait until block i has landed; its stage."""
        b, g = self.b, self.g
        parity = b.cast(b.and_(b.div(i, g.stages), 1), "i32")
        b.mbarrier_wait(self.bar(b.rem(i, g.stages)), parity)
        return self.stage(i)

    def release(self, i: V, total) -> None:
        """Every thread is done with block i's stage: warp 0 refills it with block i + stages."""
        b, g = self.b, self.g
        b.barrier()
        nxt = b.add(i, g.stages)
        with b.when(b.land(b.cmp("eq", self.t.warp, 0), b.cmp("lt", nxt, total))):
            self.issue(nxt)

    def finish(self) -> None:
        """Thread 0, after the last release: the barriers are idle; invalidate them for the next tile."""
        b = self.b
        with b.when(self.leader):
            for s in range(self.g.stages):
                b.mbarrier_inval(self.bar(s))


def ring_option_problem(name: str, kib) -> str | None:
    """Why the ring size option `name` (ring-kib) is out of range, or None: 0 (automatic) or a multiple of
    16 KiB from 32 to the ring's RING_BYTES."""
    ok = isinstance(kib, int) and not isinstance(kib, bool) and kib % 16 == 0 \
        and (kib == 0 or 32 <= kib <= RING_BYTES // 1024)
    return None if ok else f"{name} must be 0 or a multiple of 16 from 32 to {RING_BYTES // 1024}, got {kib!r}"


def auto_ring_bytes(program) -> int:
    """The bytes of the ring a weight stream's stages use when not given (see SMALL_MODEL_BYTES_PER_WORKER):
    from the model's weight bytes per worker (every weight buffer once, at the sizes' maxima)."""
    sizes = program.default_sizes()
    total = sum(ELEM_BYTES[buf.element_type] * math.prod(buf.shape(sizes)) for buf in program.buffers
                if buf.role == "weight" and buf.element_type in ELEM_BYTES)
    workers = max(1, program.kernel.num_workers)
    return SMALL_MODEL_RING_BYTES if total <= SMALL_MODEL_BYTES_PER_WORKER * workers else RING_BYTES
