"""etc-derive-wait-counts: set each event tensor's wait count from its producers' notify maps.

Matches: every event_tensor.event_tensor notified by task grids only (an event that an
event_tensor.notify or event_tensor.trigger op also reaches has a run-time count and is left alone).
Produces: the `wait_count` map `(event coords)[symbols] -> (n)`, where n is the number of producer
tiles whose notify map lands on each element, summed over producers; it may be symbolic, and a
product of symbolic extents (batch x KV splits, when a consumer waits on every attention tile) is kept
as a semi-affine map, which the kernel and the runtime evaluate like any other.
Guarantees: a waiter released at n notifies has seen every producer tile that writes its element.
A notify map must give each event coordinate as `d_k`, `d_k floordiv c` or the constant 0 (on an axis
of extent 1), cover the whole event tensor, and use each tile coordinate at most once; every other
map, and a `floordiv` that does not divide its grid extent, is an error (the count would not be uniform).

Before:
  %e = "event_tensor.event_tensor"(%b) {name = "x", shape = affine_map<()[s0] -> (4)>,
          wait_count = affine_map<(d0)[s0] -> (1)>}
  "event_tensor.task_grid"(%b, ..., %e) {grid = affine_map<()[s0] -> (16, s0 ceildiv 64)>,
          notify_maps = [affine_map<(d0, d1)[s0] -> (d0 floordiv 4)>], ...}
After:
  wait_count = affine_map<(d0)[s0] -> ((s0 ceildiv 64) * 4)>
"""
from __future__ import annotations

from mlir import ir

from etc import event_ir
from etc import mlir_adapter as mlir
from etc.passes.base import Pass


class _NotUniform(Exception):
    pass


class DeriveWaitCounts(Pass):
    NAME = "etc-derive-wait-counts"
    SUMMARY = "Derive each event tensor's wait count from the notify maps of the task grids that notify it."

    def run(self, module_op) -> None:
        runtime_driven = {op.operands[0] for name in ("event_tensor.notify", "event_tensor.trigger")
                          for op in mlir.ops_named(module_op, name)}
        grids = event_ir.task_grids(module_op)
        for event in event_ir.event_tensors(module_op):
            if event.value in runtime_driven:
                continue
            producers = [(g, m) for g in grids for v, m in zip(g.notifies, g.notify_maps) if v == event.value]
            if not producers:
                continue
            problems = [(g.op, p) for g, m in producers for p in (
                event_ir.map_problem(g.grid, "grid", 0, len(g.dims)) or event_ir.extent_problem(g.grid, "grid"),
                event_ir.map_problem(m, "notify_maps", g.rank, len(g.dims), event.rank)) if p]
            problem = event_ir.map_problem(event.shape, "shape", 0, len(event.dims))
            problems += [(event.op, problem)] if problem else []
            for op, problem in problems:  # run etc-verify-event-tensor first for the full set of checks
                self.error(op, problem)
            if problems:
                continue
            try:
                total = None
                for grid, notify_map in producers:
                    count = self._count(grid, notify_map, event)
                    total = count if total is None else total + count
            except _NotUniform as e:
                self.error(grid.op, f"cannot derive the wait count of event tensor '{event.name}' from task grid "
                                    f"'{grid.name}': {e}")
                continue
            with module_op.context:
                mlir.set_attr(event.op, "wait_count",
                              mlir.map_to_attr(ir.AffineMap.get(event.rank, len(event.dims), [total])))

    def _count(self, grid: event_ir.TaskGrid, notify_map: ir.AffineMap, event: event_ir.EventTensor) -> ir.AffineExpr:
        """Tiles of `grid` that notify one element of `event`, in the event tensor's symbols."""
        with event.op.context:
            syms = self._grid_symbols_in_event(grid, event)
            extents = [mlir.substitute(e, [], syms) for e in grid.grid.results]
            shape = list(event.shape.results)
            per_dim = [None] * grid.rank  # tiles along each grid axis that share one element
            for axis, result in enumerate(notify_map.results):
                if mlir.is_constant(result):
                    if mlir.constant_value(result) != 0 or not (mlir.is_constant(shape[axis]) and mlir.constant_value(shape[axis]) == 1):
                        raise _NotUniform(f"constant coordinate {result} does not cover axis {axis} of extent "
                                          f"{shape[axis]}")
                    continue
                k, factor = self._dim_and_factor(result)
                if per_dim[k] is not None:
                    raise _NotUniform(f"tile coordinate d{k} is used twice in {notify_map}")
                extent = extents[k]
                covered = extent if factor == 1 else ir.AffineExpr.get_ceil_div(extent, factor)
                if factor != 1 and not (mlir.is_constant(extent) and mlir.constant_value(extent) % factor == 0):
                    raise _NotUniform(f"grid extent {extent} of d{k} is not a known multiple of {factor}")
                if covered != shape[axis]:
                    raise _NotUniform(f"notify map {notify_map} covers {covered} elements on axis {axis}, "
                                      f"the event tensor has {shape[axis]}")
                per_dim[k] = ir.AffineExpr.get_constant(factor)
            count = ir.AffineExpr.get_constant(1)
            for k, factor in enumerate(per_dim):
                term = factor if factor is not None else extents[k]
                # a product of symbolic extents (rows x KV splits) is semi-affine: MLIR keeps it, and the
                # kernel and the runtime evaluate it like any other count
                count = count * term
            return count

    @staticmethod
    def _dim_and_factor(result: ir.AffineExpr) -> tuple[int, int]:
        result = mlir.downcast(result)
        if isinstance(result, ir.AffineDimExpr):
            return result.position, 1
        if (isinstance(result, ir.AffineFloorDivExpr) and isinstance(mlir.downcast(result.lhs), ir.AffineDimExpr)
                and mlir.is_constant(result.rhs) and mlir.constant_value(result.rhs) > 0):
            return mlir.downcast(result.lhs).position, mlir.constant_value(result.rhs)
        raise _NotUniform(f"notify coordinate {result} is not d_k, d_k floordiv c or 0")

    @staticmethod
    def _grid_symbols_in_event(grid: event_ir.TaskGrid, event: event_ir.EventTensor) -> list[ir.AffineExpr]:
        """Rewrite the grid's symbol i as the event tensor's symbol bound to the same SSA value."""
        positions = {v: i for i, v in enumerate(event.dims)}
        syms = []
        for value, name in zip(grid.dims, event_ir.symbol_names(grid.dims)):
            if value not in positions:
                raise _NotUniform(f"the event tensor does not take symbolic size '{name}' that the grid uses")
            syms.append(ir.AffineSymbolExpr.get(positions[value]))
        return syms
