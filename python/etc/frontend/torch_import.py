"""PyTorch module -> torch-dialect IR text, through torch.export and torch-mlir's FX importer.

    imp = export_torch_ir(model, example_args, dynamic_shapes)

Decisions:

* Import path: `FxImporter.import_program` (torch-mlir's mutation-aware path), never the
  frozen path. Every parameter and buffer -- including non-persistent ones such as the
  rotary `inv_freq`, which has no value on the meta device -- becomes a function argument
  through `FxImporterHooks.resolve_input`; lifted tensor constants with more than one
  element do too (one-element constants stay as splat literals). So the IR holds shapes
  only: no `dense_resource`, and a model on the meta device imports in seconds.
* Mutation: user inputs written in place (the KV caches) are `!torch.tensor` arguments;
  the body reads them with `torch.copy.to_vtensor` and writes the new value with
  `torch.overwrite.tensor.contents` right after the `torch.aten.index_put` that makes it.
  When forward also returns the cache, that result is the same value and `outputs[i].aliases`
  names the input it aliases.
* Decompositions: torch-mlir's table (core ATen + its extras) minus `KEEP_WHOLE`, so
  linear, embedding, scaled_dot_product_attention, silu, gelu, layer_norm, argmax,
  index_put, softmax, rms_norm stay single ops for raising. `aten._assert_tensor_metadata`
  (no-op checks) is dropped before import.
* Symbolic dims: imported as `torch.symbolic_int` + `torch.bind_symbolic_shape`; each
  `symbol_name` is renamed to its torch.export Dim name ("batch", "kv_len") when the
  dynamic_shapes spec names it.
* Only text leaves this module: torch-mlir's `torch_mlir.ir` objects never reach the
  project's `mlir` bindings. The text is printed in generic op form with locations, so a
  separate MLIR 22 context with allow_unregistered_dialects parses it.
* Errors from torch.export / torch-mlir become a one-line EtcError (the original exception
  is kept on `.original`).
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import time
import traceback
import warnings
from typing import Any, NamedTuple, Sequence

import torch
import torch.utils._pytree as pytree

from etc.errors import EtcError

__all__ = [
    "KEEP_WHOLE",
    "input_names",
    "Input",
    "Output",
    "Param",
    "TorchImport",
    "decomposition_table",
    "export_torch_ir",
]

_aten = torch.ops.aten

# Op packets that run_decompositions must leave whole (raising patterns match them).
KEEP_WHOLE = (
    _aten.linear,
    _aten.embedding,
    _aten.scaled_dot_product_attention,
    _aten.silu,
    _aten.gelu,
    _aten.layer_norm,
    _aten.native_layer_norm,
    _aten.rms_norm,
    _aten.argmax,
    _aten.index_put,
    _aten.index_put_,
    _aten.softmax,
    _aten._softmax,
)

# Ops removed from the graph before import: runtime checks with no result.
_DROPPED = (_aten._assert_tensor_metadata.default,)


class Param(NamedTuple):
    """A parameter / buffer / lifted constant that became function argument `index`."""

    index: int
    name: str  # fully qualified name, as in model.state_dict() (constants: their export name)
    shape: tuple[int, ...]
    dtype: torch.dtype


class Input(NamedTuple):
    """A user input that is a function argument."""

    index: int
    name: str  # "tokens", "positions", "k_caches.0", ...
    shape: tuple[int | str, ...]  # symbolic dims by name ("batch"), derived ones as expressions
    dtype: torch.dtype
    mutable: bool  # a !torch.tensor argument written in place (torch.overwrite.tensor.contents)


class Output(NamedTuple):
    """A function result."""

    index: int
    name: str  # "logits", "k_caches.0", ...
    shape: tuple[int | str, ...]
    dtype: torch.dtype | None  # None for a non-tensor result
    aliases: str | None  # the input this result IS (an in-place updated cache), else None


@dataclasses.dataclass
class TorchImport:
    text: str  # torch dialect, generic op form, with locations
    params: list[Param]  # in argument order; all after the user inputs
    inputs: list[Input]  # in argument order
    outputs: list[Output]  # in result order
    symbols: dict[str, tuple[int, int]]  # symbolic dim name -> (min, max)
    non_persistent: tuple[str, ...] = ()  # params not in model.state_dict() (e.g. rotary inv_freq)
    func_name: str = "main"
    timings: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds per step

    @property
    def op_names(self) -> list[str]:
        """Distinct op names in the text, sorted (func.func, torch.aten.linear, ...)."""
        return sorted(set(re.findall(r'^\s*(?:%[^=]+=\s*)?"([\w.]+)"\(', self.text, re.M)))

    def to_json(self) -> str:
        """The metadata (everything but the text) as JSON; dtypes as torch names ("bfloat16")."""

        def dt(d):
            return None if d is None else str(d).removeprefix("torch.")

        return json.dumps(
            {
                "func_name": self.func_name,
                "params": [dict(p._asdict(), dtype=dt(p.dtype)) for p in self.params],
                "inputs": [dict(i._asdict(), dtype=dt(i.dtype)) for i in self.inputs],
                "outputs": [dict(o._asdict(), dtype=dt(o.dtype)) for o in self.outputs],
                "symbols": self.symbols,
                "non_persistent": list(self.non_persistent),
            },
            indent=1,
        )


def decomposition_table() -> dict:
    """torch-mlir's decomposition table without the ops in KEEP_WHOLE."""
    from torch_mlir.extras.fx_decomp_util import get_decomposition_table

    keep = set(KEEP_WHOLE)
    return {op: fn for op, fn in get_decomposition_table().items() if op._overloadpacket not in keep}


# ---------------------------------------------------------------- errors


def _one_line(text: str, limit: int = 300) -> str:
    for line in str(text).splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


_TORCH_DIR = os.path.dirname(torch.__file__)
_THIS_FILE = os.path.abspath(__file__)
_USER_CALL_RE = re.compile(r'raised this error:\s*\n\s*File "([^"]+)", line (\d+), in [^\n]*\n([^\n]*)')


def _user_line(e: BaseException) -> str | None:
    """'file:line: `code`' of the user's source line that the failure came from, if known."""
    m = _USER_CALL_RE.search(str(e))
    if m:
        code = m.group(3).strip()
        return f"{m.group(1)}:{m.group(2)}" + (f" (`{code}`)" if code else "")
    frames = traceback.extract_tb(e.__traceback__)
    for f in reversed(frames):
        path = os.path.abspath(f.filename) if not f.filename.startswith("<") else f.filename
        if path.startswith("<") or path.startswith(_TORCH_DIR) or path == _THIS_FILE:
            continue
        if f.name == "<module>":  # the caller's script, not the traced model
            break
        code = (f.line or "").strip()
        return f"{f.filename}:{f.lineno}" + (f" (`{code}`)" if code else "")
    return None


def _is_data_dependent(e: BaseException) -> bool:
    name = type(e).__name__
    msg = str(e)
    return (
        name in ("GuardOnDataDependentSymNode", "DataDependentOutputException", "PendingUnbackedSymbolNotFound")
        or "data-dependent" in msg
        or "data dependent" in msg
        or "DYNAMIC_CONTROL_FLOW" in msg
    )


def _export_error(e: BaseException) -> EtcError:
    where = _user_line(e)
    at = f" at {where}" if where else ""
    if _is_data_dependent(e):
        msg = (
            f"torch.export failed: data-dependent control flow{at}: forward branches on a tensor's value "
            "(Python if/while/bool()/.item() on a tensor); use torch.where or torch.cond instead"
        )
    else:
        detail = _one_line(e)
        bullets = [line.strip()[2:] for line in str(e).splitlines() if line.strip().startswith("- ")]
        if bullets:  # e.g. "Constraints violated (batch)!" + why
            detail += " " + _one_line(bullets[0], 200)
        if "specialized it to be a constant (1)" in str(e):
            detail += " (torch.export specializes size-1 dims: give example inputs of size >= 2 on dynamic dims)"
        msg = f"torch.export failed: {type(e).__name__}: {detail}" + (f" [at {where}]" if where else "")
    err = EtcError(msg)
    err.original = e
    return err


def _wrap(stage: str, e: BaseException) -> EtcError:
    if isinstance(e, EtcError):
        return e
    err = EtcError(f"{stage} failed: {type(e).__name__}: {_one_line(e)}")
    err.original = e
    return err


# ---------------------------------------------------------------- naming


def _key_str(k) -> str:
    for attr in ("idx", "key", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _input_leaf_paths(model, example_args) -> list[list]:
    """Per pytree leaf of example_args, its path [forward param name, index/key, ...]."""
    try:
        params = [
            p.name
            for p in inspect.signature(model.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    flat, _ = pytree.tree_flatten_with_path(tuple(example_args))
    paths = []
    for keypath, _leaf in flat:
        keys = [getattr(k, "idx", getattr(k, "key", None)) for k in keypath]
        first = keys[0]
        head = params[first] if isinstance(first, int) and first < len(params) else f"arg{first}"
        paths.append([head] + keys[1:])
    return paths


def input_names(model, example_args) -> list[str]:
    """The IR names of the flattened forward arguments, e.g. ["tokens", "positions", "k_caches.0", ...]."""
    return [".".join(str(p) for p in path) for path in _input_leaf_paths(model, example_args)]


def _dim_spec(dynamic_shapes, params: list[str], path: list):
    """The dynamic_shapes entry of the tensor at `path` (a {dim: Dim} dict or a per-dim sequence)."""
    if dynamic_shapes is None:
        return None
    if isinstance(dynamic_shapes, dict):
        spec = dynamic_shapes.get(path[0])
    else:
        pos = params.index(path[0]) if path[0] in params else None
        spec = dynamic_shapes[pos] if pos is not None and pos < len(dynamic_shapes) else None
    for k in path[1:]:
        if isinstance(spec, (list, tuple)) and isinstance(k, int) and k < len(spec):
            spec = spec[k]
        elif isinstance(spec, dict) and k in spec:
            spec = spec[k]
        else:
            return None
    return spec


def _default_output_names(model):
    names = getattr(model, "output_names", None)
    if names:
        return tuple(names)
    try:
        from etc.models.decoder import DecoderLM

        if isinstance(model, DecoderLM):
            return ("logits", "k_caches", "v_caches")
    except ImportError:  # pragma: no cover
        pass
    return None


def _output_leaf_names(out_spec, output_names) -> list[str]:
    n = out_spec.num_leaves
    tree = pytree.tree_unflatten(list(range(n)), out_spec)
    flat, _ = pytree.tree_flatten_with_path(tree)
    names = []
    for keypath, _leaf in flat:
        keys = [_key_str(k) for k in keypath]
        if output_names and keys and keys[0].isdigit() and int(keys[0]) < len(output_names):
            keys[0] = output_names[int(keys[0])]
            names.append(".".join(keys))
        elif output_names and not keys:
            names.append(output_names[0])
        else:
            names.append(".".join(["output"] + keys))
    return names


# ---------------------------------------------------------------- the importer hooks


def _make_hooks(prog):
    """FxImporterHooks that lift parameters, buffers and non-scalar constants to function arguments."""
    from torch.export.graph_signature import InputKind
    from torch_mlir.extras.fx_importer import FxImporterHooks
    from torch_mlir.ir import Location

    placeholders = {n.name: n for n in prog.graph.nodes if n.op == "placeholder"}
    constant_names = {id(v): k for k, v in prog.constants.items()}

    class LiftHooks(FxImporterHooks):
        def __init__(self):
            self.block = None
            self.cc = None
            self.values = {}  # target -> block argument
            self.lifted = []  # (arg index, name, shape, dtype, persistent)
            self.n_const = 0

        def bind(self, block, cc):
            self.block, self.cc = block, cc

        def _add(self, name, ir_type, shape, dtype, persistent):
            index = len(self.block.arguments)
            value = self.block.add_argument(ir_type, Location.name(name, context=ir_type.context))
            self.values[name] = value
            self.lifted.append((index, name, tuple(int(d) for d in shape), dtype, persistent))
            return value

        def lift_all(self):
            """Parameters and buffers in graph-signature order (= named_parameters, named_buffers)."""
            if self.values:
                return
            for spec in prog.graph_signature.input_specs:
                if spec.kind not in (InputKind.PARAMETER, InputKind.BUFFER):
                    continue
                node = placeholders[spec.arg.name]
                val = node.meta["val"]
                persistent = spec.kind == InputKind.PARAMETER or bool(spec.persistent)
                self._add(spec.target, self.cc.node_val_to_type(node), val.shape, val.dtype, persistent)

        def resolve_input(self, gni, value, info):
            if gni._b is not self.block:
                return None
            self.lift_all()
            return self.values.get(info.input_spec.target)

        def resolve_literal(self, gni, literal, info):
            if not isinstance(literal, torch.Tensor) or gni._b is not self.block:
                return None
            if literal.numel() <= 1 and literal.device.type != "meta":
                return None  # splat literal, cheap
            self.lift_all()
            name = constant_names.get(id(literal))
            if name is None:
                name = f"constant.{self.n_const}"
                self.n_const += 1
            if name in self.values:
                return self.values[name]
            return self._add(
                name, self.cc.tensor_to_vtensor_type(literal), literal.shape, literal.dtype, persistent=False
            )

        def store_produced_value(self, gni, py_value, produced_ir_value, info):
            raise EtcError(
                f"model writes buffer {info.input_spec.target!r} in place; only user inputs "
                "(such as KV caches) may be mutated"
            )

    return LiftHooks()


# ---------------------------------------------------------------- the entry point


def _on_meta(model) -> bool:
    return any(t.device.type == "meta" for t in list(model.parameters()) + list(model.buffers()))


def export_torch_ir(
    model: torch.nn.Module,
    example_args: Sequence[Any],
    dynamic_shapes=None,
    *,
    output_names: Sequence[str] | None = None,
    decompositions: dict | None = None,
    strict: bool = False,
    func_name: str = "main",
) -> TorchImport:
    """Export `model.forward(*example_args)` and import it as torch-dialect IR text.

    dynamic_shapes: as for torch.export.export (e.g. etc.models.dynamic_shapes_for(config)).
    output_names: names of forward's top-level results (default: model.output_names, or
      ("logits", "k_caches", "v_caches") for the reference decoder, else "output.<path>").
    decompositions: run_decompositions table (default: decomposition_table()).
    Raises EtcError (one line) when torch.export or the import fails.
    """
    from torch.export.graph_signature import InputKind, OutputKind, SymIntArgument, TensorArgument

    timings: dict[str, float] = {}
    example_args = tuple(example_args)
    if _on_meta(model):  # only shapes and dtypes matter; keep every tensor on one device
        example_args = pytree.tree_map_only(torch.Tensor, lambda t: t.to("meta"), example_args)

    # 1. torch.export
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():  # torch's own pytree deprecation noise
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            prog = torch.export.export(model, example_args, dynamic_shapes=dynamic_shapes, strict=strict)
    except EtcError:
        raise
    except Exception as e:  # torch.export raises many types; all become one line
        raise _export_error(e) from None
    timings["export"] = time.perf_counter() - t0

    # 2. decompositions (functionalizes: index_put_ -> index_put + input mutation)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            prog = prog.run_decompositions(decomposition_table() if decompositions is None else decompositions)
    except Exception as e:
        raise _wrap("run_decompositions", e) from None
    graph = prog.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target in _DROPPED and not node.users:
            graph.erase_node(node)
    prog.graph_module.recompile()
    timings["decompose"] = time.perf_counter() - t0

    # 3. metadata from the program: names, symbols, aliasing
    sig = prog.graph_signature
    placeholders = {n.name: n for n in graph.nodes if n.op == "placeholder"}
    user_specs = [s for s in sig.input_specs if s.kind == InputKind.USER_INPUT]
    paths = _input_leaf_paths(model, example_args)
    try:
        fwd_params = list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        fwd_params = []
    if len(paths) != len(user_specs):  # unexpected flattening: fall back to export's names
        paths = [[s.arg.name] for s in user_specs]
    display = {}  # placeholder name -> "k_caches.0"
    sym_names: dict[str, str] = {}  # "s12" -> "batch"
    for spec, path in zip(user_specs, paths):
        display[spec.arg.name] = ".".join(str(p) for p in path)
        node = placeholders.get(spec.arg.name)
        val = node.meta.get("val") if node is not None else None
        dims = _dim_spec(dynamic_shapes, fwd_params, path)
        if not isinstance(val, torch.Tensor) or dims is None:
            continue
        items = dims.items() if isinstance(dims, dict) else enumerate(dims)
        for d, dim in items:
            name = getattr(dim, "__name__", None)
            if name and isinstance(d, int) and d < val.dim() and isinstance(val.shape[d], torch.SymInt):
                expr = val.shape[d].node.expr
                if expr.is_Symbol:
                    sym_names.setdefault(str(expr), name)

    def sym_str(expr) -> str:
        s = str(expr)
        for old, new in sorted(sym_names.items(), key=lambda kv: -len(kv[0])):
            s = re.sub(rf"\b{re.escape(old)}\b", new, s)
        return s

    def shape_of(val) -> tuple:
        out = []
        for d in val.shape:
            if isinstance(d, torch.SymInt):
                expr = d.node.expr
                out.append(int(expr) if expr.is_number else sym_str(expr))
            else:
                out.append(int(d))
        return tuple(out)

    # User inputs that are function arguments (constants are folded by torch.export).
    arg_specs = [s for s in user_specs if isinstance(s.arg, (TensorArgument, SymIntArgument))]
    mutated = {s.arg.name: s.target for s in sig.output_specs if s.kind == OutputKind.USER_INPUT_MUTATION}

    # 4. torch-mlir import
    t0 = time.perf_counter()
    try:
        from torch_mlir import ir as tir
        from torch_mlir.dialects import torch as torch_d
        from torch_mlir.extras import fx_importer as fxi

        ctx = tir.Context()
        torch_d.register_dialect(ctx)
        hooks = _make_hooks(prog)
        importer = fxi.FxImporter(context=ctx, hooks=hooks)
        # The importer builds the entry block inside import_program; bind the hooks to it lazily.
        orig_cls = importer._graph_node_importer_cls

        class _Gni(orig_cls):
            def __init__(self, fx_importer, context, context_cache, block):
                super().__init__(fx_importer, context, context_cache, block)
                if hooks.block is None:
                    hooks.bind(block, context_cache)

        importer._graph_node_importer_cls = _Gni
        func_op = importer.import_program(prog, func_name=func_name, import_symbolic_shape_expressions=True)
        hooks.lift_all()  # a model that never reads its parameters still gets them as arguments
        timings["import"] = time.perf_counter() - t0

        # 5. fix the signature, name arguments/results, rename symbols, print
        t0 = time.perf_counter()
        with ctx, tir.Location.unknown():
            block = hooks.block
            ftype = tir.FunctionType(tir.TypeAttr(func_op.attributes["function_type"]).value)
            func_op.attributes["function_type"] = tir.TypeAttr.get(
                tir.FunctionType.get([a.type for a in block.arguments], list(ftype.results))
            )
            n_user = len(block.arguments) - len(hooks.lifted)
            arg_names = [None] * len(block.arguments)
            for i, s in enumerate(arg_specs[:n_user]):
                arg_names[i] = display[s.arg.name]
                block.arguments[i].set_location(tir.Location.name(arg_names[i]))
            for index, name, *_ in hooks.lifted:
                arg_names[index] = name
            # etc.role: "weight" for lifted parameters/buffers, else "input" (a mutable input is a KV cache).
            func_op.attributes["arg_attrs"] = tir.ArrayAttr.get([
                tir.DictAttr.get({"etc.name": tir.StringAttr.get(n or f"arg{i}"),
                                  "etc.role": tir.StringAttr.get("input" if i < n_user else "weight")})
                for i, n in enumerate(arg_names)
            ])
            for op in block.operations:
                if op.name == "torch.constant.device" and tir.StringAttr(op.attributes["value"]).value == "meta":
                    # An artifact of meta weights; make the IR independent of where the weights live.
                    op.attributes["value"] = tir.StringAttr.get("cpu")
                elif op.name == "torch.symbolic_int":
                    old = tir.StringAttr(op.attributes["symbol_name"]).value
                    if old in sym_names:
                        op.attributes["symbol_name"] = tir.StringAttr.get(sym_names[old])
        # outputs
        user_out = [s for s in sig.output_specs if s.kind == OutputKind.USER_OUTPUT]
        out_names = _output_leaf_names(prog.call_spec.out_spec, output_names or _default_output_names(model))
        producers = {n.name: n for n in graph.nodes if n.op in ("placeholder", "call_function")}
        outputs = []
        res_attrs = []
        for i, s in enumerate(user_out):
            arg_name = getattr(s.arg, "name", None)
            aliases = None
            if arg_name in mutated:
                aliases = display.get(mutated[arg_name], mutated[arg_name])
            elif arg_name in display:
                aliases = display[arg_name]
            name = out_names[i] if i < len(out_names) else f"output.{i}"
            val = producers[arg_name].meta.get("val") if arg_name in producers else None
            if isinstance(val, torch.Tensor):
                outputs.append(Output(i, name, shape_of(val), val.dtype, aliases))
            else:
                outputs.append(Output(i, name, (), None, aliases))
            d = {"etc.name": name} | ({"etc.aliases": aliases} if aliases else {})
            res_attrs.append(d)
        with ctx:
            if res_attrs:
                func_op.attributes["res_attrs"] = tir.ArrayAttr.get(
                    [tir.DictAttr.get({k: tir.StringAttr.get(v) for k, v in d.items()}) for d in res_attrs]
                )
        text = importer.module.operation.get_asm(enable_debug_info=True, print_generic_op_form=True)
        guards = importer._cc._symbolic_guards if hasattr(importer._cc, "_symbolic_guards") else {}
        symbols = {sym_names.get(k, k): (int(g.min_val), int(g.max_val)) for k, g in (guards or {}).items()}
        lifted = list(hooks.lifted)
        del func_op, block, importer, hooks, ctx  # nothing of torch_mlir.ir escapes
    except EtcError:
        raise
    except Exception as e:
        raise _wrap("torch-mlir import", e) from None
    timings["print"] = time.perf_counter() - t0
    if "dense_resource" in text:  # the hooks lift every non-scalar tensor; this would be a bug
        raise EtcError("torch-mlir import embedded a dense_resource literal (weights in the IR)")

    inputs = []
    for i, s in enumerate(arg_specs):
        val = placeholders[s.arg.name].meta.get("val")
        if isinstance(val, torch.Tensor):
            inputs.append(Input(i, display[s.arg.name], shape_of(val), val.dtype, s.arg.name in mutated.values()))
        else:  # a symbolic int input: a !torch.int argument
            inputs.append(Input(i, display[s.arg.name], (), torch.int64, False))
    params = [Param(index, name, shape, dtype) for index, name, shape, dtype, _ in lifted]
    non_persistent = tuple(name for _, name, _, _, persistent in lifted if not persistent)
    return TorchImport(text, params, inputs, outputs, symbols, non_persistent, func_name, timings)
