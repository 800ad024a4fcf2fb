"""Helpers for the raising patterns: read torch ops (generic, unregistered) and make `etc.tile` ops.

`etc.tile` is the front end's tensor-level tile: one op per matched operator cluster, on torch value
tensors, with a tile `kind` and `params` (see etc.tiles). It is a generic op in the unregistered `etc`
namespace, like the torch ops it replaces: IRDL would force every operand of a variadic group to one
type. `params` always holds `operand_roles` and `result_roles`; a result whose role is also an operand
role updates that operand in place (a KV cache).

    %y = "etc.tile"(%x, %w) {kind = "rms_norm", params = {operand_roles = ["x", "weight"],
                              result_roles = ["y"], eps = 1.0e-05 : f64, dim = 64 : i64}} : (...) -> ...
"""
from __future__ import annotations

import dataclasses
import linecache
import re

from mlir import ir

from etc import mlir_adapter as mlir

TILE_OP = "etc.tile"
_TENSOR_TYPE = re.compile(r"!torch\.(v?tensor)<\[([^\]]*)\],([a-z0-9]+)>")
# Ops that only re-describe their input's memory (row-major order unchanged): buffers alias through them.
VIEW_OPS = {"torch.aten.view", "torch.aten.reshape", "torch.aten._unsafe_view", "torch.aten.unsqueeze",
            "torch.aten.squeeze.dim", "torch.aten.squeeze", "torch.aten.select.int", "torch.aten.permute",
            "torch.aten.transpose.int", "torch.aten.contiguous", "torch.aten.clone", "torch.aten.alias",
            "torch.aten.flatten.using_ints", "torch.aten.expand", "torch.copy.to_vtensor"}
_SCALAR_CONSTANT_OPS = {"torch.constant.int", "torch.constant.float", "torch.constant.bool", "torch.constant.str"}
CONSTANT_OPS = _SCALAR_CONSTANT_OPS | {"torch.constant.none", "torch.constant.device", "torch.prim.ListConstruct"}
# Bookkeeping ops: no computation, no tile.
STRUCTURAL_OPS = CONSTANT_OPS | {"torch.symbolic_int", "torch.bind_symbolic_shape", "torch.aten.size.int",
                                 "torch.overwrite.tensor.contents", "func.return", TILE_OP}


@dataclasses.dataclass(frozen=True)
class TensorType:
    dims: tuple[int | None, ...]  # None: a symbolic size
    dtype: str  # torch-mlir's spelling: bf16, f32, si64, i1
    mutable: bool

    @property
    def rank(self) -> int:
        return len(self.dims)


def tensor_type(value: ir.Value) -> TensorType | None:
    m = _TENSOR_TYPE.fullmatch(str(value.type))
    if m is None:
        return None
    kind, dims, dtype = m.groups()
    return TensorType(tuple(None if d == "?" else int(d) for d in dims.split(",")) if dims else (), dtype,
                      kind == "tensor")


def op_name(value: ir.Value) -> str | None:
    owner = value.owner
    return owner.operation.name if isinstance(owner, ir.OpView) else None


def producer(value: ir.Value, *names: str) -> ir.Operation | None:
    """The op defining value if its name is one of names (any op if none given), else None."""
    owner = value.owner
    if not isinstance(owner, ir.OpView):
        return None
    op = owner.operation
    return op if not names or op.name in names else None


_NO_CONSTANT = object()


def constant(value: ir.Value, default=_NO_CONSTANT):
    """The Python value of a torch constant (int, float, bool, None, str, or a list of them)."""
    op = producer(value)
    name = op.name if op is not None else None
    if name == "torch.constant.none":
        return None
    if name == "torch.prim.ListConstruct":
        return [constant(v, default) for v in op.operands]
    if name in _SCALAR_CONSTANT_OPS or name == "torch.constant.device":
        attr = op.attributes["value"].maybe_downcast()
        return bool(attr.value) if name == "torch.constant.bool" else attr.value
    if default is _NO_CONSTANT:
        raise ValueError(f"not a constant: {value.get_name()}")
    return default


def is_constant(value: ir.Value) -> bool:
    """A scalar constant or None (not a list)."""
    return op_name(value) in _SCALAR_CONSTANT_OPS | {"torch.constant.none"}


def strip_views(value: ir.Value) -> ir.Value:
    """Walk back through view-like ops to the value whose memory they describe."""
    while (op := producer(value, *VIEW_OPS)) is not None and op.name != "torch.copy.to_vtensor" \
            and view_problem(op) is None:
        value = op.operands[0]
    return value


def users(value: ir.Value) -> list[ir.Operation]:
    """The ops using value, ignoring torch.bind_symbolic_shape bookkeeping."""
    return [u.owner for u in value.uses if u.owner.name != "torch.bind_symbolic_shape"]


def only_user(value: ir.Value) -> ir.Operation | None:
    found = users(value)
    return found[0] if len(found) == 1 else None


def is_tile(op: ir.Operation, *kinds: str) -> bool:
    return op is not None and op.name == TILE_OP and (not kinds or tile_kind(op) in kinds)


def tile_kind(op: ir.Operation) -> str:
    return op.attributes["kind"].maybe_downcast().value


def tile_params(op: ir.Operation) -> dict:
    return mlir.attr_to_python(op.attributes["params"])


def tile_operand(op: ir.Operation, role: str) -> ir.Value | None:
    roles = tile_params(op)["operand_roles"]
    return op.operands[roles.index(role)] if role in roles else None


def tile_result(op: ir.Operation, role: str) -> ir.Value | None:
    roles = tile_params(op)["result_roles"]
    return op.results[roles.index(role)] if role in roles else None


def create_tile(kind: str, operands: list[tuple[str, ir.Value]], results: list[tuple[str, ir.Type]],
                params: dict, loc: ir.Location, before: ir.Operation) -> ir.Operation:
    """Insert an etc.tile before `before`: operands and results as (role, value/type) pairs."""
    with loc, ir.InsertionPoint(before):
        attrs = {"kind": ir.StringAttr.get(kind),
                 "params": mlir.python_to_attr({"operand_roles": [r for r, _ in operands],
                                                "result_roles": [r for r, _ in results], **params})}
        return ir.Operation.create(TILE_OP, results=[t for _, t in results], operands=[v for _, v in operands],
                                   attributes=attrs)


def replace_op(old: ir.Operation, new_results: list[ir.Value]) -> None:
    for a, b in zip(old.results, new_results):
        a.replace_all_uses_with(b)
    erase(old)


def erase(op: ir.Operation) -> None:
    """Erase op and the bind_symbolic_shape ops that describe its (now unused) results."""
    for result in op.results:
        for use in list(result.uses):
            if use.owner.name == "torch.bind_symbolic_shape":
                use.owner.erase()
    op.erase()


_PURE_SKIP = {"func.return", "torch.overwrite.tensor.contents", "torch.bind_symbolic_shape", "torch.symbolic_int"}


def erase_dead(block: ir.Block) -> None:
    """Erase side-effect-free ops whose results nobody uses (the leftovers of matched clusters)."""
    changed = True
    while changed:
        changed = False
        for op in reversed(list(block.operations)):
            op = op.operation
            if op.name in _PURE_SKIP or not op.results or op.name == "func.func":
                continue
            if all(not users(r) for r in op.results):
                erase(op)
                changed = True


def source_line(loc: ir.Location) -> str:
    """'file:line: `text`' for an op location, with the PyTorch source text when the file is readable."""
    file, line, _ = mlir.location_parts(loc)
    if file is None:
        return "unknown source location"
    text = linecache.getline(file, line).strip() if line else ""
    return f"{file}:{line}" + (f": `{text}`" if text else "")


FRONT_END_KINDS = {"attention"}  # split into attention_partial + attention_merge by etc-form-task-grids


def tile_problem(op: ir.Operation) -> str | None:
    """Why an etc.tile op is malformed (for passes that read it), or None."""
    from etc.tiles import KINDS

    if "kind" not in op.attributes or "params" not in op.attributes:
        return "etc.tile needs 'kind' and 'params' attributes"
    kind = op.attributes["kind"].maybe_downcast()
    params = op.attributes["params"].maybe_downcast()
    if not isinstance(kind, ir.StringAttr) or not isinstance(params, ir.DictAttr):
        return "etc.tile 'kind' must be a string and 'params' a dictionary"
    if kind.value not in KINDS and kind.value not in FRONT_END_KINDS:
        return f"etc.tile has unknown kind '{kind.value}'"
    p = mlir.attr_to_python(params)
    for key, count in (("operand_roles", len(op.operands)), ("result_roles", len(op.results))):
        roles = p.get(key)
        if not isinstance(roles, list) or len(roles) != count or not all(isinstance(r, str) for r in roles):
            return f"etc.tile params.{key} must list one role per {key.split('_')[0]} ({count})"
    return None


def tile_producer(value: ir.Value, *kinds: str) -> ir.Operation | None:
    """The etc.tile (of one of kinds) whose result value is, through views; None otherwise."""
    op = producer(strip_views(value))
    return op if is_tile(op, *kinds) else None


def consumers(value: ir.Value) -> list[ir.Operation]:
    """The non-view ops that read value, directly or through views (size queries do not count)."""
    found = []
    for user in users(value):
        if user.name in VIEW_OPS and user.name != "torch.copy.to_vtensor":
            found += consumers(user.results[0])
        elif user.name != "torch.aten.size.int":
            found.append(user)
    return found


def set_params(op: ir.Operation, params: dict) -> None:
    with op.location:
        op.attributes["params"] = mlir.python_to_attr(params)


def fuse_into(anchor: ir.Operation, base: ir.Operation, extra_operands: list[tuple[str, ir.Value]],
              results: list[tuple[str, ir.Type]], params: dict, replaced: ir.Operation) -> ir.Operation:
    """Replace `replaced` by a copy of tile `base` with more operands and new params/results, placed at
    `anchor` (the latest op of the fused cluster, so every operand dominates it); erases base."""
    roles = tile_params(base)["operand_roles"]
    operands = list(zip(roles, base.operands)) + extra_operands
    fused = create_tile(tile_kind(base), operands, results, params, base.location, anchor)
    replace_op(replaced, list(fused.results))  # replaced is never base: base feeds the cluster
    if all(not users(r) for r in base.results):
        erase(base)
    return fused


def erase_dead_in(module_op) -> None:
    """erase_dead over every function body of the module."""
    for op in module_op.regions[0].blocks[0].operations:
        if op.operation.name == "func.func" and op.operation.regions[0].blocks:
            erase_dead(op.operation.regions[0].blocks[0])


def view_problem(op: ir.Operation) -> str | None:
    """Why a view op is not a plain re-description of its input's row-major memory, or None.

    Buffers alias through views, so only views that keep every element at its row-major offset qualify:
    reshapes, size-1 dims added or removed, permutes that move only size-1 dims, selects of a size-1 dim.
    """
    src = tensor_type(op.operands[0]) if op.operands else None
    out = tensor_type(op.results[0]) if op.results else None
    if src is None or out is None:
        return None if op.name == "torch.copy.to_vtensor" else "not a tensor view"
    if op.name == "torch.aten.select.int":
        dim = constant(op.operands[1], None)
        return None if dim is not None and src.dims[dim % src.rank] == 1 else \
            "a select of a dim longer than 1 (a strided view)"
    if op.name in ("torch.aten.permute", "torch.aten.transpose.int"):
        if op.name == "torch.aten.permute":
            perm = constant(op.operands[1], None)
        else:
            a, b = (constant(v, None) for v in op.operands[1:3])
            perm = list(range(src.rank))
            if a is None or b is None:
                return "a transpose with non-constant dims"
            perm[a % src.rank], perm[b % src.rank] = perm[b % src.rank], perm[a % src.rank]
        if perm is None:
            return "a permute with non-constant dims"
        moved = [p % src.rank for p in perm if src.dims[p % src.rank] != 1]
        return None if moved == sorted(moved) else "a transpose that moves data"
    if op.name == "torch.aten.expand":
        return None if src.dims == out.dims else "a broadcasting expand"
    return None


def check_tiles(pass_, module_op) -> bool:
    """Report every malformed etc.tile through pass_.error; True when all are well formed."""
    ok = True
    for op in mlir.ops_named(module_op, TILE_OP):
        if problem := tile_problem(op):
            pass_.error(op, problem)
            ok = False
    return ok
