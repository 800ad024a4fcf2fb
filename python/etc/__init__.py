"""ETC, the Event Tensor Compiler: PyTorch decode steps to one persistent GPU megakernel.

The compiler entry points need MLIR; `etc.load` and `etc.Megakernel` do not (the GPU machine has no
MLIR), so everything but the errors is imported on first use.
"""
from etc.errors import EtcError, PassFailure, PipelineError

_LAZY = {
    "new_context": "etc.mlir_adapter",
    "run_pipeline": "etc.pipeline",
    "import_torch": "etc.api",
    "compile_to_tasks": "etc.api",
    "compile": "etc.api",
    "load": "etc.bundle",
    "Megakernel": "etc.runtime",
}

__all__ = ["EtcError", "PassFailure", "PipelineError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'etc' has no attribute {name!r}")
