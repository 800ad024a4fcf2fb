"""etc-dynamic-schedule: put the dynamic tasks on the device-side ready queue.

Matches: every func.func holding an sm_task.kernel with at least one task whose `schedule` is
"dynamic" (a kernel without dynamic tasks is left alone). Runs after etc-static-schedule, which sets
the kernel's worker count. Options: `early-push` (default false), `capacity` (0 = derive).
Produces: one `sm_task.ready_queue {capacity, tasks = array<i64: ids of the dynamic tasks>,
early_push}`. Derived capacity: the number of dynamic tiles in one step at the declared max sizes
(grid extents grow with the sizes); each tile is pushed once per step, so a push never finds the
queue full. An explicit capacity is used as given.
Semantics at run time:
- A dynamic tile is pushed when every counter element it waits on reached its target (tiles with no
  waits are pushed at kernel start); idle workers pop tiles and run them, no waiting needed.
- With early-push, a tile is pushed once every producer tile that signals the elements it waits on
  has been dispatched (popped or started); after the pop it spins on its counters. That hides the
  push latency behind the producers' run time.
- In hybrid mode a worker runs its static queue in order and, whenever its next static tile is not
  ready or its queue is done, pops ready dynamic tiles instead of spinning.
Guarantees: no deadlock. Without early-push a popped tile never waits, and a static tile is only
started when ready, so workers never block; the unfinished tile first in (task id, tile index) order
has all its producers finished (they have smaller ids), so it is either pushed (dynamic) or at the
head of its static queue and ready: someone runs it. With early-push, a popped tile waits only on
producers that were already dispatched, i.e. running on other workers or done; the lowest-id
dispatched unfinished tile therefore has all its producers done and finishes.
Errors: a kernel without a worker count (run etc-static-schedule first), one that already has a
ready queue, capacity < 0, a task without a valid `schedule`, a wait that breaks the id order, a
dynamic task waiting on a counter that no tile signals at the smallest sizes (it would never be pushed).

Before:
  "sm_task.task"(...) {id = 0 : i64, grid = affine_map<()[s0] -> (s0)>, schedule = "dynamic", ...}
  (the symbolic size s0 is "batch" with max = 64)
After:
  "sm_task.ready_queue"() {capacity = 64 : i64, early_push = false, tasks = array<i64: 0>} : () -> ()
"""
from __future__ import annotations

from etc import mlir_adapter as mlir
from etc.errors import EtcError
from etc.passes.base import Option, Pass
from etc.sm_task_ir import SmTaskProgram, schedule_problems


def never_released(program: SmTaskProgram) -> list:
    """Dynamic tasks waiting on a counter whose target is 0 at the smallest sizes (a producer grid with no
    tiles then, e.g. the per-batch attention merge at one row): no signal would ever push their tiles."""
    counters = {c.name: c for c in program.counters}
    problems = []
    for task in program.tasks:
        if task.schedule != "dynamic":
            continue
        for name in task.waits:
            c = counters.get(name)
            if c is not None and not program.always_signalled(c):
                problems.append((task.op, f"task '{task.name}' (id {task.id}) waits on counter '{name}', which no tile "
                                          "signals at the smallest sizes: the ready queue would never push it "
                                          "(schedule it statically)"))
    return problems


def derived_capacity(program: SmTaskProgram) -> int:
    """Dynamic tiles in one step at the declared max sizes."""
    sizes = program.default_sizes()
    return sum(t.tile_count(sizes) for t in program.tasks if t.schedule == "dynamic")


class DynamicSchedule(Pass):
    NAME = "etc-dynamic-schedule"
    SUMMARY = "Put the dynamic tasks on the device-side ready queue (tiles pushed when ready, popped by idle workers)."
    OPTIONS = (
        Option("early-push", bool, False, "push a tile once its producers are dispatched; it spins after the pop"),
        Option("capacity", int, 0, "ready queue slots; 0 derives the dynamic tiles of one step at max sizes"),
    )

    def run(self, module_op) -> None:
        for kernel in mlir.ops_named(module_op, "sm_task.kernel"):
            self._schedule(kernel)

    def _schedule(self, kernel) -> None:
        func = kernel.parent
        try:
            program = SmTaskProgram.of_func(func)
        except EtcError as e:
            self.error(kernel, str(e))
            return
        dynamic = [t.id for t in sorted(program.tasks, key=lambda t: t.id) if t.schedule == "dynamic"]
        if not dynamic:
            return
        if program.ready_queue is not None:
            self.error(kernel, f"kernel '{program.kernel.name}' already has a ready queue")
            return
        if program.kernel.num_workers < 1:
            self.error(kernel, f"kernel '{program.kernel.name}' has no workers yet; run etc-static-schedule "
                               "(it sets num_workers) before etc-dynamic-schedule")
            return
        capacity = self.option("capacity")
        if capacity < 0:
            self.error(kernel, f"etc-dynamic-schedule: capacity must be >= 0, got {capacity}")
            return
        if self.report(schedule_problems(program) + never_released(program)):
            return
        end = list(func.regions[0].blocks[0].operations)[-1]
        with kernel.context:
            mlir.create_op("sm_task.ready_queue", before=end, loc=kernel.location, attributes={
                "capacity": mlir.python_to_attr(capacity or max(derived_capacity(program), 1)),
                "tasks": mlir.i64_array_attr(dynamic),
                "early_push": mlir.python_to_attr(bool(self.option("early-push")))})
