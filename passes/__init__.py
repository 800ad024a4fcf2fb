"""The one registry of ETC passes: pass name -> pass class.

Folders follow the pipeline: frontend/ (torch import and raising), event_tensor/ (passes on
event_tensor IR), scheduling/ (event_tensor -> sm_task), codegen/ (sm_task -> GPU -> PTX).
`etc-opt --help` lists this registry.
"""
from __future__ import annotations

from etc.passes.base import Option, Pass
from etc.passes.event_tensor.etc_derive_wait_counts import DeriveWaitCounts
from etc.passes.event_tensor.etc_verify_event_tensor import VerifyEventTensor

_ALL: tuple[type[Pass], ...] = (
    VerifyEventTensor,
    DeriveWaitCounts,
)

REGISTRY: dict[str, type[Pass]] = {cls.NAME: cls for cls in _ALL}

# What run_pipeline runs when given no pipeline.
DEFAULT_PIPELINE = "etc-verify-event-tensor,etc-derive-wait-counts"

__all__ = ["DEFAULT_PIPELINE", "Option", "Pass", "REGISTRY"]
