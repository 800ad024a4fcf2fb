"""ETC, the Event Tensor Compiler: PyTorch decode steps to one persistent GPU megakernel."""
from etc.errors import EtcError, PassFailure, PipelineError
from etc.mlir_adapter import new_context
from etc.pipeline import run_pipeline
from etc.api import compile_to_tasks, import_torch

__all__ = ["EtcError", "PassFailure", "PipelineError", "compile_to_tasks", "import_torch", "new_context", "run_pipeline"]
