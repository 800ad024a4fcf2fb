"""Stand-alone kernels around tile functions, for testing them without the megakernel.

`harness_module_text(program, tasks)` is a builtin.module holding `gpu.module @etc` with each task's tile
function and a kernel `etc_check_<id>(%buffers: !llvm.ptr, %sizes: !llvm.ptr)` that runs every tile of the
task: block b takes tiles b, b + gridDim.x, ... (row-major over the grid, extents from the runtime sizes),
with a barrier around each call as the megakernel's workers do. `%buffers` holds every buffer of the program
(default_indices), then the address of ARRIVAL_WORDS zeroed u64 arrival counters (Tile.arrival_counters);
`%sizes` the runtime sizes, then the step's epoch (HARNESS_EPOCH: the caller runs one step).
"""
from __future__ import annotations

import contextlib

from etc.codegen.abi import tile_function_name
from etc.codegen.tile_library import DYNAMIC_SHARED_DECL, Tile, emit_tile_function


ARRIVAL_WORDS = 1 << 17  # arrival counters a check kernel's caller provides (an attention merge's partials)
HARNESS_EPOCH = 1  # the epoch a check kernel's caller passes after the sizes


def check_kernel_name(task_id: int) -> str:
    return f"etc_check_{task_id}"


def default_indices(program) -> tuple[dict[str, int], dict[str, int]]:
    return ({b.name: i for i, b in enumerate(program.buffers)}, {d.name: i for i, d in enumerate(program.dims)})


def check_kernel_text(task, program, buffer_index, symbol_index, issue: bool = False, idle: bool = False) -> str:
    """issue: call the tile's weight-stream issue function before the tile, as a worker does; idle: skip a
    tile whose `_idle` companion says another tile stands in for it, as a worker does."""
    t = Tile(task, program, buffer_index, symbol_index)
    b = t.b
    with b.at_entry():
        extents = [t._affine(e, task.symbols) for e in task.grid.results]
    extents = (extents + [1, 1, 1])[:3]
    count = b.mul(b.mul(b.const(extents[0], "i64"), extents[1]), extents[2])
    bid = b.cast(b.emit("gpu.block_id x", "index"), "i64")
    grid = b.cast(b.emit("gpu.grid_dim x", "index"), "i64")
    with b.loop(bid, count, grid) as i:
        c2 = b.rem(i, extents[2]) if not (isinstance(extents[2], int) and extents[2] == 1) else b.i64(0)
        rest = b.div(i, extents[2])
        c1 = b.rem(rest, extents[1]) if not (isinstance(extents[1], int) and extents[1] == 1) else b.i64(0)
        c0 = b.div(rest, extents[1])
        b.barrier()
        args = f"(%buffers, %sizes, {c0}, {c1}, {c2}) : (!llvm.ptr, !llvm.ptr, i64, i64, i64) -> ()"
        if idle:
            skip = b.emit(f"func.call @{tile_function_name(task.id)}_idle{args.replace('-> ()', '-> i1')}", "i1")
        with b.when(b.cmp("eq", b.zext(skip, "i64"), 0)) if idle else contextlib.nullcontext():
            if issue:
                b.stmt(f"func.call @{tile_function_name(task.id)}_issue{args}")
            b.stmt(f"func.call @{tile_function_name(task.id)}{args}")
        b.barrier()
    return "\n".join([f"gpu.func @{check_kernel_name(task.id)}(%buffers: !llvm.ptr, %sizes: !llvm.ptr) kernel {{",
                      b.text(), "  gpu.return", "}"])


def harness_module_text(program, tasks, buffer_index=None, symbol_index=None, weight_stream: bool = False,
                        profile: bool = False, ring_bytes: int | None = None) -> str:
    """weight_stream: linear tiles stream their weights (as etc-lower-to-gpu's weight-stream), through
    ring_bytes of the ring (its ring-kib; None: all of it); profile: tiles stamp their phases (as its
    profile)."""
    from etc.codegen.abi import tile_function_name
    from etc.codegen.tile_library import has_idle_function, has_issue_function

    if buffer_index is None or symbol_index is None:
        buffer_index, symbol_index = default_indices(program)
    parts = []
    for task in tasks:
        text = emit_tile_function(task, program, buffer_index, symbol_index, weight_stream, profile, ring_bytes)
        parts.append(text)
        name = tile_function_name(task.id)
        parts.append(check_kernel_text(task, program, buffer_index, symbol_index, has_issue_function(text, name),
                                       has_idle_function(text, name)))
    body = "\n".join(parts)
    return f"module attributes {{gpu.container_module}} {{\ngpu.module @etc {{\n{DYNAMIC_SHARED_DECL}\n{body}\n}}\n}}\n"


def task_signature(task, program) -> str:
    """What the generated code of a task depends on: kind, params, operand roles, types and shapes."""
    ops = [(program.buffer(name).element_type, str(program.buffer(name).sizes)) for name in task.reads + task.writes]
    return f"{task.kind}|{sorted(task.params.items(), key=str)}|{ops}"


def unique_tasks(program) -> list:
    """One task per distinct signature, in id order."""
    seen, out = set(), []
    for task in program.tasks:
        sig = task_signature(task, program)
        if sig not in seen:
            seen.add(sig)
            out.append(task)
    return out



# ---------------------------------------------------------------- hand-written one-task programs


def attr_text(v) -> str:
    """A Python value as MLIR attribute text (ints i64, floats f64), for hand-written test IR."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v} : i64"
    if isinstance(v, float):
        return f"{v:.17e} : f64"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(attr_text(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {attr_text(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def program_text(dims, buffers, kind: str, grid: str, reads, writes, params: dict, *, block_size: int = 256,
                 extra: str = "") -> str:
    """sm_task IR of a one-task program (enough for SmTaskProgram): dims [(name, min, max)], buffers
    [(name, role, etype, sizes text over s0, s1, ...)], the task's grid extents text and params; `extra` is
    appended (elementwise body funcs)."""
    n = len(dims)
    syms = "[" + ", ".join(f"s{i}" for i in range(n)) + "]"
    dvals = ", ".join(f"%d{i}" for i in range(n))
    idx = ", ".join(["index"] * n)
    lines = ["func.func @step() {"]
    for i, (name, lo, hi) in enumerate(dims):
        lines.append(f'  %d{i} = "event_tensor.dim"() {{name = "{name}", min = {lo} : i64, max = {hi} : i64}} '
                     ": () -> index")
    names = {}
    for i, (name, role, etype, sizes) in enumerate(buffers):
        names[name] = f"%b{i}"
        lines.append(f'  %b{i} = "event_tensor.buffer"({dvals}) {{name = "{name}", role = "{role}", '
                     f"element_type = {etype}, sizes = affine_map<(){syms} -> ({sizes})>}} : ({idx}) "
                     "-> !event_tensor.buf")
    lines.append(f'  "sm_task.kernel"({dvals}, {", ".join(names.values())}) {{operandSegmentSizes = array<i32: {n}, '
                 f'{len(names)}>, sym_name = "k", num_workers = 1 : i64, block_size = {block_size} : i64}} : '
                 f"({', '.join(['index'] * n + ['!event_tensor.buf'] * len(names))}) -> ()")
    operands = [f"%d{i}" for i in range(n)] + [names[b] for b in reads] + [names[b] for b in writes]
    types = ["index"] * n + ["!event_tensor.buf"] * (len(reads) + len(writes))
    lines.append(f'  "sm_task.task"({", ".join(operands)}) {{operandSegmentSizes = array<i32: {n}, {len(reads)}, '
                 f'{len(writes)}, 0, 0>, id = 0 : i64, name = "{kind}", kind = "{kind}", '
                 f"grid = affine_map<(){syms} -> ({grid})>, wait_maps = [], signal_maps = [], "
                 f'params = {attr_text(params)}, schedule = "static"}} : ({", ".join(types)}) -> ()')
    lines.append('  "sm_task.static_queue"() {worker = 0 : i64, entries = array<i64: 0, 0, 1>} : () -> ()')
    lines += ["  return", "}", extra]
    return "\n".join(lines)


def program_of_text(text: str):
    """SmTaskProgram of sm_task IR text (parsed in a fresh context; the program keeps the module alive)."""
    from etc import mlir_adapter as mlir
    from etc.sm_task_ir import SmTaskProgram

    return SmTaskProgram.of(mlir.parse(text, mlir.new_context(), "tile-case.mlir"))
