"""The tile library: one MLIR tile function per sm_task task, computing one tile as etc.tiles specifies.

    text = emit_tile_function(task, program, buffer_index, symbol_index)
    # func.func @etc_tile_<id>(%buffers: !llvm.ptr, %sizes: !llvm.ptr, %c0: i64, %c1: i64, %c2: i64)
    #     attributes {etc.shared_bytes = N : i64} { ... }

The text goes inside the kernel's gpu.module. It uses arith/math/scf/vector/llvm/nvvm/gpu ops; lowering
needs `convert-scf-to-cf` on the gpu.module before `convert-gpu-to-nvvm` (etc.pipeline.gpu_lowering_pipeline),
and math ops (exp, cos, erf, ...) lower to libdevice calls, which gpu-module-to-binary links.

Shared memory: a tile uses `gpu.dynamic_shared_memory` from offset 0 (scratch, valid during one call
only); the kernel must be launched with at least max(etc.shared_bytes) = `tile_shared_bytes(...)` bytes
of dynamic shared memory (and cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES) above 48 KiB). Put
DYNAMIC_SHARED_DECL once in the gpu.module: upstream's lowering reuses it, giving a real
`.extern .shared .align 16 .b8 etc_dynamic_smem[]`; without it, it creates an internal 1-byte `.shared`
variable, which only works while the module has no other static shared memory.
Sizes assume at most `program.kernel.block_size` threads per block; the code reads the real blockDim.x
(a multiple of 32) at run time.

Buffers must be 16-byte aligned (vector loads of 8 bf16 / 4 f32). Data-dependent indices that are out
of range (tokens >= vocab, positions >= KV length) are skipped, where the reference raises.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping

from etc import mlir_adapter as mlir
from etc import tiles as contract
from etc.codegen import abi
from etc.codegen.abi import tile_function_name
from etc.codegen.tiles_builder import ELEM_BYTES, FLOAT_BITS, GLOBAL, INT_BITS, SHARED, Builder, V
from etc.errors import EtcError
from etc.reference.tiles import roles as tile_roles

WARP = 32
FLOAT_ETYPES = ("bf16", "f16", "f32", "f64")
# Once per gpu.module: the dynamic shared memory that every gpu.dynamic_shared_memory op lowers to.
DYNAMIC_SHARED_DECL = ("llvm.mlir.global external @etc_dynamic_smem() {addr_space = 3 : i32, alignment = 16 : i64} "
                       ": !llvm.array<0 x i8>")


class Tile:
    """What one tile function needs: its task, operands by role, runtime sizes, thread ids, shared memory."""

    def __init__(self, task, program, buffer_index: Mapping[str, int], symbol_index: Mapping[str, int],
                 weight_stream: bool = False, profile: bool = False, ring_bytes: int | None = None):
        self.task = task
        self.program = program
        self.kind = task.kind
        self.params = dict(task.params or {})
        self.buffer_index = buffer_index
        self.symbol_index = symbol_index
        self.b = Builder()
        if self.kind not in contract.KINDS:
            raise EtcError(f"task '{task.name}': unknown tile kind '{self.kind}'")
        reads, writes = tile_roles(self.kind, self.params, len(task.reads), len(task.writes))
        self.role_buffer = dict(zip(reads, task.reads)) | dict(zip(writes, task.writes))
        self.coords = [V(f"%c{i}", "i64") for i in range(3)]
        self.block_max = max(WARP, int(program.kernel.block_size))
        self.max_sizes = program.default_sizes()
        self.shared_bytes = 0  # the tile's scratch: smem() regions, bump allocated from 0
        # where the tile's use of the weight stream's ring region ends (0: none); its scratch stays below
        # the ring, so the kernel may keep its constants between the two (etc.codegen.kernel.SharedConstants)
        self.ring_end = 0
        self._ptrs: dict[str, V] = {}
        self._syms: dict[str, V] = {}
        self._shapes: dict[str, list] = {}
        self._smem_base: V | None = None
        self._thread: dict[str, V] = {}
        self._scratch: V | None = None
        self.weight_stream = weight_stream  # linear tiles stream their weights (etc.codegen.weight_stream)
        self.ring_bytes = ring_bytes  # of the weight ring's space, the bytes a weight stream's stages use (None: all)
        self.companions: list[str] = []  # more functions of the tile (a linear tile's issue function)
        self.reads_epoch = False  # reads the step's epoch (epoch_tag): the kernel must keep it after `sizes`
        self.smem_offsets: dict[str, int] = {}  # smem() region name -> its byte offset
        self.profile = profile  # the profiling build: phase() stamps %globaltimer

    def phase(self, k: int, when: V | None = None) -> None:
        """The profiling build: thread 0 stamps %globaltimer as phase k of this tile (abi.PROFILE_PHASES),
        only where `when` (i1) holds if given; a no-op otherwise. Stamps after a barrier time the whole
        block's work up to it."""
        if not self.profile:
            return
        if not 0 <= k < abi.PROFILE_PHASES:
            raise EtcError(f"internal: profile phase {k} out of range")
        b = self.b
        leader = b.cmp("eq", self.tid, 0)
        with b.when(leader if when is None else b.land(leader, when)):
            now = b.emit("nvvm.read.ptx.sreg.globaltimer : i64", "i64")
            b.store(now, b.gep(self.smem_base(), abi.PROFILE_PHASE_SMEM + 8 * k, "i8"))

    # ------------------------------------------------------------ errors and params

    def fail(self, why: str):
        raise EtcError(f"{self.kind} tile of task '{self.task.name}': {why}")

    def param(self, name: str):
        if name not in self.params:
            self.fail(f"missing param '{name}'")
        return self.params[name]

    # ------------------------------------------------------------ operands

    def has(self, role: str) -> bool:
        return role in self.role_buffer

    def buffer(self, role: str):
        if role not in self.role_buffer:
            self.fail(f"no '{role}' operand")
        name = self.role_buffer[role]
        try:
            return self.program.buffer(name)
        except StopIteration:
            self.fail(f"operand '{name}' is not a buffer of the program")

    def etype(self, role: str) -> str:
        t = self.buffer(role).element_type
        if t not in FLOAT_BITS and t not in INT_BITS:
            self.fail(f"operand '{role}' has unsupported element type '{t}'")
        return t

    def float_etype(self, role: str) -> str:
        t = self.etype(role)
        if t not in FLOAT_ETYPES:
            self.fail(f"operand '{role}' must be a float buffer, not '{t}'")
        return t

    def ptr(self, role: str) -> V:
        """The operand's global address: u64 at buffers[buffer_index[name]], as !llvm.ptr<1>."""
        name = self.buffer(role).name
        if name not in self._ptrs:
            if name not in self.buffer_index:
                self.fail(f"buffer '{name}' has no index in the kernel's buffer table")
            b = self.b
            with b.at_entry():
                slot = b.gep(V("%buffers", "!llvm.ptr"), int(self.buffer_index[name]), "i64")
                addr = b.load(slot, "i64")
                self._ptrs[name] = b.emit(f"llvm.inttoptr {addr} : i64 to {GLOBAL}", GLOBAL)
        return self._ptrs[name]

    def arrival_counters(self) -> V:
        """The task's arrival counters (u64, zeroed once by the runtime): the address in the operand
        table's slot after the buffers' (etc.codegen.abi says how many each tile kind uses)."""
        if "%arrivals" not in self._ptrs:
            b = self.b
            with b.at_entry():
                slot = b.gep(V("%buffers", "!llvm.ptr"), max(self.buffer_index.values(), default=-1) + 1, "i64")
                addr = b.load(slot, "i64")
                self._ptrs["%arrivals"] = b.emit(f"llvm.inttoptr {addr} : i64 to {GLOBAL}", GLOBAL)
        return self._ptrs["%arrivals"]

    def epoch_tag(self) -> V:
        """The step's epoch, low 32 bits, in the upper half of an i64 (a tag for words published this step).
        The epoch is the i64 after the symbols' in `sizes` (etc.codegen.abi)."""
        if "%epoch" not in self._syms:
            b = self.b
            with b.at_entry():
                slot = b.gep(V("%sizes", "!llvm.ptr"), len(self.symbol_index), "i64")
                self._syms["%epoch"] = b.shl(b.load(slot, "i64"), b.i64(32))
            self.reads_epoch = True
        return self._syms["%epoch"]

    def sym(self, name: str) -> V:
        if name not in self._syms:
            if name not in self.symbol_index:
                self.fail(f"symbolic size '{name}' has no index in the kernel's size table")
            b = self.b
            with b.at_entry():
                slot = b.gep(V("%sizes", "!llvm.ptr"), int(self.symbol_index[name]), "i64")
                self._syms[name] = b.load(slot, "i64")
        return self._syms[name]

    def shape(self, role: str) -> list:
        """The operand's extents: Python ints where static, i64 values (from %sizes) where not."""
        buf = self.buffer(role)
        if buf.name not in self._shapes:
            with self.b.at_entry():
                self._shapes[buf.name] = [self._affine(e, buf.symbols) for e in buf.sizes.results]
        return self._shapes[buf.name]

    def max_shape(self, role: str) -> tuple[int, ...]:
        """The operand's extents with every symbol at its max (to size scratch memory)."""
        buf = self.buffer(role)
        return buf.shape({**self.max_sizes, **{s: self.max_sizes.get(s, 1) for s in buf.symbols}})

    def _affine(self, expr, symbols: list[str]):
        b = self.b
        expr = mlir.downcast(expr)
        from mlir import ir
        if isinstance(expr, ir.AffineConstantExpr):
            return int(expr.value)
        if isinstance(expr, ir.AffineSymbolExpr):
            return self.sym(symbols[expr.position])
        if isinstance(expr, ir.AffineDimExpr):
            self.fail("buffer sizes map has dims")
        lhs, rhs = self._affine(expr.lhs, symbols), self._affine(expr.rhs, symbols)
        ints = isinstance(lhs, int) and isinstance(rhs, int)
        if isinstance(expr, ir.AffineAddExpr):
            return lhs + rhs if ints else b.add(lhs, rhs)
        if isinstance(expr, ir.AffineMulExpr):
            return lhs * rhs if ints else b.mul(lhs, rhs)
        if isinstance(expr, ir.AffineFloorDivExpr):
            return lhs // rhs if ints else floordiv(b, lhs, rhs)
        if isinstance(expr, ir.AffineCeilDivExpr):
            return -((-lhs) // rhs) if ints else b.sub(0, floordiv(b, b.sub(0, lhs), rhs))
        if isinstance(expr, ir.AffineModExpr):
            return lhs % rhs if ints else b.sub(lhs, b.mul(floordiv(b, lhs, rhs), rhs))
        self.fail(f"unsupported affine expression {expr}")

    # ------------------------------------------------------------ element access

    def elem_ptr(self, role: str, index) -> V:
        return self.b.gep(self.ptr(role), index, self.etype(role))

    def load(self, role: str, index) -> V:
        """One element as f32 (floats) or i64 (integers)."""
        t = self.etype(role)
        v = self.b.load(self.elem_ptr(role, index), t)
        return self.b.cast(v, "f32" if t in FLOAT_BITS else "i64")

    def store(self, role: str, index, value: V) -> None:
        """Store value (f32, already rounded where the reference rounds) converting to the buffer's type."""
        self.b.store(self.b.cast(value, self.etype(role)), self.elem_ptr(role, index))

    def load_vec(self, role: str, index, n: int = 8) -> V:
        """n consecutive elements (index a multiple of n): one vector load of up to 16-byte alignment."""
        t = self.etype(role)
        align = min(16, n * ELEM_BYTES[t])
        return self.b.load(self.elem_ptr(role, index), f"vector<{n}x{t}>", align, invariant=self.constant(role))

    def constant(self, role: str) -> bool:
        """Operands never written during a decode step (weights, tokens, positions): their loads may take
        the non-coherent path (ld.global.nc)."""
        return role in contract.CONSTANT_ROLES

    def store_vec(self, role: str, index, vec: V) -> None:
        t = self.etype(role)
        n = int(vec.type[len("vector<"):-1].split("x")[0])
        b = self.b
        if not vec.type.endswith(f"x{t}>"):
            vec = b.vec_cast(b.vec_cast(vec, "f32"), t) if not vec.type.endswith("xf32>") else b.vec_cast(vec, t)
        b.store(vec, self.elem_ptr(role, index), min(16, n * ELEM_BYTES[t]))

    # ------------------------------------------------------------ threads

    def _thread_vals(self) -> None:
        if self._thread:
            return
        b = self.b
        with b.at_entry():
            tid = b.cast(b.emit("gpu.thread_id x", "index"), "i64")
            bd = b.cast(b.emit("gpu.block_dim x", "index"), "i64")
            self._thread = {"tid": tid, "bd": bd, "lane": b.and_(tid, WARP - 1), "warp": b.shr(tid, 5),
                            "nwarps": b.shr(bd, 5)}

    def _thread_value(self, name: str) -> V:
        self._thread_vals()
        return self._thread[name]

    # Thread index, block size, lane, warp and warp count, computed once per tile function.
    tid = property(lambda self: self._thread_value("tid"))
    bd = property(lambda self: self._thread_value("bd"))
    lane = property(lambda self: self._thread_value("lane"))
    warp = property(lambda self: self._thread_value("warp"))
    nwarps = property(lambda self: self._thread_value("nwarps"))

    # ------------------------------------------------------------ shared memory

    def smem_base(self) -> V:
        """The start of dynamic shared memory."""
        b = self.b
        if self._smem_base is None:
            with b.at_entry():
                mem = b.emit("gpu.dynamic_shared_memory : memref<?xi8, #gpu.address_space<workgroup>>",
                             "memref<?xi8, #gpu.address_space<workgroup>>")
                idx = b.emit(f"memref.extract_aligned_pointer_as_index {mem} : {mem.type} -> index", "index")
                self._smem_base = b.emit(f"llvm.inttoptr {b.cast(idx, 'i64')} : i64 to {SHARED}", SHARED)
        return self._smem_base

    def smem(self, nbytes: int, align: int = 16) -> V:
        """A scratch region of dynamic shared memory (bump allocated for this tile function)."""
        base = self.smem_base()
        offset = -(-self.shared_bytes // align) * align
        self.shared_bytes = offset + nbytes
        with self.b.at_entry():
            region = self.b.gep(base, offset, "i8")
        self.smem_offsets[region.name] = offset
        return region

    @property
    def launch_bytes(self) -> int:
        """The dynamic shared memory the tile needs at launch: its scratch, and the ring's region if it uses it."""
        return max(self.shared_bytes, self.ring_end)

    def scratch(self) -> V:
        """32 x 8 bytes of shared memory for block reductions (one slot per warp)."""
        if self._scratch is None:
            self._scratch = self.smem(WARP * 8)
        return self._scratch

    def block_reduce(self, v: V, combine: Callable[[V, V], V]) -> V:
        """Reduce an f32 over the block; every thread gets the result. Call from block-uniform code."""
        b = self.b
        w = b.warp_reduce(v, combine)
        slots = self.scratch()
        with b.when(b.cmp("eq", self.lane, 0)):
            b.store(w, b.gep(slots, self.warp, "f32"))
        b.barrier()
        first = b.load(slots, "f32")
        (total,) = b.for_(1, self.nwarps, 1, [first],
                          lambda i, acc: [combine(acc[0], b.load(b.gep(slots, i, "f32"), "f32"))])
        b.barrier()  # the slots are free again
        return total

    def block_sum(self, v: V) -> V:
        return self.block_reduce(v, self.b.add)

    # ------------------------------------------------------------ loops

    def thread_loop(self, n, body: Callable[[V], None]) -> None:
        """body(i) for i = tid, tid + blockDim, ... < n."""
        with self.b.loop(self.tid, n, self.bd) as i:
            body(i)

    def thread_reduce(self, n, inits: list[V], body: Callable[[V, list[V]], list[V]]) -> list[V]:
        return self.b.for_(self.tid, n, self.bd, inits, body)

    # ------------------------------------------------------------ the function

    def function_text(self, suffix: str = "", result: V | None = None, noinline: bool = False) -> str:
        """The tile function `@etc_tile_<id><suffix>`, then its companions. A tile function proper is
        `noinline`: every task's run function calls it (one per layer), and inlined there its code would be
        copied into the megakernel once per call site (an attention tile's 16-49 times), which the
        megakernel's instruction fetch pays for (BENCHMARKS.md, ninth session). result: a value the
        function returns (a companion's answer, e.g. `_idle`'s i1). noinline: a companion kept out of line
        too (one the tile calls, so that its registers do not add to the tile's)."""
        name = tile_function_name(self.task.id) + suffix
        sizes = f"etc.shared_bytes = {self.launch_bytes} : i64, etc.scratch_bytes = {self.shared_bytes} : i64"
        if self.reads_epoch:
            sizes += ", etc.reads_epoch"
        keep = ', passthrough = ["noinline"]' if not suffix or noinline else ""
        returns = f" -> {result.type}" if result is not None else ""
        head = (f"func.func @{name}(%buffers: !llvm.ptr, %sizes: !llvm.ptr, %c0: i64, %c1: i64, %c2: i64){returns} "
                f"attributes {{{sizes}, etc.tile_kind = \"{self.kind}\"{keep}}} {{")
        ret = f"  return {result} : {result.type}" if result is not None else "  return"
        return "\n".join([head, self.b.text(), ret, "}"] + self.companions) + "\n"


def floordiv(b: Builder, a, d) -> V:
    """Affine floordiv (rounds toward -inf) for a positive divisor."""
    q = b.div(a, d)
    r = b.rem(a, d)
    return b.sub(q, b.zext(b.cmp("lt", r, 0), "i64"))


def col_span(t: Tile, tile_index: V, size: int, total):
    """(start, width) of tile `tile_index` of `size` columns clipped at `total` (the reference's span)."""
    b = t.b
    start = b.mul(tile_index, size)
    if isinstance(total, int) and total % size == 0:
        return start, size
    return start, b.max(b.min(b.sub(total, start), size), 0)


def static_int(t: Tile, value, what: str) -> int:
    if not isinstance(value, int):
        t.fail(f"{what} must be static")
    return value


# ---------------------------------------------------------------- math helpers (reference numerics)


def silu(b: Builder, x: V) -> V:
    """x / (1 + exp(-x)) in f32, as the reference."""
    return b.div(x, b.add(b.f32(1.0), b.exp(b.neg(x))))


def gelu(b: Builder, x: V, approximate: str) -> V:
    """torch gelu computed in f64 and rounded to f32, as the reference."""
    h = b.cast(x, "f64")
    if approximate == "tanh":
        inner = b.mul(math.sqrt(2.0 / math.pi), b.add(h, b.mul(0.044715, b.mul(b.mul(h, h), h))))
        out = b.mul(b.mul(0.5, h), b.add(1.0, b.math("tanh", inner)))
    elif approximate == "none":
        out = b.mul(b.mul(0.5, h), b.add(1.0, b.math("erf", b.div(h, math.sqrt(2.0)))))
    else:
        raise EtcError(f"gelu approximate must be 'none' or 'tanh', got '{approximate}'")
    return b.cast(out, "f32")


def rope_cos_sin(b: Builder, position_f32: V, inv_freq: V, etype: str) -> tuple[V, V]:
    """RoPE's cos and sin at position * inv_freq, rounded to etype (as the reference rounds them)."""
    cos, sin = cos_sin(b, b.mul(position_f32, inv_freq))
    return b.round_to(cos, etype), b.round_to(sin, etype)


def cos_sin(b: Builder, angle: V) -> tuple[V, V]:
    """cos and sin of an f32 angle computed in f64 and rounded to f32 (the reference's cos_sin)."""
    h = b.cast(angle, "f64")
    return b.cast(b.math("cos", h), "f32"), b.cast(b.math("sin", h), "f32")


def rope_pair(b: Builder, x1: V, x2: V, position_f32: V, inv_freq: V, etype: str,
              cs: tuple[V, V] | None = None) -> tuple[V, V]:
    """RoPE of the pair (x[i], x[i + D/2]) at frequency inv_freq[i]; rnd = rounding to etype. cs: the pair's
    rope_cos_sin, computed earlier (off a load's critical path)."""
    cos, sin = cs or rope_cos_sin(b, position_f32, inv_freq, etype)
    y1 = b.round_to(b.add(b.round_to(b.mul(x1, cos), etype), b.round_to(b.mul(b.neg(x2), sin), etype)), etype)
    y2 = b.round_to(b.add(b.round_to(b.mul(x2, cos), etype), b.round_to(b.mul(x1, sin), etype)), etype)
    return y1, y2


# ---------------------------------------------------------------- kinds


def vec_width(*extents_and_offsets) -> int:
    """8 when every extent/offset (Python ints) is a multiple of 8, so 8-element vector accesses stay aligned."""
    return 8 if all(isinstance(e, int) and e % 8 == 0 for e in extents_and_offsets) else 1


def emit_embedding(t: Tile) -> None:
    b = t.b
    r = t.coords[0]
    vocab, hidden = t.shape("weight")
    hidden = static_int(t, hidden, "the embedding width")
    out_hidden = t.shape("out")[1]
    if out_hidden != hidden:
        t.fail(f"out has {out_hidden} columns, the weight {hidden}")
    t.float_etype("weight")
    t.float_etype("out")
    token = t.load("tokens", r)
    valid = b.land(b.cmp("ge", token, 0), b.cmp("lt", token, vocab))
    with b.when(valid):  # the reference raises on a token outside the vocabulary; the GPU skips it
        src, dst = b.mul(token, hidden), b.mul(r, hidden)
        if vec_width(hidden) == 8:
            def copy(i):
                off = b.mul(i, 8)
                t.store_vec("out", b.add(dst, off), t.load_vec("weight", b.add(src, off)))
            t.thread_loop(hidden // 8, copy)
        else:
            t.thread_loop(hidden, lambda i: t.store("out", b.add(dst, i),
                                                    b.round_to(t.load("weight", b.add(src, i)), t.etype("out"))))


def _norm_segment(t: Tile):
    """(row, segment start, dim, width) of an rms_norm/layer_norm tile."""
    r, g = t.coords[0], t.coords[1]
    dim = int(t.param("dim"))
    cols = static_int(t, t.shape("x")[1], "the normalized width")
    if cols % dim:
        t.fail(f"x has {cols} columns, not a multiple of dim {dim}")
    if t.shape("y")[1] != cols:
        t.fail("x and y widths differ")
    start = t.b.add(t.b.mul(r, cols), t.b.mul(g, dim))
    return start, dim, vec_width(dim, cols)


def _segment_reduce(t: Tile, role: str, start: V, dim: int, width: int, init: list[V],
                    fn: Callable[[list[V], V], list[V]]) -> list[V]:
    """Fold fn(acc, element) over x[start : start + dim], each thread a strided part (8-wide loads)."""
    b = t.b

    def body(i, acc):
        if width == 8:
            elems = b.unpack_f32(t.load_vec(role, b.add(start, b.mul(i, 8))))
        else:
            elems = [t.load(role, b.add(start, i))]
        for e in elems:
            acc = fn(acc, e)
        return acc
    return t.thread_reduce(dim // width, init, body)


def _segment_map(t: Tile, start: V, dim: int, width: int, fn: Callable[[V, V], V]) -> None:
    """y[start + j] = fn(j, f32(x[start + j])) for the segment, 8 elements per access where aligned."""
    b = t.b

    def body(i):
        if width == 8:
            j0 = b.mul(i, 8)
            xs = b.unpack_f32(t.load_vec("x", b.add(start, j0)))
            ys = [fn(b.add(j0, k), x) for k, x in enumerate(xs)]
            t.store_vec("y", b.add(start, j0), b.vec_from([b.cast(y, "f32") for y in ys]))
        else:
            t.store("y", b.add(start, i), fn(i, t.load("x", b.add(start, i))))
    t.thread_loop(dim // width, body)


def emit_rms_norm(t: Tile) -> None:
    b = t.b
    start, dim, width = _norm_segment(t)
    eps = float(t.param("eps"))
    xt, yt = t.float_etype("x"), t.float_etype("y")
    t.float_etype("weight")
    (ss,) = _segment_reduce(t, "x", start, dim, width, [b.f32(0.0)], lambda acc, e: [b.fma(e, e, acc[0])])
    var = b.div(t.block_sum(ss), float(dim))
    rstd = b.div(1.0, b.sqrt(b.add(var, eps)))
    _segment_map(t, start, dim, width,
                 lambda j, x: b.round_to(b.mul(t.load("weight", j), b.round_to(b.mul(x, rstd), xt)), yt))


def emit_layer_norm(t: Tile) -> None:
    b = t.b
    start, dim, width = _norm_segment(t)
    eps = float(t.param("eps"))
    yt = t.float_etype("y")
    has_bias = bool(t.params.get("has_bias", t.has("bias")))
    (s,) = _segment_reduce(t, "x", start, dim, width, [b.f32(0.0)], lambda acc, e: [b.add(acc[0], e)])
    mean = b.div(t.block_sum(s), float(dim))

    def sq(acc, e):
        d = b.sub(e, mean)
        return [b.fma(d, d, acc[0])]
    (ss,) = _segment_reduce(t, "x", start, dim, width, [b.f32(0.0)], sq)
    std = b.sqrt(b.add(b.div(t.block_sum(ss), float(dim)), eps))

    def norm(j, x):
        y = b.mul(b.div(b.sub(x, mean), std), t.load("weight", j))
        if has_bias:
            y = b.add(y, t.load("bias", j))
        return b.round_to(y, yt)
    _segment_map(t, start, dim, width, norm)


def emit_rope(t: Tile) -> None:
    b = t.b
    r, h = t.coords[0], t.coords[1]
    d = int(t.param("head_dim"))
    cols = static_int(t, t.shape("x")[1], "the rope width")
    if d % 2 or cols % d:
        t.fail(f"x has {cols} columns, not a multiple of the (even) head_dim {d}")
    yt = t.float_etype("y")
    t.float_etype("x")
    pos = b.cast(t.load("positions", r), "f32")
    base = b.add(b.mul(r, cols), b.mul(h, d))
    half = d // 2

    def pair(i):
        x1, x2 = t.load("x", b.add(base, i)), t.load("x", b.add(base, b.add(i, half)))
        y1, y2 = rope_pair(b, x1, x2, pos, t.load("inv_freq", i), yt)
        t.store("y", b.add(base, i), y1)
        t.store("y", b.add(base, b.add(i, half)), y2)
    t.thread_loop(half, pair)


def emit_kv_append(t: Tile) -> None:
    b = t.b
    r, h = t.coords[0], t.coords[1]
    d = int(t.param("head_dim"))
    _, kv_heads, slots, cd = t.shape("cache")
    if cd != d:
        t.fail(f"cache head dim {cd} is not head_dim {d}")
    cols = static_int(t, t.shape("x")[1], "the x width")
    ct = t.float_etype("cache")
    t.float_etype("x")
    p = t.load("positions", r)
    with b.when(b.land(b.cmp("ge", p, 0), b.cmp("lt", p, slots))):  # the reference raises; skip
        src = b.add(b.mul(r, cols), b.mul(h, d))
        dst = b.mul(b.add(b.mul(b.add(b.mul(r, kv_heads), h), slots), p), d)
        t.thread_loop(d, lambda i: t.store("cache", b.add(dst, i), b.round_to(t.load("x", b.add(src, i)), ct)))


def _row_tile(t: Tile):
    """(row, first column, width, row length) of a (R, ceildiv(C, tile_c)) tile."""
    r, c = t.coords[0], t.coords[1]
    tile_c = int(t.param("tile_c"))
    cols = t.shape("y")[1]
    start, width = col_span(t, c, tile_c, cols)
    return r, start, width, cols


def emit_silu_mul(t: Tile) -> None:
    b = t.b
    r, start, width, cols = _row_tile(t)
    yt = t.float_etype("y")
    base = b.add(b.mul(r, cols), start)

    def one(i):
        at = b.add(base, i)
        y = b.mul(b.round_to(silu(b, t.load("gate", at)), yt), t.load("up", at))
        t.store("y", at, b.round_to(y, yt))
    t.thread_loop(width, one)


def emit_gelu(t: Tile) -> None:
    b = t.b
    r, start, width, cols = _row_tile(t)
    yt = t.float_etype("y")
    approximate = t.params.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        t.fail(f"approximate must be 'none' or 'tanh', got '{approximate}'")
    base = b.add(b.mul(r, cols), start)
    t.thread_loop(width, lambda i: t.store("y", b.add(base, i),
                                           b.round_to(gelu(b, t.load("x", b.add(base, i)), approximate), yt)))


def emit_add(t: Tile) -> None:
    b = t.b
    r, start, width, cols = _row_tile(t)
    yt = t.float_etype("y")
    alpha = float(t.params.get("alpha", 1.0))
    base = b.add(b.mul(r, cols), start)

    def one(i):
        at = b.add(base, i)
        t.store("y", at, b.round_to(b.add(t.load("a", at), b.mul(b.f32(alpha), t.load("b", at))), yt))
    t.thread_loop(width, one)


def emit_argmax(t: Tile) -> None:
    """The first index of the row maximum; NaN counts as the maximum (torch / numpy argmax)."""
    b = t.b
    r = t.coords[0]
    cols = t.shape("x")[1]
    t.float_etype("x")
    base = b.mul(r, cols)

    def better(v, i, bv, bi) -> V:
        """(v, i) beats (bv, bi): larger, or NaN over a number, or equal (both NaN too) with a smaller index."""
        v_nan, bv_nan = b.isnan(v), b.isnan(bv)
        same = b.lor(b.cmp("eq", v, bv), b.land(v_nan, bv_nan))
        earlier = b.land(same, b.cmp("lt", i, bi))
        gt = b.land(b.cmp("gt", v, bv), b.cmp("eq", bv_nan, b.const(0, "i1")))  # cmpf ogt is false on NaN
        nan_wins = b.land(v_nan, b.cmp("eq", bv_nan, b.const(0, "i1")))
        return b.lor(b.lor(gt, nan_wins), earlier)

    big = 2 ** 31 - 1

    def scan(i, acc):
        bv, bi = acc
        v = t.load("x", b.add(base, i))
        ii = b.cast(i, "i32")
        take = better(v, ii, bv, bi)
        return [b.select(take, v, bv), b.select(take, ii, bi)]
    bv, bi = t.thread_reduce(cols, [b.f32(float("-inf")), b.i32(big)], scan)
    for off in (16, 8, 4, 2, 1):
        ov, oi = b.shuffle_xor(bv, off), b.shuffle_xor(bi, off)
        take = better(ov, oi, bv, bi)
        bv, bi = b.select(take, ov, bv), b.select(take, oi, bi)
    slots = t.scratch()
    with b.when(b.cmp("eq", t.lane, 0)):
        b.store(bv, b.gep(slots, t.warp, "f32"))
        b.store(bi, b.gep(slots, b.add(t.warp, WARP), "i32"))
    b.barrier()
    with b.when(b.cmp("eq", t.tid, 0)):
        def comb(w, acc):
            ov, oi = b.load(b.gep(slots, w, "f32"), "f32"), b.load(b.gep(slots, b.add(w, WARP), "i32"), "i32")
            take = better(ov, oi, acc[0], acc[1])
            return [b.select(take, ov, acc[0]), b.select(take, oi, acc[1])]
        fv, fi = b.for_(0, t.nwarps, 1, [b.f32(float("-inf")), b.i32(big)], comb)
        fi = b.select(b.cmp("eq", fi, big), 0, fi)  # an empty row: index 0
        ot = t.etype("out")
        t.store("out", r, b.cast(fi, ot) if ot in INT_BITS else b.cast(fi, "f32"))
    b.barrier()


# ---------------------------------------------------------------- elementwise bodies


_ARITH_FLOAT = {"arith.addf": "add", "arith.subf": "sub", "arith.mulf": "mul", "arith.divf": "div",
                "arith.maximumf": "max", "arith.minimumf": "min", "arith.remf": "rem"}
_ARITH_INT = {"arith.addi": "arith.addi", "arith.subi": "arith.subi", "arith.muli": "arith.muli",
              "arith.andi": "arith.andi", "arith.ori": "arith.ori", "arith.xori": "arith.xori",
              "arith.maxsi": "arith.maxsi", "arith.minsi": "arith.minsi", "arith.maxui": "arith.maxui",
              "arith.minui": "arith.minui", "arith.divsi": "arith.divsi", "arith.remsi": "arith.remsi",
              "arith.shli": "arith.shli", "arith.shrsi": "arith.shrsi", "arith.shrui": "arith.shrui"}
_MATH_UNARY = {"math.exp", "math.exp2", "math.log", "math.log2", "math.tanh", "math.sin", "math.cos",
               "math.absf", "math.floor", "math.ceil", "math.erf", "math.log1p", "math.expm1", "math.round",
               "math.roundeven", "math.trunc", "math.sinh", "math.cosh", "math.atan", "math.tan", "math.cbrt"}
_CMPF_PRED = ["false", "oeq", "ogt", "oge", "olt", "ole", "one", "ord", "ueq", "ugt", "uge", "ult", "ule", "une",
              "uno", "true"]
_CMPI_PRED = ["eq", "ne", "slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge"]


def _compute_type(t: str) -> str:
    """Where a body value of type t lives: bf16/f16/f32 as f32 (rounded after each op), f64, integers."""
    if t in ("bf16", "f16", "f32"):
        return "f32"
    if t in ("f64",) or t in INT_BITS:
        return t
    raise EtcError(f"unsupported type '{t}'")


class BodyEmitter:
    """Emits an elementwise body (a func.func of scalar arith/math ops) with the reference's numerics:
    every op computes in f32 (f64) and a bf16/f16 result is rounded to its type (etc.reference.elementwise)."""

    def __init__(self, b: Builder, func_op, where: str):
        self.b = b
        self.func = func_op.operation
        self.name = mlir.str_attr(self.func, "sym_name")
        self.where = where
        blocks = list(self.func.regions[0].blocks)
        if len(blocks) != 1:
            self.fail(self.func, f"expected one block, found {len(blocks)}")
        self.block = blocks[0]
        self.arg_types = [str(a.type) for a in self.block.arguments]
        for a in self.block.arguments:
            self.check_type(self.func, str(a.type))

    def fail(self, op, why: str):
        raise EtcError(f"{self.where}: elementwise body @{self.name}: {why} at {mlir.format_location(op.location)}")

    def check_type(self, op, t: str) -> str:
        if t not in FLOAT_BITS and t not in INT_BITS:
            self.fail(op, f"unsupported type '{t}'")
        return t

    def fix(self, v: V, t: str) -> V:
        """A computed value as a value of body type t (rounded to bf16/f16; integers at their width)."""
        if t in ("bf16", "f16"):
            return self.b.round_to(v, t)
        return v

    def arg(self, value: V, t: str) -> V:
        """A tile operand (f32 or i64 from memory) as a body argument of type t (the reference's _as_type)."""
        if t in FLOAT_BITS:
            return self.fix(self.b.cast(value, _compute_type(t)), t)
        return self.b.cast(value, t)

    def run(self, args: list[V]) -> tuple[V, str]:
        """Emit the body on `args` (values already converted by `arg`); returns (result, result type)."""
        env = {}
        for a, v in zip(self.block.arguments, args):
            env[a] = v
        for op in self.block.operations:
            op = op.operation
            name = op.name
            if name == "func.return":
                if len(op.operands) != 1:
                    self.fail(op, f"the body must return one value, not {len(op.operands)}")
                return env[op.operands[0]], self.check_type(op, str(op.operands[0].type))
            if len(op.results) != 1:
                self.fail(op, f"unsupported op '{name}'")
            out = self.check_type(op, str(op.results[0].type))
            ins = [self.check_type(op, str(v.type)) for v in op.operands]
            xs = [env[v] for v in op.operands]
            env[op.results[0]] = self.fix(self.emit_op(op, name, out, ins, xs), out)
        self.fail(self.func, "no func.return")

    def emit_op(self, op, name: str, out: str, ins: list[str], xs: list[V]) -> V:
        b = self.b
        ct = _compute_type(out)
        fl = out in FLOAT_BITS
        if name == "arith.constant":
            value = mlir.attr_to_python(op.attributes["value"])
            if not isinstance(value, (bool, int, float)):
                self.fail(op, f"unsupported constant {op.attributes['value']}")
            if fl:  # f64 -> f32 -> bf16, rounded twice as the reference does
                return b.const(float(value), ct)
            return b.const(int(value), ct)
        if name in _ARITH_FLOAT and fl:
            return getattr(b, _ARITH_FLOAT[name])(*xs)
        if name == "arith.negf" and fl:
            return b.neg(xs[0])
        if name in ("arith.maxnumf", "arith.minnumf") and fl:
            return b.emit(f"{name} {xs[0]}, {xs[1]} : {ct}", ct)
        if name in _MATH_UNARY and fl:
            return b.math(name[len("math."):], xs[0])
        if name == "math.sqrt" and fl:
            return b.sqrt(xs[0])
        if name == "math.rsqrt" and fl:
            return b.div(b.const(1.0, ct), b.sqrt(xs[0]))  # 1 / sqrt(x), rounded twice as the reference
        if name in ("math.powf", "math.atan2", "math.copysign") and fl:
            return b.math(name[len("math."):], xs[0], xs[1])
        if name == "math.fma" and fl:
            return b.fma(*xs)
        if name in _ARITH_INT and not fl:
            return b.emit(f"{_ARITH_INT[name]} {xs[0]}, {xs[1]} : {ct}", ct)
        if name in ("arith.extf", "arith.truncf") and fl and ins[0] in FLOAT_BITS:
            return b.cast(xs[0], ct)
        if name == "arith.sitofp" and fl:
            return b.cast(xs[0], ct)
        if name == "arith.uitofp" and fl:
            return b.emit(f"arith.uitofp {xs[0]} : {ins[0]} to {ct}", ct)
        if name in ("arith.fptosi", "arith.fptoui") and not fl:
            return b.emit(f"{name} {xs[0]} : {xs[0].type} to {ct}", ct)
        if name in ("arith.extsi", "arith.trunci", "arith.extui", "arith.index_cast") and not fl:
            if name == "arith.extui":
                return b.zext(xs[0], ct)
            return b.cast(xs[0], ct)
        if name == "arith.cmpf":
            pred = _CMPF_PRED[int(mlir.attr_to_python(op.attributes["predicate"]))]
            return b.emit(f"arith.cmpf {pred}, {xs[0]}, {xs[1]} : {xs[0].type}", "i1")
        if name == "arith.cmpi":
            pred = _CMPI_PRED[int(mlir.attr_to_python(op.attributes["predicate"]))]
            return b.emit(f"arith.cmpi {pred}, {xs[0]}, {xs[1]} : {xs[0].type}", "i1")
        if name == "arith.select":
            return b.select(xs[0], xs[1], xs[2])
        self.fail(op, f"unsupported op '{name}' on ({', '.join(ins)}) -> {out}")


def emit_elementwise(t: Tile) -> None:
    b = t.b
    r, start, width, cols = _row_tile(t)
    body_name = str(t.param("body")).lstrip("@")
    func = t.program.body_func(body_name)
    if func is None:
        t.fail(f"body @{body_name} is not a func.func of the module")
    body = BodyEmitter(b, func, f"elementwise tile of task '{t.task.name}'")
    broadcast = list(t.param("broadcast"))
    if len(broadcast) != len(body.arg_types):
        t.fail(f"{len(broadcast)} broadcast entries for a body of {len(body.arg_types)} operands")
    yt = t.etype("y")

    def one(i):
        col = b.add(start, i)
        args = []
        for k, (how, at) in enumerate(zip(broadcast, body.arg_types)):
            role = f"operand{k}"
            shape = t.shape(role)
            if how == "full":
                index = b.add(b.mul(r, shape[1]), col)
            elif how == "row":
                index = b.mul(r, shape[1])
            elif how == "col":
                index = col
            elif how == "scalar":
                index = 0
            else:
                t.fail(f"unknown broadcast '{how}' of operand {k}")
            args.append(body.arg(t.load(role, index), at))
        y, _ = body.run(args)
        if yt in FLOAT_BITS:
            y = b.round_to(y if y.type in FLOAT_BITS else b.cast(y, "f32"), yt)
        t.store("y", b.add(b.mul(r, cols), col), y)
    t.thread_loop(width, one)


# ---------------------------------------------------------------- entry points


def _emitters() -> dict[str, Callable[[Tile], None]]:
    from etc.codegen.tiles_attention import emit_attention_merge, emit_attention_partial
    from etc.codegen.tiles_linear import emit_linear
    return {
        "embedding": emit_embedding, "rms_norm": emit_rms_norm, "layer_norm": emit_layer_norm,
        "linear": emit_linear, "rope": emit_rope, "kv_append": emit_kv_append,
        "attention_partial": emit_attention_partial, "attention_merge": emit_attention_merge,
        "silu_mul": emit_silu_mul, "gelu": emit_gelu, "add": emit_add, "argmax": emit_argmax,
        "elementwise": emit_elementwise,
    }


def _build(task, program, buffer_index, symbol_index, weight_stream: bool = False, profile: bool = False,
           ring_bytes: int | None = None) -> Tile:
    tile = Tile(task, program, buffer_index, symbol_index, weight_stream, profile, ring_bytes)
    emitters = _emitters()
    assert set(emitters) == set(contract.KINDS), "every tile kind of etc.tiles needs an emitter"
    emitters[task.kind](tile)
    return tile


def emit_tile_function(task, program, buffer_index: dict[str, int], symbol_index: dict[str, int],
                       weight_stream: bool = False, profile: bool = False, ring_bytes: int | None = None) -> str:
    """MLIR text of `func.func @etc_tile_<task.id>` computing one tile of `task` (see the module docstring).
    weight_stream: linear tiles whose weights can stream get a companion `@etc_tile_<id>_issue` with the
    same arguments, which the worker calls (every thread) before the tile's waits; ring_bytes: how much of
    the ring's space (weight_stream.RING_BYTES) their stages use. profile: the tile stamps its phases
    (abi.PROFILE_PHASE_SMEM)."""
    return _build(task, program, buffer_index, symbol_index, weight_stream, profile, ring_bytes).function_text()


def has_idle_function(tile_text: str, name: str) -> bool:
    """Whether the tile function text carries `@<name>_idle` (-> i1: another tile of the task stands in
    for this one this step, so the worker skips it)."""
    return f"func.func @{name}_idle(" in tile_text


def has_signal_count_function(tile_text: str, name: str) -> bool:
    """Whether the tile function text carries `@<name>_signal_count` (-> i64: how much each of the tile's
    signals adds, 1 + the tiles it stands in for)."""
    return f"func.func @{name}_signal_count(" in tile_text


def has_issue_function(tile_text: str, name: str) -> bool:
    """Whether tile function text (of `name`) carries the weight stream's issue function."""
    return f"func.func @{name}_issue(" in tile_text


def tile_shared_bytes(task, program, buffer_index: dict[str, int] | None = None,
                      symbol_index: dict[str, int] | None = None, weight_stream: bool = False) -> int:
    """Bytes of dynamic shared memory the task's tile function uses (also its `etc.shared_bytes` attribute)."""
    buffer_index = buffer_index or {b.name: i for i, b in enumerate(program.buffers)}
    symbol_index = symbol_index or {d.name: i for i, d in enumerate(program.dims)}
    return _build(task, program, buffer_index, symbol_index, weight_stream).launch_bytes
