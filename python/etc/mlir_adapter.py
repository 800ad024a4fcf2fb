"""The one place that knows the MLIR Python bindings' quirks.

Everything else in ETC goes through these helpers: contexts with our IRDL dialects loaded,
parsing with file locations, diagnostics as plain records, attribute access, generic op
creation and affine map evaluation.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from mlir import ir, passmanager
from mlir.dialects import irdl

from etc import dialects as _dialects_pkg
from etc.errors import EtcError

DIALECT_DIR = Path(_dialects_pkg.__file__).resolve().parent
DIALECT_FILES = ("event_tensor.irdl.mlir", "sm_task.irdl.mlir")


@dataclasses.dataclass(frozen=True)
class Diagnostic:
    severity: str  # "error" | "warning" | "note" | "remark"
    file: str | None
    line: int | None
    col: int | None
    message: str

    def __str__(self) -> str:
        where = "" if self.file is None else f"{self.file}:{self.line}: " if self.col is None else \
            f"{self.file}:{self.line}:{self.col}: "
        return f"{where}{self.severity}: {self.message}"


class DiagnosticsError(EtcError):
    """An MLIR failure, carried as diagnostics; str() is one line per error."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        errors = [d for d in diagnostics if d.severity == "error"] or diagnostics
        super().__init__("\n".join(str(d) for d in errors) or "error: MLIR failure")


# ---------------------------------------------------------------- contexts


def dialect_files() -> list[Path]:
    return [DIALECT_DIR / name for name in DIALECT_FILES]


def new_context(*, allow_unregistered: bool = False) -> ir.Context:
    """A context with the event_tensor and sm_task dialects loaded (and torch ops, if allowed, as generic ops)."""
    ctx = ir.Context()
    ctx.allow_unregistered_dialects = allow_unregistered
    load_dialects(ctx)
    return ctx


def load_dialects(ctx: ir.Context) -> None:
    """Load ETC's IRDL dialects into ctx (once). sm_task refers to event_tensor's types, so both
    definitions go in one module."""
    if ctx.is_registered_operation("event_tensor.task_grid"):
        return
    with ctx:
        irdl.load_dialects(ir.Module.parse("\n".join(p.read_text() for p in dialect_files())))


# ---------------------------------------------------------------- diagnostics


def _file_location(loc: ir.Location) -> ir.Location | None:
    """The first file:line:col location inside `loc` (through fused, name and call-site locations)."""
    if loc.is_a_file():
        return loc
    if loc.is_a_name():
        return _file_location(loc.child_loc)
    if loc.is_a_callsite():
        return _file_location(loc.callee)
    if loc.is_a_fused():
        for inner in loc.locations:
            found = _file_location(inner)
            if found is not None:
                return found
    return None


def location_parts(loc: ir.Location) -> tuple[str | None, int | None, int | None]:
    found = _file_location(loc)
    if found is None:
        return None, None, None
    return found.filename, found.start_line, found.start_col


def format_location(loc: ir.Location) -> str:
    file, line, col = location_parts(loc)
    return f"{file}:{line}:{col}" if file is not None else "<unknown>"


_SEVERITY = {
    ir.DiagnosticSeverity.ERROR: "error",
    ir.DiagnosticSeverity.WARNING: "warning",
    ir.DiagnosticSeverity.NOTE: "note",
    ir.DiagnosticSeverity.REMARK: "remark",
}


def _flatten(info, out: list[Diagnostic], with_notes: bool) -> None:
    file, line, col = location_parts(info.location)
    out.append(Diagnostic(_SEVERITY.get(info.severity, "error"), file, line, col, str(info.message)))
    if with_notes:
        for note in info.notes:
            if not str(note.message).startswith("see current operation"):
                _flatten(note, out, with_notes)


def diagnostics_of(error: ir.MLIRError, *, with_notes: bool = True) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for info in error.error_diagnostics:
        _flatten(info, out, with_notes)
    if not out:
        out.append(Diagnostic("error", None, None, None, str(error).splitlines()[0]))
    return out


# ---------------------------------------------------------------- parsing and printing


def parse(text: str, ctx: ir.Context, source_name: str = "<input>"):
    """Parse and verify IR text into a builtin.module op; raise DiagnosticsError with file:line:col.

    Text holding several top-level ops (or none) gets an implicit module, as in mlir-opt.
    """
    with ctx:
        try:
            op = ir.Operation.parse(text, source_name=source_name)
        except ir.MLIRError as e:
            diags = diagnostics_of(e, with_notes=False)
            if not any("single top-level operation" in d.message for d in diags):
                raise DiagnosticsError(diags) from None
            # "module {" goes before line 1 so that every later line keeps its number.
            return parse("module {" + text + "\n}", ctx, source_name)
        if op.operation.name == "builtin.module":
            return op
        module = ir.Operation.parse("module {}", source_name=source_name)
        module.body.append(op.operation)
        return module


def to_text(module, *, debug_info: bool = False, generic: bool = False, local_scope: bool = False) -> str:
    """Print module; local_scope prints attributes inline (no #map aliases), as mlir-opt's --mlir-print-local-scope."""
    return module.operation.get_asm(enable_debug_info=debug_info, print_generic_op_form=generic,
                                    use_local_scope=local_scope)


# ---------------------------------------------------------------- walking and attributes


def walk(op, fn: Callable[[ir.Operation], None]) -> None:
    """Call fn on every operation nested in op (pre-order), op included."""

    def visit(o):
        fn(o)
        return ir.WalkResult.ADVANCE

    op.operation.walk(visit, ir.WalkOrder.PRE_ORDER)


def ops_named(op, name: str) -> list[ir.Operation]:
    found: list[ir.Operation] = []
    walk(op, lambda o: found.append(o) if o.name == name else None)
    return found


def str_attr(op, name: str) -> str:
    return ir.StringAttr(op.operation.attributes[name]).value


def int_attr(op, name: str) -> int:
    return ir.IntegerAttr(op.operation.attributes[name]).value


def map_attr(op, name: str) -> ir.AffineMap:
    return ir.AffineMapAttr(op.operation.attributes[name]).value


def map_list_attr(op, name: str) -> list[ir.AffineMap]:
    return [ir.AffineMapAttr(a).value for a in ir.ArrayAttr(op.operation.attributes[name])]


def set_attr(op, name: str, value: ir.Attribute) -> None:
    op.operation.attributes[name] = value


def map_to_attr(m: ir.AffineMap) -> ir.Attribute:
    return ir.AffineMapAttr.get(m)


def operand_groups(op, names: Iterable[str]) -> dict[str, list[ir.Value]]:
    """Split the operands of an op with variadic groups by its operandSegmentSizes."""
    names = list(names)
    operands = list(op.operation.operands)
    if "operandSegmentSizes" not in op.operation.attributes:
        return {names[0]: operands} if len(names) == 1 else {n: [] for n in names}
    sizes = list(ir.DenseI32ArrayAttr(op.operation.attributes["operandSegmentSizes"]))
    groups, start = {}, 0
    for name, size in zip(names, sizes):
        groups[name] = operands[start : start + size]
        start += size
    return groups


# ---------------------------------------------------------------- pass managers


def run_upstream(module, pipeline: str, ctx: ir.Context) -> None:
    """Run textual upstream passes (e.g. 'canonicalize,func.func(cse)') on a module."""
    with ctx:
        pm = passmanager.PassManager("builtin.module")
        pm.add(pipeline)
        pm.run(module.operation)


def check_upstream(pipeline: str, ctx: ir.Context) -> None:
    """Raise ValueError (MLIR's message) if the textual pipeline is not valid upstream MLIR.

    LLVM's option parser writes its complaint straight to fd 2; it is caught and put in the error.
    """
    with ctx, tempfile.TemporaryFile("w+") as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            passmanager.PassManager("builtin.module").add(pipeline)
        except ValueError as e:
            os.dup2(saved, 2)
            captured.seek(0)
            said = " ".join(captured.read().replace(": for the", "for the").split())
            raise ValueError(f"{said} {e}".strip()) from None
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def run_python_pass(module, fn: Callable, name: str, ctx: ir.Context) -> None:
    """Run a Python function (op, pass_) -> None as an MLIR pass, so its diagnostics go through MLIR."""
    with ctx:
        pm = passmanager.PassManager("builtin.module")
        pm.add(fn, name=name, argument=name)
        pm.run(module.operation)


# ---------------------------------------------------------------- affine maps


def substitute(expr: ir.AffineExpr, dims: list[ir.AffineExpr], syms: list[ir.AffineExpr]) -> ir.AffineExpr:
    """Replace d_i by dims[i] and s_j by syms[j] in an affine expression."""
    expr = downcast(expr)
    if isinstance(expr, ir.AffineConstantExpr):
        return expr
    if isinstance(expr, ir.AffineDimExpr):
        return dims[expr.position]
    if isinstance(expr, ir.AffineSymbolExpr):
        return syms[expr.position]
    lhs, rhs = substitute(expr.lhs, dims, syms), substitute(expr.rhs, dims, syms)
    builders = {
        ir.AffineAddExpr: ir.AffineExpr.get_add,
        ir.AffineMulExpr: ir.AffineExpr.get_mul,
        ir.AffineFloorDivExpr: ir.AffineExpr.get_floor_div,
        ir.AffineCeilDivExpr: ir.AffineExpr.get_ceil_div,
        ir.AffineModExpr: ir.AffineExpr.get_mod,
    }
    return builders[type(expr)](lhs, rhs)


def downcast(expr: ir.AffineExpr) -> ir.AffineExpr:
    """The expression as its real kind: the bindings type `a * b` as a product even when it folds."""
    return expr.maybe_downcast()


def is_constant(expr: ir.AffineExpr) -> bool:
    return isinstance(downcast(expr), ir.AffineConstantExpr)


def constant_value(expr: ir.AffineExpr) -> int:
    return downcast(expr).value


_BINARY_KINDS = ((ir.AffineAddExpr, "add"), (ir.AffineMulExpr, "mul"), (ir.AffineFloorDivExpr, "floordiv"),
                 (ir.AffineCeilDivExpr, "ceildiv"), (ir.AffineModExpr, "mod"))


def fold_affine(expr: ir.AffineExpr, constant: Callable, dim: Callable, symbol: Callable, binary: Callable):
    """Fold an affine expression bottom-up: leaves through constant(value), dim(position) and
    symbol(position); each binary node through binary(kind, lhs, rhs), kind one of add, mul, floordiv,
    ceildiv, mod. Printers, evaluators and code emitters all walk expressions this way."""
    expr = downcast(expr)
    if isinstance(expr, ir.AffineConstantExpr):
        return constant(expr.value)
    if isinstance(expr, ir.AffineDimExpr):
        return dim(expr.position)
    if isinstance(expr, ir.AffineSymbolExpr):
        return symbol(expr.position)
    lhs = fold_affine(expr.lhs, constant, dim, symbol, binary)
    rhs = fold_affine(expr.rhs, constant, dim, symbol, binary)
    return binary(next(k for cls, k in _BINARY_KINDS if isinstance(expr, cls)), lhs, rhs)


def uses_dim(expr: ir.AffineExpr, position: int) -> bool:
    """Whether the expression depends on dim `position` (the bindings have no is_function_of_dim)."""
    return fold_affine(expr, lambda v: False, lambda i: i == position, lambda i: False, lambda k, a, b: a or b)


_PY_BINARY = {"add": "({} + {})", "mul": "({} * {})", "floordiv": "({} // {})", "ceildiv": "(-((-{}) // {}))",
              "mod": "({} % {})"}  # Python's // and % round toward negative infinity, as affine maps do


def compile_map(m: ir.AffineMap) -> Callable[[tuple, tuple], tuple[int, ...]]:
    """A Python function (dims, syms) -> results that evaluates affine map m on integers.

    Compiled once, so executors can evaluate maps per tile cheaply.
    """
    def emit(expr) -> str:
        return fold_affine(expr, str, lambda i: f"d[{i}]", lambda i: f"s[{i}]",
                           lambda kind, a, b: _PY_BINARY[kind].format(a, b))

    body = ", ".join(emit(e) for e in m.results)
    return eval(f"lambda d, s: ({body}{',' if len(m.results) == 1 else ''})")  # noqa: S307 (our own text)


def eval_map(m: ir.AffineMap, dims=(), syms=()) -> tuple[int, ...]:
    """Evaluate affine map m at integer dims and symbols."""
    return compile_map(m)(tuple(dims), tuple(syms))


# ---------------------------------------------------------------- attributes as Python values, op creation


def attr_to_python(attr: ir.Attribute):
    """The inverse of python_to_attr: plain Python values; affine maps stay ir.AffineMap, symbol refs become str."""
    attr = attr.maybe_downcast()
    if isinstance(attr, (ir.BoolAttr, ir.IntegerAttr, ir.FloatAttr, ir.StringAttr, ir.AffineMapAttr,
                         ir.FlatSymbolRefAttr)):
        return attr.value
    if isinstance(attr, ir.TypeAttr):
        return str(attr.value)
    if isinstance(attr, ir.ArrayAttr):
        return [attr_to_python(a) for a in attr]
    if isinstance(attr, ir.DictAttr):
        return {attr[i].name: attr_to_python(attr[i].attr) for i in range(len(attr))}
    if isinstance(attr, ir.DenseI64ArrayAttr):
        return list(attr)
    return attr


def python_to_attr(value) -> ir.Attribute:
    """bool/int (i64)/float (f64)/str/list/dict/AffineMap/Attribute -> attribute (in the current context)."""
    if isinstance(value, ir.Attribute):
        return value
    if isinstance(value, bool):
        return ir.BoolAttr.get(value)
    if isinstance(value, int):
        return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), value)
    if isinstance(value, float):
        return ir.FloatAttr.get_f64(value)
    if isinstance(value, str):
        return ir.StringAttr.get(value)
    if isinstance(value, ir.AffineMap):
        return ir.AffineMapAttr.get(value)
    if isinstance(value, (list, tuple)):
        return ir.ArrayAttr.get([python_to_attr(v) for v in value])
    if isinstance(value, dict):
        return ir.DictAttr.get({k: python_to_attr(v) for k, v in value.items()})
    raise TypeError(f"no attribute for {value!r}")


# ---------------------------------------------------------------- generic op creation (scheduling passes)


def attr_value(op, name: str, default=None):
    """Attribute `name` of op as a Python value (attr_to_python), or default when absent."""
    attrs = op.operation.attributes
    return attr_to_python(attrs[name]) if name in attrs else default


def i64_array_attr(values: Iterable[int]) -> ir.Attribute:
    return ir.DenseI64ArrayAttr.get(list(values))


def parse_type(text: str, ctx: ir.Context) -> ir.Type:
    with ctx:
        return ir.Type.parse(text)


def create_op(name: str, *, before, operand_groups: list[list[ir.Value]] | None = None,
              attributes: dict[str, ir.Attribute] | None = None, result_types: list[ir.Type] | None = None,
              loc: ir.Location | None = None) -> ir.Operation:
    """Create generic op `name` right before op `before` (at its location unless `loc` is given).
    Operands are operand_groups concatenated; operandSegmentSizes is set when there are several groups."""
    attributes = dict(attributes or {})
    operands: list[ir.Value] = [v for group in operand_groups or [] for v in group]
    if operand_groups is not None and len(operand_groups) > 1:
        attributes["operandSegmentSizes"] = ir.DenseI32ArrayAttr.get([len(g) for g in operand_groups])
    with before.context:
        return ir.Operation.create(name, results=result_types or [], operands=operands, attributes=attributes,
                                   loc=loc or before.location, ip=ir.InsertionPoint(before.operation))
