"""The bundle's metadata (bundle.json) from a scheduled program and its kernel layout.

Extents are written as expressions over symbol names (`batch`, `cdiv(kv_len, 8)`, `2 * batch`) that
etc.bundle evaluates without MLIR.
"""
from __future__ import annotations

from mlir import ir

from etc import mlir_adapter as mlir
from etc.codegen import abi
from etc.codegen.kernel import Layout
from etc.sm_task_ir import SmTaskProgram


_TEXT = {"add": "({} + {})", "mul": "({} * {})", "floordiv": "({} // {})", "ceildiv": "cdiv({}, {})",
         "mod": "({} % {})"}


def expr_text(expr: ir.AffineExpr, symbols: list[str]) -> str:
    """An extent as etc.bundle's expression text over symbol names."""
    def no_dims(_):
        raise ValueError("an extent cannot depend on tile coordinates")

    return mlir.fold_affine(expr, str, no_dims, lambda i: symbols[i], lambda k, a, b: _TEXT[k].format(a, b))


def _extents(m: ir.AffineMap, symbols: list[str]) -> list[str]:
    return [expr_text(e, symbols) for e in m.results]


def bundle_meta(program: SmTaskProgram, layout: Layout, *, model: dict) -> dict:
    """bundle.json's fields for a program lowered by etc-lower-to-gpu (etc.bundle.write adds the format,
    version and file names)."""
    kernel = program.kernel
    return {
        "num_workers": kernel.num_workers,
        "block_size": kernel.block_size,
        "shared_bytes": mlir.int_attr(kernel.op, "shared_bytes"),
        "symbols": [{"name": d.name, "min": d.min, "max": d.max} for d in program.dims],
        "buffers": [{"name": b.name, "role": b.role, "dtype": b.element_type, "shape": _extents(b.sizes, b.symbols),
                     "output_index": b.output_index} for b in program.buffers],
        "counter_words": layout.counter_words,
        "counters": [{"name": c.name, "offset": layout.counter_offset[c.name],
                      "extents": list(layout.counter_extents[c.name]),
                      "target": str(c.target), "symbols": c.symbols} for c in program.counters],
        "static_queues": {"offsets": layout.queue_offsets, "entries": layout.queue_entries},
        "ready_queue": {"words": layout.ready_words} if layout.ready_words else None,
        "tasks": [{"id": t.id, "name": t.name, "kind": t.kind, "schedule": t.schedule,
                   "grid": _extents(t.grid, t.symbols)} for t in program.tasks],
        "model": model,
        "profile": {"buffer": abi.PROFILE_BUFFER, "record_words": abi.PROFILE_RECORD_WORDS,
                    "offsets": {str(k): v for k, v in layout.profile_offset.items()}}
        if layout.profile_offset else None,
    }
