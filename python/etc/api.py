"""The Python entry points: PyTorch module -> event_tensor IR -> scheduled sm_task IR."""
from __future__ import annotations

from etc import mlir_adapter as mlir
from etc.frontend.torch_import import export_torch_ir
from etc.pipeline import frontend_pipeline, run_pipeline, scheduling_pipeline


def import_torch(model, example_args, dynamic_shapes=None, *, fuse=True, num_sms: int = 132, tile_n: int = 0,
                 kv_chunk: int = 256):
    """Import one decode step of `model` into event_tensor IR (an mlir.ir.Module).

    example_args: the forward arguments (tuple); dynamic_shapes: torch.export's form (torch.export.Dim),
    e.g. etc.models.decoder.dynamic_shapes_for(config). Parameters may be on the meta device.
    fuse: True, False or {fusion name: bool} (etc.pipeline.FUSIONS); num_sms, tile_n, kv_chunk: etc-tile's options.
    Raises EtcError (one line, with the PyTorch source location where there is one).
    """
    imported = export_torch_ir(model, example_args, dynamic_shapes)
    ctx = mlir.new_context(allow_unregistered=True)
    module = mlir.parse(imported.text, ctx, source_name=f"<torch import of {type(model).__name__}>")
    return run_pipeline(module, frontend_pipeline(fuse=fuse, num_sms=num_sms, tile_n=tile_n, kv_chunk=kv_chunk))


def compile_to_tasks(model, example_args, *, schedule: str = "static", num_sms: int = 132, dynamic_shapes=None,
                     early_push: bool = False, fuse=True, tile_n: int = 0, kv_chunk: int = 256):
    """Import `model` and schedule it for `num_sms` workers: sm_task IR (an mlir.ir.Module).

    schedule: "static" (compile-time per-worker queues), "dynamic" (on-GPU ready queue) or "hybrid".
    """
    module = import_torch(model, example_args, dynamic_shapes, fuse=fuse, num_sms=num_sms, tile_n=tile_n,
                          kv_chunk=kv_chunk)
    return run_pipeline(module, scheduling_pipeline(schedule, num_sms, early_push))
