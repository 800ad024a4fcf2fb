"""etc-static-schedule: assign the tiles of static tasks to per-worker queues at compile time.

Matches: every func.func holding an sm_task.kernel (from etc-lower-to-sm-task). Options: `num-sms`
(workers = resident blocks, one per SM), `sizes` (representative sizes for the cost model, e.g.
"batch=4,kv_len=2048"; default batch=1, other sizes min(max, 1024)).
Produces: `num_workers = num-sms` on the kernel, and one `sm_task.static_queue {worker = w, entries =
array<i64: task, first, stride, ...>}` per worker with work: worker w runs tiles first, first + stride,
first + 2 * stride, ... (< the task's tile count at run-time sizes, tiles numbered row-major over the
grid) of each listed task, in list order. A task given to k workers has worker j of them at first = j,
stride = k, so the queues are parametric: they cover every tile exactly once at any size in the
declared range. Dynamic tasks get no static entries (etc-dynamic-schedule queues them).
How: list scheduling in task id order with the cost model (etc.cost_model) at representative sizes.
A task becomes ready when its producers (the tasks signalling the counters it waits on) are estimated
to finish; it gets the k workers that can start it earliest, k chosen to minimize its estimated
finish time (ties: fewer workers), and the earlier-starting workers take the extra tiles. A task whose
tile count grows with the sizes (attention's rows and KV chunks) then gets the other workers too, after
those k (earliest-starting first): where it has at most k tiles at the representative sizes they stay
where the cost model put them (the extra workers' first tiles are past the count), and at larger sizes
they spread over every worker instead of piling onto k of them (Llama-3.2-1B at batch 16 had its 1024
attention tiles on 64 of 132 SMs).
Guarantees: every static tile is in exactly one queue, and every queue lists tasks in increasing id
order, which is topological. That makes deadlock impossible: take the unfinished tile that is first
in (task id, tile index) order. Its producers have smaller ids, so they are finished; the entries
before it in its worker's queue are smaller in that order, so they are finished too: it is at the
head of its queue with its waits met, and runs. (Dynamic tiles it waits on are pushed or popped
without ever waiting on a later static tile: see etc-dynamic-schedule.)
Errors: a task without a valid `schedule`, duplicate ids, a wait on a counter that no task with a
smaller id signals, a kernel that already has static queues, num-sms < 1, malformed sizes.

Before (num-sms=2):
  "sm_task.kernel"(...) {num_workers = 0 : i64, ...}
  "sm_task.task"(...) {id = 0 : i64, grid = affine_map<() -> (3)>, schedule = "static", ...}
After:
  "sm_task.kernel"(...) {num_workers = 2 : i64, ...}
  "sm_task.static_queue"() {entries = array<i64: 0, 0, 2>, worker = 0 : i64} : () -> ()
  "sm_task.static_queue"() {entries = array<i64: 0, 1, 2>, worker = 1 : i64} : () -> ()
"""
from __future__ import annotations

import dataclasses

from etc import cost_model
from etc import mlir_adapter as mlir
from etc.errors import EtcError
from etc.passes.base import Option, Pass
from etc.sm_task_ir import QueueEntry, SmTaskProgram, schedule_problems


@dataclasses.dataclass
class Placement:
    """Where one static task went: workers[j] runs tiles j, j + k, ... (k = len(workers))."""
    workers: list[int]
    finish_us: float


def plan(program: SmTaskProgram, num_workers: int, sizes: dict[str, int],
         machine: cost_model.Machine) -> tuple[dict[int, list[QueueEntry]], dict[int, Placement]]:
    """The static queues (worker -> entries) and each static task's placement, by list scheduling."""
    buffers = {b.name: b for b in program.buffers}
    signallers: dict[str, list[int]] = {}
    for task in program.tasks:
        for name in task.signals:
            signallers.setdefault(name, []).append(task.id)
    maxima = program.default_sizes()
    free_at = [0.0] * num_workers  # estimated time each worker finishes its queue so far
    finish: dict[int, float] = {}
    queues: dict[int, list[QueueEntry]] = {}
    placements: dict[int, Placement] = {}
    for task in sorted(program.tasks, key=lambda t: t.id):
        ready = max((finish[p] for name in task.waits for p in signallers.get(name, []) if p in finish), default=0.0)
        tiles = task.tile_count(sizes)
        tile_us = cost_model.tile_cost(task, buffers, sizes).time_us(machine)
        if task.schedule != "static":
            # A dynamic task spreads over whichever workers are idle: assume all of them.
            finish[task.id] = ready + -(-tiles // num_workers) * tile_us
            continue
        placement = _place(free_at, ready, tiles, tile_us)
        if task.tile_count(maxima) > tiles:
            placement = _spread(placement, free_at, ready, tiles, tile_us)
        k = len(placement.workers)
        for j, worker in enumerate(placement.workers):
            queues.setdefault(worker, []).append(QueueEntry(task.id, j, k))
            share = len(range(j, tiles, k))
            free_at[worker] = max(free_at[worker], ready) + share * tile_us
        finish[task.id] = placement.finish_us
        placements[task.id] = placement
    return queues, placements


def _place(free_at: list[float], ready: float, tiles: int, tile_us: float) -> Placement:
    """The k workers that start earliest, k minimizing the estimated finish of `tiles` tiles."""
    order = sorted(range(len(free_at)), key=lambda w: (max(free_at[w], ready), w))
    start = [max(free_at[w], ready) for w in order]
    best_k, best = 1, None
    for k in range(1, max(1, min(tiles, len(order))) + 1):
        q, r = divmod(tiles, k)
        # Starts are ascending: the latest finish is the last worker with q + 1 tiles or the last one.
        end = start[k - 1] + q * tile_us
        if r:
            end = max(end, start[r - 1] + (q + 1) * tile_us)
        if best is None or end < best - 1e-9:
            best_k, best = k, end
    return Placement(order[:best_k], best)


def _spread(placement: Placement, free_at: list[float], ready: float, tiles: int, tile_us: float) -> Placement:
    """The placement's workers, then every other one (earliest start first), with the finish estimate of
    `tiles` tiles dealt over all of them."""
    rest = sorted((w for w in range(len(free_at)) if w not in placement.workers),
                  key=lambda w: (max(free_at[w], ready), w))
    workers = placement.workers + rest
    k = len(workers)
    finish = max(max(free_at[w], ready) + len(range(j, tiles, k)) * tile_us for j, w in enumerate(workers))
    return Placement(workers, finish)


class StaticSchedule(Pass):
    NAME = "etc-static-schedule"
    SUMMARY = "Assign the tiles of static tasks to parametric per-worker queues by list scheduling with a cost model."
    OPTIONS = (
        Option("num-sms", int, 132, "workers: one resident block per SM"),
        Option("sizes", str, "", "representative sizes for the cost model, e.g. batch=1,kv_len=1024 "
                                 "(default: batch=1, others min(max, 1024))"),
    )

    def run(self, module_op) -> None:
        for kernel in mlir.ops_named(module_op, "sm_task.kernel"):
            self._schedule(kernel)

    def _schedule(self, kernel) -> None:
        func = kernel.parent
        num_sms = self.option("num-sms")
        if num_sms < 1:
            self.error(kernel, f"etc-static-schedule: num-sms must be at least 1, got {num_sms}")
            return
        try:
            program = SmTaskProgram.of_func(func)
        except EtcError as e:
            self.error(kernel, str(e))
            return
        if program.static_queues:
            self.error(kernel, f"kernel '{program.kernel.name}' already has static queues")
            return
        if self.report(schedule_problems(program)):
            return
        try:
            sizes = cost_model.representative_sizes(program.dims, cost_model.parse_sizes(self.option("sizes")))
        except EtcError as e:
            self.error(kernel, f"etc-static-schedule: {e}")
            return
        machine = cost_model.Machine(num_sms=num_sms)
        queues, _ = plan(program, num_sms, sizes, machine)
        end = list(func.regions[0].blocks[0].operations)[-1]
        with kernel.context:
            mlir.set_attr(kernel, "num_workers", mlir.python_to_attr(num_sms))
            for worker in sorted(queues):
                flat = [v for e in queues[worker] for v in (e.task, e.first, e.stride)]
                mlir.create_op("sm_task.static_queue", before=end, loc=kernel.location,
                               attributes={"worker": mlir.python_to_attr(worker), "entries": mlir.i64_array_attr(flat)})

