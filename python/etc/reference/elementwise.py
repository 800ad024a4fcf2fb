"""The elementwise tile body interpreter: a private func.func of scalar arith/math ops, run with numpy over
a whole tile at once.

Values live in numpy arrays: bf16/f16/f32 as float32 (rounded to their type after every op whose result
has that type, as PyTorch rounds each op), f64 as float64, integers of any width as int64 holding the
signed value wrapped to the width (i1 true is -1 signed, 1 unsigned, as in LLVM).

    body = compile_body(func_op)     # EtcError naming an unknown op and its location
    y = body([x_tile, scale_tile])   # broadcast numpy arrays, one per function argument
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from etc import mlir_adapter as mlir
from etc.errors import EtcError
from etc.reference.numerics import FLOAT_TYPES, INT_WIDTHS, erf, rounder


def _is_float(t: str) -> bool:
    return t in FLOAT_TYPES


def _wrap(v, width: int) -> np.ndarray:
    """Signed value of v modulo 2**width."""
    v = np.asarray(v).astype(np.int64)
    if width >= 64:
        return v
    half = np.int64(1) << np.int64(width - 1)
    return ((v + half) & ((half << np.int64(1)) - np.int64(1))) - half


def _unsigned(v, width: int) -> np.ndarray:
    v = np.asarray(v, dtype=np.int64)
    if width >= 64:
        return v.view(np.uint64)
    return v & ((np.int64(1) << np.int64(width)) - np.int64(1))


def _as_type(value, t: str) -> np.ndarray:
    """A tile operand (storage dtype) as an interpreter value of scalar type t."""
    if _is_float(t):
        return rounder(t)(np.asarray(value, dtype=np.float64 if t == "f64" else np.float32))
    return _wrap(np.asarray(value).astype(np.int64), INT_WIDTHS[t])


def _float_fn(fn: Callable, out: str) -> Callable:
    rnd = rounder(out)
    return lambda *xs: rnd(fn(*xs))


def _int_fn(fn: Callable, out: str) -> Callable:
    width = INT_WIDTHS[out]
    return lambda *xs: _wrap(fn(*xs), width)


def _rsqrt(x):
    return np.asarray(1, dtype=x.dtype) / np.sqrt(x)


_FLOAT_OPS: dict[str, Callable] = {
    "arith.addf": np.add, "arith.subf": np.subtract, "arith.mulf": np.multiply, "arith.divf": np.divide,
    "arith.negf": np.negative, "arith.maximumf": np.maximum, "arith.minimumf": np.minimum,
    "arith.maxnumf": np.fmax, "arith.minnumf": np.fmin, "arith.remf": np.fmod,
    "math.exp": np.exp, "math.exp2": np.exp2, "math.log": np.log, "math.log2": np.log2, "math.sqrt": np.sqrt,
    "math.rsqrt": _rsqrt, "math.tanh": np.tanh, "math.sin": np.sin, "math.cos": np.cos, "math.absf": np.abs,
    "math.powf": np.power, "math.floor": np.floor, "math.ceil": np.ceil,
    "math.erf": lambda x: erf(x).astype(x.dtype),
    "math.fma": lambda a, b, c: a * b + c,
}

_INT_OPS: dict[str, Callable] = {
    "arith.addi": np.add, "arith.subi": np.subtract, "arith.muli": np.multiply,
    "arith.andi": np.bitwise_and, "arith.ori": np.bitwise_or, "arith.xori": np.bitwise_xor,
}

# arith.cmpf predicates 0..15: false oeq ogt oge olt ole one ord ueq ugt uge ult ule une uno true.
_CMPF = {
    1: np.equal, 2: np.greater, 3: np.greater_equal, 4: np.less, 5: np.less_equal, 6: np.not_equal,
    8: np.equal, 9: np.greater, 10: np.greater_equal, 11: np.less, 12: np.less_equal, 13: np.not_equal,
}
# arith.cmpi predicates 0..9: eq ne slt sle sgt sge ult ule ugt uge.
_CMPI = [np.equal, np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal,
         np.less, np.less_equal, np.greater, np.greater_equal]


def _cmpf(predicate: int) -> Callable:
    def run(a, b):
        unordered = np.isnan(a) | np.isnan(b)
        if predicate == 0:
            out = np.zeros(np.broadcast(a, b).shape, dtype=bool)
        elif predicate == 15:
            out = np.ones(np.broadcast(a, b).shape, dtype=bool)
        elif predicate == 7:
            out = ~unordered
        elif predicate == 14:
            out = unordered
        elif predicate <= 6:
            out = _CMPF[predicate](a, b) & ~unordered
        else:
            out = _CMPF[predicate](a, b) | unordered
        return _wrap(out, 1)
    return run


def _cmpi(predicate: int, width: int) -> Callable:
    cmp = _CMPI[predicate]
    if predicate >= 6:
        return lambda a, b: _wrap(cmp(_unsigned(a, width), _unsigned(b, width)), 1)
    return lambda a, b: _wrap(cmp(a, b), 1)


def _type_name(value) -> str:
    return str(value.type)


class Body:
    """A compiled elementwise body: a straight-line list of numpy steps over value slots."""

    def __init__(self, name: str, arg_types: list[str], steps: list, result: int, result_type: str):
        self.name = name
        self.arg_types = arg_types
        self.steps = steps  # (fn, operand slots, result slot)
        self.result = result
        self.result_type = result_type

    def __call__(self, args) -> np.ndarray:
        if len(args) != len(self.arg_types):
            raise EtcError(f"elementwise body @{self.name} takes {len(self.arg_types)} operands, got {len(args)}")
        slots: list = [_as_type(a, t) for a, t in zip(args, self.arg_types)]
        slots.extend([None] * len(self.steps))
        with np.errstate(all="ignore"):
            for fn, operands, out in self.steps:
                slots[out] = fn(*(slots[i] for i in operands))
        return slots[self.result]


def compile_body(func_op) -> Body:
    """Compile a func.func of scalar arith/math ops; EtcError naming the first op (or type) it cannot run."""
    func_op = func_op.operation
    name = mlir.str_attr(func_op, "sym_name")
    blocks = list(func_op.regions[0].blocks)
    if len(blocks) != 1:
        raise EtcError(f"elementwise body @{name} at {mlir.format_location(func_op.location)}: "
                       f"expected one block, found {len(blocks)}")
    block = blocks[0]
    where = {}  # ir.Value -> slot

    def fail(op, why: str):
        raise EtcError(f"elementwise body @{name}: {why} at {mlir.format_location(op.location)}")

    def scalar_type(op, value) -> str:
        t = _type_name(value)
        if t not in FLOAT_TYPES and t not in INT_WIDTHS:
            fail(op, f"unsupported type '{t}' in '{op.name}'")
        return t

    arg_types = []
    for arg in block.arguments:
        arg_types.append(scalar_type(func_op, arg))
        where[arg] = len(where)
    steps, result, result_type = [], None, None
    for op in block.operations:
        op = op.operation
        if op.name == "func.return":
            if len(op.operands) != 1:
                fail(op, f"the body must return one value, not {len(op.operands)}")
            result, result_type = where[op.operands[0]], scalar_type(op, op.operands[0])
            break
        if len(op.results) != 1:
            fail(op, f"unsupported op '{op.name}'")
        out = scalar_type(op, op.results[0])
        ins = [scalar_type(op, v) for v in op.operands]
        fn = _compile_op(op, out, ins, fail)
        steps.append((fn, [where[v] for v in op.operands], len(where)))
        where[op.results[0]] = len(where)
    if result is None:
        fail(func_op, "no func.return")
    return Body(name, arg_types, steps, result, result_type)


def _compile_op(op, out: str, ins: list[str], fail) -> Callable:
    name = op.name
    if name == "arith.constant":
        value = mlir.attr_to_python(op.attributes["value"])
        if not isinstance(value, (bool, int, float)):
            fail(op, f"unsupported constant {op.attributes['value']}")
        const = _as_type(np.asarray(value, dtype=np.float64 if _is_float(out) else np.int64), out)
        return lambda: const
    if name in _FLOAT_OPS and _is_float(out) and all(_is_float(t) for t in ins):
        return _float_fn(_FLOAT_OPS[name], out)
    if name in _INT_OPS and not _is_float(out):
        return _int_fn(_INT_OPS[name], out)
    if name in ("arith.extf", "arith.truncf") and _is_float(out) and _is_float(ins[0]):
        dtype = np.float64 if out == "f64" else np.float32
        return _float_fn(lambda x: np.asarray(x, dtype=dtype), out)
    if name == "arith.sitofp" and _is_float(out):
        return _float_fn(lambda x: x.astype(np.float64), out)
    if name == "arith.uitofp" and _is_float(out):
        width = INT_WIDTHS[ins[0]]
        return _float_fn(lambda x: _unsigned(x, width).astype(np.float64), out)
    if name in ("arith.fptosi", "arith.fptoui") and not _is_float(out):
        return _int_fn(lambda x: np.trunc(np.nan_to_num(x.astype(np.float64))).astype(np.int64), out)
    if name in ("arith.extsi", "arith.trunci", "arith.index_cast") and not _is_float(out):
        return _int_fn(lambda x: x, out)
    if name == "arith.extui" and not _is_float(out):
        width = INT_WIDTHS[ins[0]]
        return _int_fn(lambda x: _unsigned(x, width), out)
    if name == "arith.cmpf":
        return _cmpf(int(mlir.attr_to_python(op.attributes["predicate"])))
    if name == "arith.cmpi":
        return _cmpi(int(mlir.attr_to_python(op.attributes["predicate"])), INT_WIDTHS[ins[0]])
    if name == "arith.select":
        return lambda c, a, b: np.where(c != 0, a, b)
    if name in _FLOAT_OPS or name in _INT_OPS:
        fail(op, f"'{name}' on types ({', '.join(ins)}) -> {out} is not supported")
    fail(op, f"unsupported op '{name}'")


def resolver(module_op) -> Callable[[str], Body]:
    """symbol -> compiled Body of the module's func.func of that name (compiled once)."""
    cache: dict[str, Body] = {}

    def body_of(symbol: str) -> Body:
        name = str(symbol).lstrip("@")
        if name not in cache:
            funcs = [f for f in mlir.ops_named(module_op, "func.func") if mlir.str_attr(f, "sym_name") == name]
            if not funcs:
                raise EtcError(f"elementwise body @{name} is not a func.func of the module")
            cache[name] = compile_body(funcs[0])
        return cache[name]

    return body_of
