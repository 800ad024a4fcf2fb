"""etc-fuse-silu-mul: fold the MLP activation into the gate/up linear tiles.

Matches: a silu_mul tile whose gate and up are results of two linear tiles (through views) that read
the same input with the same prologue, have no epilogue, and feed nothing else; and a gelu tile whose
input is such a linear.
Produces: one linear tile computing gate and up for the same output columns (`up_weight`, `up_bias`)
with epilogue ["silu_mul"] (or ["gelu"] with gelu_approximate), in place of the activation; the
original tiles are erased.
Guarantees: same numerics (gate and up each rounded, silu rounded, product rounded); the activation's
stage and the gate/up buffers disappear, and each input row is read once for both weights.
Option enable=false turns the fusion off.

Before:
  %g = "etc.tile"(%x, %wg) {kind = "linear", ...}
  %u = "etc.tile"(%x, %wu) {kind = "linear", ...}
  %a = "etc.tile"(%g, %u) {kind = "silu_mul", ...}
After:
  %a = "etc.tile"(%x, %wg, %wu) {kind = "linear", params = {epilogue = ["silu_mul"], ...}}
"""
from __future__ import annotations

from etc import mlir_adapter as mlir
from etc.frontend import torch_ops as T
from etc.passes.base import Option, Pass

_SAME = ("in_features", "out_features", "has_bias", "prologue", "prologue_eps")


class FuseSiluMul(Pass):
    NAME = "etc-fuse-silu-mul"
    SUMMARY = "Fold SiLU*mul (and GELU) into the gate/up linear tiles."
    OPTIONS = (Option("enable", bool, True, "run the fusion (false: leave the IR unchanged)"),)

    def run(self, module_op) -> None:
        if not self.option("enable") or not T.check_tiles(self, module_op):
            return
        for act in [op for op in mlir.ops_named(module_op, T.TILE_OP) if T.is_tile(op, "silu_mul", "gelu")]:
            if T.tile_kind(act) == "gelu":
                self._gelu(act)
                continue
            gate = T.tile_producer(T.tile_operand(act, "gate"), "linear")
            up = T.tile_producer(T.tile_operand(act, "up"), "linear")
            if not gate or not up or gate == up or not (_plain(gate, act) and _plain(up, act)):
                continue
            gp, upp = T.tile_params(gate), T.tile_params(up)
            if any(gp.get(k) != upp.get(k) for k in _SAME) or _shared(gate) != _shared(up):
                continue
            extra = [("up_weight", T.tile_operand(up, "weight"))]
            if gp["has_bias"]:
                extra.append(("up_bias", T.tile_operand(up, "bias")))
            params = {k: v for k, v in gp.items() if k not in ("operand_roles", "result_roles")}
            params["epilogue"] = ["silu_mul"]
            T.fuse_into(act, gate, extra, [("y", act.results[0].type)], params, act)
        T.erase_dead_in(module_op)

    def _gelu(self, act) -> None:
        linear = T.tile_producer(T.tile_operand(act, "x"), "linear")
        if not linear or not _plain(linear, act):
            return
        params = {k: v for k, v in T.tile_params(linear).items() if k not in ("operand_roles", "result_roles")}
        params.update(epilogue=["gelu"], gelu_approximate=T.tile_params(act).get("approximate", "none"))
        T.fuse_into(act, linear, [], [("y", act.results[0].type)], params, act)


def _plain(linear, act) -> bool:
    """A linear with no epilogue whose only reader is act."""
    return (len(linear.results) == 1 and not T.tile_params(linear).get("epilogue")
            and T.consumers(linear.results[0]) == [act])


def _shared(linear) -> tuple:
    """The operands gate and up must share: the input and the norm's parameters."""
    return tuple(T.strip_views(T.tile_operand(linear, r)) if T.tile_operand(linear, r) is not None else None
                 for r in ("x", "norm_weight", "norm_bias"))
