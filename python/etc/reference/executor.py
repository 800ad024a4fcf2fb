"""The reference executor: runs sm_task IR on the CPU the way the persistent kernel runs it on the GPU.

    outputs = etc.reference.execute(module, {"tokens": ..., "embed.weight": ..., "k_cache.0": ...}, seed=3)

    ex = Executor(module, workers=4)         # counters live as long as the executor: decode steps
    ex.step(args_1); ex.step(args_2)

Simulated workers advance one micro-step at a time in a seeded random interleaving. A tile's micro-steps
are: fetch (peek the next static queue entry, or pop the ready queue), wait (acquire: its counter
elements reached their targets), run (reads and compute; writes are staged), commit (writes become
visible) and signal. A worker whose next static tile is not ready pops ready dynamic tiles instead. A
tile of a merge group (etc.tiles.merge_group: an attention split that merges) arrives after its commit;
the group's merging tile (etc.tiles.merges_group: the split holding positions[r]) then waits, holding its
worker as the GPU's does, until the group's splits before it have arrived, runs the group's finish
(etc.reference.tiles.finish_group) and commits it before it signals.

Counters follow the GPU exactly: 64-bit, never reset; in step e (from 1) a signal is atomicMax(c, e << 32)
then atomicAdd(c, 1), and a wait needs c >= (e << 32) + target(element, sizes) (a target of 0 is met at
once). Dynamic tiles are pushed when every element they wait on is met, or, with early_push, when every
producer tile signalling those elements has been dispatched (popped, or started after its wait); they
then wait after the pop.

Races are found in the interleaving: reading a workspace/output element that no tile has committed this
step, or committing an element that another tile already read this step (a KV cache slot must be
appended before attention reads it; old cache contents, inputs and weights are valid from the start).
Buffers are therefore taken to be written at most once per step.
"""
from __future__ import annotations

import collections
import dataclasses
import random
from typing import Mapping

import numpy as np
from mlir import ir

from etc import mlir_adapter as mlir
from etc import tiles as contract
from etc.errors import EtcError
from etc.reference import elementwise
from etc.reference.numerics import round_bf16, round_f16, storage_dtype
from etc.reference.tiles import Operand, TileAccess, finish_group, roles, run_tile
from etc.sm_task_ir import SmTaskProgram

ARG_ROLES = ("input", "weight", "kv_cache")  # buffers the caller binds
TRACKED_ROLES = ("workspace", "output", "kv_cache")  # buffers tiles write, checked for races
FRESH_ROLES = ("workspace", "output")  # allocated per step: reading them before a write is a race


class DeadlockError(EtcError):
    """No worker can progress but tiles remain."""


class RaceError(EtcError):
    """A read and a write of one buffer element were not ordered by counters."""


@dataclasses.dataclass
class _Task:
    """A task with its maps compiled and its operands resolved."""
    id: int
    name: str
    kind: str
    params: dict
    symbols: list[str]
    grid: object
    reads: list[tuple[str, str]]  # (role, buffer)
    writes: list[tuple[str, str]]
    waits: list[tuple[str, object]]  # (counter, compiled map)
    signals: list[tuple[str, object]]


@dataclasses.dataclass
class _Tile:
    uid: int
    task: _Task
    coords: tuple[int, ...]
    waits: list[tuple[str, tuple]]  # counter elements
    signals: list[tuple[str, tuple]]
    dynamic: bool

    def __str__(self) -> str:
        return f"task '{self.task.name}' tile {self.coords}"


@dataclasses.dataclass
class _Worker:
    id: int
    queue: list[_Tile]
    next: int = 0
    static: _Tile | None = None  # fetched static tile whose waits are not met yet
    tile: _Tile | None = None  # tile in progress
    phase: str = ""  # "wait" | "run" | "commit" | "finish" | "signal"
    access: TileAccess | None = None
    finishing: bool = False  # the tile's group finish is staged in `access`


@dataclasses.dataclass
class _Tracked:
    """Per-element race state of one buffer in one step: tile uids, -1 for none."""
    writer: np.ndarray
    reader: np.ndarray  # the first tile that read the element
    other: np.ndarray  # some tile other than `reader` that read it


class Executor:
    """Runs decode steps of one sm_task module; counters persist across steps, as on the GPU."""

    def __init__(self, module, workers: int | None = None):
        self.module = module  # keeps the IR alive
        module_op = module.operation if hasattr(module, "operation") else module
        self.program = SmTaskProgram.of(module_op)
        p = self.program
        self.workers = workers if workers is not None else p.kernel.num_workers
        if self.workers < 1:
            raise EtcError(f"kernel '{p.kernel.name}' has num_workers = {self.workers}; pass workers=")
        for w in p.static_queues:
            if not 0 <= w < self.workers:
                raise EtcError(f"static queue of worker {w}, but there are {self.workers} workers")
        self.dims = {d.name: d for d in p.dims}
        self.buffers = {b.name: b for b in p.buffers}
        self.buffer_sizes = {b.name: mlir.compile_map(b.sizes) for b in p.buffers}
        self.counters = {c.name: c for c in p.counters}
        self.counter_shapes = {c.name: mlir.compile_map(c.shape) for c in p.counters}
        self.counter_targets = {c.name: mlir.compile_map(c.target) for c in p.counters}
        self.tasks = [self._task(t) for t in p.tasks]
        self.tasks_by_id = {t.id: t for t in self.tasks}
        self.body_of = elementwise.resolver(p.module)
        self.early_push = bool(p.ready_queue and p.ready_queue.early_push)
        self.steps = 0
        self.counter_values: dict[tuple[str, tuple], int] = {}  # counter element -> 64-bit value, never reset

    def _task(self, t) -> _Task:
        read_roles, write_roles = roles(t.kind, t.params, len(t.reads), len(t.writes))
        for name in t.reads + t.writes:
            if name not in self.buffers:
                raise EtcError(f"task '{t.name}' uses unknown buffer '{name}'")
        for name in t.writes:
            if self.buffers[name].role not in TRACKED_ROLES:
                raise EtcError(f"task '{t.name}' writes buffer '{name}' of role {self.buffers[name].role}")
        for name in t.waits + t.signals:
            if name not in self.counters:
                raise EtcError(f"task '{t.name}' uses unknown counter '{name}'")
        return _Task(t.id, t.name, t.kind, dict(t.params), t.symbols, mlir.compile_map(t.grid),
                     list(zip(read_roles, t.reads)), list(zip(write_roles, t.writes)),
                     [(c, mlir.compile_map(m)) for c, m in zip(t.waits, t.wait_maps)],
                     [(c, mlir.compile_map(m)) for c, m in zip(t.signals, t.signal_maps)])

    # ------------------------------------------------------------ one step

    def step(self, args: Mapping[str, np.ndarray], *, seed: int = 0) -> list[np.ndarray]:
        """One decode step: returns the output buffers in output_index order; kv caches update in place."""
        sizes = self._bind_sizes(args)
        arrays = self._arrays(args, sizes)
        self.steps += 1
        return _Step(self, sizes, arrays, seed).run()

    def _bind_sizes(self, args: Mapping[str, np.ndarray]) -> dict[str, int]:
        wanted = {b.name for b in self.program.buffers if b.role in ARG_ROLES}
        for name in args:
            if name not in self.buffers:
                raise EtcError(f"unknown argument '{name}': the module has no buffer of that name")
            if name not in wanted:
                raise EtcError(f"argument '{name}' is a {self.buffers[name].role} buffer, which the executor allocates")
        missing = sorted(wanted - set(args))
        if missing:
            raise EtcError(f"missing argument{'s' if len(missing) > 1 else ''} "
                           + ", ".join(f"'{m}' ({self.buffers[m].role})" for m in missing))
        sizes: dict[str, int] = {}
        where: dict[str, tuple[str, int]] = {}  # size -> (buffer, dim) it was bound from
        for b in self.program.buffers:
            if b.role not in ARG_ROLES:
                continue
            shape = np.shape(args[b.name])
            if len(shape) != len(b.sizes.results):
                raise EtcError(f"argument '{b.name}' has {len(shape)} dims, expected {len(b.sizes.results)}")
            for d, expr in enumerate(b.sizes.results):
                expr = mlir.downcast(expr)
                if not isinstance(expr, ir.AffineSymbolExpr):
                    continue
                sym = b.symbols[expr.position]
                if sym in sizes and sizes[sym] != shape[d]:
                    raise EtcError(f"argument '{b.name}' dim {d} ({sym}): expected {sizes[sym]} "
                                   f"(from '{where[sym][0]}'), got {shape[d]}")
                sizes.setdefault(sym, shape[d])
                where.setdefault(sym, (b.name, d))
        for name, dim in self.dims.items():
            if name not in sizes:
                raise EtcError(f"symbolic size '{name}' is not the size of any argument dim")
            if not dim.min <= sizes[name] <= dim.max:
                raise EtcError(f"argument '{where[name][0]}' dim {where[name][1]}: size '{name}' = {sizes[name]} "
                               f"is outside [{dim.min}, {dim.max}]")
        for b in self.program.buffers:
            if b.role in ARG_ROLES:
                expected = self._shape(b, sizes)
                got = np.shape(args[b.name])
                for d, (e, g) in enumerate(zip(expected, got)):
                    if e != g:
                        raise EtcError(f"argument '{b.name}' dim {d}: expected {e}, got {g}")
        return sizes

    def _shape(self, b, sizes: Mapping[str, int]) -> tuple[int, ...]:
        return self.buffer_sizes[b.name]((), tuple(sizes[s] for s in b.symbols))

    def _arrays(self, args: Mapping[str, np.ndarray], sizes) -> dict[str, np.ndarray]:
        arrays = {}
        for b in self.program.buffers:
            dtype = storage_dtype(b.element_type)
            if b.role == "kv_cache":
                a = args[b.name]
                if not isinstance(a, np.ndarray) or a.dtype != dtype or not a.flags.c_contiguous \
                        or not a.flags.writeable:
                    raise EtcError(f"kv_cache argument '{b.name}' must be a writeable C-contiguous numpy array "
                                   f"of {dtype} ({b.element_type}), updated in place")
                arrays[b.name] = a
            elif b.role in ARG_ROLES:
                a = np.asarray(args[b.name])
                if (a.dtype.kind == "f") != (dtype.kind == "f"):
                    raise EtcError(f"argument '{b.name}' has dtype {a.dtype}, expected {b.element_type}")
                a = a.astype(dtype)
                arrays[b.name] = round_bf16(a) if b.element_type == "bf16" else \
                    round_f16(a) if b.element_type == "f16" else a
            else:
                shape = self._shape(b, sizes)
                fill = np.nan if dtype.kind == "f" else True if dtype.kind == "b" else np.iinfo(dtype).min
                arrays[b.name] = np.full(shape, fill, dtype=dtype)
        return arrays


def execute(module, args: Mapping[str, np.ndarray], *, seed: int = 0, workers: int | None = None) -> list[np.ndarray]:
    """One decode step of a fresh Executor: the output buffers in output_index order (kv caches in place)."""
    return Executor(module, workers).step(args, seed=seed)


class _Step:
    """The state of one step: tiles, workers, the ready queue and the race tracking."""

    def __init__(self, ex: Executor, sizes: dict[str, int], arrays: dict[str, np.ndarray], seed: int):
        self.ex = ex
        self.sizes = sizes
        self.arrays = arrays
        self.rng = random.Random(seed)
        self.base = ex.steps << 32  # counter value at which this step's counting starts
        self.targets: dict[tuple[str, tuple], int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.tracked = {name: _Tracked(*(np.full(arrays[name].shape, -1, np.int32) for _ in range(3)))
                        for name, b in ex.buffers.items() if b.role in TRACKED_ROLES}
        rq = ex.program.ready_queue
        self.dynamic_ids = set(rq.tasks) if rq else set()
        self.tiles: list[_Tile] = []
        self.by_task: dict[int, list[_Tile]] = {}
        for task in ex.tasks:
            self.by_task[task.id] = [self._tile(task, c) for c in np.ndindex(*self._extents(task))]
        self.workers = [_Worker(w, self._static_queue(w)) for w in range(ex.workers)]
        self._check_coverage()
        self.started = [False] * len(self.tiles)
        self.done = 0
        self.arrived: dict[tuple, set] = collections.defaultdict(set)  # (task id, merge group) -> splits arrived
        # Dynamic tiles: pushed once `unmet` reaches 0; `dependents` maps a counter element to them.
        self.ready: collections.deque[_Tile] = collections.deque()
        self.unmet: dict[int, int] = {}
        self.dependents: dict[tuple[str, tuple], list[_Tile]] = {}
        self.dispatched: dict[tuple[str, tuple], int] = {}
        for tile in self.tiles:
            if tile.dynamic:
                self.unmet[tile.uid] = 0
                for el in tile.waits:
                    if self.target(el) > 0:
                        self.unmet[tile.uid] += 1
                        self.dependents.setdefault(el, []).append(tile)
        for tile in self.tiles:
            if tile.dynamic and self.unmet[tile.uid] == 0:
                self._push(tile)

    # ------------------------------------------------------------ setup

    def _syms(self, task: _Task) -> tuple[int, ...]:
        return tuple(self.sizes[s] for s in task.symbols)

    def _extents(self, task: _Task) -> tuple[int, ...]:
        return tuple(max(e, 0) for e in task.grid((), self._syms(task)))

    def _tile(self, task: _Task, coords: tuple) -> _Tile:
        coords = tuple(int(c) for c in coords)
        syms = self._syms(task)
        tile = _Tile(len(self.tiles), task, coords, [], [], task.id in self.dynamic_ids)
        for counter, fn in task.waits:
            tile.waits.append(self._element(tile, "waits on", counter, fn(coords, syms)))
        for counter, fn in task.signals:
            tile.signals.append(self._element(tile, "signals", counter, fn(coords, syms)))
        self.tiles.append(tile)
        return tile

    def _element(self, tile: _Tile, what: str, counter: str, element: tuple) -> tuple[str, tuple]:
        shape = self.counter_shape(counter)
        if len(element) != len(shape) or not all(0 <= i < n for i, n in zip(element, shape)):
            raise EtcError(f"{tile} {what} counter '{counter}' element {element}, outside its shape {shape}")
        return counter, tuple(element)

    def counter_shape(self, counter: str) -> tuple[int, ...]:
        if counter not in self.shapes:
            c = self.ex.counters[counter]
            self.shapes[counter] = self.ex.counter_shapes[counter]((), tuple(self.sizes[s] for s in c.symbols))
        return self.shapes[counter]

    def target(self, el: tuple[str, tuple]) -> int:
        if el not in self.targets:
            c = self.ex.counters[el[0]]
            (self.targets[el],) = self.ex.counter_targets[el[0]](el[1], tuple(self.sizes[s] for s in c.symbols))
        return self.targets[el]

    def _static_queue(self, w: int) -> list[_Tile]:
        out = []
        for entry in self.ex.program.static_queues.get(w, []):
            if entry.task not in self.by_task:
                raise EtcError(f"static queue of worker {w} lists unknown task id {entry.task}")
            if entry.first < 0 or entry.stride < 1:
                raise EtcError(f"static queue of worker {w}: entry (task {entry.task}, first {entry.first}, "
                               f"stride {entry.stride}) needs first >= 0 and stride >= 1")
            tiles = self.by_task[entry.task]
            out.extend(tiles[i] for i in entry.tiles(len(tiles)))
        return out

    def _check_coverage(self) -> None:
        """Every tile is in exactly one queue: a static queue once, or the ready queue."""
        queued: dict[int, int] = {}
        for w in self.workers:
            for tile in w.queue:
                if tile.dynamic:
                    raise EtcError(f"{tile} is in the ready queue and in the static queue of worker {w.id}")
                if tile.uid in queued:
                    raise EtcError(f"{tile} is in the static queues of workers {queued[tile.uid]} and {w.id}: "
                                   f"it would run twice")
                queued[tile.uid] = w.id
        for tile in self.tiles:
            if not tile.dynamic and tile.uid not in queued:
                raise EtcError(f"{tile} is in no queue: the static queues miss it and its task is not in the "
                               f"ready queue, so it never runs")
        rq = self.ex.program.ready_queue
        for task_id in rq.tasks if rq else []:
            if task_id not in self.ex.tasks_by_id:
                raise EtcError(f"the ready queue lists unknown task id {task_id}")

    # ------------------------------------------------------------ the interleaving

    def run(self) -> list[np.ndarray]:
        total = len(self.tiles)
        while self.done < total:
            runnable = [w for w in self.workers if self._can_advance(w)]
            if not runnable:
                raise DeadlockError(self._deadlock_message())
            self._advance(self.rng.choice(runnable))
        outputs = sorted((b.output_index, name) for name, b in self.ex.buffers.items() if b.output_index is not None)
        return [self.arrays[name] for _, name in outputs]

    def _met(self, tile: _Tile) -> bool:
        return all(self.target(el) == 0 or self.ex.counter_values.get(el, 0) >= self.base + self.target(el)
                   for el in tile.waits)

    def _can_advance(self, w: _Worker) -> bool:
        if w.tile is not None:
            if w.phase == "finish":
                return not self._merge_waits(w.tile)
            return w.phase != "wait" or self._met(w.tile)
        if w.static is not None:
            return self._met(w.static) or bool(self.ready)
        return w.next < len(w.queue) or bool(self.ready)

    def _advance(self, w: _Worker) -> None:
        if w.tile is not None:
            getattr(self, "_" + w.phase)(w)
        elif w.static is not None:
            if self._met(w.static):  # the wait: acquire, then start
                w.tile, w.static, w.phase = w.static, None, "run"
                self._dispatch(w.tile)
            else:  # not ready: pop a dynamic tile instead of spinning
                self._pop(w)
        elif w.next < len(w.queue):  # fetch
            w.static = w.queue[w.next]
            w.next += 1
        else:
            self._pop(w)

    def _pop(self, w: _Worker) -> None:
        w.tile, w.phase = self.ready.popleft(), "wait"
        self._dispatch(w.tile)

    def _wait(self, w: _Worker) -> None:
        w.phase = "run"

    def _run(self, w: _Worker) -> None:
        tile, task = w.tile, w.tile.task
        w.access = self._staged(tile, str(tile), lambda access: run_tile(task.kind, task.params, tile.coords,
                                                                         access, self.ex.body_of))
        w.phase = "commit"

    def _staged(self, tile: _Tile, where: str, body) -> TileAccess:
        """body(access) on the tile's operands, its reads checked for races and its writes staged; a
        contract error or a numpy one becomes a one-line EtcError naming `where`."""
        task = tile.task
        operands = {role: Operand(name, self.arrays[name], self.ex.buffers[name].element_type)
                    for role, name in task.reads + task.writes}
        access = TileAccess(operands, on_read=lambda role, index, ranges: self._on_read(tile, operands[role].buffer,
                                                                                        ranges))
        try:
            body(access)
        except RaceError:
            raise
        except EtcError as e:
            raise EtcError(f"{where}: {e}") from None
        except (ValueError, TypeError, IndexError, KeyError) as e:
            raise EtcError(f"{where}: {type(e).__name__}: {e}") from None
        return access

    def _commit(self, w: _Worker) -> None:
        tile = w.tile
        for write in w.access.writes:
            name = w.access.operands[write.role].buffer
            t = self.tracked[name]
            region = tuple(slice(a, b) for a, b in write.ranges)
            reader, other = t.reader[region], t.other[region]
            before = np.where(reader != tile.uid, reader, other)
            if (before >= 0).any():
                pos = tuple(int(i) for i in np.argwhere(before >= 0)[0])
                element = tuple(a + i for (a, _), i in zip(write.ranges, pos))
                raise RaceError(f"race on buffer '{name}' element {element}: {self.tiles[before[pos]]} read it "
                                f"before {tile} wrote it")
            t.writer[region] = tile.uid
            self.arrays[name][write.index] = write.value
        w.access, w.phase = None, "signal"
        group_of = contract.merge_group(tile.task.kind, tile.task.params)
        group, _ = group_of(tile.coords, self._extents(tile.task)) if group_of else (None, 0)
        if group is not None and not w.finishing:  # arrive; the group's merging tile finishes its work
            self.arrived[(tile.task.id, group)].add(tile.coords[2])
            position = int(self.arrays[dict(tile.task.reads)["positions"]][tile.coords[0]])
            if contract.merges_group(tile.task.params, tile.coords, self._extents(tile.task), position):
                w.phase = "finish"
        w.finishing = False

    def _merge_waits(self, tile: _Tile) -> list[int]:
        """The splits of the merging tile's group before it that have not arrived yet."""
        group, _ = contract.merge_group(tile.task.kind, tile.task.params)(tile.coords, self._extents(tile.task))
        return [s for s in range(tile.coords[2]) if s not in self.arrived[(tile.task.id, group)]]

    def _finish(self, w: _Worker) -> None:
        tile, task = w.tile, w.tile.task
        group, _ = contract.merge_group(task.kind, task.params)(tile.coords, self._extents(task))
        splits = tile.coords[2] + 1  # those before it and its own: the later ones hold no visible slot
        w.access = self._staged(tile, f"{tile} (finishing its merge group {group})",
                                lambda access: finish_group(task.kind, task.params, group, access, splits))
        w.phase, w.finishing = "commit", True

    def _signal(self, w: _Worker) -> None:
        for el in w.tile.signals:
            value = max(self.ex.counter_values.get(el, 0), self.base) + 1  # atomicMax(c, e << 32); atomicAdd(c, 1)
            self.ex.counter_values[el] = value
            if not self.ex.early_push and value == self.base + self.target(el):
                self._element_met(el)
        w.tile, w.phase = None, ""
        self.done += 1

    def _dispatch(self, tile: _Tile) -> None:
        if self.started[tile.uid]:
            raise EtcError(f"{tile} runs twice")
        self.started[tile.uid] = True
        if self.ex.early_push:
            for el in tile.signals:
                self.dispatched[el] = self.dispatched.get(el, 0) + 1
                if self.dispatched[el] == self.target(el):
                    self._element_met(el)

    def _element_met(self, el: tuple[str, tuple]) -> None:
        for tile in self.dependents.pop(el, []):
            self.unmet[tile.uid] -= 1
            if self.unmet[tile.uid] == 0:
                self._push(tile)

    def _push(self, tile: _Tile) -> None:
        capacity = self.ex.program.ready_queue.capacity
        if len(self.ready) >= capacity:
            raise EtcError(f"ready queue overflow: pushing {tile} with {capacity} tiles already queued "
                           f"(capacity {capacity})")
        self.ready.append(tile)

    # ------------------------------------------------------------ races and deadlocks

    def _on_read(self, tile: _Tile, name: str, ranges) -> None:
        t = self.tracked.get(name)
        if t is None:
            return  # inputs and weights: valid from the start, never written
        region = tuple(slice(a, b) for a, b in ranges)
        if self.ex.buffers[name].role in FRESH_ROLES:
            unwritten = t.writer[region] < 0
            if unwritten.any():
                pos = tuple(int(i) for i in np.argwhere(unwritten)[0])
                element = tuple(a + i for (a, _), i in zip(ranges, pos))
                raise RaceError(f"race on buffer '{name}' element {element}: {tile} read it before "
                                f"{self._expected_writer(name, element)} wrote it")
        reader, other = t.reader[region], t.other[region]
        other[(reader >= 0) & (reader != tile.uid)] = tile.uid
        reader[reader < 0] = tile.uid

    def _expected_writer(self, name: str, element: tuple) -> str:
        """The tile whose contract region holds `element` of buffer `name` and has not committed (for messages)."""
        for task in self.ex.tasks:
            for role, buffer in task.writes:
                if buffer != name:
                    continue
                try:
                    region = contract.regions(task.kind, task.params, role, len(element))
                except (KeyError, TypeError):
                    continue
                for tile in self.by_task[task.id]:
                    if all(_holds(part, tile.coords, i) for part, i in zip(region, element)):
                        return f"its writer {tile}"
        return "any tile"

    def _deadlock_message(self) -> str:
        waiting = []
        for w in self.workers:
            tile = w.tile if w.tile is not None else w.static
            if tile is not None and w.phase == "finish":
                waiting.append(f"worker {w.id}: {tile} merges its group once splits "
                               f"{self._merge_waits(tile)} have their partials")
            elif tile is not None:
                waiting.append(f"worker {w.id}: {tile} " + self._unmet_text(tile))
        pending = [t for t in self.tiles if t.dynamic and not self.started[t.uid] and t not in self.ready]
        for tile in pending[:8]:
            waiting.append(f"not pushed: {tile} " + self._unmet_text(tile, self.ex.early_push))
        if len(pending) > 8:
            waiting.append(f"and {len(pending) - 8} more dynamic tiles not pushed")
        left = len(self.tiles) - self.done
        return f"deadlock in step {self.ex.steps}: {left} tiles unfinished, no worker can progress; " + \
            "; ".join(waiting)

    def _unmet_text(self, tile: _Tile, by_dispatch: bool = False) -> str:
        parts = []
        for el in tile.waits:
            need = self.target(el)
            have = self.dispatched.get(el, 0) if by_dispatch else \
                max(self.ex.counter_values.get(el, 0) - self.base, 0)
            if need and have < need:
                what = "producers dispatched" if by_dispatch else "signals"
                parts.append(f"waits on counter '{el[0]}' element {el[1]}: {have} {what}, needs {need}")
        return ", ".join(parts) or "(waits met)"


def _holds(part, coords: tuple, i: int) -> bool:
    if isinstance(part, contract.Tiled):
        block = coords[part.grid_dim] // part.share
        return block * part.size <= i < (block + 1) * part.size
    return True  # Full, Anywhere
