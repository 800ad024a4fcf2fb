"""A small SSA text builder for the tile functions: MLIR (arith/math/scf/vector/llvm/nvvm/gpu) in pretty form.

Values are `V(name, type)`; Python ints/floats given to an arithmetic helper become constants of the other
operand's type. Constants and entry values (buffer addresses, runtime sizes, thread ids) go to the top of
the function so that they dominate every use; everything else is emitted in program order, with scf
regions opened by `for_` / `if_` / `when`.

Float math follows the tile contract: values are computed in f32 (f64 where the reference does), and bf16/
f16 results are rounded with arith.truncf (round-to-nearest-even) exactly where the reference rounds.
"""
from __future__ import annotations

import contextlib
import struct
from typing import Callable, Sequence

from etc.errors import EtcError

FLOAT_BITS = {"bf16": 16, "f16": 16, "f32": 32, "f64": 64}
INT_BITS = {"i1": 1, "i8": 8, "i16": 16, "i32": 32, "i64": 64}
ELEM_BYTES = {"bf16": 2, "f16": 2, "f32": 4, "f64": 8, "i8": 1, "i16": 2, "i32": 4, "i64": 8}
GLOBAL = "!llvm.ptr<1>"
SHARED = "!llvm.ptr<3>"

_CMPI = {"eq": "eq", "ne": "ne", "lt": "slt", "le": "sle", "gt": "sgt", "ge": "sge", "ult": "ult", "uge": "uge"}
_CMPF = {"eq": "oeq", "ne": "une", "lt": "olt", "le": "ole", "gt": "ogt", "ge": "oge", "uno": "uno", "ord": "ord"}


class V:
    """An SSA value: its name (%v12, %r3#0, %c0) and MLIR type."""
    __slots__ = ("name", "type")

    def __init__(self, name: str, type_: str):
        self.name = name
        self.type = type_

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"V({self.name}: {self.type})"


def is_float(t: str) -> bool:
    return t in FLOAT_BITS or (t.startswith("vector<") and t.rstrip(">").split("x")[-1] in FLOAT_BITS)


def float_literal(x: float, t: str) -> str:
    """An exact hexadecimal literal of x in float type t (so inf, nan and every bit pattern survive)."""
    if t == "f64":
        return "0x%016X" % struct.unpack("<Q", struct.pack("<d", float(x)))[0]
    bits = struct.unpack("<I", struct.pack("<f", float(x)))[0]
    if t == "f32":
        return "0x%08X" % bits
    if t == "bf16":  # round to nearest even, like the reference's round_bf16
        return "0x%04X" % (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF)
    if t == "f16":
        import numpy as np
        return "0x%04X" % int(np.array([x], dtype=np.float16).view(np.uint16)[0])
    raise EtcError(f"no float literal of type {t}")


class Builder:
    def __init__(self):
        self.consts: list[str] = []
        self.entry: list[str] = []
        self.body: list[str] = []
        self._out = self.body
        self._depth = 1
        self._n = 0
        self._const_cache: dict[tuple, V] = {}

    # ------------------------------------------------------------ emission

    def fresh(self, prefix: str = "v") -> str:
        self._n += 1
        return f"%{prefix}{self._n}"

    def stmt(self, text: str) -> None:
        self._out.append("  " * self._depth + text)

    def emit(self, rhs: str, type_: str) -> V:
        name = self.fresh()
        self.stmt(f"{name} = {rhs}")
        return V(name, type_)

    @contextlib.contextmanager
    def at_entry(self):
        """Emit into the function's entry section (values that must dominate every use)."""
        saved, depth = self._out, self._depth
        self._out, self._depth = self.entry, 1
        try:
            yield
        finally:
            self._out, self._depth = saved, depth

    def text(self) -> str:
        return "\n".join(self.consts + self.entry + self.body)

    # ------------------------------------------------------------ constants

    def const(self, value, t: str) -> V:
        if isinstance(value, V):
            return value
        key = (repr(float(value)) if is_float(t) else int(value), t)
        if key not in self._const_cache:
            name = f"%k{len(self._const_cache)}"
            lit = float_literal(value, t) if is_float(t) else str(int(value))
            if t == "i1":  # `arith.constant true` carries no type
                self.consts.append(f"  {name} = arith.constant {'true' if value else 'false'}")
            else:
                self.consts.append(f"  {name} = arith.constant {lit} : {t}")
            self._const_cache[key] = V(name, t)
        return self._const_cache[key]

    def i64(self, n: int) -> V:
        return self.const(n, "i64")

    def i32(self, n: int) -> V:
        return self.const(n, "i32")

    def f32(self, x: float) -> V:
        return self.const(x, "f32")

    def _pair(self, a, b) -> tuple[V, V]:
        if not isinstance(a, V) and not isinstance(b, V):
            raise EtcError("internal: arithmetic on two Python constants")
        if not isinstance(a, V):
            a = self.const(a, b.type)
        if not isinstance(b, V):
            b = self.const(b, a.type)
        if a.type != b.type:
            raise EtcError(f"internal: operand types {a.type} and {b.type} differ")
        return a, b

    # ------------------------------------------------------------ arithmetic

    _FOLD = {"arith.addi": lambda x, y: x + y, "arith.subi": lambda x, y: x - y, "arith.muli": lambda x, y: x * y,
             "arith.divsi": lambda x, y: int(x / y), "arith.remsi": lambda x, y: x - int(x / y) * y,
             "arith.minsi": min, "arith.maxsi": max}

    def _bin(self, iop: str, fop: str, a, b) -> V:
        if isinstance(a, int) and isinstance(b, int) and iop in self._FOLD:
            return self._FOLD[iop](a, b)  # both static: fold in Python
        a, b = self._pair(a, b)
        op = fop if is_float(a.type) else iop
        return self.emit(f"{op} {a}, {b} : {a.type}", a.type)

    def add(self, a, b) -> V:
        if isinstance(b, int) and not isinstance(b, bool) and b == 0 and isinstance(a, V) and not is_float(a.type):
            return a
        return self._bin("arith.addi", "arith.addf", a, b)

    def sub(self, a, b) -> V:
        return self._bin("arith.subi", "arith.subf", a, b)

    def mul(self, a, b) -> V:
        if isinstance(b, int) and b == 1 and isinstance(a, V) and not is_float(a.type):
            return a
        return self._bin("arith.muli", "arith.mulf", a, b)

    def div(self, a, b) -> V:
        """Signed integer division (operands here are never negative) or IEEE division."""
        return self._bin("arith.divsi", "arith.divf", a, b)

    def rem(self, a, b) -> V:
        return self._bin("arith.remsi", "arith.remf", a, b)

    def udiv(self, a, b) -> V:
        return self._bin("arith.divui", "arith.divf", a, b)

    def urem(self, a, b) -> V:
        return self._bin("arith.remui", "arith.remf", a, b)

    def min(self, a, b) -> V:
        return self._bin("arith.minsi", "arith.minimumf", a, b)

    def max(self, a, b) -> V:
        return self._bin("arith.maxsi", "arith.maximumf", a, b)

    def and_(self, a, b) -> V:
        return self._bin("arith.andi", "-", a, b)

    def or_(self, a, b) -> V:
        return self._bin("arith.ori", "-", a, b)

    def xor(self, a, b) -> V:
        return self._bin("arith.xori", "-", a, b)

    def shl(self, a, b) -> V:
        return self._bin("arith.shli", "-", a, b)

    def shr(self, a, b) -> V:
        return self._bin("arith.shrui", "-", a, b)

    def neg(self, a: V) -> V:
        if is_float(a.type):
            return self.emit(f"arith.negf {a} : {a.type}", a.type)
        return self.sub(0, a)

    def fma(self, a, b, c) -> V:
        t = next(x.type for x in (a, b, c) if isinstance(x, V))
        a, b, c = (self.const(x, t) for x in (a, b, c))
        return self.emit(f"math.fma {a}, {b}, {c} : {t}", t)

    def cmp(self, pred: str, a, b) -> V:
        if isinstance(a, int) and isinstance(b, int):
            a = self.i64(a)
        a, b = self._pair(a, b)
        if is_float(a.type):
            return self.emit(f"arith.cmpf {_CMPF[pred]}, {a}, {b} : {a.type}", "i1")
        return self.emit(f"arith.cmpi {_CMPI[pred]}, {a}, {b} : {a.type}", "i1")

    def select(self, c: V, a, b) -> V:
        a, b = self._pair(a, b)
        return self.emit(f"arith.select {c}, {a}, {b} : {a.type}", a.type)

    def land(self, a: V, b: V) -> V:
        return self.emit(f"arith.andi {a}, {b} : i1", "i1")

    def lor(self, a: V, b: V) -> V:
        return self.emit(f"arith.ori {a}, {b} : i1", "i1")

    def math(self, op: str, *args: V) -> V:
        return self.emit(f"math.{op} {', '.join(str(a) for a in args)} : {args[0].type}", args[0].type)

    def sqrt(self, a: V) -> V:
        """IEEE sqrt (sqrt.rn). Not math.sqrt: libdevice's __nv_sqrtf is an approximation unless NVVM reflect
        says __CUDA_PREC_SQRT, which this pipeline does not."""
        name = {"f32": "llvm.nvvm.sqrt.rn.f", "f64": "llvm.nvvm.sqrt.rn.d"}[a.type]
        return self.emit(f'llvm.call_intrinsic "{name}"({a}) : ({a.type}) -> {a.type}', a.type)

    def exp(self, a: V) -> V:
        return self.math("exp", a)

    def isnan(self, a: V) -> V:
        return self.cmp("uno", a, a)

    # ------------------------------------------------------------ conversions

    def cast(self, v: V, t: str) -> V:
        """Numeric conversion between scalar types (floats round to nearest even; ints sign-extend or wrap)."""
        s = v.type
        if s == t:
            return v
        if is_float(s) and is_float(t):
            op = "arith.extf" if FLOAT_BITS[t] > FLOAT_BITS[s] else "arith.truncf"
            if FLOAT_BITS[t] == FLOAT_BITS[s]:  # bf16 <-> f16
                return self.cast(self.cast(v, "f32"), t)
            return self.emit(f"{op} {v} : {s} to {t}", t)
        if s in INT_BITS and t in INT_BITS:
            op = "arith.extsi" if INT_BITS[t] > INT_BITS[s] else "arith.trunci"
            return self.emit(f"{op} {v} : {s} to {t}", t)
        if s in INT_BITS and is_float(t):
            return self.emit(f"arith.sitofp {v} : {s} to {t}", t)
        if is_float(s) and t in INT_BITS:
            return self.emit(f"arith.fptosi {v} : {s} to {t}", t)
        if s == "index" and t in INT_BITS:
            return self.emit(f"arith.index_cast {v} : index to {t}", t)
        if s in INT_BITS and t == "index":
            return self.emit(f"arith.index_cast {v} : {s} to index", t)
        raise EtcError(f"internal: no conversion from {s} to {t}")

    def zext(self, v: V, t: str) -> V:
        return self.emit(f"arith.extui {v} : {v.type} to {t}", t)

    def bitcast(self, v: V, t: str) -> V:
        return self.emit(f"arith.bitcast {v} : {v.type} to {t}", t)

    def round_to(self, v: V, etype: str) -> V:
        """f32 value rounded to `etype` (as the reference's rounder), returned as f32 (f64 stays f64)."""
        if etype in ("bf16", "f16"):
            return self.cast(self.cast(self.cast(v, "f32"), etype), "f32")
        if etype == "f32":
            return self.cast(v, "f32")
        if etype == "f64":
            return v
        raise EtcError(f"cannot round to element type '{etype}'")

    # ------------------------------------------------------------ vectors

    def vec_extract(self, v: V, i: int) -> V:
        elem = v.type[len("vector<"):-1].split("x")[1]
        return self.emit(f"vector.extract {v}[{i}] : {elem} from {v.type}", elem)

    def vec_from(self, elems: Sequence[V]) -> V:
        t = f"vector<{len(elems)}x{elems[0].type}>"
        return self.emit(f"vector.from_elements {', '.join(str(e) for e in elems)} : {t}", t)

    def vec_cast(self, v: V, elem: str) -> V:
        n, s = v.type[len("vector<"):-1].split("x")
        if s == elem:
            return v
        t = f"vector<{n}x{elem}>"
        op = "arith.extf" if FLOAT_BITS[elem] > FLOAT_BITS[s] else "arith.truncf"
        return self.emit(f"{op} {v} : {v.type} to {t}", t)

    def unpack_f32(self, v: V) -> list[V]:
        """The elements of a float vector, as f32 scalars."""
        n = int(v.type[len("vector<"):-1].split("x")[0])
        v32 = self.vec_cast(v, "f32") if not v.type.endswith("xf64>") else v
        return [self.cast(self.vec_extract(v32, i), "f32") for i in range(n)]

    # ------------------------------------------------------------ memory

    def gep(self, p: V, idx, elem: str) -> V:
        if isinstance(idx, int):
            if idx == 0:
                return p
            return self.emit(f"llvm.getelementptr {p}[{idx}] : ({p.type}) -> {p.type}, {elem}", p.type)
        return self.emit(f"llvm.getelementptr {p}[{idx}] : ({p.type}, {idx.type}) -> {p.type}, {elem}", p.type)

    def load(self, p: V, t: str, align: int | None = None, volatile: bool = False, invariant: bool = False) -> V:
        """volatile: keeps LLVM from hoisting a loop-invariant shared-memory load (and the registers it
        would then hold across the loop); invariant: memory that no one writes while the kernel runs."""
        attr = f" {{alignment = {align} : i64}}" if align else ""
        vol = "volatile " if volatile else ""
        inv = " invariant" if invariant else ""
        return self.emit(f"llvm.load {vol}{p}{inv}{attr} : {p.type} -> {t}", t)

    def store(self, v: V, p: V, align: int | None = None, relaxed: bool = False) -> None:
        """relaxed: a relaxed device-scope atomic store (st.relaxed.gpu), for a word other SMs load while it
        may happen (with load_relaxed: a morally strong pair, so an aligned word is seen whole)."""
        attr = f" {{alignment = {align} : i64}}" if align else ""
        atomic = ' atomic syncscope("device") monotonic' if relaxed else ""
        self.stmt(f"llvm.store {v}, {p}{atomic}{attr} : {v.type}, {p.type}")

    def load_relaxed(self, p: V, t: str, align: int) -> V:
        """A relaxed device-scope atomic load (ld.relaxed.gpu: past L1, not hoisted out of a loop)."""
        return self.emit(f'llvm.load {p} atomic syncscope("device") monotonic {{alignment = {align} : i64}} : '
                         f'{p.type} -> {t}', t)

    def copy_async_16(self, dst: V, src: V) -> None:
        """cp.async of 16 bytes global -> shared (bypassing L1); completes at wait_async."""
        g = self.emit(f"llvm.addrspacecast {src} : {src.type} to !llvm.ptr<1>", "!llvm.ptr<1>")
        self.stmt(f"nvvm.cp.async.shared.global {dst}, {g}, 16, cache = cg : {dst.type}, !llvm.ptr<1>")

    def copy_async(self, dst: V, src: V, nbytes: int) -> None:
        """cp.async of 4, 8 or 16 bytes global -> shared (16: bypassing L1); completes at wait_async."""
        if nbytes == 16:
            self.copy_async_16(dst, src)
            return
        if nbytes not in (4, 8):
            raise EtcError(f"internal: cp.async of {nbytes} bytes")
        g = self.emit(f"llvm.addrspacecast {src} : {src.type} to !llvm.ptr<1>", "!llvm.ptr<1>")
        self.stmt(f"nvvm.cp.async.shared.global {dst}, {g}, {nbytes}, cache = ca : {dst.type}, !llvm.ptr<1>")

    def wait_async(self) -> None:
        """Commit this thread's cp.async copies and wait for all of them (a barrier must follow before other
        threads read the data)."""
        self.stmt("nvvm.cp.async.commit.group")
        self.stmt("nvvm.cp.async.wait.group 0")

    # ------------------------------------------------------------ bulk copies and mbarriers (sm_90)

    def mbarrier_init(self, bar: V, count: int) -> None:
        self.stmt(f"nvvm.mbarrier.init {bar}, {self.i32(count)} : {bar.type}, i32")

    def mbarrier_inval(self, bar: V) -> None:
        self.stmt(f"nvvm.mbarrier.inval {bar} : {bar.type}")

    def mbarrier_expect_tx(self, bar: V, nbytes: V) -> None:
        """Arrive on the barrier and expect `nbytes` (i32) more bytes of bulk copies before its phase completes."""
        self.emit(f"nvvm.mbarrier.arrive.expect_tx {bar}, {nbytes} : {bar.type}, i32 -> i64", "i64")

    def mbarrier_wait(self, bar: V, parity: V) -> None:
        """Block until the barrier's phase of parity `parity` (i32, 0 or 1) has completed (acquire, CTA)."""
        self.repeat_until(lambda: (self.emit(f"nvvm.mbarrier.try_wait {bar}, {parity} : {bar.type}, i32 -> i1",
                                             "i1"), []))

    def repeat_until(self, body: Callable[[], tuple[V, Sequence[V]]]) -> list[V]:
        """scf.while running body() -> (done: i1, values) until done; returns the values of the last run."""
        saved, self._out = self._out, []
        self._depth += 1
        done, values = body()
        types = ", ".join(v.type for v in values)
        passed = f" {', '.join(str(v) for v in values)} : {types}" if values else ""
        self.stmt(f"scf.condition({self.xor(done, self.const(1, 'i1'))}){passed}")
        self._depth -= 1
        lines, self._out = self._out, saved
        res = self.fresh("r") if values else None
        self.stmt(f"{res}:{len(values)} = scf.while : () -> ({types}) {{" if values else "scf.while : () -> () {")
        self._out.extend(lines)
        self.stmt("} do {")
        if values:
            args = [f"{self.fresh('w')}: {v.type}" for v in values]
            self.stmt(f"^bb0({', '.join(args)}):")
        self.stmt("  scf.yield")
        self.stmt("}")
        return [V(f"{res}#{i}", v.type) for i, v in enumerate(values)]

    def copy_bulk(self, dst: V, src: V, nbytes: V, bar: V, policy: V | None = None) -> None:
        """cp.async.bulk global -> shared of `nbytes` (i32, a multiple of 16; both addresses 16-byte
        aligned), completing `nbytes` of the barrier's expected transaction count; `policy`: an L2 cache
        policy (l2_evict_first)."""
        d = self.emit(f"llvm.addrspacecast {dst} : {dst.type} to !llvm.ptr<7>", "!llvm.ptr<7>")
        hint = f" l2_cache_hint = {policy}" if policy is not None else ""
        self.stmt(f"nvvm.cp.async.bulk.shared.cluster.global {d}, {src}, {bar}, {nbytes}{hint} : !llvm.ptr<7>, <1>")

    def l2_evict_first(self) -> V:
        """An L2 cache policy (createpolicy) under which the lines an access brings in are evicted first."""
        return self.emit('llvm.inline_asm has_side_effects "createpolicy.fractional.L2::evict_first.b64 $0, 1.0;", '
                         '"=l" : () -> i64', "i64")

    def fence(self, ordering: str) -> None:
        """A device-scope fence ("release" / "acquire"): PTX fence.acq_rel.gpu."""
        self.stmt(f'llvm.fence syncscope("device") {ordering}')

    def atomic_add(self, p: V, v: V) -> V:
        """Relaxed (monotonic) atomic add at `p`; the old value. Order it with fence()."""
        return self.emit(f"llvm.atomicrmw add {p}, {v} monotonic : {p.type}, {v.type}", v.type)

    def fence_proxy_async(self) -> None:
        """Order this thread's earlier shared-memory accesses before later bulk copies (the async proxy)."""
        self.stmt("nvvm.fence.proxy {kind = #nvvm.proxy_kind<async.shared>, space = #nvvm.shared_space<cta>}")

    def keep(self, values: Sequence[V]) -> None:
        """Compute `values` here: an empty asm statement with side effects that reads them."""
        if values:
            cons = ",".join("f" if v.type == "f32" else "r" for v in values)
            self.stmt(f'llvm.inline_asm has_side_effects "", "{cons}" {", ".join(str(v) for v in values)} : '
                      f'({", ".join(v.type for v in values)}) -> ()')

    def trap(self) -> None:
        """Abort the kernel (a launch that breaks what the code was compiled for)."""
        self.stmt("llvm.intr.trap")

    # ------------------------------------------------------------ control flow

    def for_(self, lo, hi, step, inits: Sequence[V], body: Callable[[V, list[V]], Sequence[V]]) -> list[V]:
        """scf.for over i64 [lo, hi) by step (> 0) carrying `inits`; body(iv, carried) returns the next values."""
        lo, hi, step = (self.const(x, "i64") for x in (lo, hi, step))
        iv = V(self.fresh("i"), "i64")
        args = [V(self.fresh("a"), v.type) for v in inits]
        head = f"scf.for {iv} = {lo} to {hi} step {step}"
        res = None
        if inits:
            types = ", ".join(v.type for v in inits)
            head += " iter_args(" + ", ".join(f"{a} = {v}" for a, v in zip(args, inits)) + f") -> ({types})"
            res = self.fresh("r")
            self.stmt(f"{res}:{len(inits)} = {head} : i64 {{")
        else:
            self.stmt(f"{head} : i64 {{")
        self._depth += 1
        outs = list(body(iv, args) or [])
        if len(outs) != len(inits):
            raise EtcError("internal: loop body yields the wrong number of values")
        if inits:
            self.stmt(f"scf.yield {', '.join(str(o) for o in outs)} : {', '.join(o.type for o in outs)}")
        self._depth -= 1
        self.stmt("}")
        return [V(f"{res}#{i}", v.type) for i, v in enumerate(inits)]

    @contextlib.contextmanager
    def loop(self, lo, hi, step=1):
        """`with b.loop(lo, hi, step) as i:` an scf.for without carried values."""
        lo, hi, step = (self.const(x, "i64") for x in (lo, hi, step))
        iv = V(self.fresh("i"), "i64")
        self.stmt(f"scf.for {iv} = {lo} to {hi} step {step} : i64 {{")
        self._depth += 1
        yield iv
        self._depth -= 1
        self.stmt("}")

    @contextlib.contextmanager
    def when(self, cond: V):
        """`with b.when(c):` an scf.if without results or else branch."""
        self.stmt(f"scf.if {cond} {{")
        self._depth += 1
        yield
        self._depth -= 1
        self.stmt("}")

    def if_(self, cond: V, types: Sequence[str], then: Callable[[], Sequence[V]],
            els: Callable[[], Sequence[V]] | None = None) -> list[V]:
        """scf.if with results `types`; `then`/`els` emit their branch and return the yielded values."""
        res = self.fresh("r") if types else None
        tl = ", ".join(types)
        self.stmt(f"{res}:{len(types)} = scf.if {cond} -> ({tl}) {{" if types else f"scf.if {cond} {{")
        for i, fn in enumerate((then, els)):
            if fn is None:
                continue
            if i == 1:
                self.stmt("} else {")
            self._depth += 1
            outs = list(fn() or [])
            if types:
                self.stmt(f"scf.yield {', '.join(str(o) for o in outs)} : {tl}")
            self._depth -= 1
        self.stmt("}")
        return [V(f"{res}#{i}", t) for i, t in enumerate(types)]

    # ------------------------------------------------------------ GPU

    def barrier(self) -> None:
        self.stmt("gpu.barrier")

    def warp_sync(self) -> None:
        self.stmt(f"nvvm.bar.warp.sync {self.i32(-1)} : i32")

    def shuffle_xor(self, v: V, offset: int) -> V:
        name = self.fresh("s")
        self.stmt(f"{name}, {name}_ok = gpu.shuffle xor {v}, {self.i32(offset)}, {self.i32(32)} : {v.type}")
        return V(name, v.type)

    def shuffle_idx(self, v: V, lane: V) -> V:
        name = self.fresh("s")
        self.stmt(f"{name}, {name}_ok = gpu.shuffle idx {v}, {lane}, {self.i32(32)} : {v.type}")
        return V(name, v.type)

    def warp_reduce(self, v: V, combine: Callable[[V, V], V], offsets: Sequence[int] = (16, 8, 4, 2, 1)) -> V:
        """Butterfly reduction over the lanes that differ in the bits of `offsets` (default: the whole warp,
        every lane ending with the same value; (1, 2): each quad of lanes)."""
        for off in offsets:
            v = combine(v, self.shuffle_xor(v, off))
        return v

    def mma_16x8x16(self, a: Sequence[V], b: Sequence[V], c: Sequence[V], etype: str) -> list[V]:
        """Warp-wide tensor-core D = A B + C (mma.sync m16n8k16, A row-major, B column-major, f32 C/D):
        a = 4 i32 registers of A (16 x 16), b = 2 of B (16 x 8), each two `etype` (bf16 / f16) values, the
        lower half first; c = 4 f32 of C. Lane l holds row l/4 of A in a[0], a[2] (row l/4 + 8 in a[1],
        a[3]) at k = 2(l%4) + {0, 1} and + 8; column l/4 of B in b[0], b[1] at the same k; and D rows l/4,
        l/4 + 8 at columns 2(l%4) + {0, 1}. Every lane of the warp must execute it."""
        st = "!llvm.struct<(f32, f32, f32, f32)>"
        d = self.emit(f"nvvm.mma.sync A[{', '.join(map(str, a))}] B[{', '.join(map(str, b))}] "
                      f"C[{', '.join(map(str, c))}] {{layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, "
                      f"multiplicandAPtxType = #nvvm.mma_type<{etype}>, multiplicandBPtxType = #nvvm.mma_type<{etype}>, "
                      f"shape = #nvvm.shape<m = 16, n = 8, k = 16>}} : (i32, i32, f32) -> {st}", st)
        return [self.emit(f"llvm.extractvalue {d}[{i}] : {st}", "f32") for i in range(4)]

    def ldmatrix_x4_trans(self, p: V) -> list[V]:
        """ldmatrix .x4 .trans of 8 x 8 16-bit matrices in shared memory: lanes 8i .. 8i + 7 give the
        addresses of matrix i's eight 16-byte rows; lane l gets in register i matrix i's elements
        [2(l%4)][l/4] (lower half) and [2(l%4) + 1][l/4], which is mma_16x8x16's B fragment of rows k.
        Every lane of the warp must execute it."""
        st = "!llvm.struct<(i32, i32, i32, i32)>"
        r = self.emit(f"nvvm.ldmatrix {p} {{num = 4 : i32, layout = #nvvm.mma_layout<col>, "
                      f"shape = #nvvm.ld_st_matrix_shape<m = 8, n = 8>, eltType = #nvvm.ld_st_matrix_elt_type<b16>}} "
                      f": ({p.type}) -> {st}", st)
        return [self.emit(f"llvm.extractvalue {r}[{i}] : {st}", "i32") for i in range(4)]

    def pack_16(self, lo: V, hi: V, etype: str) -> V:
        """Two f32 values rounded to etype (bf16 / f16) and packed into an i32, lo in the lower half."""
        def bits(v):
            h = self.emit(f"arith.bitcast {self.cast(v, etype)} : {etype} to i16", "i16")
            return self.emit(f"arith.extui {h} : i16 to i32", "i32")
        return self.or_(bits(lo), self.shl(bits(hi), self.i32(16)))

    def warp_sum(self, v: V) -> V:
        return self.warp_reduce(v, self.add)

    def warp_max(self, v: V) -> V:
        return self.warp_reduce(v, self.max)
