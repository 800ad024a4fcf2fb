"""etc-lower-to-sm-task: lower event tensors to sm_task counters and task grids to sm_task tasks.

Matches: every func.func holding event_tensor.task_grid ops (a function without task grids is left
alone). Options: `policy` = static | dynamic | hybrid, `block-size` = threads per worker block.
Produces, before the function's terminator, in this order:
- one `sm_task.kernel` (sym_name = the function name, num_workers = 0 until etc-static-schedule sets
  it, block_size) listing every event_tensor.dim and event_tensor.buffer of the function;
- one `sm_task.counter` per event tensor: same dims, name and shape, target = its wait_count;
- one `sm_task.task` per task grid, `id` = its index in program order, same dims, reads, writes, name,
  kind, grid and params; waits/signals = the counters of its waited/notified event tensors, with
  wait_maps and signal_maps (= notify_maps); plus the discardable attribute `schedule`:
  policy static or dynamic: every task gets it; hybrid: a task grid's own `schedule` attribute if it
  has one, else "static" for predictable grids (every grid extent constant) and "dynamic" for the
  others (extents that depend on symbolic sizes, whose balance a compile-time schedule cannot know).
The event_tensor.task_grid and event_tensor.event_tensor ops are erased; dims and buffers stay.
Guarantees: task ids are a topological order: every counter a task waits on is signalled only by
tasks with smaller ids (a task grid that waits on an event tensor that no earlier task grid notifies
is an error), which the schedules rely on to be deadlock free. Not lowerable yet, so errors:
run-time driven event_tensor.notify / wait / trigger ops, task grids outside the function body
block, maps of the wrong arity, event operands not made by event_tensor.event_tensor.

Before:
  %e = "event_tensor.event_tensor"(%b) {name = "h", shape = affine_map<()[s0] -> (4)>,
         wait_count = affine_map<(d0)[s0] -> (1)>} : (index) -> !event_tensor.event
  "event_tensor.task_grid"(%b, %x, %h, %e) {name = "p", grid = affine_map<()[s0] -> (4)>,
         notify_maps = [affine_map<(d0)[s0] -> (d0)>], ...}
After (policy=hybrid):
  "sm_task.kernel"(%b, %x, %h) {sym_name = "step", num_workers = 0, block_size = 256, ...}
  %c = "sm_task.counter"(%b) {name = "h", shape = affine_map<()[s0] -> (4)>,
         target = affine_map<(d0)[s0] -> (1)>} : (index) -> !sm_task.counters
  "sm_task.task"(%b, %x, %h, %c) {id = 0, name = "p", schedule = "static",
         signal_maps = [affine_map<(d0)[s0] -> (d0)>], ...}
"""
from __future__ import annotations

from mlir import ir

from etc import event_ir
from etc import mlir_adapter as mlir
from etc.passes.base import Option, Pass

POLICIES = ("static", "dynamic", "hybrid")
SCHEDULES = ("static", "dynamic")
RUNTIME_DRIVEN = ("event_tensor.notify", "event_tensor.wait", "event_tensor.trigger")


class LowerToSmTask(Pass):
    NAME = "etc-lower-to-sm-task"
    SUMMARY = "Lower event tensors to sm_task counters and task grids to tasks, each marked static or dynamic."
    OPTIONS = (
        Option("policy", str, "static", "which tasks are scheduled at compile time (static), on the GPU (dynamic), "
                                        "or by predictability (hybrid)", choices=POLICIES),
        Option("block-size", int, 256, "threads per worker block"),
    )

    def run(self, module_op) -> None:
        if self.option("block-size") <= 0:
            self.error(module_op, f"etc-lower-to-sm-task: block-size must be positive, got {self.option('block-size')}")
            return
        for func in mlir.ops_named(module_op, "func.func"):
            grids = event_ir.task_grids(func)
            if grids and self._lowerable(func, grids):
                self._lower(func, grids)

    # ------------------------------------------------------------ checks

    def _lowerable(self, func, grids: list[event_ir.TaskGrid]) -> bool:
        ok = True
        for name in RUNTIME_DRIVEN:
            for op in mlir.ops_named(func, name):
                self.error(op, f"{name} is run-time driven; etc-lower-to-sm-task does not lower it yet")
                ok = False
        if mlir.ops_named(func, "sm_task.kernel"):
            self.error(grids[0].op, f"function '{mlir.str_attr(func, 'sym_name')}' already has an sm_task.kernel")
            return False
        body = func.regions[0].blocks[0]
        events = {e.value: e for e in event_ir.event_tensors(func)}
        for op in [g.op for g in grids] + [e.op for e in events.values()]:
            if op.block != body:
                self.error(op, f"'{mlir.str_attr(op, 'name')}' is not in the function body block; "
                               "etc-lower-to-sm-task lowers straight-line functions only")
                ok = False
        for event in events.values():
            ok &= self._check(event.op, event_ir.map_problem(event.shape, "shape", 0, len(event.dims)))
            ok &= self._check(event.op, event_ir.map_problem(event.wait_count, "wait_count", event.rank,
                                                             len(event.dims), results=1))
        notifiers: dict[ir.Value, list[int]] = {}
        for index, grid in enumerate(grids):
            for value in grid.notifies:
                notifiers.setdefault(value, []).append(index)
        for index, grid in enumerate(grids):
            ok &= self._check_grid(grid, events)
            for value in grid.waits:
                event = events.get(value)
                if event is None:
                    continue  # reported by _check_grid
                later = [grids[i].name for i in notifiers.get(value, []) if i >= index]
                if later:
                    self.error(grid.op, f"task grid '{grid.name}' waits on event tensor '{event.name}', which task "
                                        f"grid '{later[0]}' notifies at or after it; task grids must be in "
                                        "topological order")
                    ok = False
                elif not notifiers.get(value):
                    self.error(grid.op, f"task grid '{grid.name}' waits on event tensor '{event.name}', which no "
                                        "earlier task grid notifies")
                    ok = False
            if self.option("policy") == "hybrid" and "schedule" in grid.op.attributes:
                wanted = mlir.attr_value(grid.op, "schedule")
                if wanted not in SCHEDULES:
                    self.error(grid.op, f"task grid '{grid.name}' has schedule {wanted!r}; expected \"static\" or "
                                        "\"dynamic\"")
                    ok = False
        return ok

    def _check_grid(self, grid: event_ir.TaskGrid, events: dict) -> bool:
        n_syms = len(grid.dims)
        ok = self._check(grid.op, event_ir.map_problem(grid.grid, "grid", 0, n_syms)
                         or event_ir.extent_problem(grid.grid, "grid"))
        for label, values, maps in (("wait", grid.waits, grid.wait_maps), ("notify", grid.notifies, grid.notify_maps)):
            if len(values) != len(maps):
                self.error(grid.op, f"task grid '{grid.name}' has {len(values)} {label} event tensors but "
                                    f"{len(maps)} {label}_maps")
                ok = False
                continue
            for value, m in zip(values, maps):
                event = events.get(value)
                if event is None:
                    self.error(grid.op, f"event operand {value.get_name()} of task grid '{grid.name}' is not made "
                                        "by event_tensor.event_tensor in this function")
                    ok = False
                    continue
                ok &= self._check(grid.op, event_ir.map_problem(m, f"{label}_maps", grid.rank, n_syms, event.rank))
        return ok

    def _check(self, op, problem: str | None) -> bool:
        if problem is not None:
            self.error(op, problem)
        return problem is None

    # ------------------------------------------------------------ rewriting

    def _lower(self, func, grids: list[event_ir.TaskGrid]) -> None:
        ctx = func.context
        body = func.regions[0].blocks[0]
        end = list(body.operations)[-1]  # the terminator: everything the new ops use is defined above it
        events = event_ir.event_tensors(func)
        dims = [op.results[0] for op in mlir.ops_named(func, "event_tensor.dim")]
        buffers = [op.results[0] for op in mlir.ops_named(func, "event_tensor.buffer")]
        with ctx:
            mlir.create_op("sm_task.kernel", before=end, operand_groups=[dims, buffers], loc=func.location,
                           attributes={"sym_name": mlir.python_to_attr(mlir.str_attr(func, "sym_name")),
                                       "num_workers": mlir.python_to_attr(0),
                                       "block_size": mlir.python_to_attr(self.option("block-size"))})
            counter_type = mlir.parse_type("!sm_task.counters", ctx)
            counters = {}
            for event in events:
                attrs = event.op.attributes
                counter = mlir.create_op("sm_task.counter", before=end, operand_groups=[event.dims],
                                         result_types=[counter_type], loc=event.op.location,
                                         attributes={"name": attrs["name"], "shape": attrs["shape"],
                                                     "target": attrs["wait_count"]})
                counters[event.value] = counter.results[0]
            for task_id, grid in enumerate(grids):
                attrs = grid.op.attributes
                mlir.create_op(
                    "sm_task.task", before=end, loc=grid.op.location,
                    operand_groups=[grid.dims, grid.reads, grid.writes, [counters[v] for v in grid.waits],
                                    [counters[v] for v in grid.notifies]],
                    attributes={"id": mlir.python_to_attr(task_id), "name": attrs["name"], "kind": attrs["kind"],
                                "grid": attrs["grid"], "wait_maps": attrs["wait_maps"],
                                "signal_maps": attrs["notify_maps"], "params": attrs["params"],
                                "schedule": mlir.python_to_attr(self._schedule(grid))})
        for grid in grids:
            grid.op.erase()
        for event in events:
            event.op.erase()

    def _schedule(self, grid: event_ir.TaskGrid) -> str:
        policy = self.option("policy")
        if policy != "hybrid":
            return policy
        if "schedule" in grid.op.attributes:
            return mlir.attr_value(grid.op, "schedule")
        predictable = all(mlir.is_constant(e) for e in grid.grid.results)
        return "static" if predictable else "dynamic"
