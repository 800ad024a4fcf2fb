"""What a schedule is estimated to do at given sizes: work per worker, critical path, imbalance.

    summary = summarize(SmTaskProgram.of(module_op), {"batch": 1, "kv_len": 1024})
    print(summary.format())

Per-tile times come from etc.cost_model with the kernel's worker count as the machine's SM count.
- Worker load: the summed time of the static tiles in its queue at these sizes.
- Critical path: the latest estimated tile finish, where a tile starts when every tile signalling
  a counter element it waits on has finished and, for a static tile, when the tile before it in its
  worker's queue has finished. Dynamic tiles start as soon as they are ready (as if a worker were
  always idle), so with dynamic tasks this is a lower bound.
- Load imbalance: max / mean worker load, where dynamic work is spread evenly over the workers:
  mean = (static + dynamic load) / workers, max = max(largest static load, mean). 1.0 is perfect.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Mapping

from etc import cost_model
from etc import mlir_adapter as mlir
from etc.errors import EtcError
from etc.sm_task_ir import SmTaskProgram, schedule_problems, symbol_values


@dataclasses.dataclass(frozen=True)
class WorkerLoad:
    worker: int
    tasks: int  # tasks with at least one tile on this worker at these sizes
    tiles: int
    load_us: float


@dataclasses.dataclass
class ScheduleSummary:
    kernel: str
    sizes: dict[str, int]
    num_workers: int
    workers: list[WorkerLoad]  # every worker, in order
    dynamic_tasks: int
    dynamic_tiles: int
    dynamic_load_us: float
    critical_path_us: float
    imbalance: float

    def format(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items()) or "none"
        lines = [f"schedule of kernel '{self.kernel}': {self.num_workers} workers, sizes {sizes}",
                 f"{'worker':>6}  {'tasks':>5}  {'tiles':>6}  {'load_us':>10}"]
        busy = [w for w in self.workers if w.tiles]
        for w in busy:
            lines.append(f"{w.worker:>6}  {w.tasks:>5}  {w.tiles:>6}  {w.load_us:>10.3f}")
        if len(busy) < self.num_workers:
            lines.append(f"workers without static tiles: {self.num_workers - len(busy)}")
        lines.append(f"dynamic: {self.dynamic_tasks} tasks, {self.dynamic_tiles} tiles, "
                     f"{self.dynamic_load_us:.3f} us of work")
        lines.append(f"estimated critical path: {self.critical_path_us:.3f} us")
        lines.append(f"load imbalance (max/mean worker load): {self.imbalance:.3f}")
        return "\n".join(lines)


def summarize(program: SmTaskProgram, sizes: Mapping[str, int] | None = None,
              machine: cost_model.Machine | None = None) -> ScheduleSummary:
    """The summary at `sizes` (missing ones: representative sizes); EtcError for an unscheduled program."""
    num_workers = program.kernel.num_workers
    if num_workers < 1:
        raise EtcError(f"kernel '{program.kernel.name}' is not scheduled (num_workers = {num_workers})")
    problems = schedule_problems(program)
    if problems:
        raise EtcError(f"{mlir.format_location(problems[0][0].location)}: {problems[0][1]}")
    sizes = cost_model.representative_sizes(program.dims, sizes)
    machine = machine or cost_model.Machine(num_sms=num_workers)
    buffers = {b.name: b for b in program.buffers}
    owner: dict[tuple[int, int], int] = {}  # (task id, tile) -> worker
    tiles_of = {t.id: t.tile_count(sizes) for t in program.tasks}
    for worker, entries in program.static_queues.items():
        for entry in entries:
            for tile in entry.tiles(tiles_of.get(entry.task, 0)):
                owner[(entry.task, tile)] = worker

    loads = {w: [0, 0, 0.0] for w in range(num_workers)}  # tasks, tiles, load
    worker_free = [0.0] * num_workers
    element_done: dict[tuple[str, tuple[int, ...]], float] = {}
    dynamic_tasks = dynamic_tiles = 0
    dynamic_load = critical = 0.0
    for task in sorted(program.tasks, key=lambda t: t.id):
        syms = symbol_values(task.symbols, sizes)
        tile_us = cost_model.tile_cost(task, buffers, sizes).time_us(machine)
        waits = [(name, mlir.compile_map(m)) for name, m in zip(task.waits, task.wait_maps)]
        signals = [(name, mlir.compile_map(m)) for name, m in zip(task.signals, task.signal_maps)]
        dynamic = task.schedule == "dynamic"
        dynamic_tasks += dynamic
        workers_used = set()
        finished: list[tuple[tuple[int, ...], float]] = []
        for index, coords in enumerate(itertools.product(*(range(n) for n in task.grid_extents(sizes)))):
            ready = max((element_done.get((name, f(coords, syms)), 0.0) for name, f in waits), default=0.0)
            if dynamic:
                dynamic_tiles += 1
                dynamic_load += tile_us
                end = ready + tile_us
            else:
                worker = owner.get((task.id, index))
                if worker is None or worker >= num_workers:
                    raise EtcError(f"tile {index} of task '{task.name}' (id {task.id}) is in no static queue "
                                   f"of the {num_workers} workers")
                end = max(ready, worker_free[worker]) + tile_us
                worker_free[worker] = end
                loads[worker][1] += 1
                loads[worker][2] += tile_us
                workers_used.add(worker)
            finished.append((coords, end))
            critical = max(critical, end)
        # Signals land after the whole task is enumerated: a task never waits on itself.
        for coords, end in finished:
            for name, f in signals:
                key = (name, f(coords, syms))
                element_done[key] = max(element_done.get(key, 0.0), end)
        for worker in workers_used:
            loads[worker][0] += 1

    workers = [WorkerLoad(w, *loads[w]) for w in range(num_workers)]
    mean = (sum(w.load_us for w in workers) + dynamic_load) / num_workers
    peak = max(max(w.load_us for w in workers), mean)
    return ScheduleSummary(program.kernel.name, sizes, num_workers, workers, dynamic_tasks, dynamic_tiles,
                           dynamic_load, critical, peak / mean if mean > 0 else 1.0)
