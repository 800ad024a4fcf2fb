"""etc-fuse-linear-residual: fold a residual add into the epilogue of the linear that feeds it.

Matches: an add tile (alpha 1) with one operand the result of a linear tile (through views) that
nothing else reads, and whose epilogue does not write a cache or add a residual already.
Produces: that linear with the other operand as `residual` and "residual_add" appended to its epilogue,
in place of the add; the add and the old linear are erased.
Guarantees: same numerics (y = round(residual + y), as the add tile rounded); the add's separate stage
and buffer disappear. Option enable=false turns the fusion off.

Before:
  %o = "etc.tile"(%a, %wo) {kind = "linear", ...}
  %h = "etc.tile"(%r, %o) {kind = "add", ...}
After:
  %h = "etc.tile"(%a, %wo, %r) {kind = "linear", params = {epilogue = ["residual_add"], ...}}
"""
from __future__ import annotations

from etc import mlir_adapter as mlir
from etc.frontend import torch_ops as T
from etc.passes.base import Option, Pass


class FuseLinearResidual(Pass):
    NAME = "etc-fuse-linear-residual"
    SUMMARY = "Fold a residual add into the epilogue of the linear that produces one of its operands."
    OPTIONS = (Option("enable", bool, True, "run the fusion (false: leave the IR unchanged)"),)

    def run(self, module_op) -> None:
        if not self.option("enable") or not T.check_tiles(self, module_op):
            return
        for add in [op for op in mlir.ops_named(module_op, T.TILE_OP) if T.is_tile(op, "add")]:
            if T.tile_params(add).get("alpha", 1.0) != 1.0:
                continue
            a, b = T.tile_operand(add, "a"), T.tile_operand(add, "b")
            for mine, other in ((b, a), (a, b)):
                linear = T.tile_producer(mine, "linear")
                if linear is None or len(linear.results) != 1 or T.consumers(linear.results[0]) != [add]:
                    continue
                lp = T.tile_params(linear)
                epilogue = lp.get("epilogue", [])
                if "kv_append" in epilogue or "residual_add" in epilogue:
                    continue
                params = {k: v for k, v in lp.items() if k not in ("operand_roles", "result_roles")}
                params["epilogue"] = epilogue + ["residual_add"]
                T.fuse_into(add, linear, [("residual", other)], [("y", add.results[0].type)], params, add)
                break
        T.erase_dead_in(module_op)
