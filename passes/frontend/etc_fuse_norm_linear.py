"""etc-fuse-norm-linear: fold a norm into the prologue of the linears that read it.

Matches: an rms_norm or layer_norm tile over whole rows whose result (through views) is read only as
the `x` of linear tiles that have no prologue yet.
Produces: each of those linears reads the norm's input as `x`, plus `norm_weight` (and `norm_bias`),
with params prologue = "rms_norm" | "layer_norm" and prologue_eps; the norm tile is erased.
Guarantees: same numerics (the prologue rounds the normalized row as the norm tile did); one dependent
stage less per norm. A norm with any other reader (a residual, the output) is left alone.
Option enable=false turns the fusion off.

Before:
  %n = "etc.tile"(%h, %w) {kind = "rms_norm", ...}
  %q = "etc.tile"(%n, %wq) {kind = "linear", ...}
After:
  %q = "etc.tile"(%h, %wq, %w) {kind = "linear", params = {prologue = "rms_norm", prologue_eps = ..., ...}}
"""
from __future__ import annotations

from etc import mlir_adapter as mlir
from etc.frontend import torch_ops as T
from etc.passes.base import Option, Pass


class FuseNormLinear(Pass):
    NAME = "etc-fuse-norm-linear"
    SUMMARY = "Fold RMSNorm/LayerNorm into the prologue of the linears that read it."
    OPTIONS = (Option("enable", bool, True, "run the fusion (false: leave the IR unchanged)"),)

    def run(self, module_op) -> None:
        if not self.option("enable") or not T.check_tiles(self, module_op):
            return
        for norm in [op for op in mlir.ops_named(module_op, T.TILE_OP) if T.is_tile(op, "rms_norm", "layer_norm")]:
            params = T.tile_params(norm)
            x, y = T.tile_operand(norm, "x"), norm.results[0]
            xt = T.tensor_type(x)
            if xt is None or xt.dims[-1] != params["dim"]:
                continue  # a per-head norm: rows are not what a linear reads
            linears = T.consumers(y)
            if not linears or not all(
                    T.is_tile(op, "linear") and T.tile_params(op).get("prologue", "none") == "none"
                    and T.strip_views(T.tile_operand(op, "x")) == y and y not in _non_x_operands(op)
                    for op in linears):
                continue
            extra = [("norm_weight", T.tile_operand(norm, "weight"))]
            if params.get("has_bias"):
                extra.append(("norm_bias", T.tile_operand(norm, "bias")))
            for linear in linears:
                lp = T.tile_params(linear)
                operands = [(r, x if r == "x" else v) for r, v in zip(lp["operand_roles"], linear.operands)]
                fused = {k: v for k, v in lp.items() if k not in ("operand_roles", "result_roles")}
                fused.update(prologue=T.tile_kind(norm), prologue_eps=params["eps"])
                tile = T.create_tile("linear", operands + extra,
                                     list(zip(lp["result_roles"], [r.type for r in linear.results])),
                                     fused, linear.location, linear)
                T.replace_op(linear, list(tile.results))
            if all(not T.users(r) for r in norm.results):
                T.erase(norm)
        T.erase_dead_in(module_op)



def _non_x_operands(op):
    roles = T.tile_params(op)["operand_roles"]
    return [T.strip_views(v) for r, v in zip(roles, op.operands) if r != "x"]
