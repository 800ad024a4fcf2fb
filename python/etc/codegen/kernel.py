"""The persistent megakernel: scheduled sm_task IR -> one `gpu.module` (MLIR text) holding the worker
loop (`gpu.func @etc_megakernel`), the run functions and the tile library's tile functions. A run function
runs a worker's tiles of one task; tasks whose run functions differ only in their buffers, counters and id
(the layers of a model) share one, which reads those integers from the task's descriptor in constant
memory (run_units).

Worker loop (block w = worker w, etc.codegen.abi has the parameters):
    copy `sizes` (and the buffer addresses, where they fit) into shared memory (SharedConstants); barrier
    for each (task, first, stride) in w's static queue:      # parametric: tile counts from `sizes`
                                                             # (the next entry is loaded before this one runs)
      for tile = first; tile < tile_count(task); tile += stride:
        (skipped whole where the tile's `_idle` companion says another tile stands in for it this step)
        thread 0: record progress; poll until every counter element the tile waits on reaches
                  (epoch << 32) + target (one wait: acquire loads; several: relaxed loads of all at once,
                  then an acquire fence; a word seen met for an earlier tile of this entry is not polled
                  again)
        barrier; run the tile function (every thread); barrier
        thread 0: release fence; for each counter element the tile signals: atomicMax(epoch << 32),
                  atomicAdd(1, or the tile's `_signal_count`: 1 + the tiles it stands in for)
Only thread 0 orders memory at device scope: the barriers order the other threads' accesses before its
release fence and after its acquire loads (the leader-fence pattern of CUTLASS's generic barrier), so a
tile pays one fence, not one per thread. The release fence is explicit because LLVM 22 drops release
ordering on atomicrmw (TOOLCHAIN.md).
Queues list tasks in topological order, so the loop cannot deadlock (see etc-static-schedule).
The kernel declares its block (.maxntid block_size, .minnctapersm 1), so ptxas fits the registers to one
block of block_size threads a SM: without it a block of more than 256 threads could not launch (255
registers a thread), and with .maxntid alone ptxas aims at two blocks a SM and spills.
"""
from __future__ import annotations

import dataclasses
import re

from mlir import ir

from etc import mlir_adapter as mlir
from etc.codegen import abi
from etc.codegen.emit import Emitter
from etc.codegen.tiles_attention import merge_arrival_words
from etc.codegen.tiles_linear import arrival_words
from etc.errors import EtcError
from etc.sm_task_ir import SmTaskProgram, Task

I64 = "i64"
TILE_BITS = 20  # a ready-queue slot holds (task id << TILE_BITS | tile) + 1


@dataclasses.dataclass
class Layout:
    """Where things live at run time: buffer and symbol order, counter words (at max sizes), queue tables."""
    symbols: list[str]
    buffers: list[str]
    counter_offset: dict[str, int]
    counter_extents: dict[str, tuple[int, ...]]  # at the symbols' max values: the strides of the words
    counter_words: int
    queue_offsets: list[int]
    queue_entries: list[int]
    ready_capacity: int = 0  # slots for every dynamic tile at the max sizes
    pending_offset: dict[int, int] = dataclasses.field(default_factory=dict)  # dynamic task -> first pending word
    profile_offset: dict[int, int] = dataclasses.field(default_factory=dict)  # task -> first profile record
    arrival_offset: dict[int, int] = dataclasses.field(default_factory=dict)  # task -> its arrival counter words

    def symbol_indices(self, names: list[str]) -> list[int]:
        """Positions in the kernel's `sizes` array of an op's symbols (its dims operands, in order)."""
        return [self.symbols.index(name) for name in names]

    @property
    def ready_words(self) -> int:
        """u32 words of ready-queue state: [head, tail, unused], slots, then one pending count per dynamic tile."""
        if not self.pending_offset:
            return 0
        return abi.READY_HEADER_WORDS + self.ready_capacity + self.ready_capacity

    @classmethod
    def of(cls, program: SmTaskProgram) -> "Layout":
        maxima = program.default_sizes()
        offsets, extents, words = {}, {}, 0
        for c in program.counters:
            ext = c.extents(maxima)
            offsets[c.name], extents[c.name] = words, ext
            n = 1
            for e in ext:
                n *= e
            words += max(n, 1)
        arrivals = {}
        for t in program.tasks:  # after the event counters: tile-private counters (never waited on)
            params = dict(t.params or {})
            n = arrival_words(t.kind, params) if t.kind == "linear" else \
                merge_arrival_words(params, t.grid_extents(maxima)) if t.kind == "attention_partial" else 0
            if n:
                arrivals[t.id], words = words, words + n
        q_offsets, entries = [0], []
        for w in range(program.kernel.num_workers):
            for entry in program.static_queues.get(w, []):
                entries += [entry.task, entry.first, entry.stride]
            q_offsets.append(len(entries))
        pending, capacity = {}, 0
        for t in program.tasks:
            if t.schedule == "dynamic":
                n = t.tile_count(maxima)
                if n >= 1 << TILE_BITS or t.id >= 1 << (31 - TILE_BITS):
                    raise EtcError(f"task '{t.name}': {n} tiles at the largest sizes do not fit a ready-queue slot")
                pending[t.id], capacity = capacity, capacity + n
        profile, records = {}, 0
        if any(b.name == abi.PROFILE_BUFFER for b in program.buffers):
            for t in program.tasks:  # one record (abi.PROFILE_RECORD_WORDS) per tile at the max sizes
                profile[t.id], records = records, records + t.tile_count(maxima)
        return cls([d.name for d in program.dims], [b.name for b in program.buffers], offsets, extents, words,
                   q_offsets, entries, capacity, pending, profile, arrivals)


def operand_index(task: Task) -> dict[str, int]:
    """Buffer name -> slot in the task's operand table (reads, then writes; a buffer named twice keeps
    its first slot). Tile functions address buffers through this table, so tasks that differ only in
    their buffers share one tile function."""
    slots: dict[str, int] = {}
    for name in task.reads + task.writes:
        slots.setdefault(name, len(slots))
    return slots


def emit_gpu_module(program: SmTaskProgram, tile_functions: dict[str, str], tile_of_task: dict[int, str],
                    layout: Layout, spin_sleep_ns: int = 32, constants: SharedConstants | None = None) -> str:
    """MLIR text of `gpu.module @etc` for a statically scheduled program: the tile functions (by name),
    the run functions (run_units) calling each task's tile function `tile_of_task[id]`, with the shared
    ones' descriptor and dispatch tables, and the worker-loop kernel.
    A tile function text that carries an issue function (`@<name>_issue`, the weight stream's) gets it
    called by every thread before the tile's waits; one that carries `@<name>_idle` is skipped whole where
    that returns true, and one that carries `@<name>_signal_count` signals that many at once. constants:
    where the worker keeps its run-time constants in shared memory (None: they stay in global memory)."""
    from etc.codegen.tile_library import (DYNAMIC_SHARED_DECL, has_idle_function, has_issue_function,
                                          has_signal_count_function)

    parts = [DYNAMIC_SHARED_DECL, POPPED_DECL] + list(tile_functions.values())

    def run_function(t: Task, consts: RunConstants | None = None, name: str | None = None) -> str:
        tile = tile_of_task[t.id]
        text = tile_functions[tile]
        return _run_function(t, program, layout, tile, has_issue_function(text, tile), spin_sleep_ns,
                             has_idle_function(text, tile), has_signal_count_function(text, tile), consts, name)

    units = run_units(program, run_function)
    for unit in units:
        parts.append(unit.text)
    shared = [u for u in units if u.shared]
    if shared:  # the shared run functions' descriptors, and per task id its run unit and descriptor
        desc, dispatch = [], [0] * (max(t.id for t in program.tasks) + 1)
        for k, unit in enumerate(units):
            for task_id, values in unit.tasks:
                dispatch[task_id] = (k << 32) | len(desc)
                desc += values
        if max(desc, default=0) >= 1 << 32 or len(desc) >= 1 << 32:
            raise EtcError("a task's buffer index, counter word or profile record does not fit its 32-bit "
                           "descriptor word")
        parts.append(_const_table(DESC_TABLE, desc, "i32"))
        parts.append(_const_table(DISPATCH_TABLE, dispatch, "i64"))
    parts.append(_kernel(program, layout, spin_sleep_ns, constants, units if shared else None))
    body = "\n\n".join(parts)
    return f"gpu.module @{abi.GPU_MODULE} {{\n{body}\n}}"


@dataclasses.dataclass(frozen=True)
class SharedConstants:
    """Where the worker keeps its run-time constants: from `offset` in dynamic shared memory, `sizes` and,
    where they fit, the buffer addresses, copied there when the kernel starts. Every wait and every
    signal's fence invalidates the SM's L1 (an acquire compiles to CCTL.IVALL), so constants read from
    global memory cost an L2 round trip per tile (about 1 us while the other SMs stream weights): a run
    function's operand table, loaded before its issue function can start the tile's weight copies."""
    offset: int
    symbols: int  # then the step's epoch (the slot tiles read with Tile.epoch_tag)
    buffers: int  # 0: the buffer addresses stay in global memory

    @property
    def buffers_offset(self) -> int:
        return self.offset + 8 * (self.symbols + 1)

    @property
    def end(self) -> int:
        return self.buffers_offset + 8 * self.buffers

    @classmethod
    def of(cls, layout: Layout, shared_bytes: int, scratch_bytes: int | None = None,
           ring_offset: int | None = None) -> SharedConstants | None:
        """Place the constants: past the tiles' `shared_bytes` if sizes and buffer addresses fit below
        abi.MAX_SHARED_BYTES; else, when the tiles use a ring from `ring_offset` and keep their scratch
        (`scratch_bytes`) below it, in the gap between the two; else the sizes alone past the tiles;
        None if not even they fit."""
        def at(start: int, limit: int, buffers: int) -> SharedConstants | None:
            constants = cls(-(-start // 8) * 8, len(layout.symbols), buffers)
            return constants if constants.end <= limit else None

        gap = ring_offset is not None and scratch_bytes is not None and scratch_bytes <= ring_offset < shared_bytes
        return (at(shared_bytes, abi.MAX_SHARED_BYTES, len(layout.buffers))
                or (gap and at(scratch_bytes, ring_offset, len(layout.buffers)))
                or at(shared_bytes, abi.MAX_SHARED_BYTES, 0))

    def launch_bytes(self, shared_bytes: int) -> int:
        """The dynamic shared memory the kernel launches with: the tiles' and the constants'."""
        return max(shared_bytes, self.end)


def shared_bytes(tile_function_text: str, attribute: str = "shared_bytes") -> int:
    """The dynamic shared memory a tile function declares (its etc.shared_bytes attribute; with
    attribute="scratch_bytes", how much of it lies below the ring, its scratch)."""
    m = re.search(rf"etc\.{attribute} = (\d+)", tile_function_text)
    if m is None and attribute == "scratch_bytes":
        return shared_bytes(tile_function_text)
    return int(m.group(1)) if m else 0


_RUN_ARGS = ("%buffers: !llvm.ptr, %sizes: !llvm.ptr, %counters: !llvm.ptr, %progress: !llvm.ptr, "
             "%ready: !llvm.ptr, %epoch: i64, %first: i64, %stride: i64")
_RUN_TYPES = "(!llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, i64, i64, i64)"
# The slot a block's thread 0 popped, for the whole block.
POPPED_DECL = "llvm.mlir.global internal @etc_popped() {addr_space = 3 : i32} : i32"


DESC_TABLE = "etc_run_desc"  # shared run functions' task descriptors (i32 words, constant memory)
DISPATCH_TABLE = "etc_run_dispatch"  # per task id: (run unit << 32) | its descriptor's first word


@dataclasses.dataclass
class RunUnit:
    """A run function of the gpu.module: one task's own (`tasks` holds it alone, no descriptor), or one
    shared by every task in `tasks` ((task id, descriptor words) each) whose run function has that text."""
    name: str
    text: str
    tasks: list[tuple[int, list[int]]]
    shared: bool


def run_units(program: SmTaskProgram, run_function) -> list[RunUnit]:
    """The run functions: static tasks whose run functions differ only in their RunConstants (the layers of
    a model) share one, so that the kernel holds one copy of each task kind's wait / signal / issue code,
    not one per layer: Qwen3-0.6B's kernel body 1.22 -> 0.33 MB of SASS, its codegen and ptxas 78 -> 9 s
    (with a run function per task, Nsight Compute saw ~16% of a step's warp samples wait on instruction
    fetch). A program with dynamic tasks keeps one run function per task (their pushes name the consumer
    tasks). run_function(task, consts, name) renders a task's run function text."""
    if any(t.schedule == "dynamic" for t in program.tasks):
        return [RunUnit(f"etc_run_{t.id}", run_function(t), [(t.id, [])], False) for t in program.tasks]
    by_text: dict[str, list[tuple[Task, list[int]]]] = {}
    for t in program.tasks:
        consts = RunConstants(shared=True)
        by_text.setdefault(run_function(t, consts, "RUN"), []).append((t, consts.values))
    units = []
    for text, members in by_text.items():
        first = members[0][0]
        if len(members) == 1:
            units.append(RunUnit(f"etc_run_{first.id}", run_function(first), [(first.id, [])], False))
        else:  # the grouping text itself, named
            name = f"etc_run_shared_{first.id}"
            units.append(RunUnit(name, text.replace("func.func @RUN(", f"func.func @{name}(", 1),
                                 [(t.id, values) for t, values in members], True))
    return units


def _const_table(name: str, values: list[int], ty: str) -> str:
    """An llvm.mlir.global of `values` in constant memory (addr space 4)."""
    values = values or [0]
    return (f"llvm.mlir.global internal constant @{name}(dense<[{', '.join(map(str, values))}]> : "
            f"tensor<{len(values)}x{ty}>) {{addr_space = 4 : i32}} : !llvm.array<{len(values)} x {ty}>")


class RunConstants:
    """The integers that tell one task's run function from another of the same shape: the buffer index of
    each operand slot, each counter's first word, the task id, the first profile record, the arrival
    counters' offset. Immediate (the default), they are constants of the task's own run function. Shared,
    each is a placeholder (%rc<k>) that a run function serving every task of that text loads from the
    task's descriptor, words `values` of DESC_TABLE (constant memory) from the run function's %desc."""

    def __init__(self, shared: bool = False):
        self.shared = shared
        self.values: list[int] = []  # the task's descriptor words, in order of first use
        self._slot: dict = {}

    def value(self, e: Emitter, key: tuple, value: int, ty: str = "i64") -> str:
        """The SSA value of the task's integer `key` (an i64 or i32 constant, or its placeholder)."""
        if not self.shared:
            return e.const(value, ty)
        return self._placeholder(key, value) + ("_i32" if ty == "i32" else "")

    def index(self, key: tuple, value: int) -> tuple[str, str]:
        """(GEP index, GEP operand types) of integer `key` as a getelementptr index: a literal, or the
        placeholder (a dynamic index)."""
        if not self.shared:
            return str(value), "(!llvm.ptr)"
        return self._placeholder(key, value), "(!llvm.ptr, i64)"

    def _placeholder(self, key: tuple, value: int) -> str:
        if key not in self._slot:
            self._slot[key] = len(self.values)
            self.values.append(value)
        return f"%rc{self._slot[key]}"

    def prologue(self) -> list[str]:
        """The shared run function's first lines: every placeholder loaded from the descriptor (u32 words
        in constant memory, which the waits' fences do not invalidate, unlike L1)."""
        lines = [f"%rc_table = llvm.mlir.addressof @{DESC_TABLE} : !llvm.ptr<4>",
                 f"%rc_desc = llvm.getelementptr %rc_table[%desc] : (!llvm.ptr<4>, i64) -> !llvm.ptr<4>, i32"]
        for k in range(len(self.values)):
            lines += [f"%rc{k}_at = llvm.getelementptr %rc_desc[{k}] : (!llvm.ptr<4>) -> !llvm.ptr<4>, i32",
                      f"%rc{k}_i32 = llvm.load %rc{k}_at : !llvm.ptr<4> -> i32",
                      f"%rc{k} = arith.extui %rc{k}_i32 : i32 to i64"]
        return lines


def _run_function(task: Task, program: SmTaskProgram, layout: Layout, tile_function: str,
                  issue: bool = False, spin_sleep_ns: int = 32, idle: bool = False,
                  signal_count: bool = False, consts: RunConstants | None = None,
                  function_name: str | None = None) -> str:
    """func.func @etc_run_<id>: run this worker's tiles first, first+stride, ... of one task (a dynamic
    task: the one tile `first`, popped ready, so it does not wait). idle: the tile's `_idle` companion
    says first whether another tile of the task stands in for this one this step (writes its outputs and
    signals for it), and then the worker skips it: no copies, waits, run or signals. signal_count: each
    of the tile's signals adds what its `_signal_count` companion returns (1 + the tiles it stands in
    for), not 1. consts: shared (RunConstants), the function is `function_name`, takes the task's descriptor
    offset %desc last and reads the task's integers from it, so it serves every task of the same text."""
    consts = consts or RunConstants()
    e = Emitter()
    operands = operand_index(task)
    arrivals = task.id in layout.arrival_offset
    table = e.emit(f"llvm.alloca {e.const(len(operands) + int(arrivals))} x i64 : (i64) -> !llvm.ptr")
    for name, slot in operands.items():  # the task's operand table: addresses from the kernel's buffer table
        at, types = consts.index(("slot", slot), layout.buffers.index(name))
        src = e.emit(f"llvm.getelementptr %buffers[{at}] : {types} -> !llvm.ptr, i64")
        dst = e.emit(f"llvm.getelementptr {table}[{slot}] : (!llvm.ptr) -> !llvm.ptr, i64")
        e.line(f"llvm.store {e.emit(f'llvm.load {src} : !llvm.ptr -> i64')}, {dst} : i64, !llvm.ptr")
    if arrivals:  # then the address of its arrival counters (Tile.arrival_counters)
        # through a volatile load: as a constant offset from %counters, each task's address was hoisted
        # out of the worker loop, one live register pair a layer (Qwen3-0.6B's megakernel spilled 168 B)
        slot = e.emit(f"llvm.alloca {e.const(1)} x i64 : (i64) -> !llvm.ptr")
        e.line(f"llvm.store {e.emit('llvm.ptrtoint %counters : !llvm.ptr to i64')}, {slot} : i64, !llvm.ptr")
        base = e.emit(f"llvm.load volatile {slot} : !llvm.ptr -> i64")
        src = e.binary("addi", base, consts.value(e, ("arrivals",), 8 * layout.arrival_offset[task.id]))
        dst = e.emit(f"llvm.getelementptr {table}[{len(operands)}] : (!llvm.ptr) -> !llvm.ptr, i64")
        e.line(f"llvm.store {src}, {dst} : i64, !llvm.ptr")
    symbols = layout.symbol_indices(task.symbols)
    extents = e.affine_map(task.grid, [], symbols)
    if len(extents) > abi.MAX_GRID_RANK:
        raise EtcError(f"task '{task.name}' has a grid of rank {len(extents)}; at most {abi.MAX_GRID_RANK}")
    count = e.const(1)
    for x in extents:
        count = e.binary("muli", count, x)
    tid = e.emit("gpu.thread_id x")
    zero_idx = e.emit("arith.constant 0 : index")
    is_leader = e.emit(f"arith.cmpi eq, {tid}, {zero_idx} : index")
    worker = e.emit("gpu.block_id x")
    worker64 = e.emit(f"arith.index_cast {worker} : index to i64")
    shifted_epoch = e.binary("shli", "%epoch", e.const(32))
    dynamic = task.schedule == "dynamic"
    upper = e.binary("addi", "%first", e.const(1)) if dynamic else count  # a dynamic call runs one tile
    profile = _profile_base(e, layout) if layout.profile_offset else None
    lines = e.lines
    # The tile loop.
    loop = e.child("t")
    coords = _delinearize(loop, "%tile", extents)
    coords += [loop.const(0)] * (abi.MAX_GRID_RANK - len(coords))
    waits = [] if dynamic else [(c, m) for c, m in zip(task.waits, task.wait_maps)]
    signals = [(c, m) for c, m in zip(task.signals, task.signal_maps)]
    args = f"({table}, %sizes, {coords[0]}, {coords[1]}, {coords[2]}) : (!llvm.ptr, !llvm.ptr, i64, i64, i64) -> ()"
    head = len(loop.lines)  # the tile's coordinates: the rest of the loop body is skipped with the tile (idle)
    count = None  # what each signal adds; asked up front by every thread, off the tail before the signals
    if signal_count and signals:
        count = loop.emit(f"func.call @{tile_function}_signal_count{args.replace('-> ()', '-> i64')}")
    if layout.profile_offset:  # the profiling build: when the worker reached the tile ...
        reached = loop.emit("nvvm.read.ptx.sreg.globaltimer : i64")
    if issue:  # all threads, before thread 0 waits: the first weight blocks stream in during the waits
        loop.line(f"func.call @{tile_function}_issue{args}")
    if layout.profile_offset:  # ... and when it starts its waits
        polled = loop.emit("nvvm.read.ptx.sreg.globaltimer : i64")
    # thread 0: progress and waits
    lead = loop.child("w")
    task32 = consts.value(e, ("task",), task.id, "i32")
    _progress(lead, worker64, abi.PROGRESS_WAITING, task32, "%tile")
    met = [e.emit("llvm.alloca %s x i64 : (i64) -> !llvm.ptr" % e.const(1)) for _ in waits]
    for slot in met:  # the counter word of this wait that this call has seen met (none yet)
        e.line(f"llvm.store {e.const(-1)}, {slot} : i64, !llvm.ptr")
    pending = []
    for (name, m), slot in zip(waits, met):
        elem = lead.affine_map(m, coords[:m.n_dims], symbols)  # the counter element this tile waits on
        first_word = consts.value(lead, ("counter", name), layout.counter_offset[name])
        word = _counter_word(lead, layout, name, elem, first_word)
        target = _target(lead, program, layout, name, elem, shifted_epoch)
        pending.append((word, target, slot))
    _wait_all(lead, worker64, pending, spin_sleep_ns)
    _progress(lead, worker64, abi.PROGRESS_RUNNING, task32, "%tile")
    if layout.profile_offset:  # the profiling build: %globaltimer when the tile's waits are met
        _stamp(lead, profile, consts.value(lead, ("profile",), layout.profile_offset[task.id]), "%tile", 0,
               worker64, reached=(reached, polled))
        _phase_slots(lead, lambda e, slot, k: e.line(f"llvm.store {e.const(0)}, {slot} : i64, !llvm.ptr<3>"))
    signal = loop.child("s")
    if signals:  # the block's writes (ordered before thread 0 by the barrier) happen before the signals
        signal.line('llvm.fence syncscope("device") release')
    count = count or signal.const(1)
    for name, m in signals:
        elem = signal.affine_map(m, coords[:m.n_dims], symbols)
        word = _counter_word(signal, layout, name, elem,
                             consts.value(signal, ("counter", name), layout.counter_offset[name]))
        ptr = signal.emit(f"llvm.getelementptr %counters[{word}] : (!llvm.ptr, i64) -> !llvm.ptr, i64")
        signal.emit(f"llvm.atomicrmw umax {ptr}, {shifted_epoch} monotonic : !llvm.ptr, i64")
        before = signal.emit(f"llvm.atomicrmw add {ptr}, {count} monotonic : !llvm.ptr, i64")
        consumers = [(d, wm) for d in program.tasks if d.schedule == "dynamic"
                     for c, wm in zip(d.waits, d.wait_maps) if c == name]
        if consumers:  # the last signal of the element pushes the dynamic tiles it completes
            target = _target(signal, program, layout, name, elem, shifted_epoch)
            last = signal.emit(f"arith.cmpi eq, {signal.binary('addi', before, count)}, {target} : i64")
            push = signal.child(f"p{len(signal.lines)}_")
            push.line('llvm.fence syncscope("device") acq_rel')
            for consumer, wait_map in consumers:
                _release_consumers(push, layout, consumer, wait_map, elem)
            signal.line(f"scf.if {last} {{")
            signal.lines += ["  " + line for line in push.lines]
            signal.line("}")
    if layout.profile_offset:  # ... and when it has signalled, with the phases the tile stamped
        _stamp(signal, profile, consts.value(signal, ("profile",), layout.profile_offset[task.id]), "%tile", 1,
               None, phases=True)
    _progress(signal, worker64, abi.PROGRESS_DONE, task32, "%tile")
    call = f"func.call @{tile_function}{args}"
    coord_lines, loop.lines = loop.lines[:head], loop.lines[head:]
    loop_body = loop.body("      ") + f"""
      scf.if {is_leader} {{
{lead.body("        ")}
      }}
      gpu.barrier
      {call}
      gpu.barrier
      scf.if {is_leader} {{
{signal.body("        ")}
      }}"""
    if idle:  # block-uniform: every thread asks; a tile another one stands in for is skipped whole
        skip = "%skip"
        loop_body = f"""
      {skip} = func.call @{tile_function}_idle{args.replace('-> ()', '-> i1')}
      scf.if {skip} {{
      }} else {{""" + loop_body.replace("\n", "\n  ") + """
      }"""
    loop_body = "\n".join("      " + line for line in coord_lines) + loop_body
    if consts.shared:
        lines[:0] = consts.prologue()
    args = _RUN_ARGS + (", %desc: i64" if consts.shared else "")
    return f"""func.func @{function_name or f'etc_run_{task.id}'}({args}) {{
{chr(10).join("    " + l for l in lines)}
    scf.for %tile = %first to {upper} step %stride : i64 {{
{loop_body}
    }}
    return
}}"""


def _delinearize(e: Emitter, index: str, extents: list[str]) -> list[str]:
    """Row-major coordinates of a linear tile index."""
    coords = []
    rest = index
    for x in reversed(extents[1:]):
        coords.append(e.binary("remsi", rest, x))
        rest = e.binary("divsi", rest, x)
    coords.append(rest)
    return list(reversed(coords))


def _counter_word(e: Emitter, layout: Layout, name: str, elem: list[str], first: str) -> str:
    """The u64 word index of element `elem` of counter `name`, whose first word is `first` (SSA); strides
    from the counter's max extents."""
    word = first
    strides = []
    acc = 1
    for x in reversed(layout.counter_extents[name]):
        strides.append(acc)
        acc *= x
    for value, stride in zip(elem, reversed(strides)):
        word = e.binary("addi", word, e.binary("muli", value, e.const(stride)))
    return word


def _target(e: Emitter, program, layout: Layout, name: str, elem: list[str], shifted_epoch: str) -> str:
    """(epoch << 32) + the counter's target at element `elem`; 0 where a run-time target is 0 (no producer
    tile this step, e.g. a grid with no tiles at one row), which every wait then passes."""
    counter = program.counter(name)
    n = e.affine(counter.target.results[0], elem, layout.symbol_indices(counter.symbols))
    target = e.binary("addi", shifted_epoch, n)
    if program.always_signalled(counter):
        return target
    none = e.emit(f"arith.cmpi eq, {n}, {e.const(0)} : i64")
    return e.emit(f"arith.select {none}, {e.const(0)}, {target} : i64")


def _wait_all(e: Emitter, worker: str, waits: list[tuple[str, str, str]], sleep_ns: int = 32) -> None:
    """Thread 0 waits until every (counter word, target) of `waits` is met. A word this run call saw met
    for an earlier tile (the wait's slot holds it; counters only grow within a step) is not polled again,
    and when every word is such, nothing is loaded. One wait spins with acquire loads; several are polled
    together, relaxed loads of all the words at once, then one acquire fence: their round trips overlap
    instead of following one another (under the weight streams' load each is ~1 us, BENCHMARKS.md)."""
    if not waits:
        return
    seen = [e.emit(f"llvm.load {slot} : !llvm.ptr -> i64") for _, _, slot in waits]
    known = [e.emit(f"arith.cmpi eq, {word}, {s} : i64") for (word, _, _), s in zip(waits, seen)]
    every = known[0]
    for k in known[1:]:
        every = e.emit(f"arith.andi {every}, {k} : i1")
    poll = e.child(e.fresh()[1:] + "p")
    if len(waits) == 1:
        word, target, _ = waits[0]
        _progress_word(poll, worker, word, target)
        _spin(poll, word, target, sleep_ns)
    else:
        _poll_together(poll, worker, [(w, t) for w, t, _ in waits], known, sleep_ns)
    for word, _, slot in waits:
        poll.line(f"llvm.store {word}, {slot} : i64, !llvm.ptr")
    _if(e, _not(e, every), poll)


def _not(e: Emitter, flag: str) -> str:
    return e.emit(f"arith.xori {flag}, {e.const(1, 'i1')} : i1")


def _if(e: Emitter, cond: str, body: Emitter) -> None:
    """scf.if cond { body's lines } (body: a child emitter of e)."""
    e.line(f"scf.if {cond} {{")
    e.lines += ["  " + line for line in body.lines]
    e.line("}")


def _poll_together(e: Emitter, worker: str, waits: list[tuple[str, str]], known: list[str], sleep_ns: int) -> None:
    """Poll every counter word of `waits` in one round trip (relaxed loads, all issued before any is
    used) until each reaches its target or is `known` met; then an acquire fence. The watchdog's progress
    word is the first unmet one."""
    ptrs = [e.emit(f"llvm.getelementptr %counters[{word}] : (!llvm.ptr, i64) -> !llvm.ptr, i64") for word, _ in waits]
    first_word, first_target = waits[0]
    _progress_word(e, worker, first_word, first_target)
    unknown = [_not(e, k) for k in known]
    e.line("%s:2 = scf.while : () -> (i64, i64) {" % e.fresh())
    values = [e.fresh() for _ in waits]
    for v, ptr in zip(values, ptrs):
        e.line(f'  {v} = llvm.load {ptr} atomic syncscope("device") monotonic {{alignment = 8 : i64}} : !llvm.ptr -> i64')
    unmet = []
    for v, (_, target), nk in zip(values, waits, unknown):
        u, both = e.fresh(), e.fresh()
        e.line(f"  {u} = arith.cmpi ult, {v}, {target} : i64")
        e.line(f"  {both} = arith.andi {u}, {nk} : i1")
        unmet.append(both)
    word, target = waits[-1]
    any_unmet = unmet[-1]
    for u, (w, t) in reversed(list(zip(unmet[:-1], waits[:-1]))):  # the first unmet wait's word and target
        nw, nt, na = e.fresh(), e.fresh(), e.fresh()
        e.line(f"  {nw} = arith.select {u}, {w}, {word} : i64")
        e.line(f"  {nt} = arith.select {u}, {t}, {target} : i64")
        e.line(f"  {na} = arith.ori {u}, {any_unmet} : i1")
        word, target, any_unmet = nw, nt, na
    e.line(f"  scf.condition({any_unmet}) {word}, {target} : i64, i64")
    e.line("} do {")
    w, t = e.fresh(), e.fresh()
    e.line(f"^bb0({w}: i64, {t}: i64):")
    slow = e.child(e.fresh()[1:] + "s")
    _progress_word(slow, worker, w, t)
    if sleep_ns:
        slow.line(f"nvvm.nanosleep {slow.const(int(sleep_ns), 'i32')}")
    e.lines += ["  " + line for line in slow.lines]
    e.line("  scf.yield")
    e.line("}")
    e.line('llvm.fence syncscope("device") acquire')


def _spin(e: Emitter, word: str, target: str, sleep_ns: int = 32) -> None:
    """Thread 0 polls the counter word (acquire loads), sleeping `sleep_ns` between polls (0: none)."""
    ptr = e.emit(f"llvm.getelementptr %counters[{word}] : (!llvm.ptr, i64) -> !llvm.ptr, i64")
    e.line("scf.while : () -> () {")
    v = e.fresh()
    c = e.fresh()
    e.line(f"  {v} = llvm.load {ptr} atomic syncscope(\"device\") acquire {{alignment = 8 : i64}} : !llvm.ptr -> i64")
    e.line(f"  {c} = arith.cmpi ult, {v}, {target} : i64")
    e.line(f"  scf.condition({c})")
    e.line("} do {")
    if sleep_ns:
        pause = e.fresh()
        e.line(f"  {pause} = arith.constant {int(sleep_ns)} : i32")
        e.line(f"  nvvm.nanosleep {pause}")
    e.line("  scf.yield")
    e.line("}")


def _profile_base(e: Emitter, layout: Layout) -> str:
    """The profile buffer's address (loaded once per run call, not on the stamped path)."""
    src = e.emit(f"llvm.getelementptr %buffers[{layout.buffers.index(abi.PROFILE_BUFFER)}] : (!llvm.ptr) -> !llvm.ptr, i64")
    return e.emit(f"llvm.inttoptr {e.emit(f'llvm.load {src} : !llvm.ptr -> i64')} : i64 to !llvm.ptr")


def _stamp(e: Emitter, base: str, first_record: str, tile: str, field: int, worker: str | None,
           phases: bool = False, reached: tuple[str, str] | None = None) -> None:
    """Profile record of tile `tile` of a task whose records start at `first_record` (SSA), each
    abi.PROFILE_RECORD_WORDS i64 words, in the profile buffer at `base` (_profile_base): write
    %globaltimer at `field`, the worker at word 2 if given, with `phases` the tile's phase slots at words
    3..., and the (reached, polled) times if given in the last two words."""
    now = e.emit("nvvm.read.ptx.sreg.globaltimer : i64")
    record = e.binary("muli", e.binary("addi", tile, first_record),
                      e.const(abi.PROFILE_RECORD_WORDS))

    def store(k: int, value: str) -> None:
        ptr = e.emit(f"llvm.getelementptr {base}[{e.binary('addi', record, e.const(k))}] : (!llvm.ptr, i64) -> !llvm.ptr, i64")
        e.line(f"llvm.store {value}, {ptr} : i64, !llvm.ptr")
    store(field, now)
    if worker:
        store(2, worker)
    if phases:
        _phase_slots(e, lambda e, slot, k: store(3 + k, e.emit(f"llvm.load {slot} : !llvm.ptr<3> -> i64")))
    if reached:
        for k, value in enumerate(reached):
            store(3 + abi.PROFILE_PHASES + k, value)


def _phase_slots(e: Emitter, each) -> None:
    """each(e, slot pointer, k) for the tile's phase stamp slots in shared memory (abi.PROFILE_PHASE_SMEM)."""
    mem_t = "memref<?xi8, #gpu.address_space<workgroup>>"
    mem = e.emit(f"gpu.dynamic_shared_memory : {mem_t}")
    idx = e.emit(f"memref.extract_aligned_pointer_as_index {mem} : {mem_t} -> index")
    base = e.emit(f"llvm.inttoptr {e.emit(f'arith.index_cast {idx} : index to i64')} : i64 to !llvm.ptr<3>")
    for k in range(abi.PROFILE_PHASES):
        offset = e.const(abi.PROFILE_PHASE_SMEM + 8 * k)
        each(e, e.emit(f"llvm.getelementptr {base}[{offset}] : (!llvm.ptr<3>, i64) -> !llvm.ptr<3>, i8"), k)


def _progress(e: Emitter, worker: str, state: int, task32: str, tile: str) -> None:
    """Record the worker's state, task id (`task32`, i32 SSA) and tile for the watchdog."""
    base = e.binary("muli", worker, e.const(abi.PROGRESS_WORDS))
    for k, value in enumerate((e.const(state, "i32"), task32,
                               e.emit(f"arith.trunci {tile} : i64 to i32"))):
        idx = e.binary("addi", base, e.const(k))
        ptr = e.emit(f"llvm.getelementptr %progress[{idx}] : (!llvm.ptr, i64) -> !llvm.ptr, i32")
        e.line(f"llvm.store volatile {value}, {ptr} : i32, !llvm.ptr")


def _progress_word(e: Emitter, worker: str, word: str, target: str) -> None:
    """Record the counter word this worker waits on and the count it needs (for the watchdog)."""
    base = e.binary("muli", worker, e.const(abi.PROGRESS_WORDS))
    for k, value in ((3, word), (4, target)):
        ptr = e.emit(f"llvm.getelementptr %progress[{e.binary('addi', base, e.const(k))}] : (!llvm.ptr, i64) -> !llvm.ptr, i32")
        e.line(f"llvm.store volatile {e.emit(f'arith.trunci {value} : i64 to i32')}, {ptr} : i32, !llvm.ptr")


def _kernel(program: SmTaskProgram, layout: Layout, spin_sleep_ns: int = 32,
            constants: SharedConstants | None = None, units: list[RunUnit] | None = None) -> str:
    """The worker loop: this block's static queue (a switch on the task id picks the run function; with
    shared run functions, `units`, a switch on the run unit that DISPATCH_TABLE gives for the task id,
    which also gives the task's descriptor), then, when the program has dynamic tasks, popping the ready
    queue until every dynamic tile has run. The next queue entry (and its dispatch word) is loaded before
    the current one runs (its latency hides behind the tiles); with `constants`, the run functions read
    sizes and buffer addresses from shared memory."""
    staging, buffers, sizes = _stage_constants(constants)
    call = (f"func.call @etc_run_{{id}}({buffers}, {sizes}, %counters, %progress, %ready, %epoch, {{first}}, "
            f"{{stride}}) : {_RUN_TYPES} -> ()")
    if units:
        def unit_call(unit: RunUnit) -> str:
            desc = (", %desc", ", i64") if unit.shared else ("", "")
            return (f"func.call @{unit.name}({buffers}, {sizes}, %counters, %progress, %ready, %epoch, %first, "
                    f"%stride{desc[0]}) : {_RUN_TYPES[:-1]}{desc[1]}) -> ()")
        cases = "\n".join(f"""      case {k} {{
        {unit_call(unit)}
        scf.yield
      }}""" for k, unit in enumerate(units))
        # entries two ahead: the dispatch word of the next entry is loaded from its task id, which arrived
        # during the previous iteration, so neither load waits
        loop = f"""%c32 = arith.constant 32 : i64
    %low = arith.constant 4294967295 : i64
    %six = arith.constant 6 : i64
    %e0:3 = {_load_entry("%any", "%start", "a")}
    %start1 = arith.addi %start, %three : i64
    %any1 = arith.cmpi slt, %start1, %end : i64
    %e1:3 = {_load_entry("%any1", "%start1", "c")}{_dispatch_word("%e0#0", "a", "    ")}
    %last:7 = scf.for %entry = %start to %end step %three iter_args(%task32 = %e0#0, %f32 = %e0#1, %st32 = %e0#2,
        %d64 = %adw, %ntask = %e1#0, %nf = %e1#1, %nst = %e1#2) -> (i32, i32, i32, i64, i32, i32, i32) : i64 {{
      %next2 = arith.addi %entry, %six : i64
      %more = arith.cmpi slt, %next2, %end : i64
      %n:3 = {_load_entry("%more", "%next2", "b")}{_dispatch_word("%ntask", "b", "      ")}
      %first = arith.extsi %f32 : i32 to i64
      %stride = arith.extsi %st32 : i32 to i64
      %unit64 = arith.shrui %d64, %c32 : i64
      %desc = arith.andi %d64, %low : i64
      %unit = arith.index_cast %unit64 : i64 to index
      scf.index_switch %unit
{cases}
      default {{
        scf.yield
      }}
      scf.yield %ntask, %nf, %nst, %bdw, %n#0, %n#1, %n#2 : i32, i32, i32, i64, i32, i32, i32
    }}"""
    else:
        static_cases = "\n".join(f"""      case {t.id} {{
        {call.format(id=t.id, first="%first", stride="%stride")}
        scf.yield
      }}""" for t in program.tasks if t.schedule == "static")
        loop = f"""%e0:3 = {_load_entry("%any", "%start", "a")}
    %last:3 = scf.for %entry = %start to %end step %three iter_args(%task32 = %e0#0, %f32 = %e0#1, %st32 = %e0#2)
        -> (i32, i32, i32) : i64 {{
      %next = arith.addi %entry, %three : i64
      %more = arith.cmpi slt, %next, %end : i64
      %n:3 = {_load_entry("%more", "%next", "b")}
      %first = arith.extsi %f32 : i32 to i64
      %stride = arith.extsi %st32 : i32 to i64
      %task = arith.index_cast %task32 : i32 to index
      scf.index_switch %task
{static_cases}
      default {{
        scf.yield
      }}
      scf.yield %n#0, %n#1, %n#2 : i32, i32, i32
    }}"""
    params = ", ".join(f"%{p}: {'i64' if p == 'epoch' else '!llvm.ptr'}" for p in abi.KERNEL_PARAMS)
    dynamic = [t for t in program.tasks if t.schedule == "dynamic"]
    bounds = f"nvvm.maxntid = array<i32: {program.kernel.block_size}, 1, 1>, nvvm.minctasm = 1 : i32"
    return f"""gpu.func @{abi.KERNEL_NAME}({params}) kernel attributes {{{bounds}}} {{
    %w = gpu.block_id x
    %w64 = arith.index_cast %w : index to i64
    %one = arith.constant 1 : i64
    %three = arith.constant 3 : i64
    %w1 = arith.addi %w64, %one : i64
    %p0 = llvm.getelementptr %queue_offsets[%w64] : (!llvm.ptr, i64) -> !llvm.ptr, i32
    %p1 = llvm.getelementptr %queue_offsets[%w1] : (!llvm.ptr, i64) -> !llvm.ptr, i32
    %s32 = llvm.load %p0 : !llvm.ptr -> i32
    %e32 = llvm.load %p1 : !llvm.ptr -> i32
    %start = arith.extsi %s32 : i32 to i64
    %end = arith.extsi %e32 : i32 to i64
{staging}
    %any = arith.cmpi slt, %start, %end : i64
    {loop}
{_dynamic_loop(program, layout, dynamic, call, spin_sleep_ns) if dynamic else ""}
    gpu.return
  }}"""


def _dispatch_word(task32: str, tag: str, indent: str) -> str:
    """Lines loading DISPATCH_TABLE's word for task id `task32` (i32) into %<tag>dw."""
    return "".join(f"\n{indent}{line}" for line in (
        f"%{tag}dt = llvm.mlir.addressof @{DISPATCH_TABLE} : !llvm.ptr<4>",
        f"%{tag}t64 = arith.extui {task32} : i32 to i64",
        f"%{tag}dp = llvm.getelementptr %{tag}dt[%{tag}t64] : (!llvm.ptr<4>, i64) -> !llvm.ptr<4>, i64",
        f"%{tag}dw = llvm.load %{tag}dp : !llvm.ptr<4> -> i64"))


def _load_entry(valid: str, entry: str, tag: str) -> str:
    """An scf.if yielding the (task, first, stride) queue entry at `entry` where `valid`, else zeros
    (the entry past a queue's end is not read)."""
    loads = "\n".join(f"""        %{tag}p{k} = llvm.getelementptr %queue_entries[%{tag}i{k}] : (!llvm.ptr, i64) -> !llvm.ptr, i32
        %{tag}v{k} = llvm.load %{tag}p{k} : !llvm.ptr -> i32""" for k in range(3))
    offsets = "\n".join(f"        %{tag}k{k} = arith.constant {k} : i64\n"
                         f"        %{tag}i{k} = arith.addi {entry}, %{tag}k{k} : i64" for k in range(3))
    return f"""scf.if {valid} -> (i32, i32, i32) {{
{offsets}
{loads}
        scf.yield %{tag}v0, %{tag}v1, %{tag}v2 : i32, i32, i32
      }} else {{
        %{tag}z = arith.constant 0 : i32
        scf.yield %{tag}z, %{tag}z, %{tag}z : i32, i32, i32
      }}"""


def _stage_constants(constants: SharedConstants | None) -> tuple[str, str, str]:
    """(the kernel lines, the buffer table, the sizes) the run functions get: every thread copies its share
    of `sizes` (and of the buffer addresses) into shared memory, then a barrier; without `constants` the
    kernel's own parameters."""
    if constants is None:
        return "", "%buffers", "%sizes"
    e = Emitter(prefix="k")
    base = e.emit("llvm.mlir.addressof @etc_dynamic_smem : !llvm.ptr<3>")
    tid = e.emit(f"arith.index_cast {e.emit('gpu.thread_id x')} : index to i64")
    threads = e.emit(f"arith.index_cast {e.emit('gpu.block_dim x')} : index to i64")
    names, casts = {"%buffers": "%buffers", "%sizes": "%sizes"}, []
    copies = [("%sizes", constants.symbols, constants.offset)]
    if constants.buffers:
        copies.append(("%buffers", constants.buffers, constants.buffers_offset))
    for source, count, first in copies:
        slots = e.emit(f"llvm.getelementptr {base}[{first}] : (!llvm.ptr<3>) -> !llvm.ptr<3>, i8")
        i = e.fresh()
        e.line(f"scf.for {i} = {tid} to {e.const(count)} step {threads} : i64 {{")
        src = e.emit(f"llvm.getelementptr {source}[{i}] : (!llvm.ptr, i64) -> !llvm.ptr, i64")
        dst = e.emit(f"llvm.getelementptr {slots}[{i}] : (!llvm.ptr<3>, i64) -> !llvm.ptr<3>, i64")
        e.line(f"llvm.store {e.emit(f'llvm.load {src} : !llvm.ptr -> i64')}, {dst} : i64, !llvm.ptr<3>")
        e.line("}")
        if source == "%sizes":  # the epoch after the sizes (every thread stores the same value)
            at = e.emit(f"llvm.getelementptr {slots}[{count}] : (!llvm.ptr<3>) -> !llvm.ptr<3>, i64")
            e.line(f"llvm.store %epoch, {at} : i64, !llvm.ptr<3>")
        names[source] = f"{source}_s"
        casts.append(f"{names[source]} = llvm.addrspacecast {slots} : !llvm.ptr<3> to !llvm.ptr")
    e.line("gpu.barrier")
    return e.body("    ") + "\n" + "\n".join("    " + line for line in casts), names["%buffers"], names["%sizes"]


def _dynamic_loop(program: SmTaskProgram, layout: Layout, dynamic: list[Task], call: str,
                  spin_sleep_ns: int = 32) -> str:
    """Block 0 pushes the dynamic tiles that wait on nothing; then every block pops slots in order
    (thread 0 claims the next slot and spins until it is filled) until all dynamic tiles have run.
    Claims follow push order, and a tile is pushed only when its waits are met, so some claimed tile can
    always run: the loop cannot deadlock."""
    e = Emitter(prefix="d")
    total = e.const(0)
    counts = {}
    for t in dynamic:
        symbols = layout.symbol_indices(t.symbols)
        n = e.const(1)
        for x in e.affine_map(t.grid, [], symbols):
            n = e.binary("muli", n, x)
        counts[t.id] = n
        total = e.binary("addi", total, n)
    tid = e.emit("gpu.thread_id x")
    leader = e.emit(f"arith.cmpi eq, {tid}, {e.emit('arith.constant 0 : index')} : index")
    block0 = e.emit(f"arith.cmpi eq, %w64, {e.const(0)} : i64")
    first = e.emit(f"arith.andi {leader}, {block0} : i1")
    e.line(f"scf.if {first} {{")
    e.line('  llvm.fence syncscope("device") release')
    for t in dynamic:
        if t.waits:
            continue
        e.line(f"  scf.for %i{t.id} = {e.const(0)} to {counts[t.id]} step {e.const(1)} : i64 {{")
        body = Emitter(prefix=f"i{t.id}_")
        _push(body, layout, t.id, f"%i{t.id}")
        e.lines += ["    " + line for line in body.lines]
        e.line("  }")
    e.line("}")
    total32 = e.emit(f"arith.trunci {total} : i64 to i32")
    smem = e.emit("llvm.mlir.addressof @etc_popped : !llvm.ptr<3>")
    zero32, one32 = e.const(0, "i32"), e.const(1, "i32")
    header, mask, shift = e.const(abi.READY_HEADER_WORDS), e.const((1 << TILE_BITS) - 1), e.const(TILE_BITS)
    sleep = ("\n            %pause = arith.constant " + str(int(spin_sleep_ns)) + " : i32\n            nvvm.nanosleep %pause"
             if spin_sleep_ns else "")
    cases = "\n".join(f"""        case {t.id} {{
          {call.format(id=t.id, first="%tile", stride="%one")}
          scf.yield
        }}""" for t in dynamic)
    return e.body("    ") + f"""
    %popped = scf.while : () -> i32 {{
      scf.if {leader} {{
        %headp = llvm.getelementptr %ready[0] : (!llvm.ptr) -> !llvm.ptr, i32
        %claim = llvm.atomicrmw add %headp, {one32} monotonic : !llvm.ptr, i32
        %inrange = arith.cmpi ult, %claim, {total32} : i32
        %value = scf.if %inrange -> (i32) {{
          %c64 = arith.extui %claim : i32 to i64
          %at = arith.addi %c64, {header} : i64
          %slotp = llvm.getelementptr %ready[%at] : (!llvm.ptr, i64) -> !llvm.ptr, i32
          %got = scf.while (%seen = {zero32}) : (i32) -> i32 {{
            %v = llvm.load %slotp atomic syncscope("device") acquire {{alignment = 4 : i64}} : !llvm.ptr -> i32
            %empty = arith.cmpi eq, %v, {zero32} : i32
            scf.condition(%empty) %v : i32
          }} do {{
          ^bb0(%x: i32):{sleep}
            scf.yield %x : i32
          }}
          scf.yield %got : i32
        }} else {{
          scf.yield {zero32} : i32
        }}
        llvm.store %value, {smem} : i32, !llvm.ptr<3>
      }}
      gpu.barrier
      %slot = llvm.load {smem} : !llvm.ptr<3> -> i32
      gpu.barrier
      %more = arith.cmpi ne, %slot, {zero32} : i32
      scf.condition(%more) %slot : i32
    }} do {{
    ^bb0(%packed: i32):
      %p64 = arith.extui %packed : i32 to i64
      %unpacked = arith.subi %p64, %one : i64
      %tile = arith.andi %unpacked, {mask} : i64
      %tid64 = arith.shrui %unpacked, {shift} : i64
      %dtask = arith.index_cast %tid64 : i64 to index
      scf.index_switch %dtask
{cases}
        default {{
          scf.yield
        }}
      scf.yield
    }}"""


def compile_to_ptx(gpu_module_text: str, chip: str = "sm_90a") -> str:
    """Lower a gpu.module (MLIR text) through the upstream GPU and NVVM dialects to PTX text."""
    from etc.codegen.ptxas import compile_ptx_text

    return compile_ptx_text(f"module attributes {{gpu.container_module}} {{\n{gpu_module_text}\n}}", chip)


def ptx_of(module) -> str:
    """The PTX text of the module's gpu.binary."""
    from mlir import ir
    from mlir.dialects import gpu

    for op in mlir.ops_named(module.operation, "gpu.binary"):
        return gpu.ObjectAttr(ir.ArrayAttr(op.attributes["objects"])[0]).object.decode()
    raise EtcError("the GPU lowering produced no gpu.binary")


def _push(e: Emitter, layout: Layout, task_id: int, tile: str) -> None:
    """Append tile `tile` of dynamic task `task_id` to the ready queue (after the caller's fence)."""
    tail = e.emit("llvm.getelementptr %ready[1] : (!llvm.ptr) -> !llvm.ptr, i32")
    slot = e.emit(f"llvm.atomicrmw add {tail}, {e.const(1, 'i32')} monotonic : !llvm.ptr, i32")
    index = e.binary("addi", e.emit(f"arith.extui {slot} : i32 to i64"), e.const(abi.READY_HEADER_WORDS))
    ptr = e.emit(f"llvm.getelementptr %ready[{index}] : (!llvm.ptr, i64) -> !llvm.ptr, i32")
    packed = e.binary("addi", e.binary("ori", e.const(task_id << TILE_BITS), tile), e.const(1))
    e.line(f"llvm.store volatile {e.emit(f'arith.trunci {packed} : i64 to i32')}, {ptr} : i32, !llvm.ptr")


def _release_consumers(e: Emitter, layout: Layout, consumer: Task, wait_map, elem: list[str]) -> None:
    """Count one met wait for every tile of `consumer` whose wait_map lands on counter element `elem`;
    push the tiles whose waits are now all met. Those tiles form a box: a wait coordinate d_k fixes
    tile dim k, d_k floordiv c bounds it to c values, a dim the map does not use is free."""
    symbols = layout.symbol_indices(consumer.symbols)
    extents = e.affine_map(consumer.grid, [], symbols)
    lo = [e.const(0) for _ in extents]
    hi = list(extents)
    for value, expr in zip(elem, wait_map.results):
        expr = mlir.downcast(expr)
        if isinstance(expr, ir.AffineDimExpr):
            lo[expr.position], hi[expr.position] = value, e.binary("addi", value, e.const(1))
        elif isinstance(expr, ir.AffineFloorDivExpr) and isinstance(mlir.downcast(expr.lhs), ir.AffineDimExpr) \
                and mlir.is_constant(expr.rhs):
            k, c = mlir.downcast(expr.lhs).position, mlir.constant_value(expr.rhs)
            lo[k] = e.binary("muli", value, e.const(c))
            hi[k] = e.binary("minsi", e.binary("addi", lo[k], e.const(c)), extents[k])
        elif not mlir.is_constant(expr):
            raise EtcError(f"task '{consumer.name}': wait coordinate {expr} cannot be inverted for the ready queue")
    coords = [f"%q{consumer.id}_{k}_{len(e.lines)}" for k in range(len(extents))]
    for k, c in enumerate(coords):
        e.line(f"scf.for {c} = {lo[k]} to {hi[k]} step {e.const(1)} : i64 {{")
    inner = Emitter(prefix=f"r{consumer.id}_{len(e.lines)}_")
    tile = inner.const(0)
    for c, x in zip(coords, extents):
        tile = inner.binary("addi", inner.binary("muli", tile, x), c)
    base = layout.pending_offset[consumer.id] + abi.READY_HEADER_WORDS + layout.ready_capacity
    ptr = inner.emit(f"llvm.getelementptr %ready[{inner.binary('addi', tile, inner.const(base))}] "
                     ": (!llvm.ptr, i64) -> !llvm.ptr, i32")
    met = inner.emit(f"llvm.atomicrmw add {ptr}, {inner.const(1, 'i32')} monotonic : !llvm.ptr, i32")
    ready = inner.emit(f"arith.cmpi eq, {met}, {inner.const(len(consumer.waits) - 1, 'i32')} : i32")
    inner.line(f"scf.if {ready} {{")
    body = Emitter(prefix=f"u{consumer.id}_{len(e.lines)}_")
    _push(body, layout, consumer.id, tile)
    inner.lines += ["  " + line for line in body.lines]
    inner.line("}")
    e.lines += ["  " * len(coords) + line for line in inner.lines]
    for k in reversed(range(len(coords))):
        e.line("  " * k + "}")
