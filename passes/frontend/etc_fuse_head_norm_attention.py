"""etc-fuse-head-norm-attention: move the per-head q/k norm and RoPE (Qwen3) from the q and k projections'
epilogues into the attention tile.

Matches: an attention tile whose q is a linear's result (nothing else reads it) ending its epilogue with
"head_rms_norm", "rope", and whose k_cache is a linear's in-place cache update with the epilogue
"head_rms_norm", "rope", "kv_append"; both with the attention's head_dim, positions and one inv_freq and
norm eps.
Produces: the q linear without those two steps (and without head_norm_weight, positions, inv_freq), the
k linear with "kv_append" alone (it appends the raw k row), and the attention with params head_norm_eps
and operands q_norm_weight, k_norm_weight and inv_freq (etc.tiles, attention_partial).
Guarantees: the same numbers as the projections' epilogues (the same rounding steps; only the f32 sum of
squares may add up in another order). Why: a head split over several linear tiles is normalized by the
last of them to finish, which reads the others' values back: one more hand-off between SMs before
attention can start. The attention tile holds whole heads anyway. The tile holding the new K row writes
it back normalized and rotated, so the cache is the same after the step. Option enable=false turns the
fusion off.

Before:
  %q = "etc.tile"(%x, %wq, %nw, %qn, %pos, %inv) {kind = "linear",
        params = {epilogue = ["head_rms_norm", "rope"], ...}}
  %k = "etc.tile"(%x, %wk, %nw, %kn, %pos, %inv, %kc) {kind = "linear",
        params = {epilogue = ["head_rms_norm", "rope", "kv_append"], ...}}
  %y = "etc.tile"(%q, %k, %v, %pos) {kind = "attention", ...}
After:
  %q = "etc.tile"(%x, %wq, %nw) {kind = "linear", params = {...}}
  %k = "etc.tile"(%x, %wk, %nw, %pos, %kc) {kind = "linear", params = {epilogue = ["kv_append"], ...}}
  %y = "etc.tile"(%q, %k, %v, %pos, %qn, %kn, %inv) {kind = "attention", params = {head_norm_eps = ..., ...}}
"""
from __future__ import annotations

from etc import mlir_adapter as mlir
from etc.frontend import torch_ops as T
from etc.passes.base import Option, Pass

MOVED = ["head_rms_norm", "rope"]  # the epilogue steps the attention takes over, in this order
MOVED_ROLES = ("head_norm_weight", "inv_freq")  # the operands they read (and positions, for q)


class FuseHeadNormAttention(Pass):
    NAME = "etc-fuse-head-norm-attention"
    SUMMARY = "Move the per-head q/k norm and RoPE from the q/k projections into the attention tile."
    OPTIONS = (Option("enable", bool, True, "run the fusion (false: leave the IR unchanged)"),)

    def run(self, module_op) -> None:
        if not self.option("enable") or not T.check_tiles(self, module_op):
            return
        for attention in [op for op in mlir.ops_named(module_op, T.TILE_OP) if T.is_tile(op, "attention")]:
            self._fuse(attention)

    def _fuse(self, attention) -> None:
        ap = T.tile_params(attention)
        if "head_norm_eps" in ap:
            return
        q_lin = T.tile_producer(T.tile_operand(attention, "q"), "linear")
        k_lin = T.tile_producer(T.tile_operand(attention, "k_cache"), "linear")
        if q_lin is None or k_lin is None:
            return
        qp, kp = T.tile_params(q_lin), T.tile_params(k_lin)
        if qp.get("epilogue", [])[-2:] != MOVED or kp.get("epilogue") != MOVED + ["kv_append"]:
            return
        if T.consumers(q_lin.results[0]) != [attention] or qp["result_roles"] != ["y"]:
            return
        if qp.get("head_dim") != ap["head_dim"] or kp.get("head_dim") != ap["head_dim"] \
                or qp.get("head_norm_eps") != kp.get("head_norm_eps"):
            return
        positions = T.tile_operand(attention, "positions")
        if any(T.tile_operand(lin, "positions") != positions for lin in (q_lin, k_lin)) \
                or T.tile_operand(q_lin, "inv_freq") != T.tile_operand(k_lin, "inv_freq"):
            return
        q_norm, k_norm = T.tile_operand(q_lin, "head_norm_weight"), T.tile_operand(k_lin, "head_norm_weight")
        inv_freq = T.tile_operand(q_lin, "inv_freq")
        eps = qp["head_norm_eps"]
        _strip(q_lin, drop=("positions",))
        _strip(k_lin)
        roles = ap["operand_roles"]
        operands = list(zip(roles, attention.operands)) + [("q_norm_weight", q_norm), ("k_norm_weight", k_norm),
                                                           ("inv_freq", inv_freq)]
        params = {k: v for k, v in ap.items() if k not in ("operand_roles", "result_roles")}
        params["head_norm_eps"] = eps
        fused = T.create_tile("attention", operands, list(zip(ap["result_roles"], (r.type for r in attention.results))),
                              params, attention.location, attention)
        T.replace_op(attention, list(fused.results))


def _strip(linear, drop: tuple[str, ...] = ()) -> None:
    """Replace `linear` by itself without the MOVED epilogue steps, their operands (and `drop`)."""
    p = T.tile_params(linear)
    gone = set(MOVED_ROLES) | set(drop)
    operands = [(r, v) for r, v in zip(p["operand_roles"], linear.operands) if r not in gone]
    epilogue = [s for s in p["epilogue"] if s not in MOVED]
    params = {k: v for k, v in p.items() if k not in ("operand_roles", "result_roles", "head_norm_eps", "epilogue")}
    if epilogue:
        params["epilogue"] = epilogue
    else:
        params.pop("head_dim", None)  # no per-head step left
    results = list(zip(p["result_roles"], (r.type for r in linear.results)))
    new = T.create_tile("linear", operands, results, params, linear.location, linear)
    T.replace_op(linear, list(new.results))
