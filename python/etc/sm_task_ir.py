"""Read-only view of scheduled sm_task IR as plain Python data.

    program = SmTaskProgram.of(module_op)   # the builtin.module; exactly one func holds an sm_task.kernel
    program.tasks[0].grid_extents({"batch": 2, "kv_len": 100})

For executors (the CPU reference), the schedule summary and tests. Affine maps stay ir.AffineMap;
evaluate them with `mlir_adapter.compile_map` / `eval_map`, with symbols given in the order of the
owning op's `symbols` (its `dims` operands). The program keeps the module alive: dropping the parent
would free the ops that the maps and `func` point into.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, NamedTuple

from mlir import ir

from etc import mlir_adapter as mlir
from etc.errors import EtcError

TASK_GROUPS = ("dims", "reads", "writes", "waits", "signals")
KERNEL_GROUPS = ("dims", "buffers")


@dataclasses.dataclass(frozen=True)
class Dim:
    name: str
    min: int
    max: int


@dataclasses.dataclass
class Buffer:
    name: str
    role: str
    element_type: str  # "bf16", "f32", "i64", ...
    sizes: ir.AffineMap  # ()[symbols] -> (extents)
    symbols: list[str]
    output_index: int | None

    def shape(self, sizes: Mapping[str, int]) -> tuple[int, ...]:
        return mlir.eval_map(self.sizes, (), symbol_values(self.symbols, sizes))


@dataclasses.dataclass
class Counter:
    name: str
    shape: ir.AffineMap  # ()[symbols] -> (extents)
    target: ir.AffineMap  # (coords)[symbols] -> (signals per step)
    symbols: list[str]

    def extents(self, sizes: Mapping[str, int]) -> tuple[int, ...]:
        return mlir.eval_map(self.shape, (), symbol_values(self.symbols, sizes))


@dataclasses.dataclass
class Task:
    id: int
    name: str
    kind: str
    grid: ir.AffineMap  # ()[symbols] -> (extents)
    symbols: list[str]
    reads: list[str]  # buffer names
    writes: list[str]
    waits: list[str]  # counter names
    signals: list[str]
    wait_maps: list[ir.AffineMap]  # (tile coords)[symbols] -> (counter coords)
    signal_maps: list[ir.AffineMap]
    params: dict
    schedule: str | None  # "static" | "dynamic", None before etc-lower-to-sm-task set it
    op: ir.Operation

    def grid_extents(self, sizes: Mapping[str, int]) -> tuple[int, ...]:
        return mlir.eval_map(self.grid, (), symbol_values(self.symbols, sizes))

    def tile_count(self, sizes: Mapping[str, int]) -> int:
        count = 1
        for extent in self.grid_extents(sizes):
            count *= max(extent, 0)
        return count


class QueueEntry(NamedTuple):
    """Worker runs tiles first, first + stride, ... (< the task's tile count) of task `task`, row-major.
    A tuple (task, first, stride)."""
    task: int
    first: int
    stride: int

    def tiles(self, tile_count: int) -> range:
        return range(self.first, tile_count, self.stride)


@dataclasses.dataclass(frozen=True)
class ReadyQueue:
    capacity: int
    tasks: list[int]
    early_push: bool


@dataclasses.dataclass(frozen=True)
class Kernel:
    name: str
    num_workers: int
    block_size: int
    op: ir.Operation


@dataclasses.dataclass
class SmTaskProgram:
    module: object  # keeps the IR alive
    func: ir.Operation
    kernel: Kernel
    dims: list[Dim]
    buffers: list[Buffer]
    counters: list[Counter]
    tasks: list[Task]  # in op order (= id order after etc-lower-to-sm-task)
    static_queues: dict[int, list[QueueEntry]]  # worker -> entries, in run order
    ready_queue: ReadyQueue | None

    @classmethod
    def of(cls, module_op) -> "SmTaskProgram":
        """The program of the one func that holds an sm_task.kernel; EtcError if there is not exactly one."""
        kernels = mlir.ops_named(module_op, "sm_task.kernel")
        if len(kernels) != 1:
            raise EtcError(f"expected exactly one sm_task.kernel in the module, found {len(kernels)}")
        return cls.of_func(kernels[0].parent, module=module_op)

    @classmethod
    def of_func(cls, func_op, module=None) -> "SmTaskProgram":
        """The program held by one func.func (which must hold one sm_task.kernel)."""
        func_op = func_op.operation
        ops = {name: mlir.ops_named(func_op, name) for name in (
            "event_tensor.dim", "event_tensor.buffer", "sm_task.kernel", "sm_task.counter", "sm_task.task",
            "sm_task.static_queue", "sm_task.ready_queue")}
        if len(ops["sm_task.kernel"]) != 1:
            raise EtcError(f"expected one sm_task.kernel in the function, found {len(ops['sm_task.kernel'])}")
        k = ops["sm_task.kernel"][0]
        kernel = Kernel(mlir.str_attr(k, "sym_name"), mlir.int_attr(k, "num_workers"), mlir.int_attr(k, "block_size"), k)
        dims = [Dim(mlir.str_attr(op, "name"), mlir.int_attr(op, "min"), mlir.int_attr(op, "max"))
                for op in ops["event_tensor.dim"]]
        buffers = [Buffer(mlir.str_attr(op, "name"), mlir.str_attr(op, "role"), mlir.attr_value(op, "element_type"),
                          mlir.map_attr(op, "sizes"), value_names(op.operands), mlir.attr_value(op, "output_index"))
                   for op in ops["event_tensor.buffer"]]
        counters = [Counter(mlir.str_attr(op, "name"), mlir.map_attr(op, "shape"), mlir.map_attr(op, "target"),
                            value_names(op.operands)) for op in ops["sm_task.counter"]]
        tasks = [task_of(op) for op in ops["sm_task.task"]]
        queues: dict[int, list[QueueEntry]] = {}
        for op in ops["sm_task.static_queue"]:
            flat = mlir.attr_value(op, "entries")
            if len(flat) % 3:
                raise EtcError(f"sm_task.static_queue entries must be (task, first, stride) triples, got {len(flat)} values")
            queues[mlir.int_attr(op, "worker")] = [QueueEntry(*flat[i:i + 3]) for i in range(0, len(flat), 3)]
        ready = None
        if ops["sm_task.ready_queue"]:
            r = ops["sm_task.ready_queue"][0]
            ready = ReadyQueue(mlir.int_attr(r, "capacity"), mlir.attr_value(r, "tasks"),
                               bool(mlir.attr_value(r, "early_push", False)))
        return cls(module if module is not None else func_op.parent, func_op, kernel, dims, buffers, counters,
                   tasks, dict(sorted(queues.items())), ready)

    # ------------------------------------------------------------ lookups

    def task(self, task_id: int) -> Task:
        return self._tasks_by_id()[task_id]

    def buffer(self, name: str) -> Buffer:
        return next(b for b in self.buffers if b.name == name)

    def counter(self, name: str) -> Counter:
        return next(c for c in self.counters if c.name == name)

    def body_func(self, symbol: str) -> ir.Operation | None:
        """A func.func of the module by symbol name (elementwise tile bodies are private funcs)."""
        name = symbol.lstrip("@")
        root = self.module.operation if self.module is not None else self.func.parent
        for op in mlir.ops_named(root, "func.func"):
            if mlir.str_attr(op, "sym_name") == name:
                return op
        return None

    def default_sizes(self) -> dict[str, int]:
        """Every symbolic size at its max (for bounds)."""
        return {d.name: d.max for d in self.dims}

    def always_signalled(self, counter: Counter) -> bool:
        """Whether the counter's target (at element 0) is positive at the smallest sizes, so some tile signals
        it in every step (counts grow with the sizes); False for a producer grid that can have no tiles, e.g.
        the per-batch attention merge at one row."""
        smallest = {d.name: d.min for d in self.dims}
        return mlir.eval_map(counter.target, [0] * counter.target.n_dims, [smallest[s] for s in counter.symbols])[0] > 0

    def _tasks_by_id(self) -> dict[int, Task]:
        return {t.id: t for t in self.tasks}


def task_of(op) -> Task:
    g = mlir.operand_groups(op, TASK_GROUPS)
    return Task(mlir.int_attr(op, "id"), mlir.str_attr(op, "name"), mlir.str_attr(op, "kind"), mlir.map_attr(op, "grid"),
                value_names(g["dims"]), value_names(g["reads"]), value_names(g["writes"]), value_names(g["waits"]),
                value_names(g["signals"]), mlir.map_list_attr(op, "wait_maps"), mlir.map_list_attr(op, "signal_maps"),
                mlir.attr_value(op, "params", {}), mlir.attr_value(op, "schedule"), op.operation)


def value_names(values) -> list[str]:
    """The `name` attribute of the ops defining values (dims, buffers, counters); the SSA name otherwise."""
    names = []
    for value in values:
        owner = value.owner
        if isinstance(owner, ir.OpView) and "name" in owner.operation.attributes:
            names.append(mlir.str_attr(owner, "name"))
        else:
            names.append(value.get_name())
    return names


def symbol_values(symbols: list[str], sizes: Mapping[str, int]) -> tuple[int, ...]:
    """The values of an op's symbols, in order, from a name -> size mapping."""
    try:
        return tuple(sizes[s] for s in symbols)
    except KeyError as e:
        raise EtcError(f"no size given for symbolic size {e.args[0]!r}") from None


def schedule_problems(program: SmTaskProgram) -> list[tuple[ir.Operation, str]]:
    """Why the tasks cannot be scheduled, as (op, message) pairs: duplicate ids, a missing or unknown
    `schedule`, malformed grid or map arities, or a wait on a counter that no task with a smaller id
    signals (task ids must be a topological order for the queues to be deadlock free)."""
    from etc import event_ir  # map checks shared with the event_tensor passes

    problems = []
    seen: dict[int, str] = {}
    signallers: dict[str, list[Task]] = {}
    for task in program.tasks:
        for name in task.signals:
            signallers.setdefault(name, []).append(task)
    counters = {c.name: c for c in program.counters}
    buffers = {b.name for b in program.buffers}
    for task in program.tasks:
        where = f"task '{task.name}' (id {task.id})"
        for name in task.reads + task.writes:
            if name not in buffers:
                problems.append((task.op, f"{where} uses {name}, which is not an event_tensor.buffer of its function"))
        for name in task.waits + task.signals:
            if name not in counters:
                problems.append((task.op, f"{where} uses {name}, which is not an sm_task.counter of its function"))
        if task.id in seen:
            problems.append((task.op, f"{where} has the same id as task '{seen[task.id]}'"))
        seen[task.id] = task.name
        if task.schedule is None:
            problems.append((task.op, f"{where} has no schedule attribute (etc-lower-to-sm-task sets it)"))
        elif task.schedule not in ("static", "dynamic"):
            problems.append((task.op, f"{where} has schedule {task.schedule!r}, expected \"static\" or \"dynamic\""))
        problem = (event_ir.map_problem(task.grid, "grid", 0, len(task.symbols))
                   or event_ir.extent_problem(task.grid, "grid"))
        for label, names, maps in (("wait", task.waits, task.wait_maps), ("signal", task.signals, task.signal_maps)):
            if len(names) != len(maps):
                problem = problem or f"{where} has {len(names)} {label} counters but {len(maps)} {label}_maps"
            for name, m in zip(names, maps):
                rank = len(counters[name].shape.results) if name in counters else len(m.results)
                problem = problem or event_ir.map_problem(m, f"{label}_maps", len(task.grid.results),
                                                          len(task.symbols), rank)
        if problem:
            problems.append((task.op, problem))
        for name in task.waits:
            late = [s for s in signallers.get(name, []) if s.id >= task.id]
            if late:
                problems.append((task.op, f"{where} waits on counter '{name}', which task '{late[0].name}' (id "
                                          f"{late[0].id}) signals; task ids must be a topological order"))
            elif not signallers.get(name):
                problems.append((task.op, f"{where} waits on counter '{name}', which no task signals"))
    return problems + _queue_problems(program)


def _queue_problems(program: SmTaskProgram) -> list[tuple[ir.Operation, str]]:
    """Queues that name unknown or wrongly scheduled tasks, bad strides, or workers the kernel lacks."""
    kernel = program.kernel
    schedule = {t.id: t.schedule for t in program.tasks}
    problems = []
    for worker, entries in program.static_queues.items():
        if not 0 <= worker < kernel.num_workers:
            problems.append((kernel.op, f"static queue of worker {worker}, but the kernel has {kernel.num_workers} workers"))
        for e in entries:
            if schedule.get(e.task) != "static" or e.first < 0 or e.stride < 1:
                problems.append((kernel.op, f"static queue of worker {worker}: entry (task {e.task}, first {e.first}, "
                                            f"stride {e.stride}) needs a static task, first >= 0 and stride >= 1"))
    if program.ready_queue is not None:
        for task_id in program.ready_queue.tasks:
            if schedule.get(task_id) != "dynamic":
                problems.append((kernel.op, f"the ready queue lists task {task_id}, which is not a dynamic task"))
    return problems
