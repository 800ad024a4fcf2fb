"""A read-only view of imported torch-dialect IR, for the raising passes.

torch ops reach ETC's MLIR context as unregistered generic ops with opaque types, so this module
decodes what raising needs: tensor shapes (symbolic dims by name, from torch.bind_symbolic_shape)
and dtypes from the `!torch.vtensor<[...],dtype>` types, constant operands, the argument names
(etc.name), and the users of each value.

    graph = TorchGraph.of(module_op)
    for node in graph.nodes:          # compute ops in program order
        graph.tensor(node.results[0]) # TensorInfo(shape=('batch', 64), dtype='bf16', mutable=False)
"""
from __future__ import annotations

import dataclasses

from mlir import ir

from etc import mlir_adapter as mlir
from etc.frontend import torch_ops
from etc.errors import EtcError

# Bookkeeping ops that carry no computation.
_STRUCTURAL_OPS = {"torch.symbolic_int", "torch.bind_symbolic_shape", "func.return"} | torch_ops.CONSTANT_OPS


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int | str, ...]  # an int, or the name of a symbolic size ("batch", "kv_len")
    dtype: str  # torch-mlir's spelling: bf16, f32, si64, i1, ...
    mutable: bool  # a !torch.tensor (written in place), not a value tensor


@dataclasses.dataclass
class Node:
    op: ir.Operation

    @property
    def name(self) -> str:
        return self.op.name

    @property
    def operands(self) -> list[ir.Value]:
        return list(self.op.operands)

    @property
    def results(self) -> list[ir.Value]:
        return list(self.op.results)

    def where(self) -> str:
        return mlir.format_location(self.op.location)


class TorchGraph:
    def __init__(self, func: ir.Operation, module_op=None):
        self.module_op = module_op  # keeps the IR alive: dropping the top-level op frees its children
        self.func = func
        block = func.regions[0].blocks[0]
        self.arguments = list(block.arguments)
        self.argument_names = self._argument_names(func, len(self.arguments))
        self.symbols: dict[str, tuple[int, int]] = {}
        self._symbolic: dict[ir.Value, tuple] = {}
        self._symbol_of: dict[ir.Value, str] = {}
        self.nodes: list[Node] = []
        self.returned: list[ir.Value] = []
        self._users: dict[ir.Value, list[Node]] = {}
        for op in block.operations:
            op = op.operation
            if op.name == "torch.symbolic_int":
                name = ir.StringAttr(op.attributes["symbol_name"]).value
                self.symbols[name] = (ir.IntegerAttr(op.attributes["min_val"]).value,
                                      ir.IntegerAttr(op.attributes["max_val"]).value)
                self._symbol_of[op.results[0]] = name
            elif op.name == "torch.bind_symbolic_shape":
                self._bind(op)
            elif op.name == "func.return":
                self.returned = list(op.operands)
            if op.name not in _STRUCTURAL_OPS:
                node = Node(op)
                self.nodes.append(node)
                for value in op.operands:
                    self._users.setdefault(value, []).append(node)

    @classmethod
    def of(cls, module_op) -> "TorchGraph":
        funcs = mlir.ops_named(module_op, "func.func")
        if len(funcs) != 1:
            raise EtcError(f"expected one imported function, found {len(funcs)}")
        return cls(funcs[0], module_op)

    @staticmethod
    def _argument_names(func, count: int) -> list[str]:
        if "arg_attrs" not in func.attributes:
            return [f"arg{i}" for i in range(count)]
        names = []
        for i, attrs in enumerate(ir.ArrayAttr(func.attributes["arg_attrs"])):
            d = ir.DictAttr(attrs)
            names.append(ir.StringAttr(d["etc.name"]).value if "etc.name" in d else f"arg{i}")
        return names

    def _bind(self, op: ir.Operation) -> None:
        value, *syms = list(op.operands)
        shape_map = ir.AffineMapAttr(op.attributes["shape_expressions"]).value
        names = [self._symbol_of.get(s, "?") for s in syms]
        dims: list[int | str] = []
        for expr in shape_map.results:
            expr = mlir.downcast(expr)
            if isinstance(expr, ir.AffineConstantExpr):
                dims.append(expr.value)
            elif isinstance(expr, ir.AffineSymbolExpr):
                dims.append(names[expr.position])
            else:
                dims.append(str(expr))  # a derived size, e.g. "s0 + 1"; raising rejects what it cannot tile
        self._symbolic[value] = tuple(dims)

    # ------------------------------------------------------------ queries

    def tensor(self, value: ir.Value) -> TensorInfo:
        """Shape and dtype of a tensor value; symbolic dims by name where the import bound them."""
        t = torch_ops.tensor_type(value)
        if t is None:
            raise EtcError(f"not a tensor: {value.type}")
        dims: list[int | str] = ["?" if d is None else d for d in t.dims]
        bound = self._symbolic.get(value)
        if bound is None:  # a mutable tensor is bound through the value copy that reads it
            copies = [n for n in self.users(value) if n.name == "torch.copy.to_vtensor"]
            bound = self._symbolic.get(copies[0].results[0]) if copies else None
        if bound is not None and len(bound) == len(dims):
            dims = [b if d == "?" else d for d, b in zip(dims, bound)]
        return TensorInfo(tuple(dims), t.dtype, t.mutable)

    def constant(self, value: ir.Value):
        """The Python value of a constant operand (int, float, bool, None, str, or a list of them)."""
        try:
            return torch_ops.constant(value)
        except ValueError:
            raise EtcError(f"operand is not a constant: {value.get_name()}") from None

    def producer(self, value: ir.Value) -> Node | None:
        """The compute node that defines value (None for a function argument or a constant)."""
        owner = value.owner
        if isinstance(owner, ir.OpView) and owner.operation.name not in _STRUCTURAL_OPS:
            return Node(owner.operation)
        return None

    def users(self, value: ir.Value) -> list[Node]:
        return self._users.get(value, [])

    def argument_name(self, value: ir.Value) -> str | None:
        for arg, name in zip(self.arguments, self.argument_names):
            if arg == value:
                return name
        return None
