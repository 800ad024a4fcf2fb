"""etc-raise-elementwise: turn the torch elementwise ops left after etc-raise-torch into generic
elementwise tiles that keep their scalar body; reject every other leftover op.

Matches: torch elementwise ops on tensors (add/sub/mul/div, neg, exp, log, sqrt, rsqrt, tanh, sigmoid,
silu, relu, abs, cos, sin, erf, reciprocal, pow by a constant, comparisons, where, maximum/minimum,
convert_element_type) whose operands broadcast to the result row-wise or column-wise.
Produces: for each, an `etc.tile` of kind "elementwise" whose `body` names a new private func.func of
scalar arith/math ops (floating math in f32, rounded to the result type, as PyTorch does), and whose
`broadcast` says how each operand maps onto the [rows, cols] result; scalar constants are folded into
the body.
Guarantees: afterwards only etc.tile ops, view ops (aliases of their input) and bookkeeping remain.
Any other compute op is an error naming the op and the PyTorch source line it came from.

Before:
  %2 = "torch.aten.mul.Tensor"(%0, %1) : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[?,1],bf16>) -> !torch.vtensor<[?,8],bf16>
After:
  %2 = "etc.tile"(%0, %1) {kind = "elementwise", params = {body = @etc_elementwise_0,
        broadcast = ["full", "row"], operand_roles = ["operand0", "operand1"], result_roles = ["y"]}} : ...
  func.func private @etc_elementwise_0(%a0: bf16, %a1: bf16) -> bf16 {
    %0 = arith.extf %a0 : bf16 to f32 ... %2 = arith.mulf %0, %1 : f32  %3 = arith.truncf %2 : f32 to bf16
    return %3 : bf16 }
"""
from __future__ import annotations

from mlir import ir

from etc.frontend import torch_ops as T
from etc.passes.base import Pass

_MLIR_TYPE = {"bf16": "bf16", "f16": "f16", "f32": "f32", "f64": "f64", "si64": "i64", "si32": "i32",
              "si16": "i16", "si8": "i8", "ui8": "i8", "i1": "i1"}
_UNARY_F = {"torch.aten.neg": "arith.negf", "torch.aten.exp": "math.exp", "torch.aten.log": "math.log",
            "torch.aten.sqrt": "math.sqrt", "torch.aten.rsqrt": "math.rsqrt", "torch.aten.tanh": "math.tanh",
            "torch.aten.cos": "math.cos", "torch.aten.sin": "math.sin", "torch.aten.abs": "math.absf",
            "torch.aten.erf": "math.erf"}
_BINARY_F = {"add": "arith.addf", "sub": "arith.subf", "mul": "arith.mulf", "div": "arith.divf",
             "maximum": "arith.maximumf", "minimum": "arith.minimumf"}
_BINARY_I = {"add": "arith.addi", "sub": "arith.subi", "mul": "arith.muli", "maximum": "arith.maxsi",
             "minimum": "arith.minsi"}
_COMPARE = {"le": ("ole", "sle"), "lt": ("olt", "slt"), "ge": ("oge", "sge"), "gt": ("ogt", "sgt"),
            "eq": ("oeq", "eq"), "ne": ("une", "ne")}


class _Unsupported(Exception):
    pass


class _Body:
    """Text of one scalar body function, built op by op."""

    def __init__(self, arg_types: list[str]):
        self.args = [f"%a{i}" for i in range(len(arg_types))]
        self.arg_types = arg_types
        self.lines: list[str] = []
        self.n = 0

    def emit(self, text: str) -> str:
        name = f"%v{self.n}"
        self.n += 1
        self.lines.append(f"    {name} = {text}")
        return name

    def const(self, value, ty: str) -> str:
        if ty.startswith("i"):
            literal = str(int(value)) if ty != "i1" else ("true" if value else "false")
        else:
            literal = repr(float(value)) if value == value and abs(value) != float("inf") else \
                {"nan": "0x7FC00000", "inf": "0x7F800000", "-inf": "0xFF800000"}[repr(float(value))]
            if literal.startswith("0x") and ty != "f32":
                raise _Unsupported("non-finite constants must be f32")
        return self.emit(f"arith.constant {literal} : {ty}")

    def cast(self, v: str, src: str, dst: str) -> str:
        if src == dst:
            return v
        fs, fd = src.startswith(("f", "bf")), dst.startswith(("f", "bf"))
        width = {"bf16": 16, "f16": 16, "f32": 32, "f64": 64, "i1": 1, "i8": 8, "i16": 16, "i32": 32, "i64": 64}
        if fs and fd:
            op = "arith.extf" if width[dst] > width[src] else "arith.truncf"
        elif not fs and fd:
            op = "arith.uitofp" if src == "i1" else "arith.sitofp"
        elif fs and not fd:
            if dst == "i1":
                zero = self.const(0.0, src)
                return self.emit(f"arith.cmpf une, {v}, {zero} : {src}")
            op = "arith.fptosi"
        else:
            if dst == "i1":
                zero = self.const(0, src)
                return self.emit(f"arith.cmpi ne, {v}, {zero} : {src}")
            op = ("arith.extui" if src == "i1" else "arith.extsi") if width[dst] > width[src] else "arith.trunci"
        return self.emit(f"{op} {v} : {src} to {dst}")

    def text(self, name: str, result: str, result_type: str) -> str:
        args = ", ".join(f"{a}: {t}" for a, t in zip(self.args, self.arg_types))
        body = "\n".join(self.lines)
        return (f"func.func private @{name}({args}) -> {result_type} {{\n{body}\n"
                f"    func.return {result} : {result_type}\n}}")


def _compute_type(types: list[str]) -> str:
    if any(t == "f64" for t in types):
        return "f64"
    if any(t.startswith(("f", "bf")) for t in types):
        return "f32"
    return "i64"


def _build_body(op: ir.Operation, body: _Body, tensors: dict, result_type: str) -> str:
    """Emit op's scalar computation; tensors maps tensor operand index -> (arg name, mlir type)."""
    name = op.name

    def value(i: int, ty: str) -> str:
        if i in tensors:
            arg, t = tensors[i]
            return body.cast(arg, t, ty)
        c = T.constant(op.operands[i])
        if not isinstance(c, (int, float, bool)):
            raise _Unsupported(f"operand {i} is neither a tensor nor a number")
        return body.const(c, ty)

    def operand_type(i: int) -> str:
        if i in tensors:
            return tensors[i][1]
        return "f32" if isinstance(T.constant(op.operands[i]), float) else "i64"

    base = name.removeprefix("torch.aten.").split(".")[0]
    if name in _UNARY_F or base in ("sigmoid", "silu", "relu", "reciprocal"):
        ct = _compute_type([operand_type(0), result_type])
        x = value(0, ct)
        if name in _UNARY_F:
            r = body.emit(f"{_UNARY_F[name]} {x} : {ct}")
        elif base == "relu":
            r = body.emit(f"arith.maximumf {x}, {body.const(0.0, ct)} : {ct}")
        elif base == "reciprocal":
            r = body.emit(f"arith.divf {body.const(1.0, ct)}, {x} : {ct}")
        else:  # sigmoid(x) = 1 / (1 + exp(-x)); silu(x) = x * sigmoid(x)
            e = body.emit(f"math.exp {body.emit(f'arith.negf {x} : {ct}')} : {ct}")
            s = body.emit(f"arith.divf {body.const(1.0, ct)}, {body.emit(f'arith.addf {body.const(1.0, ct)}, {e} : {ct}')} : {ct}")
            r = s if base == "sigmoid" else body.emit(f"arith.mulf {x}, {s} : {ct}")
        return body.cast(r, ct, result_type)
    if base in _BINARY_F:
        ct = _compute_type([operand_type(0), operand_type(1), result_type])
        a, b = value(0, ct), value(1, ct)
        if base in ("add", "sub") and len(op.operands) > 2:
            alpha = T.constant(op.operands[2], 1)
            if alpha != 1:
                b = body.emit(f"{'arith.mulf' if ct.startswith('f') else 'arith.muli'} {b}, {body.const(alpha, ct)} : {ct}")
        table = _BINARY_F if ct.startswith("f") else _BINARY_I
        if base not in table:
            raise _Unsupported(f"integer {base}")
        return body.cast(body.emit(f"{table[base]} {a}, {b} : {ct}"), ct, result_type)
    if base == "pow":
        ct = _compute_type([operand_type(0), result_type])
        x = value(0, ct)
        e = T.constant(op.operands[1])
        r = body.emit(f"arith.mulf {x}, {x} : {ct}") if e == 2 else \
            body.emit(f"math.powf {x}, {body.const(float(e), ct)} : {ct}")
        return body.cast(r, ct, result_type)
    if base in _COMPARE:
        ct = _compute_type([operand_type(0), operand_type(1)])
        a, b = value(0, ct), value(1, ct)
        pred = _COMPARE[base][0 if ct.startswith("f") else 1]
        cmp = "arith.cmpf" if ct.startswith("f") else "arith.cmpi"
        return body.cast(body.emit(f"{cmp} {pred}, {a}, {b} : {ct}"), "i1", result_type)
    if base == "where":
        ct = _compute_type([operand_type(1), operand_type(2), result_type])
        c, a, b = value(0, "i1"), value(1, ct), value(2, ct)
        return body.cast(body.emit(f"arith.select {c}, {a}, {b} : {ct}"), ct, result_type)
    if name == "torch.prims.convert_element_type" or name == "torch.aten.to.dtype":
        return value(0, result_type)
    raise _Unsupported(name)


def _broadcast(operand: T.TensorType, result: T.TensorType) -> str | None:
    """How operand maps onto result viewed as [rows = first dim, cols = the rest]."""
    dims = (1,) * (result.rank - operand.rank) + operand.dims
    if all(d == 1 for d in dims):
        return "scalar" if not (result.dims and result.dims[0] == 1 and len(dims) == 1) else "full"
    if dims == result.dims:
        return "full"
    if dims[0] == result.dims[0] and all(d == 1 for d in dims[1:]):
        return "row"
    if dims[0] == 1 and dims[1:] == result.dims[1:]:
        return "col"
    return None


ELEMENTWISE = ({"torch.prims.convert_element_type", "torch.aten.to.dtype", "torch.aten.where.self",
                "torch.aten.pow.Tensor_Scalar"} | set(_UNARY_F)
               | {f"torch.aten.{b}.{v}" for b in ("add", "sub", "mul", "div") for v in ("Tensor", "Scalar")}
               | {f"torch.aten.{b}.{v}" for b in _COMPARE for v in ("Tensor", "Scalar")}
               | {f"torch.aten.{b}" for b in ("sigmoid", "silu", "relu", "reciprocal", "maximum", "minimum")})


class RaiseElementwise(Pass):
    NAME = "etc-raise-elementwise"
    SUMMARY = "Raise leftover torch elementwise ops to generic elementwise tiles; reject unsupported ops."

    def run(self, module_op) -> None:
        module_block = module_op.regions[0].blocks[0]
        taken = {op.operation.attributes["sym_name"].maybe_downcast().value
                 for op in module_block.operations if "sym_name" in op.operation.attributes}
        count = 0
        for func in [op.operation for op in module_block.operations if op.operation.name == "func.func"]:
            if not func.regions[0].blocks:
                continue
            for op in [o.operation for o in func.regions[0].blocks[0].operations]:
                if op.name in T.VIEW_OPS and (problem := T.view_problem(op)):
                    self.error(op, f"unsupported op '{op.name}': {problem} (from {T.source_line(op.location)})")
                    continue
                if op.name in T.STRUCTURAL_OPS or op.name in T.VIEW_OPS or op.name.startswith("torch.constant"):
                    continue
                if op.name not in ELEMENTWISE:
                    self.error(op, f"unsupported op '{op.name}' (from {T.source_line(op.location)})")
                    continue
                while f"etc_elementwise_{count}" in taken:
                    count += 1
                name = f"etc_elementwise_{count}"
                taken.add(name)
                if not self._raise(op, name, module_block):
                    continue

    def _raise(self, op: ir.Operation, name: str, module_block: ir.Block) -> bool:
        result = T.tensor_type(op.results[0])
        if result is None or result.rank == 0:
            self.error(op, f"unsupported op '{op.name}': a scalar result (from {T.source_line(op.location)})")
            return False
        tensors, operands, broadcast, arg_types = {}, [], [], []
        for i, v in enumerate(op.operands):
            t = T.tensor_type(v)
            if t is None:
                continue
            how = _broadcast(t, result)
            if how is None or t.dtype not in _MLIR_TYPE:
                self.error(op, f"no tile covers '{op.name}' with operand shape {_shape(t)} and result shape "
                               f"{_shape(result)} (broadcasts must be per row or per column)")
                return False
            ty = _MLIR_TYPE[t.dtype]
            tensors[i] = (f"%a{len(arg_types)}", ty)
            arg_types.append(ty)
            operands.append((f"operand{len(operands)}", v))
            broadcast.append(how)
        if result.dtype not in _MLIR_TYPE:
            self.error(op, f"unsupported result type {result.dtype} of '{op.name}'")
            return False
        body = _Body(arg_types)
        try:
            out = _build_body(op, body, tensors, _MLIR_TYPE[result.dtype])
        except (_Unsupported, ValueError) as e:
            self.error(op, f"unsupported op '{op.name}' ({e}) (from {T.source_line(op.location)})")
            return False
        with op.location:
            func = ir.Operation.parse(body.text(name, out, _MLIR_TYPE[result.dtype]))
        module_block.append(func)
        with op.location:
            params = {"body": ir.FlatSymbolRefAttr.get(name), "broadcast": broadcast}
            tile = T.create_tile("elementwise", operands, [("y", op.results[0].type)], params, op.location, op)
        T.replace_op(op, list(tile.results))
        return True


def _shape(t: T.TensorType) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in t.dims) + "]"
