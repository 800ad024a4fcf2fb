"""etc-lower-to-gpu: build the persistent megakernel of a statically scheduled sm_task program as a
`gpu.module` of the upstream GPU dialect.

Matches: the func.func holding an sm_task.kernel, its tasks, counters and static queues.
Produces: `gpu.module @etc` (and `gpu.container_module` on the module) with
  - one tile function per distinct tile (`@etc_tile_<id>` of the first task using it, from the tile
    library: arith/math/scf/llvm/nvvm/gpu ops); it reaches buffers through its task's operand table,
    so the 16 layers of a model share their tile functions,
  - run functions (the worker's tiles of a task, with counter waits and signals around each): tasks whose
    run functions differ only in their buffers, counters and id (a model's layers) share one,
    `@etc_run_shared_<id>`, which reads them from the task's descriptor (`@etc_run_desc`, constant
    memory); the others, and every task of a dynamic schedule, get their own, `@etc_run_<id>`,
  - `gpu.func @etc_megakernel ... kernel`: each block is a worker that walks its static queue (the run
    function of an entry, and its descriptor, from the task id's word of `@etc_run_dispatch`).
The sm_task function stays: it is the bundle's metadata; sm_task.kernel gets `shared_bytes`, the
dynamic shared memory the launch needs: the largest tile's, then the worker's run-time constants (sizes and
buffer addresses), or, where those do not fit past the ring, between the tiles' scratch and the ring
(kernel.SharedConstants). Upstream passes then lower the gpu.module to
PTX (etc.pipeline.codegen_pipeline).
With weight-stream=true (the default), linear tiles whose in_features is a multiple of 256 read their
weights through shared memory: bulk copies (cp.async.bulk) fill a ring of stages that complete on
mbarriers (etc.codegen.weight_stream), and the worker issues the first stages before it waits on the
tile's input events, so HBM streams them while the tile waits; such a tile's own scratch must fit below
the ring (96 KiB). ring-kib=N: the stages use N KiB of the ring's 128 (0, the default: 64 for models
with at most 64 MiB of weights per worker, where fewer bytes in flight measured faster, else 128;
etc.codegen.weight_stream.auto_ring_bytes). weight-stream=false: every lane loads its weights from
global memory.
spin-sleep=N: a waiting worker's thread 0 sleeps N ns between polls of its counter (0: spins).
With profile=true, each tile's leader thread stamps %globaltimer when its waits are met and after it
signals, with the phases the tile stamped in between (abi.PROFILE_PHASES: linear and attention tiles),
into the workspace buffer 'etc.profile' (the bundle says where each task's records start).
Guarantees: waits are acquire loads, every signal is preceded by a release fence (LLVM 22 drops release
ordering on atomicrmw), counters follow the epoch scheme of sm_task.counter and are never reset.
Schedules may be all static or all dynamic (the ready queue; a dynamic tile is pushed by the last
signal it waits for); hybrid schedules and early push are rejected for now, with a diagnostic.

Before:
  "sm_task.task"(...) {id = 0 : i64, kind = "linear", ...}
  "sm_task.static_queue"() {entries = array<i64: 0, 0, 4>, worker = 0 : i64}
After:
  gpu.module @etc {
    func.func @etc_tile_0(...) { ... }   func.func @etc_run_0(...) { scf.for ... }
    gpu.func @etc_megakernel(%buffers: !llvm.ptr, ...) kernel { ... scf.index_switch ... } }
"""
from __future__ import annotations

from mlir import ir

from etc import mlir_adapter as mlir
from etc.codegen import abi, kernel
from etc.codegen.weight_stream import RING_OFFSET, auto_ring_bytes, ring_option_problem
from etc.errors import EtcError
from etc.passes.base import Option, Pass
from etc.sm_task_ir import SmTaskProgram


class LowerToGpu(Pass):
    NAME = "etc-lower-to-gpu"
    SUMMARY = "Build the persistent megakernel (gpu.module) of a scheduled sm_task program."
    OPTIONS = (Option("profile", bool, False, "stamp %globaltimer at every tile's start and end into the "
                                              "workspace buffer 'etc.profile'"),
               Option("weight-stream", bool, True, "linear tiles stream their weights through shared memory "
                                                   "(bulk copies, the first ones issued before the tile's waits)"),
               Option("spin-sleep", int, 32, "nanoseconds a waiting worker sleeps between polls of a counter "
                                             "(0: spin)"),
               Option("ring-kib", int, 0, "KiB of the 128 KiB weight ring a stream's stages use, 32 to 128 in "
                                          "steps of 16; 0: 64 for models of at most 64 MiB of weights per "
                                          "worker, else 128 (weight_stream.auto_ring_bytes)"))

    def run(self, module_op) -> None:
        from etc.codegen.tile_library import emit_tile_function

        kernels = mlir.ops_named(module_op, "sm_task.kernel")
        if not kernels:
            return
        if not 0 <= self.option("spin-sleep") <= 1_000_000:
            self.error(kernels[0], f"spin-sleep must be in [0, 1000000] ns, got {self.option('spin-sleep')}")
            return
        if self.option("profile"):
            _add_profile_buffer(module_op, kernels[0])
        try:
            program = SmTaskProgram.of(module_op)
        except EtcError as e:
            self.error(kernels[0], str(e))
            return
        dynamic = [t for t in program.tasks if t.schedule == "dynamic"]
        if dynamic and len(dynamic) != len(program.tasks):
            for task in dynamic:  # a worker would have to pop while it spins on a static wait
                self.error(task.op, f"task '{task.name}' is dynamic in a hybrid schedule; the GPU kernel runs "
                                    "all-static or all-dynamic schedules so far")
            return
        if dynamic and (program.ready_queue is None or program.ready_queue.early_push):
            self.error(kernels[0], "the GPU kernel needs a ready queue without early push for dynamic tasks "
                                   "(run etc-dynamic-schedule with early-push=false)")
            return
        if not dynamic and not program.static_queues:
            self.error(kernels[0], "the program has no static queues: run etc-static-schedule first")
            return
        problem = ring_option_problem("ring-kib", self.option("ring-kib"))
        if problem:
            self.error(kernels[0], problem)
            return
        ring = self.option("ring-kib") * 1024 or auto_ring_bytes(program)
        layout = kernel.Layout.of(program)
        symbol_index = {name: i for i, name in enumerate(layout.symbols)}
        tiles: dict[str, str] = {}  # tile function name -> text, one per distinct tile
        by_text: dict[str, str] = {}
        tile_of_task: dict[int, str] = {}
        for task in program.tasks:
            try:
                text = emit_tile_function(task, program, kernel.operand_index(task), symbol_index,
                                          self.option("weight-stream"), self.option("profile"), ring)
            except EtcError as e:
                self.error(task.op, str(e))
                continue
            name = abi.tile_function_name(task.id)
            # the tile function and its companions (@<name>_issue, _one_row, _row ...), name-free
            key = text.replace(f"@{name}(", "@TILE(").replace(f"@{name}_", "@TILE_")
            if key not in by_text:  # tasks that differ only in their buffers share a tile function
                by_text[key] = name
                tiles[name] = text
            tile_of_task[task.id] = by_text[key]
        if len(tile_of_task) != len(program.tasks):
            return
        # the launch needs this much dynamic shared memory: the largest tile's (a streaming tile's counts its
        # ring), then the worker's run-time constants (kernel.SharedConstants)
        own = max(kernel.shared_bytes(text) for text in tiles.values())
        scratch = max(kernel.shared_bytes(text, "scratch_bytes") for text in tiles.values())
        if self.option("profile"):  # the tiles' phase stamp slots, past every tile's own memory
            if own > abi.PROFILE_PHASE_SMEM:
                self.error(kernels[0], f"a tile uses {own} bytes of shared memory; the profiling build's "
                                       f"phase stamps need it below {abi.PROFILE_PHASE_SMEM}")
                return
            own = abi.PROFILE_PHASE_SMEM + 8 * abi.PROFILE_PHASES
        constants = kernel.SharedConstants.of(layout, own, scratch, RING_OFFSET)
        if constants is None and any("etc.reads_epoch" in text for text in tiles.values()):
            self.error(kernels[0], f"the tiles use {own} bytes of shared memory; the step's epoch, which an "
                                   "attention merge reads, needs 8 bytes more past them")
            return
        text = kernel.emit_gpu_module(program, tiles, tile_of_task, layout, self.option("spin-sleep"), constants)
        with module_op.context, module_op.location:
            gpu_module = ir.Operation.parse(text, source_name="<etc-lower-to-gpu>")
            module_op.regions[0].blocks[0].append(gpu_module.operation)
            module_op.attributes["gpu.container_module"] = ir.UnitAttr.get()
            kernels[0].attributes["shared_bytes"] = mlir.python_to_attr(constants.launch_bytes(own) if constants else own)


def _add_profile_buffer(module_op, kernel_op) -> None:
    """The profiling build's record buffer, sized for every tile at the max sizes (abi.PROFILE_RECORD_WORDS
    i64 words a tile)."""
    program = SmTaskProgram.of(module_op)
    maxima = program.default_sizes()
    words = abi.PROFILE_RECORD_WORDS * max(1, sum(t.tile_count(maxima) for t in program.tasks))
    with module_op.context, kernel_op.location, ir.InsertionPoint(kernel_op):
        ir.Operation.create("event_tensor.buffer", results=[ir.Type.parse("!event_tensor.buf")], attributes={
            "name": ir.StringAttr.get(abi.PROFILE_BUFFER), "role": ir.StringAttr.get("workspace"),
            "element_type": ir.TypeAttr.get(ir.IntegerType.get_signless(64)),
            "sizes": ir.AffineMapAttr.get(ir.AffineMap.get(0, 0, [ir.AffineConstantExpr.get(words)]))})
