"""A CPU interpreter for the tile library's GPU code: runs a gpu.func kernel of a gpu.module (MLIR text,
before lowering) over a grid of blocks, every block's threads in lockstep with per-thread masks, numpy
per op. It checks what the emitted ops compute (indexing, rounding points, reductions, control flow)
against the numpy reference without a GPU. It does not model timing or memory ordering: every op
finishes for all threads before the next, so a missing barrier goes unnoticed here. Two asynchronous
copies are modeled: a cp.async lands only when its thread waits for it (a block ending with copies
never waited for is an error), and bulk copies complete mbarrier phases (a wait that cannot complete is
an error).

    sim = Simulator(module_text)
    sim.run("etc_check_3", grid=12, block=128, shared_bytes=4096, args=[buffers_table_addr, sizes_addr])

Memory is a set of byte regions at distinct base addresses (`Memory.add`); pointers are i64 addresses.
Values are numpy arrays over the block's threads (vectors get a trailing axis); bf16/f16 live in float32
arrays holding representable values. Transcendentals come from numpy/math (not libdevice), fma is
computed in f64 and rounded once to f32 -- close to, not bit-identical with, the GPU.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from etc.codegen.abi import PROFILE_PHASE_SMEM, PROFILE_PHASES
from etc.errors import EtcError
from etc.reference.numerics import round_bf16

REGION_SHIFT = 40
SPIN_LIMIT = 100_000  # scf.while turns before the simulator calls it a hang
_DTYPES = {"i1": np.bool_, "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64, "index": np.int64,
           "f32": np.float32, "f64": np.float64, "bf16": np.float32, "f16": np.float32}
_SIZES = {"i1": 1, "i8": 1, "i16": 2, "i32": 4, "i64": 8, "index": 8, "f32": 4, "f64": 8, "bf16": 2, "f16": 2}
_CMPF = ["false", "oeq", "ogt", "oge", "olt", "ole", "one", "ord", "ueq", "ugt", "uge", "ult", "ule", "une", "uno",
         "true"]
_CMPI = ["eq", "ne", "slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge"]
_erf64 = np.vectorize(math.erf, otypes=[np.float64])


def parse_type(t: str) -> tuple[str, int]:
    """(element type, lanes) of a scalar or 1-D vector type; pointers are i64."""
    if t.startswith("vector<"):
        n, e = t[len("vector<"):-1].split("x")
        return e, int(n)
    if t.startswith("!llvm.ptr"):
        return "i64", 0
    return t, 0


def type_bytes(t: str) -> int:
    e, n = parse_type(t)
    return _SIZES[e] * max(n, 1)


class Memory:
    """Byte regions addressed by (region << REGION_SHIFT) + offset."""

    def __init__(self):
        self.regions: list[np.ndarray] = [np.zeros(0, np.uint8)]  # region 0: null

    def add(self, data: np.ndarray | int) -> int:
        if isinstance(data, int):
            arr = np.zeros(data, np.uint8)
        else:
            arr = np.ascontiguousarray(data).view(np.uint8).reshape(-1).copy()
        self.regions.append(arr)
        return (len(self.regions) - 1) << REGION_SHIFT

    def view(self, addr: int) -> np.ndarray:
        return self.regions[addr >> REGION_SHIFT]

    def _regions_of(self, addr: np.ndarray, nbytes: int, what: str):
        """Per region the addresses fall in: (selection mask, region bytes, [n, nbytes] byte indices)."""
        for rid in np.unique(addr >> REGION_SHIFT):
            sel = (addr >> REGION_SHIFT) == rid
            off = addr[sel] & ((1 << REGION_SHIFT) - 1)
            region = self.regions[int(rid)]
            idx = off[:, None] + np.arange(nbytes)[None, :]
            if idx.size and (idx.min() < 0 or idx.max() >= region.size):
                raise EtcError(f"out-of-bounds {what} at region {rid} offset {int(off.min())}..{int(off.max())} "
                               f"(size {region.size})")
            yield sel, region, idx

    def _gather(self, addr: np.ndarray, nbytes: int) -> np.ndarray:
        out = np.zeros((addr.size, nbytes), np.uint8)
        for sel, region, idx in self._regions_of(addr, nbytes, "load"):
            out[sel] = region[idx]
        return out

    def load(self, addr: np.ndarray, t: str) -> np.ndarray:
        e, n = parse_type(t)
        raw = self._gather(addr.astype(np.int64), type_bytes(t))
        return _from_bytes(raw, e, n)

    def store(self, addr: np.ndarray, value: np.ndarray, t: str) -> None:
        e, n = parse_type(t)
        raw = _to_bytes(value, e, n, addr.size)
        nbytes = raw.shape[1]
        for sel, region, idx in self._regions_of(addr.astype(np.int64), nbytes, "store"):
            region[idx] = raw[sel]


def _from_bytes(raw: np.ndarray, e: str, n: int) -> np.ndarray:
    lanes = max(n, 1)
    if e == "bf16":
        bits = raw.view(np.uint16).reshape(-1, lanes).astype(np.uint32) << np.uint32(16)
        v = bits.view(np.float32)
    elif e == "f16":
        v = raw.view(np.float16).reshape(-1, lanes).astype(np.float32)
    elif e == "i1":
        v = raw.reshape(-1, lanes) != 0
    else:
        v = raw.view(_DTYPES[e]).reshape(-1, lanes)
    return v if n else v[:, 0]


def _to_bytes(value: np.ndarray, e: str, n: int, count: int) -> np.ndarray:
    lanes = max(n, 1)
    v = np.broadcast_to(value, (count, lanes) if n else (count,)).reshape(count, lanes)
    if e == "bf16":
        bits = (round_bf16(v.astype(np.float32)).view(np.uint32) >> np.uint32(16)).astype(np.uint16)
        return bits.view(np.uint8).reshape(count, -1)
    if e == "f16":
        return v.astype(np.float16).view(np.uint8).reshape(count, -1)
    return np.ascontiguousarray(v.astype(_DTYPES[e])).view(np.uint8).reshape(count, -1)


class Op:
    __slots__ = ("name", "operands", "results", "attrs", "regions", "rtypes", "otypes")


class Simulator:
    def __init__(self, module_text: str):
        from mlir import ir

        self.ctx = ir.Context()
        with self.ctx:
            self.module = ir.Module.parse(module_text)
        self.funcs: dict[str, tuple[list[int], list[Op]]] = {}
        self._ids: dict = {}
        self.memory = Memory()
        self.clock = 0
        self.bulk_copies = 0  # cp.async.bulk copies run, and their bytes
        self.bulk_bytes = 0
        self.loads: dict[int, int] = {}  # memory region -> lanes that loaded from it with plain loads
        self.async_reads: dict[int, int] = {}  # memory region -> lanes that read it with cp.async
        gpu_modules = [op for op in self.module.body.operations if op.operation.name == "gpu.module"]
        for gm in gpu_modules:
            for op in gm.operation.regions[0].blocks[0].operations:
                op = op.operation
                if op.name == "llvm.mlir.global":
                    continue  # the dynamic shared memory declaration
                if op.name in ("func.func", "gpu.func"):
                    name = op.attributes["sym_name"].maybe_downcast().value
                    block = op.regions[0].blocks[0]
                    self.funcs[name] = ([self._id(a) for a in block.arguments], self._block(block))

    def _id(self, value) -> int:
        if value not in self._ids:
            self._ids[value] = len(self._ids)
        return self._ids[value]

    def _block(self, block) -> list[Op]:
        ops = []
        for mop in block.operations:
            mop = mop.operation
            op = Op()
            op.name = mop.name
            op.operands = [self._id(v) for v in mop.operands]
            op.otypes = [str(v.type) for v in mop.operands]
            op.results = [self._id(r) for r in mop.results]
            op.rtypes = [str(r.type) for r in mop.results]
            attrs = mop.attributes
            op.attrs = {attrs[i].name: attrs[i].attr for i in range(len(attrs))}
            op.regions = [([self._id(a) for a in r.blocks[0].arguments], self._block(r.blocks[0]))
                          for r in mop.regions if len(r.blocks)]
            ops.append(op)
        return ops

    # ------------------------------------------------------------ running

    def run(self, kernel: str, grid: int, block: int, shared_bytes: int, args: list,
            keep_shared: bool = False, order=None) -> None:
        """keep_shared: keep each block's final shared memory in `shared_after`; order: the blocks in the
        order to run them (default 0, 1, ...): each runs to its end before the next starts."""
        if block % 32:
            raise EtcError("block size must be a multiple of 32")
        argv, body = self.funcs[kernel]
        self.B, self.G = block, grid
        self.shared_after = []
        for bid in (range(grid) if order is None else order):
            self.bid = bid
            self.shared = self.memory.add(max(shared_bytes, 16))
            self.mbarriers = {}
            self.pending_async = []
            env = {a: np.full(block, v, dtype=np.int64) for a, v in zip(argv, args)}
            self._exec(body, env, np.ones(block, bool))
            if self.pending_async:  # on the GPU they would land at some unknown later time
                raise EtcError(f"simulator: block {bid} ended with cp.async copies it never waited for")
            if keep_shared:
                self.shared_after.append(self.memory.regions[self.shared >> REGION_SHIFT])
            self.memory.regions[self.shared >> REGION_SHIFT] = np.zeros(0, np.uint8)  # free it

    def _exec(self, ops: list[Op], env: dict, mask: np.ndarray):
        """Run ops under mask; returns the operands of the terminator (yield / return)."""
        for op in ops:
            out = self._op(op, env, mask)
            if op.name in _TERMINATORS:
                return out if out is not None else []
        return []

    def _op(self, op: Op, env: dict, mask: np.ndarray):
        self.clock += 1  # %globaltimer: ops run so far
        name = op.name
        x = [env[i] for i in op.operands]
        B = self.B
        if name in _TERMINATORS:
            return x
        if name == "scf.for":
            return self._for(op, env, mask, x)
        if name == "scf.while":
            return self._while(op, env, mask, x)
        if name == "scf.if":
            return self._if(op, env, mask, x)
        if name == "func.call":
            callee = op.attrs["callee"].maybe_downcast().value
            argv, body = self.funcs[callee]
            res = self._exec(body, dict(zip(argv, x)), mask)
            for r, v in zip(op.results, res):
                env[r] = v
            return None
        handler = _HANDLERS.get(name)
        if handler is None:
            raise EtcError(f"simulator: unsupported op '{name}'")
        res = handler(self, op, x, mask)
        if op.results:
            if not isinstance(res, tuple):
                res = (res,)
            for r, v in zip(op.results, res):
                v = np.asarray(v)
                if v.ndim == 0:
                    v = np.full(B, v)
                env[r] = v
        return None

    def _for(self, op: Op, env, mask, x):
        lo, hi, step, inits = x[0], x[1], x[2], x[3:]
        argv, body = op.regions[0]
        iv = lo.copy()
        carried = [v.copy() for v in inits]
        while True:
            active = mask & (iv < hi)
            if not active.any():
                break
            local = dict(env)
            local[argv[0]] = iv
            for a, v in zip(argv[1:], carried):
                local[a] = v
            outs = self._exec(body, local, active)
            carried = [_where(active, o, c) for o, c in zip(outs, carried)]
            iv = np.where(active, iv + step, iv)
        for r, v in zip(op.results, carried):
            env[r] = v
        return None

    def _while(self, op: Op, env, mask, x):
        (before_args, before), (after_args, after) = op.regions
        carried, active = list(x), mask.copy()
        for turn in itertools.count():
            if turn == SPIN_LIMIT:  # nothing runs beside the block: a spin that does not end here never does
                raise EtcError(f"simulator: an scf.while ran {SPIN_LIMIT} times (a wait for what no tile "
                               "run before this one writes)")
            local = dict(env)
            local.update(zip(before_args, carried))
            cond, *passed = self._exec(before, local, active)
            active = active & cond.astype(bool)
            if not active.any():
                break
            local = dict(env)
            local.update(zip(after_args, passed))
            carried = [_where(active, o, c) for o, c in zip(self._exec(after, local, active), carried)]
        for r, v in zip(op.results, passed):
            env[r] = v
        return None

    def _if(self, op: Op, env, mask, x):
        cond = x[0].astype(bool)
        then_mask, else_mask = mask & cond, mask & ~cond
        outs_t = self._exec(op.regions[0][1], dict(env), then_mask) if then_mask.any() or op.results else []
        outs_e = []
        if len(op.regions) > 1:
            outs_e = self._exec(op.regions[1][1], dict(env), else_mask) if else_mask.any() or op.results else []
        for i, r in enumerate(op.results):
            env[r] = _where(cond, outs_t[i], outs_e[i])
        return None


def _where(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.ndim > 1:
        c = c[:, None]
    return np.where(c, a, b)


# ---------------------------------------------------------------- op handlers


def _attr_value(attr):
    a = attr.maybe_downcast()
    return a.value if hasattr(a, "value") else a


def _round(v: np.ndarray, t: str) -> np.ndarray:
    """Values computed in f32/f64 stored as type t (bf16/f16 rounded, i.e. arith.truncf)."""
    if t == "bf16":
        return round_bf16(v.astype(np.float32))
    if t == "f16":
        with np.errstate(over="ignore"):
            return v.astype(np.float32).astype(np.float16).astype(np.float32)
    return v.astype(_DTYPES[t])


def h_constant(sim, op, x, mask):
    t = op.rtypes[0]
    e, n = parse_type(t)
    v = _attr_value(op.attrs["value"])
    if isinstance(v, bool) or str(op.attrs["value"]) in ("true", "false"):
        v = str(op.attrs["value"]) == "true" if not isinstance(v, bool) else v
    return np.full(sim.B, _round(np.array(v, dtype=np.float64), e) if e in ("bf16", "f16", "f32", "f64")
                   else v, dtype=_DTYPES[e])


def _int_type(op) -> str:
    return parse_type(op.rtypes[0])[0]


def _wrap(v: np.ndarray, t: str) -> np.ndarray:
    return v.astype(_DTYPES[t]) if t != "i1" else v.astype(bool)


def _float_bin(fn):
    def h(sim, op, x, mask):
        e = parse_type(op.rtypes[0])[0]
        with np.errstate(all="ignore"):
            return _round(fn(x[0], x[1]), e)
    return h


def _int_bin(fn):
    def h(sim, op, x, mask):
        t = _int_type(op)
        with np.errstate(all="ignore"):
            return _wrap(fn(x[0].astype(np.int64), x[1].astype(np.int64)), t)
    return h


def _divsi(a, b):
    b = np.where(b == 0, 1, b)
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) ^ (b < 0), -q, q)


def _remsi(a, b):
    return a - np.where(b == 0, 1, b) * _divsi(a, b)


def _bitwise(fn):
    def h(sim, op, x, mask):
        t = _int_type(op)
        if t == "i1":
            return fn(x[0].astype(bool), x[1].astype(bool))
        return _wrap(fn(x[0].astype(np.int64), x[1].astype(np.int64)), t)
    return h


def h_shrui(sim, op, x, mask):
    t = _int_type(op)
    bits = {"i32": 32, "i64": 64}[t]
    a = x[0].astype(np.int64).view(np.uint64) & np.uint64((1 << bits) - 1)
    return _wrap((a >> x[1].astype(np.uint64)).astype(np.int64), t)


def h_cmpi(sim, op, x, mask):
    pred = _CMPI[int(_attr_value(op.attrs["predicate"]))]
    a, b = x[0].astype(np.int64), x[1].astype(np.int64)
    if pred.startswith("u"):
        a, b = a.view(np.uint64), b.view(np.uint64)
    return {"eq": a == b, "ne": a != b, "slt": a < b, "sle": a <= b, "sgt": a > b, "sge": a >= b,
            "ult": a < b, "ule": a <= b, "ugt": a > b, "uge": a >= b}[pred]


def h_cmpf(sim, op, x, mask):
    pred = _CMPF[int(_attr_value(op.attrs["predicate"]))]
    a, b = x[0], x[1]
    uno = np.isnan(a) | np.isnan(b)
    with np.errstate(invalid="ignore"):
        base = {"eq": a == b, "gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b, "ne": a != b}
    if pred == "false":
        return np.zeros(a.shape, bool)
    if pred == "true":
        return np.ones(a.shape, bool)
    if pred == "ord":
        return ~uno
    if pred == "uno":
        return uno
    if pred[0] == "o":
        return base[pred[1:]] & ~uno
    return base[pred[1:]] | uno


def h_select(sim, op, x, mask):
    return _where(x[0].astype(bool), x[1], x[2])


def h_cast(sim, op, x, mask):
    s, t = parse_type(op.otypes[0])[0], parse_type(op.rtypes[0])[0]
    v = x[0]
    name = op.name
    with np.errstate(all="ignore"):
        if name in ("arith.extf", "arith.truncf"):
            return _round(v.astype(np.float64) if t == "f64" else v, t)
        if name in ("arith.sitofp",):
            return _round(v.astype(np.int64).astype(np.float64 if t == "f64" else np.float32), t)
        if name == "arith.uitofp":
            bits = {"i1": 1, "i32": 32, "i64": 64}[s]
            u = v.astype(np.int64).view(np.uint64) & np.uint64((1 << bits) - 1 if bits < 64 else ~0 & (2 ** 64 - 1))
            return _round(u.astype(np.float64), t)
        if name in ("arith.fptosi", "arith.fptoui"):
            return _wrap(np.trunc(np.nan_to_num(v.astype(np.float64))).astype(np.int64), t)
        if name in ("arith.extsi", "arith.trunci", "arith.index_cast"):
            return _wrap(v.astype(np.int64), t) if s != "i1" else _wrap(np.where(v, -1, 0), t)
        if name == "arith.extui":
            if s == "i1":
                return _wrap(v.astype(np.int64), t)
            bits = {"i8": 8, "i16": 16, "i32": 32}[s]
            return _wrap(v.astype(np.int64) & ((1 << bits) - 1), t)
    raise EtcError(f"simulator: unsupported cast {name}")


def _unary(fn):
    def h(sim, op, x, mask):
        e = parse_type(op.rtypes[0])[0]
        with np.errstate(all="ignore"):
            v = x[0].astype(np.float64)
            return _round(fn(v), e) if e != "f64" else fn(v)
    return h


def h_fma(sim, op, x, mask):
    e = parse_type(op.rtypes[0])[0]
    a, b, c = (v.astype(np.float64) for v in x)
    with np.errstate(all="ignore"):
        return _round(a * b + c, e)


def h_gep(sim, op, x, mask):
    elem = str(op.attrs["elem_type"]).strip()
    size = type_bytes(elem)
    from mlir import ir
    raw = list(ir.DenseI32ArrayAttr(op.attrs["rawConstantIndices"]))
    base = x[0].astype(np.int64)
    dyn = iter(x[1:])
    if len(raw) != 1:
        raise EtcError("simulator: only single-index getelementptr is supported")
    idx = next(dyn).astype(np.int64) if raw[0] == -2147483648 else raw[0]
    return base + idx * size


def h_load(sim, op, x, mask):
    t = op.rtypes[0]
    addr = np.where(mask, x[0], 0)
    e, n = parse_type(t)
    out = np.zeros((sim.B, n) if n else (sim.B,), _DTYPES[e])
    if mask.any():
        out[mask] = sim.memory.load(addr[mask], t)
        for region, count in zip(*np.unique(addr[mask] >> REGION_SHIFT, return_counts=True)):
            sim.loads[int(region)] = sim.loads.get(int(region), 0) + int(count)
    return out


def h_store(sim, op, x, mask):
    if mask.any():
        sim.memory.store(x[1][mask], x[0][mask], op.otypes[0])


def h_copy_async(sim, op, x, mask):
    """cp.async of 4, 8 or 16 bytes: the source is read now, the destination written only when the issuing
    thread waits (cp.async.wait.group), so a read before that wait (and a barrier) sees the old bytes."""
    size = int(_attr_value(op.attrs["size"]))
    t = {4: "i32", 8: "i64", 16: "vector<4xi32>"}[size]
    if mask.any():
        sim.pending_async.append((np.nonzero(mask)[0], x[0][mask], sim.memory.load(x[1][mask], t), t))
        for region, count in zip(*np.unique(x[1][mask] >> REGION_SHIFT, return_counts=True)):
            sim.async_reads[int(region)] = sim.async_reads.get(int(region), 0) + int(count)


def h_wait_async(sim, op, x, mask):
    """cp.async.wait.group 0: the waiting threads' copies land."""
    if int(_attr_value(op.attrs["n"])) != 0:
        raise EtcError("simulator: cp.async.wait.group with groups left in flight is not modeled")
    keep = []
    for lanes, dst, data, t in sim.pending_async:
        done = mask[lanes]
        if done.any():
            sim.memory.store(dst[done], data[done], t)
        if (~done).any():
            keep.append((lanes[~done], dst[~done], data[~done], t))
    sim.pending_async = keep


# mbarriers: per address {"count", "arrived", "tx", "phase"}. A bulk copy lands at once; a wait whose phase
# has not completed raises, since in lockstep nothing else could complete it (the GPU would hang).

def _mbarrier(sim, addr, what):
    if addr not in sim.mbarriers:
        raise EtcError(f"simulator: {what} on shared address {addr & ((1 << REGION_SHIFT) - 1)}, which holds no "
                       "initialized mbarrier")
    return sim.mbarriers[addr]


def _arrive(m, arrivals, tx):
    m["arrived"] += arrivals
    m["tx"] += tx
    if m["arrived"] == m["count"] and m["tx"] == 0:
        m["phase"] += 1
        m["arrived"] = 0


def h_mbarrier_init(sim, op, x, mask):
    for addr, count in zip(x[0][mask], x[1][mask]):
        if int(addr) in sim.mbarriers:
            raise EtcError("simulator: mbarrier.init on a live mbarrier (not invalidated)")
        sim.mbarriers[int(addr)] = {"count": int(count), "arrived": 0, "tx": 0, "phase": 0}


def h_mbarrier_inval(sim, op, x, mask):
    for addr in x[0][mask]:
        m = _mbarrier(sim, int(addr), "mbarrier.inval")
        if m["tx"] or m["arrived"]:
            raise EtcError(f"simulator: mbarrier invalidated mid-phase ({m['tx']} bytes still expected)")
        del sim.mbarriers[int(addr)]


def h_mbarrier_expect_tx(sim, op, x, mask):
    for addr, n in zip(x[0][mask], x[1][mask]):
        _arrive(_mbarrier(sim, int(addr), "mbarrier.arrive.expect_tx"), 1, int(n))
    return np.zeros(sim.B, np.int64)


def h_copy_bulk(sim, op, x, mask):
    dst, src, bar, size = x[:4]
    for d, s_, a, n in zip(dst[mask], src[mask], bar[mask], size[mask]):
        n = int(n)
        if n % 16 or d % 16 or s_ % 16:
            raise EtcError("simulator: cp.async.bulk needs 16-byte aligned addresses and sizes")
        raw = sim.memory.load(np.array([s_], np.int64), f"vector<{n}xi8>")
        sim.bulk_copies += 1
        sim.bulk_bytes += n
        sim.memory.store(np.array([d], np.int64), raw, f"vector<{n}xi8>")
        _arrive(_mbarrier(sim, int(a), "cp.async.bulk"), 0, -n)


def h_mbarrier_try_wait(sim, op, x, mask):
    for addr, parity in set(zip(x[0][mask].tolist(), x[1][mask].tolist())):
        m = _mbarrier(sim, addr, "mbarrier.try_wait")
        if m["phase"] % 2 == parity:  # the phase of this parity is the current, incomplete one
            raise EtcError(f"simulator: mbarrier wait for parity {parity} never completes (phase {m['phase']}, "
                           f"{m['tx']} bytes and {m['count'] - m['arrived']} arrivals outstanding)")
    return np.ones(sim.B, bool)


def h_trap(sim, op, x, mask):
    if mask.any():
        raise EtcError("simulator: the kernel trapped (llvm.intr.trap)")


def h_identity(sim, op, x, mask):
    return x[0].astype(np.int64)


def h_thread(sim, op, x, mask):
    name = op.name
    if name == "gpu.thread_id":
        return np.arange(sim.B, dtype=np.int64)
    if name == "gpu.block_dim":
        return np.full(sim.B, sim.B, np.int64)
    if name == "gpu.block_id":
        return np.full(sim.B, sim.bid, np.int64)
    if name == "gpu.grid_dim":
        return np.full(sim.B, sim.G, np.int64)
    raise EtcError(f"simulator: unsupported op '{name}'")


def h_shuffle(sim, op, x, mask):
    mode = str(op.attrs["mode"])
    v, off = x[0], x[1].astype(np.int64)
    lane = np.arange(sim.B) & 31
    base = np.arange(sim.B) & ~31
    src = base + ((lane ^ off) if "xor" in mode else off) % 32
    return v[src], np.ones(sim.B, bool)


_INTRINSICS = {"llvm.nvvm.sqrt.rn.f": np.sqrt, "llvm.nvvm.sqrt.rn.d": np.sqrt}


def h_intrinsic(sim, op, x, mask):
    name = _attr_value(op.attrs["intrin"])
    if name not in _INTRINSICS:
        raise EtcError(f"simulator: unsupported intrinsic '{name}'")
    e = parse_type(op.rtypes[0])[0]
    with np.errstate(all="ignore"):
        return _round(_INTRINSICS[name](x[0].astype(np.float64)), e)


def h_noop(sim, op, x, mask):
    return None


def h_atomicrmw(sim, op, x, mask):
    """atomicrmw add: the active threads in thread order, each getting the value before its own add."""
    kind = str(op.attrs["bin_op"])
    if kind.split(":")[0].strip() not in ("1", "add"):  # llvm::AtomicRMWInst::Add is 1
        raise EtcError(f"simulator: unsupported atomicrmw {kind}")
    t = op.rtypes[0]
    out = np.zeros(sim.B, _DTYPES[parse_type(t)[0]])
    for i in np.nonzero(mask)[0]:
        addr = x[0][i:i + 1].astype(np.int64)
        old = sim.memory.load(addr, t)
        out[i] = old[0]
        sim.memory.store(addr, old + x[1][i:i + 1], t)
    return out


def h_inline_asm(sim, op, x, mask):
    """Inline asm: empty statements (keep) do nothing; createpolicy yields a policy the L2 hints ignore here."""
    if not op.results:
        return None
    asm = op.attrs["asm_string"].maybe_downcast().value
    if asm.startswith("createpolicy"):
        return np.zeros(sim.B, np.int64)
    raise EtcError(f"simulator: unsupported inline asm '{asm}'")


def _halves(v: np.ndarray, etype: str) -> tuple[np.ndarray, np.ndarray]:
    """The two 16-bit floats packed in i32 values (the lower half first), as float64."""
    u = v.astype(np.int64) & 0xFFFFFFFF
    lo, hi = (u & 0xFFFF).astype(np.uint16), (u >> 16).astype(np.uint16)
    if etype == "bf16":
        return tuple((h.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64) for h in (lo, hi))
    return tuple(h.view(np.float16).astype(np.float64) for h in (lo, hi))


_QUAD, _PAIR = np.arange(32) // 4, np.arange(32) % 4  # lane l's l / 4 and l % 4 (mma fragment layouts)


def _warps(sim, mask, what: str) -> list[slice]:
    """The lanes of each warp that runs a warp-wide instruction; an error if part of a warp runs it."""
    whole = mask.reshape(sim.B // 32, 32)
    if not np.all(whole.all(axis=1) | ~whole.any(axis=1)):
        raise EtcError(f"simulator: {what} run by part of a warp")
    return [slice(32 * w, 32 * w + 32) for w in np.nonzero(whole.all(axis=1))[0]]


def h_mma_sync(sim, op, x, mask):
    """mma.sync m16n8k16 (row-major A, column-major B, f32 accumulators), warp by warp: the fragments are
    gathered from the lanes as the PTX ISA lays them out, multiplied in float64, rounded once to f32."""
    shape = str(op.attrs["shape"])
    etype = str(op.attrs["multiplicandAPtxType"]).split("<")[1].rstrip(">")
    if "m = 16, n = 8, k = 16" not in shape or etype not in ("bf16", "f16") or len(x) != 10:
        raise EtcError(f"simulator: unsupported mma.sync {shape} {etype}")
    out, g, c = np.zeros((sim.B, 4), np.float32), _QUAD, _PAIR
    for s in _warps(sim, mask, "mma.sync"):
        A, Bm, C = np.zeros((16, 16)), np.zeros((16, 8)), np.zeros((16, 8))
        for reg, (dr, dk) in enumerate(((0, 0), (8, 0), (0, 8), (8, 8))):
            lo, hi = _halves(x[reg][s], etype)
            A[g + dr, 2 * c + dk], A[g + dr, 2 * c + dk + 1] = lo, hi
        for reg, dk in enumerate((0, 8)):
            lo, hi = _halves(x[4 + reg][s], etype)
            Bm[2 * c + dk, g], Bm[2 * c + dk + 1, g] = lo, hi
        for reg, (dr, dc) in enumerate(((0, 0), (0, 1), (8, 0), (8, 1))):
            C[g + dr, 2 * c + dc] = x[6 + reg][s]
        D = A @ Bm + C
        for reg, (dr, dc) in enumerate(((0, 0), (0, 1), (8, 0), (8, 1))):
            out[s, reg] = D[g + dr, 2 * c + dc]
    return out


def h_ldmatrix(sim, op, x, mask):
    """ldmatrix .x4 of 8 x 8 16-bit matrices (layout col: .trans), warp by warp: lanes 8i .. 8i + 7 give
    the row addresses of matrix i; lane l gets matrix i's [l/4][2(l%4) + {0, 1}] (.trans: [2(l%4) + {0, 1}][l/4])
    packed in register i, the lower half first."""
    num, trans = int(str(op.attrs["num"]).split(":")[0]), "col" in str(op.attrs["layout"])
    if num != 4:
        raise EtcError(f"simulator: unsupported ldmatrix .x{num}")
    out, g, c = np.zeros((sim.B, 4), np.int32), _QUAD, _PAIR
    for s in _warps(sim, mask, "ldmatrix"):
        rows = sim.memory.load(x[0][s].astype(np.int64), "vector<8xi16>").astype(np.int64).reshape(4, 8, 8) & 0xFFFF
        for i in range(4):
            lo, hi = (rows[i, 2 * c, g], rows[i, 2 * c + 1, g]) if trans else (rows[i, g, 2 * c], rows[i, g, 2 * c + 1])
            out[s, i] = (lo | (hi << 16)).astype(np.uint32).view(np.int32)
    return out


def h_bitcast(sim, op, x, mask):
    """arith.bitcast between a 16- or 32-bit float and the integer of its width."""
    s, t = parse_type(op.otypes[0])[0], parse_type(op.rtypes[0])[0]
    v = x[0]
    if (s, t) == ("bf16", "i16"):
        return (v.astype(np.float32).view(np.uint32) >> np.uint32(16)).astype(np.uint16).view(np.int16)
    if (s, t) == ("f16", "i16"):
        return v.astype(np.float16).view(np.int16)
    if (s, t) == ("f32", "i32"):
        return v.astype(np.float32).view(np.int32)
    if (s, t) == ("i32", "f32"):
        return v.astype(np.int32).view(np.float32)
    raise EtcError(f"simulator: unsupported bitcast {s} -> {t}")


def h_extractvalue(sim, op, x, mask):
    (position,) = [int(p) for p in str(op.attrs["position"]).split(":")[1].strip(" >").split(",")]
    return x[0][:, position]


def h_globaltimer(sim, op, x, mask):
    return np.full(sim.B, sim.clock, np.int64)


def h_dyn_smem(sim, op, x, mask):
    return np.full(sim.B, sim.shared, np.int64)


def h_addressof(sim, op, x, mask):
    name = str(op.attrs["global_name"]).strip('@"')
    if name != "etc_dynamic_smem":
        raise EtcError(f"simulator: unsupported global '{name}'")
    return np.full(sim.B, sim.shared, np.int64)


def h_vec_extract(sim, op, x, mask):
    from mlir import ir
    pos = list(ir.DenseI64ArrayAttr(op.attrs["static_position"]))[0]
    return x[0][:, pos]


def h_vec_from(sim, op, x, mask):
    e = parse_type(op.rtypes[0])[0]
    return np.stack([v for v in x], axis=1).astype(_DTYPES[e])


_HANDLERS = {
    "arith.constant": h_constant,
    "arith.addf": _float_bin(np.add), "arith.subf": _float_bin(np.subtract), "arith.mulf": _float_bin(np.multiply),
    "arith.divf": _float_bin(np.divide), "arith.maximumf": _float_bin(np.maximum),
    "arith.minimumf": _float_bin(np.minimum), "arith.maxnumf": _float_bin(np.fmax),
    "arith.minnumf": _float_bin(np.fmin), "arith.remf": _float_bin(np.fmod),
    "arith.negf": lambda sim, op, x, mask: -x[0],
    "arith.addi": _int_bin(np.add), "arith.subi": _int_bin(np.subtract), "arith.muli": _int_bin(np.multiply),
    "arith.divsi": _int_bin(_divsi), "arith.remsi": _int_bin(_remsi), "arith.divui": _int_bin(_divsi),
    "arith.remui": _int_bin(_remsi), "arith.maxsi": _int_bin(np.maximum), "arith.minsi": _int_bin(np.minimum),
    "arith.maxui": _int_bin(np.maximum), "arith.minui": _int_bin(np.minimum),
    "arith.shli": _int_bin(lambda a, b: a << b), "arith.shrsi": _int_bin(lambda a, b: a >> b),
    "arith.shrui": h_shrui,
    "arith.andi": _bitwise(lambda a, b: a & b), "arith.ori": _bitwise(lambda a, b: a | b),
    "arith.xori": _bitwise(lambda a, b: a ^ b),
    "arith.cmpi": h_cmpi, "arith.cmpf": h_cmpf, "arith.select": h_select,
    "arith.extf": h_cast, "arith.truncf": h_cast, "arith.sitofp": h_cast, "arith.uitofp": h_cast,
    "arith.fptosi": h_cast, "arith.fptoui": h_cast, "arith.extsi": h_cast, "arith.extui": h_cast,
    "arith.trunci": h_cast, "arith.index_cast": h_cast,
    "math.exp": _unary(np.exp), "math.exp2": _unary(np.exp2), "math.log": _unary(np.log),
    "math.log2": _unary(np.log2), "math.sqrt": _unary(np.sqrt), "math.tanh": _unary(np.tanh),
    "math.sin": _unary(np.sin), "math.cos": _unary(np.cos), "math.absf": _unary(np.abs),
    "math.floor": _unary(np.floor), "math.ceil": _unary(np.ceil), "math.erf": _unary(_erf64),
    "math.fma": h_fma, "llvm.call_intrinsic": h_intrinsic,
    "llvm.getelementptr": h_gep, "llvm.load": h_load, "llvm.store": h_store, "llvm.inttoptr": h_identity,
    "memref.extract_aligned_pointer_as_index": h_identity,
    "gpu.thread_id": h_thread, "gpu.block_dim": h_thread, "gpu.block_id": h_thread, "gpu.grid_dim": h_thread,
    "gpu.shuffle": h_shuffle, "gpu.barrier": h_noop, "nvvm.bar.warp.sync": h_noop,
    "gpu.dynamic_shared_memory": h_dyn_smem, "llvm.addrspacecast": h_identity, "llvm.mlir.addressof": h_addressof,
    "nvvm.cp.async.shared.global": h_copy_async, "nvvm.cp.async.commit.group": h_noop,
    "nvvm.cp.async.wait.group": h_wait_async,
    "vector.extract": h_vec_extract, "vector.from_elements": h_vec_from,
    "nvvm.mbarrier.init": h_mbarrier_init, "nvvm.mbarrier.inval": h_mbarrier_inval,
    "nvvm.mbarrier.arrive.expect_tx": h_mbarrier_expect_tx, "nvvm.mbarrier.try_wait": h_mbarrier_try_wait,
    "nvvm.cp.async.bulk.shared.cluster.global": h_copy_bulk, "nvvm.fence.proxy": h_noop, "llvm.intr.trap": h_trap, "llvm.inline_asm": h_inline_asm,
    "nvvm.read.ptx.sreg.globaltimer": h_globaltimer, "nvvm.mma.sync": h_mma_sync, "nvvm.ldmatrix": h_ldmatrix,
    "arith.bitcast": h_bitcast,
    "llvm.extractvalue": h_extractvalue, "llvm.atomicrmw": h_atomicrmw, "llvm.fence": h_noop,
}
_TERMINATORS = ("scf.yield", "scf.condition", "func.return", "gpu.return")


# ---------------------------------------------------------------- running a tile case


def to_storage(values: np.ndarray, etype: str) -> np.ndarray:
    """Reference storage (bf16/f16 as float32 values) -> the bytes a GPU buffer holds."""
    if etype == "bf16":
        return (round_bf16(values.astype(np.float32)).view(np.uint32) >> np.uint32(16)).astype(np.uint16)
    if etype == "f16":
        return values.astype(np.float16)
    return values.astype(_DTYPES[etype])


def from_storage(raw: np.ndarray, etype: str, shape) -> np.ndarray:
    if etype == "bf16":
        return (raw.view(np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32).reshape(shape)
    if etype == "f16":
        return raw.view(np.float16).astype(np.float32).reshape(shape)
    return raw.view(_DTYPES[etype]).reshape(shape).copy()


def simulate(program, task, sizes: dict, arrays: dict, block: int = 256, module_text: str | None = None,
             weight_stream: bool = False, phases: list | None = None, stats: dict | None = None,
             order=None, ring_bytes: int | None = None) -> dict:
    """Run the task's check kernel (every tile) on the simulator; the written buffers afterwards.
    weight_stream: linear tiles stream their weights through shared memory (bulk copies, mbarriers).
    phases: a list to receive, per tile, the phase stamps of the profiling build (simulated %globaltimer:
    ops run so far); the tile is then built with profile=True. stats: a dict to receive the number of bulk
    copies run ("bulk_copies") and their bytes ("bulk_bytes"), the buffers' addresses ("addresses", name ->
    address) and per memory region (address >> REGION_SHIFT) the lanes that read it with plain loads, not
    copies ("loads"), and with cp.async ("async_reads"), the arrival counters afterwards ("arrivals"). order: the tiles in the order to run them (one block per tile), as some
    interleaving on the GPU could finish them. ring_bytes: the weight streams' part of the ring (None: all)."""
    from etc.codegen.tile_library import tile_shared_bytes
    from etc.codegen.tiles_harness import ARRIVAL_WORDS, HARNESS_EPOCH, check_kernel_name, default_indices, harness_module_text

    buffer_index, symbol_index = default_indices(program)
    profile = phases is not None
    sim = Simulator(module_text or harness_module_text(program, [task], buffer_index, symbol_index, weight_stream,
                                                       profile, ring_bytes))
    addrs = [0] * len(buffer_index)
    for name, arr in arrays.items():
        addrs[buffer_index[name]] = sim.memory.add(to_storage(arr, program.buffer(name).element_type))
    addrs.append(sim.memory.add(8 * ARRIVAL_WORDS))  # the slot after the buffers: arrival counters, zeroed
    table = sim.memory.add(np.array(addrs, np.int64))
    size_values = [0] * len(symbol_index) + [HARNESS_EPOCH]  # the sizes, then the step's epoch
    for sym, i in symbol_index.items():
        size_values[i] = sizes.get(sym, 1)
    size_table = sim.memory.add(np.array(size_values, np.int64))
    shared = tile_shared_bytes(task, program, buffer_index, symbol_index, weight_stream)
    if profile:
        shared = max(shared, PROFILE_PHASE_SMEM + 8 * PROFILE_PHASES)
    sim.run(check_kernel_name(task.id), task.tile_count(sizes), block, shared, [table, size_table],
            keep_shared=profile, order=order)
    if stats is not None:
        stats.update(bulk_copies=sim.bulk_copies, bulk_bytes=sim.bulk_bytes, loads=sim.loads,
                     async_reads=sim.async_reads, arrivals=sim.memory.view(addrs[-1]).view(np.int64).copy(),
                     addresses={name: addrs[buffer_index[name]] for name in arrays})
    if profile:
        phases += [list(mem[PROFILE_PHASE_SMEM:PROFILE_PHASE_SMEM + 8 * PROFILE_PHASES].view(np.int64))
                   for mem in sim.shared_after]
    return {name: from_storage(sim.memory.view(addrs[buffer_index[name]]), program.buffer(name).element_type,
                               arrays[name].shape) for name in dict.fromkeys(task.writes + task.reads)}
