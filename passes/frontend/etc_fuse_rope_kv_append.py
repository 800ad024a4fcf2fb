"""etc-fuse-rope-kv-append: fold RoPE (with a per-head q/k norm before it) and the KV-cache append
into the epilogue of the q/k/v linear tiles.

Matches: a rope tile whose input is, through views, a linear tile's result (optionally through a
per-head rms_norm, the Qwen3 q/k norm) that nothing else reads; then a kv_append tile whose input is
such a linear's result.
Produces: the linear with epilogue steps "head_rms_norm" (reads head_norm_weight), "rope" (reads
positions, inv_freq) and "kv_append" (writes the cache in place: its result is the updated cache),
params head_dim (and head_norm_eps); the folded tiles are erased.
Guarantees: same numerics as the separate tiles; etc-tile then keeps whole heads in each linear tile.
The k/v values go straight from registers to the cache: no k/v buffer, no separate stage.
Option enable=false turns the fusion off.

Before:
  %k = "etc.tile"(%x, %wk) {kind = "linear", ...}
  %r = "etc.tile"(%k, %pos, %inv) {kind = "rope", params = {head_dim = 64, ...}}
  %c = "etc.tile"(%r, %pos, %cache) {kind = "kv_append", ...}
After:
  %c = "etc.tile"(%x, %wk, %pos, %inv, %cache) {kind = "linear",
        params = {epilogue = ["rope", "kv_append"], head_dim = 64, result_roles = ["cache"], ...}}
"""
from __future__ import annotations

from etc import mlir_adapter as mlir
from etc.frontend import torch_ops as T
from etc.passes.base import Option, Pass


class FuseRopeKvAppend(Pass):
    NAME = "etc-fuse-rope-kv-append"
    SUMMARY = "Fold q/k norm, RoPE and the KV-cache append into the q/k/v linear tiles' epilogues."
    OPTIONS = (Option("enable", bool, True, "run the fusion (false: leave the IR unchanged)"),)

    def run(self, module_op) -> None:
        if not self.option("enable") or not T.check_tiles(self, module_op):
            return
        for kind, fuse in (("rope", self._rope), ("kv_append", self._kv_append)):
            roots = [op for op in mlir.ops_named(module_op, T.TILE_OP) if T.is_tile(op, kind)]
            for op in roots:
                fuse(op)
        T.erase_dead_in(module_op)

    def _rope(self, rope) -> None:
        d = T.tile_params(rope)["head_dim"]
        value, norm = T.tile_operand(rope, "x"), None
        norm = T.tile_producer(value, "rms_norm")
        if norm is not None:
            if T.tile_params(norm)["dim"] != d or T.consumers(norm.results[0]) != [rope]:
                return
            value = T.tile_operand(norm, "x")
        linear = T.tile_producer(value, "linear")
        if linear is None or not _fusable(linear, norm or rope, d):
            return
        params = _params(linear)
        extra, steps = [], []
        if norm is not None:
            extra.append(("head_norm_weight", T.tile_operand(norm, "weight")))
            params["head_norm_eps"] = T.tile_params(norm)["eps"]
            steps.append("head_rms_norm")
        extra += [("positions", T.tile_operand(rope, "positions")), ("inv_freq", T.tile_operand(rope, "inv_freq"))]
        params.update(head_dim=d, epilogue=params.get("epilogue", []) + steps + ["rope"])
        T.fuse_into(rope, linear, extra, [("y", rope.results[0].type)], params, rope)

    def _kv_append(self, append) -> None:
        d = T.tile_params(append)["head_dim"]
        linear = T.tile_producer(T.tile_operand(append, "x"), "linear")
        if linear is None or not _fusable(linear, append, d):
            return
        params = _params(linear)
        extra = [] if T.tile_operand(linear, "positions") is not None else \
            [("positions", T.tile_operand(append, "positions"))]
        extra.append(("cache", T.tile_operand(append, "cache")))
        params.update(head_dim=d, epilogue=params.get("epilogue", []) + ["kv_append"])
        T.fuse_into(append, linear, extra, [("cache", append.results[0].type)], params, append)


def _fusable(linear, reader, head_dim: int) -> bool:
    p = T.tile_params(linear)
    epilogue = p.get("epilogue", [])
    return (len(linear.results) == 1 and T.consumers(linear.results[0]) == [reader]
            and p["out_features"] % head_dim == 0 and p.get("head_dim", head_dim) == head_dim
            and not {"kv_append", "residual_add", "silu_mul", "gelu"} & set(epilogue))


def _params(linear) -> dict:
    return {k: v for k, v in T.tile_params(linear).items() if k not in ("operand_roles", "result_roles")}
