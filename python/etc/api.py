"""The Python entry points: PyTorch module -> event_tensor IR -> scheduled sm_task IR."""
from __future__ import annotations

import time

from etc import mlir_adapter as mlir
from etc.errors import EtcError
from etc.frontend.torch_import import export_torch_ir
from etc.pipeline import FUSIONS, MERGE_PER_BATCH, PipelineError, frontend_pipeline, run_pipeline, scheduling_pipeline


def import_torch(model, example_args, dynamic_shapes=None, *, fuse=True, num_sms: int = 132, tile_n: int = 0,
                 kv_chunk: int = 128, split_heads: bool = True, wide_kv: bool = True):
    """Import one decode step of `model` into event_tensor IR (an mlir.ir.Module).

    example_args: the forward arguments (tuple); dynamic_shapes: torch.export's form (torch.export.Dim),
    e.g. etc.models.decoder.dynamic_shapes_for(config). Parameters may be on the meta device.
    fuse: True, False or {fusion name: bool} (etc.pipeline.FUSIONS); num_sms, tile_n, kv_chunk, split_heads,
    wide_kv: etc-tile's options.
    Raises EtcError (one line, with the PyTorch source location where there is one).
    """
    imported = export_torch_ir(model, example_args, dynamic_shapes)
    ctx = mlir.new_context(allow_unregistered=True)
    module = mlir.parse(imported.text, ctx, source_name=f"<torch import of {type(model).__name__}>")
    return run_pipeline(module, frontend_pipeline(fuse=fuse, num_sms=num_sms, tile_n=tile_n, kv_chunk=kv_chunk,
                                                  split_heads=split_heads, wide_kv=wide_kv))


def compile_to_tasks(model, example_args, *, schedule: str = "static", num_sms: int = 132, dynamic_shapes=None,
                     early_push: bool = False, fuse=True, tile_n: int = 0, kv_chunk: int = 128,
                     split_heads: bool = True, wide_kv: bool = True):
    """Import `model` and schedule it for `num_sms` workers: sm_task IR (an mlir.ir.Module).

    schedule: "static" (compile-time per-worker queues), "dynamic" (on-GPU ready queue) or "hybrid".
    fuse: as import_torch's; with the static schedule the attention merge is in each kv group's last split
    (or folded into o_proj) at one row only (etc.pipeline.MERGE_PER_BATCH) unless the dict names it off;
    other schedules fold it into o_proj at every batch unless the dict names attention-merge-last.
    """
    return _timed_tasks(model, example_args, schedule=schedule, num_sms=num_sms, dynamic_shapes=dynamic_shapes,
                        early_push=early_push, fuse=fuse, tile_n=tile_n, kv_chunk=kv_chunk,
                        split_heads=split_heads, wide_kv=wide_kv)[0]


def _timed_tasks(model, example_args, *, schedule, num_sms, dynamic_shapes, early_push=False, fuse, tile_n,
                 kv_chunk, block_size=256, split_heads=True, wide_kv=True):
    """compile_to_tasks, with the seconds each stage took."""
    named = isinstance(fuse, dict) and "attention-merge-last" in fuse
    fuse = dict.fromkeys(FUSIONS, fuse) if isinstance(fuse, bool) else dict(fuse)
    if schedule != "static" and not named:  # the last split's merge at every batch: 8-20% slower at batch
        fuse["attention-merge-last"] = False  # 4 and 16 than a merge stage (BENCHMARKS.md); o_proj merges
    if schedule == "static":  # the attention merge folded per batch unless named off (etc.pipeline.MERGE_PER_BATCH)
        fuse.setdefault(MERGE_PER_BATCH, fuse.get("attention-merge", True) or fuse.get("attention-merge-last", True))
    elif fuse.get(MERGE_PER_BATCH):  # a ready queue never releases a wait on a grid with no tiles
        raise PipelineError(f"{MERGE_PER_BATCH} needs the static schedule, not '{schedule}'")
    t0 = time.perf_counter()
    module = import_torch(model, example_args, dynamic_shapes, fuse=fuse, num_sms=num_sms, tile_n=tile_n,
                          kv_chunk=kv_chunk, split_heads=split_heads, wide_kv=wide_kv)
    t1 = time.perf_counter()
    run_pipeline(module, scheduling_pipeline(schedule, num_sms, early_push, block_size))
    return module, {"import": t1 - t0, "schedule": time.perf_counter() - t1}


def compile(model, example_args, *, dynamic_shapes=None, schedule: str = "static", target: str = "sm_90a",
            num_sms: int = 132, out, fuse=True, tile_n: int = 0, kv_chunk: int = 128, model_info: dict | None = None,
            profile: bool = False, weight_stream: bool = True, block_size: int = 256, split_heads: bool = True,
            spin_sleep_ns: int = 32, ring_kib: int = 0, wide_kv: bool = True):
    """Compile one decode step of `model` to a self-contained bundle directory `out`: the PTX, the task
    tables and queues, the buffer layout and a versioned bundle.json (no weights). Returns the path;
    etc.load(out) reads it back without MLIR. profile=True builds the profiling kernel (per-tile
    %globaltimer stamps, and phase stamps inside linear and attention tiles; etc.Megakernel.profile()
    reads them). weight_stream: linear tiles read their
    weights through shared memory, bulk copies issued before the tile's waits (etc.codegen.weight_stream);
    block_size: threads per worker block; split_heads, wide_kv: etc-tile's split-heads, wide-kv; spin_sleep_ns:
    etc-lower-to-gpu's spin-sleep; ring_kib: its ring-kib (KiB of the weight ring the streams use, 0: 64 for
    small models, 128 for large ones). Where ptxas is installed the bundle also holds its cubin, and bundle.json
    the kernel's registers, spill bytes, stack frame and code bytes (kernel_resources)."""
    from etc import bundle
    from etc.codegen import abi, ptxas
    from etc.codegen.bundle_meta import bundle_meta
    from etc.codegen.kernel import Layout, ptx_of
    from etc.pipeline import codegen_pipeline
    from etc.sm_task_ir import SmTaskProgram

    codegen = codegen_pipeline(target, profile, weight_stream, spin_sleep_ns, ring_kib)  # bad options fail first
    module, seconds = _timed_tasks(model, example_args, schedule=schedule, num_sms=num_sms,
                                   dynamic_shapes=dynamic_shapes, fuse=fuse, tile_n=tile_n, kv_chunk=kv_chunk,
                                   block_size=block_size, split_heads=split_heads, wide_kv=wide_kv)
    t0 = time.perf_counter()
    run_pipeline(module, codegen)
    program = SmTaskProgram.of(module.operation)
    ptx = ptx_of(module)
    seconds["codegen"] = time.perf_counter() - t0
    cubin, resources = None, None
    if ptxas.ptxas_path() is not None:  # a cubin spares the GPU machine the JIT (tens of seconds for 1B)
        t0 = time.perf_counter()
        try:
            cubin, report = ptxas.assemble(ptx, target)
            resources = ptxas.parse_ptxas_report(report).get(abi.KERNEL_NAME)
            if resources is not None:
                resources.update(ptxas.code_summary(cubin, abi.KERNEL_NAME))
        except EtcError:  # e.g. a ptxas too old for this PTX: the bundle still has the PTX for the JIT
            cubin = None
        seconds["ptxas"] = time.perf_counter() - t0
    info = {"class": type(model).__name__, "target": target, "schedule": schedule, **(model_info or {})}
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "num_layers"):
        info.update(num_layers=config.num_layers, vocab_size=config.vocab_size, max_context=config.max_context)
    meta = bundle_meta(program, Layout.of(program), model=info)
    meta["compile_seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    meta["kernel_resources"] = resources  # ptxas: registers, spill stores / loads, stack frame, code (bytes)
    bundle.write(out, meta, ptx, cubin, target)
    return out
