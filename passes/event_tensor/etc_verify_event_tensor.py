"""etc-verify-event-tensor: check what IRDL cannot see across event_tensor ops.

Matches: every event_tensor.dim, event_tensor.buffer, event_tensor.event_tensor and
event_tensor.task_grid op. Produces: nothing; the IR is unchanged.
Guarantees, when it succeeds:
- every affine map has as many symbols as its op has `dims` operands, and divides only by positive
  constants; constant grid, shape and buffer extents are positive;
- a task grid has one wait map per waited event tensor and one notify map per notified one, each
  taking the grid's coordinates and giving the event tensor's coordinates;
- at every corner of the symbolic sizes' ranges (each at its min or max), the first and last tile of each
  grid dim wait on elements inside the waited event tensor's shape at those sizes (an element outside
  has no counter, and its waiters would hang on the GPU);
- an event tensor's wait_count map takes its coordinates and gives one count;
- task grid and event tensor names are unique, every waited event tensor is notified by someone, and
  every event operand is made by event_tensor.event_tensor;
- a symbolic size has 0 <= min <= max; a buffer has a known role and is written only if it may be.

Before and after (unchanged):
  %e = "event_tensor.event_tensor"() {name = "h", shape = affine_map<() -> (4)>,
         wait_count = affine_map<(d0) -> (1)>} : () -> !event_tensor.event
  "event_tensor.task_grid"(%e) {..., grid = affine_map<() -> (4)>, wait_maps = [affine_map<(d0) -> (d0)>], ...}
"""
from __future__ import annotations

import itertools

from mlir import ir

from etc import event_ir
from etc import mlir_adapter as mlir
from etc.passes.base import Pass


BUFFER_ROLES = ("input", "output", "weight", "kv_cache", "workspace")


class VerifyEventTensor(Pass):
    NAME = "etc-verify-event-tensor"
    SUMMARY = "Check event_tensor invariants across ops: map arities, names, notifiers, symbolic dims."

    def run(self, module_op) -> None:
        self._check_dims(module_op)
        events = event_ir.event_tensors(module_op)
        grids = event_ir.task_grids(module_op)
        self._check_buffers(module_op, grids)
        self._check_names(events, "event tensor")
        self._check_names(grids, "task grid")
        by_value = {e.value: e for e in events}
        for event in events:
            self._check_map(event.op, "shape", event.shape, 0, len(event.dims))
            self._check_map(event.op, "wait_count", event.wait_count, event.rank, len(event.dims), results=1)
        for grid in grids:
            self._check_grid(grid, by_value)
            self._check_waits_in_shape(grid, by_value)
        self._check_notified(module_op, events, grids)
        self._check_event_operands(module_op, grids, by_value)

    def _check_map(self, op, what: str, m: ir.AffineMap, n_dims: int, n_syms: int, results: int | None = None):
        problem = event_ir.map_problem(m, what, n_dims, n_syms, results)
        if problem is None and what in ("grid", "shape", "sizes"):
            problem = event_ir.extent_problem(m, what)
        if problem is not None:
            self.error(op, problem)

    def _check_grid(self, grid: event_ir.TaskGrid, by_value: dict) -> None:
        self._check_map(grid.op, "grid", grid.grid, 0, len(grid.dims))
        for label, events, maps in (("wait", grid.waits, grid.wait_maps), ("notify", grid.notifies, grid.notify_maps)):
            if len(events) != len(maps):
                self.error(grid.op, f"task grid '{grid.name}' has {len(events)} {label} event tensors "
                                    f"but {len(maps)} {label}_maps")
                continue
            for value, m in zip(events, maps):
                event = by_value.get(value)
                rank = event.rank if event is not None else len(m.results)
                self._check_map(grid.op, f"{label}_maps", m, grid.rank, len(grid.dims), results=rank)

    def _check_waits_in_shape(self, grid: event_ir.TaskGrid, by_value: dict) -> None:
        """The corner tiles' waited elements lie inside the event tensor's shape at every corner of the sizes
        (sums, constant multiples and floordivs are monotone in each coordinate, so there the corners bound
        every tile; a mod stays below its modulus). Maps of the wrong arity are left to _check_map."""
        ranges = [_range(v) for v in grid.dims]
        n_syms = len(grid.dims)
        if any(r is None for r in ranges) or (grid.grid.n_dims, grid.grid.n_symbols) != (0, n_syms):
            return
        for sizes in itertools.product(*ranges):
            at = dict(zip(grid.dims, sizes))
            extents = mlir.eval_map(grid.grid, (), sizes)
            if any(e <= 0 for e in extents):
                continue  # no tiles at these sizes
            for value, m in zip(grid.waits, grid.wait_maps):
                event = by_value.get(value)
                if event is None or len(m.results) != event.rank or (m.n_dims, m.n_symbols) != (len(extents), n_syms) \
                        or any(d not in at for d in event.dims) or event.shape.n_symbols != len(event.dims):
                    continue  # reported by the other checks
                shape = mlir.eval_map(event.shape, (), [at[d] for d in event.dims])
                for tile in itertools.product(*[sorted({0, e - 1}) for e in extents]):
                    element = mlir.eval_map(m, tile, sizes)
                    if all(0 <= e < s for e, s in zip(element, shape)):
                        continue
                    named = ", ".join(f"{name}={v}" for name, v in zip(event_ir.symbol_names(grid.dims), sizes))
                    self.error(grid.op, f"task grid '{grid.name}' tile {tile} waits on element {element} of event "
                                        f"tensor '{event.name}', outside its shape {shape} at {named or 'any size'}: "
                                        "no counter holds it, and the tile would wait forever")
                    return

    def _check_event_operands(self, module_op, grids, by_value: dict) -> None:
        """Waits and notifies must name event tensors made by event_tensor.event_tensor (their counts are known)."""
        users = [(g.op, v) for g in grids for v in g.waits + g.notifies]
        for name in ("event_tensor.notify", "event_tensor.wait", "event_tensor.trigger"):
            users += [(op, op.operands[0]) for op in mlir.ops_named(module_op, name)]
        for op, value in users:
            if value not in by_value:
                self.error(op, f"event operand {value.get_name()} is not made by event_tensor.event_tensor")

    def _check_names(self, items, what: str) -> None:
        seen: dict[str, object] = {}
        for item in items:
            if item.name in seen:
                self.error(item.op, f"{what} name '{item.name}' is used twice")
            seen[item.name] = item

    def _check_notified(self, module_op, events, grids) -> None:
        notified = {v for g in grids for v in g.notifies}
        for name in ("event_tensor.notify", "event_tensor.trigger"):
            notified.update(op.operands[0] for op in mlir.ops_named(module_op, name))
        waited = {v for g in grids for v in g.waits}
        for event in events:
            if event.value in waited and event.value not in notified:
                self.error(event.op, f"event tensor '{event.name}' is waited on but never notified: its waiters "
                                     "would deadlock")

    def _check_dims(self, module_op) -> None:
        for op in mlir.ops_named(module_op, "event_tensor.dim"):
            lo, hi = mlir.int_attr(op, "min"), mlir.int_attr(op, "max")
            if not 0 <= lo <= hi:
                self.error(op, f"range [{lo}, {hi}] of symbolic size '{mlir.str_attr(op, 'name')}' is empty or negative")

    def _check_buffers(self, module_op, grids) -> None:
        read_only = set()
        for op in mlir.ops_named(module_op, "event_tensor.buffer"):
            role = mlir.str_attr(op, "role")
            if role not in BUFFER_ROLES:
                self.error(op, f"buffer role '{role}' is not one of {', '.join(BUFFER_ROLES)}")
            if role in ("input", "weight"):
                read_only.add(op.results[0])
            self._check_map(op, "sizes", mlir.map_attr(op, "sizes"), 0, len(list(op.operands)))
        for grid in grids:
            for value in grid.writes:
                if value in read_only:
                    self.error(grid.op, f"task grid '{grid.name}' writes read-only buffer "
                                        f"'{mlir.str_attr(value.owner, 'name')}'")


def _range(dim: ir.Value) -> tuple[int, ...] | None:
    """The (min, max) of a symbolic size made by event_tensor.dim, else None."""
    owner = dim.owner
    if not (isinstance(owner, ir.OpView) and owner.operation.name == "event_tensor.dim"):
        return None
    lo, hi = mlir.int_attr(owner, "min"), mlir.int_attr(owner, "max")
    return (lo,) if lo == hi else (lo, hi)
