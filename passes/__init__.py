"""The one registry of ETC passes: pass name -> pass class.

Folders follow the pipeline: frontend/ (torch import and raising), event_tensor/ (passes on
event_tensor IR), scheduling/ (event_tensor -> sm_task), codegen/ (sm_task -> GPU -> PTX).
`etc-opt --help` lists this registry.
"""
from __future__ import annotations

from etc.passes.base import Option, Pass
from etc.passes.codegen.etc_lower_to_gpu import LowerToGpu
from etc.passes.event_tensor.etc_derive_wait_counts import DeriveWaitCounts
from etc.passes.event_tensor.etc_form_task_grids import FormTaskGrids
from etc.passes.event_tensor.etc_verify_event_tensor import VerifyEventTensor
from etc.passes.scheduling.etc_dynamic_schedule import DynamicSchedule
from etc.passes.scheduling.etc_lower_to_sm_task import LowerToSmTask
from etc.passes.scheduling.etc_static_schedule import StaticSchedule
from etc.passes.frontend.etc_fuse_head_norm_attention import FuseHeadNormAttention
from etc.passes.frontend.etc_fuse_linear_residual import FuseLinearResidual
from etc.passes.frontend.etc_fuse_norm_linear import FuseNormLinear
from etc.passes.frontend.etc_fuse_rope_kv_append import FuseRopeKvAppend
from etc.passes.frontend.etc_fuse_silu_mul import FuseSiluMul
from etc.passes.frontend.etc_raise_elementwise import RaiseElementwise
from etc.passes.frontend.etc_raise_torch import RaiseTorch
from etc.passes.frontend.etc_tile import Tile

_ALL: tuple[type[Pass], ...] = (
    RaiseTorch,
    RaiseElementwise,
    FuseNormLinear,
    FuseLinearResidual,
    FuseSiluMul,
    FuseRopeKvAppend,
    FuseHeadNormAttention,
    Tile,
    FormTaskGrids,
    VerifyEventTensor,
    DeriveWaitCounts,
    LowerToSmTask,
    StaticSchedule,
    DynamicSchedule,
    LowerToGpu,
)

REGISTRY: dict[str, type[Pass]] = {cls.NAME: cls for cls in _ALL}

# What run_pipeline runs when given no pipeline.
DEFAULT_PIPELINE = "etc-verify-event-tensor,etc-derive-wait-counts"

__all__ = ["DEFAULT_PIPELINE", "Option", "Pass", "REGISTRY"]
