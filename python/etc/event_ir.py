"""Read-only views of event_tensor ops, so passes talk about task grids and event tensors, not operands."""
from __future__ import annotations

import dataclasses

from mlir import ir

from etc import mlir_adapter as mlir

TASK_GRID_GROUPS = ("dims", "reads", "writes", "waits", "notifies")


@dataclasses.dataclass
class EventTensor:
    op: ir.Operation
    name: str
    dims: list[ir.Value]
    shape: ir.AffineMap
    wait_count: ir.AffineMap

    @property
    def value(self) -> ir.Value:
        return self.op.results[0]

    @property
    def rank(self) -> int:
        return len(self.shape.results)


@dataclasses.dataclass
class TaskGrid:
    op: ir.Operation
    name: str
    kind: str
    dims: list[ir.Value]
    reads: list[ir.Value]
    writes: list[ir.Value]
    waits: list[ir.Value]
    notifies: list[ir.Value]
    grid: ir.AffineMap
    wait_maps: list[ir.AffineMap]
    notify_maps: list[ir.AffineMap]

    @property
    def rank(self) -> int:
        return len(self.grid.results)


def event_tensors(module_op) -> list[EventTensor]:
    return [
        EventTensor(op, mlir.str_attr(op, "name"), list(op.operands), mlir.map_attr(op, "shape"),
                    mlir.map_attr(op, "wait_count"))
        for op in mlir.ops_named(module_op, "event_tensor.event_tensor")
    ]


def task_grids(module_op) -> list[TaskGrid]:
    grids = []
    for op in mlir.ops_named(module_op, "event_tensor.task_grid"):
        g = mlir.operand_groups(op, TASK_GRID_GROUPS)
        grids.append(TaskGrid(op, mlir.str_attr(op, "name"), mlir.str_attr(op, "kind"), g["dims"], g["reads"],
                              g["writes"], g["waits"], g["notifies"], mlir.map_attr(op, "grid"),
                              mlir.map_list_attr(op, "wait_maps"), mlir.map_list_attr(op, "notify_maps")))
    return grids


def symbol_names(dims: list[ir.Value]) -> list[str]:
    """The names of symbolic sizes, for messages: event_tensor.dim's name, else the SSA value."""
    names = []
    for value in dims:
        owner = value.owner
        if isinstance(owner, ir.OpView) and owner.operation.name == "event_tensor.dim":
            names.append(mlir.str_attr(owner, "name"))
        else:
            names.append(value.get_name())
    return names


def map_problem(m: ir.AffineMap, what: str, n_dims: int, n_syms: int, results: int | None = None) -> str | None:
    """Why map `m` (attribute `what`) does not fit its op, or None: arity, result count, division by <= 0."""
    if m.n_dims != n_dims:
        return f"'{what}' map {m} takes {m.n_dims} coordinates, expected {n_dims}"
    if m.n_symbols != n_syms:
        return f"'{what}' map {m} has {m.n_symbols} symbols but the op has {n_syms} dims operands"
    if results is not None and len(m.results) != results:
        return f"'{what}' map {m} gives {len(m.results)} results, expected {results}"
    for expr in m.results:
        if _divides_by_non_positive(expr):
            return f"'{what}' map {m} divides by a non-positive constant"
    return None


def extent_problem(m: ir.AffineMap, what: str) -> str | None:
    """Why an extents map (grid, shape) is invalid, or None: a constant extent must be positive."""
    for expr in m.results:
        if mlir.is_constant(expr) and mlir.constant_value(expr) <= 0:
            return f"'{what}' map {m} has a non-positive extent"
    return None


def _divides_by_non_positive(expr: ir.AffineExpr) -> bool:
    expr = mlir.downcast(expr)
    if not isinstance(expr, ir.AffineBinaryExpr):
        return False
    if isinstance(expr, (ir.AffineFloorDivExpr, ir.AffineCeilDivExpr, ir.AffineModExpr)):
        if mlir.is_constant(expr.rhs) and mlir.constant_value(expr.rhs) <= 0:
            return True
    return _divides_by_non_positive(expr.lhs) or _divides_by_non_positive(expr.rhs)
