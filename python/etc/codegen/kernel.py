"""The persistent megakernel: scheduled sm_task IR -> one `gpu.module` (MLIR text) holding the worker
loop (`gpu.func @etc_megakernel`), one run function per task and the tile library's tile functions.

Worker loop (block w = worker w, etc.codegen.abi has the parameters):
    for each (task, first, stride) in w's static queue:      # parametric: tile counts from `sizes`
      for tile = first; tile < tile_count(task); tile += stride:
        thread 0: record progress; spin with acquire loads until every counter element the tile waits on
                  reaches (epoch << 32) + target
        barrier; acquire fence; run the tile function (every thread); release fence; barrier
        thread 0: for each counter element the tile signals: atomicMax(epoch << 32), atomicAdd(1)
The release fence is explicit because LLVM 22 drops release ordering on atomicrmw (TOOLCHAIN.md).
Queues list tasks in topological order, so the loop cannot deadlock (see etc-static-schedule).
"""
from __future__ import annotations

import dataclasses
import re

from etc import mlir_adapter as mlir
from etc.codegen import abi
from etc.codegen.emit import Emitter
from etc.errors import EtcError
from etc.sm_task_ir import SmTaskProgram, Task

I64 = "i64"


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
        q_offsets, entries = [0], []
        for w in range(program.kernel.num_workers):
            for entry in program.static_queues.get(w, []):
                entries += [entry.task, entry.first, entry.stride]
            q_offsets.append(len(entries))
        return cls([d.name for d in program.dims], [b.name for b in program.buffers], offsets, extents, words,
                   q_offsets, entries)


def emit_gpu_module(program: SmTaskProgram, tile_functions: dict[int, str], layout: Layout) -> str:
    """MLIR text of `gpu.module @etc` for a statically scheduled program."""
    dynamic = [t.id for t in program.tasks if t.schedule != "static"]
    if dynamic:
        raise EtcError(f"the GPU kernel runs static schedules only so far; tasks {dynamic[:4]} are dynamic "
                       "(compile with schedule='static')")
    from etc.codegen.tile_library import DYNAMIC_SHARED_DECL

    parts = [DYNAMIC_SHARED_DECL] + [tile_functions[t.id] for t in program.tasks]
    parts += [_run_function(t, program, layout) for t in program.tasks]
    parts.append(_kernel(program))
    body = "\n\n".join(parts)
    return f"gpu.module @{abi.GPU_MODULE} {{\n{body}\n}}"


def shared_bytes(tile_function_text: str) -> int:
    """The dynamic shared memory a tile function declares (its etc.shared_bytes attribute)."""
    m = re.search(r"etc\.shared_bytes = (\d+)", tile_function_text)
    return int(m.group(1)) if m else 0


_RUN_ARGS = ("%buffers: !llvm.ptr, %sizes: !llvm.ptr, %counters: !llvm.ptr, %progress: !llvm.ptr, "
             "%epoch: i64, %first: i64, %stride: i64")


def _run_function(task: Task, program: SmTaskProgram, layout: Layout) -> str:
    """func.func @etc_run_<id>: run this worker's tiles first, first+stride, ... of one task."""
    e = Emitter()
    symbols = [layout.symbols.index(s) for s in task.symbols]
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
    lines = e.lines
    # The tile loop.
    loop = Emitter(prefix="t")
    loop.sizes_ptr = "%sizes"
    loop._size_values = dict(e._size_values)  # sizes already loaded above dominate the loop body
    coords = _delinearize(loop, "%tile", extents)
    coords += [loop.const(0)] * (abi.MAX_GRID_RANK - len(coords))
    waits = [(c, m) for c, m in zip(task.waits, task.wait_maps)]
    signals = [(c, m) for c, m in zip(task.signals, task.signal_maps)]
    # thread 0: progress and waits
    lead = Emitter(prefix="w")
    lead._size_values = dict(loop._size_values)
    _progress(lead, worker64, abi.PROGRESS_WAITING, task.id, "%tile")
    for name, m in waits:
        word = _counter_word(lead, layout, name, m, coords[:m.n_dims], symbols)
        target = _target(lead, program, layout, name, m, coords[:m.n_dims], symbols, shifted_epoch)
        _progress_word(lead, worker64, word, target)
        _spin(lead, word, target)
    _progress(lead, worker64, abi.PROGRESS_RUNNING, task.id, "%tile")
    signal = Emitter(prefix="s")
    signal._size_values = dict(loop._size_values)
    for name, m in signals:
        word = _counter_word(signal, layout, name, m, coords[:m.n_dims], symbols)
        ptr = signal.emit(f"llvm.getelementptr %counters[{word}] : (!llvm.ptr, i64) -> !llvm.ptr, i64")
        signal.emit(f"llvm.atomicrmw umax {ptr}, {shifted_epoch} monotonic : !llvm.ptr, i64")
        signal.emit(f"llvm.atomicrmw add {ptr}, {signal.const(1)} monotonic : !llvm.ptr, i64")
    _progress(signal, worker64, abi.PROGRESS_DONE, task.id, "%tile")
    call = (f"func.call @{abi.tile_function_name(task.id)}(%buffers, %sizes, {coords[0]}, {coords[1]}, {coords[2]})"
            " : (!llvm.ptr, !llvm.ptr, i64, i64, i64) -> ()")
    loop_body = loop.body("      ") + f"""
      scf.if {is_leader} {{
{lead.body("        ")}
      }}
      gpu.barrier
      llvm.fence syncscope("device") acquire
      {call}
      llvm.fence syncscope("device") release
      gpu.barrier
      scf.if {is_leader} {{
{signal.body("        ")}
      }}"""
    return f"""func.func @etc_run_{task.id}({_RUN_ARGS}) {{
{chr(10).join("    " + l for l in lines)}
    scf.for %tile = %first to {count} step %stride : i64 {{
{loop_body}
    }}
    return
}}"""


def symbols_of(program: SmTaskProgram, counter: str, layout: Layout) -> list[int]:
    return [layout.symbols.index(s) for s in program.counter(counter).symbols]


def _delinearize(e: Emitter, index: str, extents: list[str]) -> list[str]:
    """Row-major coordinates of a linear tile index."""
    coords = []
    rest = index
    for x in reversed(extents[1:]):
        coords.append(e.binary("remsi", rest, x))
        rest = e.binary("divsi", rest, x)
    coords.append(rest)
    return list(reversed(coords))


def _counter_word(e: Emitter, layout: Layout, name: str, m, coords: list[str], task_symbols: list[int]) -> str:
    """The u64 word index of counter element m(coords) (m is over the task's symbols); strides from the
    counter's max extents."""
    elem = e.affine_map(m, coords, task_symbols)
    word = e.const(layout.counter_offset[name])
    strides = []
    acc = 1
    for x in reversed(layout.counter_extents[name]):
        strides.append(acc)
        acc *= x
    for value, stride in zip(elem, reversed(strides)):
        word = e.binary("addi", word, e.binary("muli", value, e.const(stride)))
    return word


def _target(e: Emitter, program, layout: Layout, name: str, m, coords, task_symbols, shifted_epoch: str) -> str:
    """(epoch << 32) + the counter's target at element m(coords)."""
    counter = program.counter(name)
    elem = e.affine_map(m, coords, task_symbols)
    n = e.affine(counter.target.results[0], elem, symbols_of(program, name, layout))
    return e.binary("addi", shifted_epoch, n)


def _spin(e: Emitter, word: str, target: str) -> None:
    ptr = e.emit(f"llvm.getelementptr %counters[{word}] : (!llvm.ptr, i64) -> !llvm.ptr, i64")
    e.line(f"scf.while : () -> () {{")
    v = e.fresh()
    c = e.fresh()
    e.line(f"  {v} = llvm.load {ptr} atomic syncscope(\"device\") acquire {{alignment = 8 : i64}} : !llvm.ptr -> i64")
    e.line(f"  {c} = arith.cmpi ult, {v}, {target} : i64")
    e.line(f"  scf.condition({c})")
    e.line("} do {")
    pause = e.fresh()
    e.line(f"  {pause} = arith.constant 32 : i32")
    e.line(f"  nvvm.nanosleep {pause}")
    e.line("  scf.yield")
    e.line("}")


def _progress(e: Emitter, worker: str, state: int, task_id: int, tile: str) -> None:
    base = e.binary("muli", worker, e.const(abi.PROGRESS_WORDS))
    for k, value in enumerate((e.const(state, "i32"), e.const(task_id, "i32"),
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


def _kernel(program: SmTaskProgram) -> str:
    """The worker loop over this block's static queue; a switch on the task id picks the run function."""
    cases = "\n".join(
        f"""      case {t.id} {{
        func.call @etc_run_{t.id}(%buffers, %sizes, %counters, %progress, %epoch, %first, %stride) : (!llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, i64, i64, i64) -> ()
        scf.yield
      }}""" for t in program.tasks)
    params = ", ".join(f"%{p}: {'i64' if p == 'epoch' else '!llvm.ptr'}" for p in abi.KERNEL_PARAMS)
    return f"""gpu.func @{abi.KERNEL_NAME}({params}) kernel {{
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
    scf.for %entry = %start to %end step %three : i64 {{
      %pt = llvm.getelementptr %queue_entries[%entry] : (!llvm.ptr, i64) -> !llvm.ptr, i32
      %pf = llvm.getelementptr %pt[1] : (!llvm.ptr) -> !llvm.ptr, i32
      %ps = llvm.getelementptr %pt[2] : (!llvm.ptr) -> !llvm.ptr, i32
      %task32 = llvm.load %pt : !llvm.ptr -> i32
      %f32 = llvm.load %pf : !llvm.ptr -> i32
      %st32 = llvm.load %ps : !llvm.ptr -> i32
      %first = arith.extsi %f32 : i32 to i64
      %stride = arith.extsi %st32 : i32 to i64
      %task = arith.index_cast %task32 : i32 to index
      scf.index_switch %task
{cases}
      default {{
        scf.yield
      }}
    }}
    gpu.return
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
