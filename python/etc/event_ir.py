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
