"""etc-form-task-grids: turn tiled etc.tile ops on torch tensors into event_tensor IR: named buffers,
task grids and the event tensors that join them at the finest grain the tiles allow.

Matches: a func.func whose body holds etc.tile ops (after raising, fusion and etc-tile), torch view
ops, in-place cache writes (torch.overwrite.tensor.contents) and bookkeeping.
Produces, in a new body of the same function:
  - one `event_tensor.dim` per symbolic size (torch.symbolic_int: batch, kv_len) with its range;
  - one `event_tensor.buffer` per function argument a tile reads (role weight, input or kv_cache) and
    per tile result (workspace, or output with `output_index` when returned). Views alias their input's
    buffer; a tile result whose role is also an operand role (a KV append) is that operand's buffer,
    updated in place, and a returned cache carries `output_index` on the input's buffer;
  - one `event_tensor.task_grid` per tile (attention: an attention_partial grid split over KV length and
    an attention_merge grid, or with merge-last-split the attention_partial grid alone, writing the
    merged output too), with grid extents as affine maps of the symbols, read_roles/write_roles;
  - one `event_tensor.event_tensor` per producer grid and access pattern: for each buffer dim, when
    both producer and consumer tile it and one tile size divides the other, the event keeps that dim
    (a consumer tile waits for just the producer tiles it reads); otherwise the dim collapses.
    Wait counts are left at 0 for etc-derive-wait-counts.
With fuse-attention-merge (default), an attention_merge grid whose output feeds only one linear as its
x (o_proj) is folded into that linear, which then reads the partials (prologue "attention_merge").
With merge-last-split (instead of either fold) there is no merge grid: the attention_partial grid also
writes the merged output, the last of each (row, kv group)'s splits to finish merging them (etc.tiles), so
no dependent stage and no reader repeats the merge; its readers wait on the partial grid's event. With
merge-per-batch too, that happens at one row only (below, for the fold into the linear, likewise).
With merge-per-batch instead, the folding depends on the batch: for a symbolic batch R the merge grid
stays, with no tiles at one row (grid (R, KVH * ind(R)), ind(R) = (R + Rmax - 2) floordiv Rmax: 0 at
R = 1, 1 up to Rmax), and the linear reads both the partials and the merged x (prologue
"attention_merge_one_row": one row merges the partials itself, more rows read x), waiting on both grids;
a fixed batch of one row folds as above, of more rows keeps the merge grid unfolded.
Guarantees: every tile waits, before it runs, for every producer tile that writes any element it
reads in the same step (tiles of etc.tiles regions); it never waits on a grid whose buffers it does
not read, so there is no whole-layer barrier. Grid extents and event shapes stay symbolic. Errors:
an op other than the above, a symbolic size without a name, two grids writing one buffer, a cache
read both before and after its in-place update.

Before:
  %y = "etc.tile"(%x, %w) {kind = "linear", params = {..., tile_n = 16}} : (...) -> !torch.vtensor<[?,1,64],bf16>
After:
  %b = "event_tensor.dim"() {name = "batch", min = 1, max = 64} : () -> index
  %y = "event_tensor.buffer"(%b) {name = "q_proj.out", role = "workspace", sizes = affine_map<()[s0] -> (s0, 64)>, ...}
  %e = "event_tensor.event_tensor"(%b) {name = "q_proj.done", shape = affine_map<()[s0] -> (1)>, ...}
  "event_tensor.task_grid"(%b, %x, %w, %y, %e) {kind = "linear", grid = affine_map<()[s0] -> (4)>,
      notify_maps = [affine_map<(d0)[s0] -> (0)>], ...}
"""
from __future__ import annotations

import dataclasses

from mlir import ir

from etc import mlir_adapter as mlir
from etc import tiles
from etc.frontend import torch_ops as T
from etc.frontend.torch_graph import TorchGraph
from etc.passes.base import Option, Pass

_ELEMENT_TYPE = {"bf16": "bf16", "f16": "f16", "f32": "f32", "f64": "f64", "si64": "i64", "si32": "i32",
                 "i1": "i1", "ui8": "i8", "si8": "i8"}


class _Error(Exception):
    def __init__(self, op, message):
        super().__init__(message)
        self.op = op


@dataclasses.dataclass
class _Buffer:
    name: str
    role: str
    element_type: str
    shape: list  # affine exprs over the symbols
    loc: ir.Location
    output_index: int | None = None
    value: ir.Value | None = None  # the event_tensor.buffer result, once built


@dataclasses.dataclass
class _Grid:
    name: str
    kind: str
    grid: list  # affine exprs over the symbols
    reads: list  # (role, _Buffer)
    writes: list
    params: dict
    loc: ir.Location
    waits: list = dataclasses.field(default_factory=list)  # (event key, wait map exprs)
    notifies: list = dataclasses.field(default_factory=list)


class FormTaskGrids(Pass):
    NAME = "etc-form-task-grids"
    SUMMARY = "Build event_tensor IR (buffers, task grids, fine-grained event tensors) from tiled etc.tile ops."
    OPTIONS = (Option("fuse-attention-merge", bool, True,
                      "fold an attention merge into the one linear that reads its output (prologue attention_merge)"),
               Option("merge-per-batch", bool, False,
                      "fold the attention merge into that linear (or with merge-last-split into its last "
                      "split) at one row only; more rows keep the merge grid"),
               Option("merge-last-split", bool, False,
                      "no attention_merge grid: the last split of each (row, kv group) to finish merges the "
                      "group's splits into the attention output"))

    def run(self, module_op) -> None:
        for func in [op.operation for op in module_op.regions[0].blocks[0].operations]:
            if func.name != "func.func" or not func.regions[0].blocks:
                continue
            if not any(op.operation.name == T.TILE_OP for op in func.regions[0].blocks[0].operations):
                continue
            try:
                _Former(func, module_op, self.option("fuse-attention-merge"), self.option("merge-per-batch"),
                        self.option("merge-last-split")).form()
            except _Error as e:
                self.error(e.op, str(e))


class _Former:
    def __init__(self, func: ir.Operation, module_op, fuse_attention_merge: bool = True,
                 merge_per_batch: bool = False, merge_last_split: bool = False):
        self.func = func
        self.fuse_attention_merge = fuse_attention_merge
        self.merge_per_batch = merge_per_batch
        self.merge_last_split = merge_last_split
        self.module_op = module_op
        self.graph = TorchGraph(func, module_op)
        self.symbols = list(self.graph.symbols)  # in torch.symbolic_int order
        self.buffers: dict[str, _Buffer] = {}
        self.buffer_of_value: dict[ir.Value, _Buffer] = {}
        self.grids: list[_Grid] = []
        self.names: set[str] = set()

    # ------------------------------------------------------------ naming and shapes

    def unique(self, base: str) -> str:
        name, i = base, 1
        while name in self.names:
            i += 1
            name = f"{base}.{i}"
        self.names.add(name)
        return name

    def expr(self, dim, op) -> ir.AffineExpr:
        if isinstance(dim, int):
            return ir.AffineConstantExpr.get(dim)
        if dim in self.symbols:
            return ir.AffineSymbolExpr.get(self.symbols.index(dim))
        raise _Error(op, f"size '{dim}' is not a named symbolic size (batch, kv_len) the tiles can use")

    def shape(self, value: ir.Value, op, flatten: bool) -> list:
        dims = list(self.graph.tensor(value).shape)
        if flatten and len(dims) > 2:  # activations: [rows, cols]
            cols = 1
            for d in dims[1:]:
                if not isinstance(d, int):
                    raise _Error(op, f"a tile result with symbolic inner size '{d}' has no [rows, cols] layout")
                cols *= d
            dims = [dims[0], cols]
        return [self.expr(d, op) for d in dims]

    # ------------------------------------------------------------ buffers

    def buffer(self, value: ir.Value, op) -> _Buffer:
        """The buffer holding value: through views and in-place tile results to an argument or tile result."""
        seen = value
        while True:
            if value in self.buffer_of_value:
                break
            owner = T.producer(value)
            if owner is not None and owner.name in T.VIEW_OPS:
                value = owner.operands[0]
                continue
            if owner is None and isinstance(value.owner, ir.Block):
                self.buffer_of_value[value] = self.argument_buffer(value, op)
                break
            raise _Error(op, f"operand {seen.get_name()} is not made by a tile, a view or a function argument")
        buf = self.buffer_of_value[value]
        self.buffer_of_value[seen] = buf
        return buf

    def argument_buffer(self, arg: ir.Value, op) -> _Buffer:
        index = arg.arg_number
        name = self.graph.argument_names[index]
        info = self.graph.tensor(arg)
        role = _arg_role(self.func, index)
        role = "kv_cache" if role == "input" and info.mutable else role
        if info.dtype not in _ELEMENT_TYPE:
            raise _Error(op, f"argument '{name}' has unsupported element type {info.dtype}")
        buf = _Buffer(name, role, _ELEMENT_TYPE[info.dtype], [self.expr(d, op) for d in info.shape], arg.location)
        self.buffers[name] = buf
        self.names.add(name)
        return buf

    def result_buffer(self, value: ir.Value, base: str, op) -> _Buffer:
        info = self.graph.tensor(value)
        if info.dtype not in _ELEMENT_TYPE:
            raise _Error(op, f"tile result of unsupported element type {info.dtype}")
        buf = _Buffer(self.unique(base), "workspace", _ELEMENT_TYPE[info.dtype], self.shape(value, op, True),
                      op.location)
        self.buffers[buf.name] = buf
        self.buffer_of_value[value] = buf
        return buf

    # ------------------------------------------------------------ forming

    def form(self) -> None:
        block = self.func.regions[0].blocks[0]
        producer_of: dict[str, _Grid] = {}
        for op in [o.operation for o in block.operations]:
            if op.name == T.TILE_OP:
                problem = T.tile_problem(op)
                if problem:
                    raise _Error(op, problem)
                for grid in self.tile_grids(op):
                    for _, buf in grid.writes:
                        if buf.name in producer_of:
                            raise _Error(op, f"buffer '{buf.name}' is written by two task grids "
                                             f"('{producer_of[buf.name].name}' and '{grid.name}')")
                        producer_of[buf.name] = grid
                    self.grids.append(grid)
            elif op.name == "torch.overwrite.tensor.contents":
                new, target = op.operands
                if self.buffer(new, op) is not self.buffer(target, op):
                    raise _Error(op, f"the write back to '{self.buffer(target, op).name}' is not an in-place "
                                     "tile update (only KV appends update inputs)")
            elif op.name == "func.return":
                for i, value in enumerate(op.operands):
                    buf = self.buffer(value, op)
                    if buf.output_index is not None:
                        raise _Error(op, f"results {buf.output_index} and {i} are the same buffer '{buf.name}'")
                    if buf.role in ("weight", "input"):
                        raise _Error(op, f"result {i} returns input '{buf.name}' unchanged; return only computed values")
                    buf.output_index = i
                    if buf.role == "workspace":
                        buf.role = "output"
            elif op.name in T.VIEW_OPS and (problem := T.view_problem(op)):
                raise _Error(op, f"unsupported view '{op.name}': {problem}")
            elif op.name in T.VIEW_OPS or op.name in T.STRUCTURAL_OPS:
                continue
            else:
                raise _Error(op, f"op '{op.name}' was not raised to a tile (run etc-raise-torch and "
                                 "etc-raise-elementwise first)")
        self.check_cache_reads(block)
        if self.merge_last_split:
            self.merge_in_last_splits(producer_of)
        elif self.fuse_attention_merge:
            self.fold_attention_merges(producer_of)
        events = self.join(producer_of)
        self.rebuild(block, events)

    def fold_attention_merges(self, producer_of: dict[str, _Grid]) -> None:
        """An attention_merge grid whose output only one linear reads, as x without a prologue (o_proj),
        folds into that linear: it reads the partials and merges them itself (prologue attention_merge),
        which saves a dependent stage per layer."""
        for merge in [g for g in self.grids if g.kind == "attention_merge"]:
            out = merge.writes[0][1]
            readers = [g for g in self.grids if any(buf is out for _, buf in g.reads)]
            if out.output_index is not None or len(readers) != 1:
                continue
            linear = readers[0]
            if linear.kind != "linear" or linear.params.get("prologue", "none") != "none" \
                    or [r for r, buf in linear.reads if buf is out] != ["x"]:
                continue
            rows = mlir.downcast(merge.grid[0])
            if self.merge_per_batch and mlir.is_constant(rows) and mlir.constant_value(rows) > 1:
                continue  # a fixed batch of 2+ rows: the merge keeps its own stage
            if self.merge_per_batch and not mlir.is_constant(rows):  # batch 1 merges in the linear, more rows in the merge grid
                linear.reads = merge.reads + linear.reads
                linear.params = dict(linear.params, prologue="attention_merge_one_row", x_etype=out.element_type,
                                     num_heads=merge.params["num_heads"], head_dim=merge.params["head_dim"])
                merge.grid = [merge.grid[0], merge.grid[1] * self.more_than_one_row(rows, merge)]
                continue
            linear.reads = merge.reads + [(r, buf) for r, buf in linear.reads if buf is not out]
            linear.params = dict(linear.params, prologue="attention_merge", x_etype=out.element_type,
                                 num_heads=merge.params["num_heads"], head_dim=merge.params["head_dim"])
            self.grids.remove(merge)
            del producer_of[out.name]
            del self.buffers[out.name]

    def merge_in_last_splits(self, producer_of: dict[str, _Grid]) -> None:
        """Each attention_merge grid's work moves into its partial grid, whose last split of each (row, kv
        group) merges (etc.tiles), and the merge grid goes. With merge-per-batch only one row does that: a
        symbolic batch keeps the merge grid for 2+ rows (grid (R, KVH * ind(R))), the partial grid writes a
        one-row copy of the output, and its one reader, a linear reading it as plain x (o_proj), reads that
        copy at one row (prologue x_one_row); a fixed batch of 2+ rows keeps the merge grid alone. An output
        returned or read otherwise is merged in the last split at every batch."""
        for merge in [g for g in self.grids if g.kind == "attention_merge"]:
            out = merge.writes[0][1]
            partial = producer_of[merge.reads[0][1].name]
            rows = mlir.downcast(merge.grid[0])
            if self.merge_per_batch and mlir.is_constant(rows) and mlir.constant_value(rows) > 1:
                continue  # a fixed batch of 2+ rows: the merge keeps its own stage
            readers = [g for g in self.grids if any(buf is out for _, buf in g.reads)]
            linear = readers[0] if len(readers) == 1 else None
            if self.merge_per_batch and not mlir.is_constant(rows) and out.output_index is None and linear \
                    and linear.kind == "linear" and linear.params.get("prologue", "none") == "none" \
                    and [r for r, buf in linear.reads if buf is out] == ["x"]:
                one = _Buffer(self.unique(f"{out.name}_one_row"), "workspace", out.element_type, out.shape, out.loc)
                self.buffers[one.name] = one
                partial.writes.append(("out", one))
                partial.params = dict(partial.params, merge_one_row=True)
                linear.reads = [("x_one_row", one)] + linear.reads
                linear.params = dict(linear.params, prologue="x_one_row")
                merge.grid = [merge.grid[0], merge.grid[1] * self.more_than_one_row(rows, merge)]
                producer_of[one.name] = partial
                continue
            partial.writes.append(("out", out))
            producer_of[out.name] = partial
            self.grids.remove(merge)

    def more_than_one_row(self, rows: ir.AffineExpr, grid: _Grid) -> ir.AffineExpr:
        """ind(R) = (R + Rmax - 2) floordiv Rmax: 0 at one row, 1 from 2 to Rmax rows (rows: one symbol)."""
        if not isinstance(rows, ir.AffineSymbolExpr):
            raise _Error(self.func, f"grid '{grid.name}': merge-per-batch needs the rows to be one symbolic size")
        name = list(self.symbols)[rows.position]
        rmax = max(self.graph.symbols[name][1], 2)
        c = ir.AffineConstantExpr.get
        return ir.AffineExpr.get_floor_div(rows + c(rmax - 2), c(rmax))

    def check_cache_reads(self, block) -> None:
        """An in-place update must be the last read of the old cache value (buffers are updated in place)."""
        for op in [o.operation for o in block.operations]:
            if op.name != T.TILE_OP:
                continue
            roles = T.tile_params(op)
            for role, value in zip(roles["operand_roles"], op.operands):
                if role in roles["result_roles"]:
                    others = [u for u in T.users(value) if u != op and u.name == T.TILE_OP]
                    if others:
                        raise _Error(others[0], f"reads KV cache '{self.buffer(value, op).name}' while it is "
                                                "updated in place by another tile")

    def tile_grids(self, op) -> list[_Grid]:
        kind, params = T.tile_kind(op), T.tile_params(op)
        operand_roles, result_roles = params.pop("operand_roles"), params.pop("result_roles")
        base = self.tile_base_name(op, kind, operand_roles)
        reads = [(r, self.buffer(v, op)) for r, v in zip(operand_roles, op.operands) if r not in result_roles]
        writes = []
        for r, v in zip(result_roles, op.results):
            if r in operand_roles:  # in place
                buf = self.buffer(op.operands[operand_roles.index(r)], op)
                self.buffer_of_value[v] = buf
                writes.append((r, buf))
            else:
                writes.append((r, self.result_buffer(v, f"{base}.{r}", op)))
        read = dict(reads)
        rows = _first(read.get("x") or read.get("q") or read.get("tokens") or read.get("gate") or read.get("a")
                      or (writes[0][1] if writes else None))
        if kind == "attention":
            return self.attention_grids(op, base, params, reads, writes, rows)
        g = self.grid_extents(op, kind, params, reads, writes, rows)
        return [_Grid(self.unique(base), kind, g, reads, writes, params, op.location)]

    def tile_base_name(self, op, kind, operand_roles) -> str:
        for role in ("weight", "q"):
            if role in operand_roles:
                value = op.operands[operand_roles.index(role)]
                if role == "weight" and isinstance(value.owner, ir.Block):
                    return self.graph.argument_names[value.arg_number].removesuffix(".weight")
        return f"{kind}"

    def grid_extents(self, op, kind, params, reads, writes, rows) -> list:
        out = writes[0][1]
        cols = out.shape[1] if len(out.shape) > 1 else None
        if kind == "linear":
            return [ir.AffineConstantExpr.get(-(-params["out_features"] // params["tile_n"]))]
        if kind in ("embedding", "argmax"):
            return [rows]
        if kind in ("rms_norm", "layer_norm", "rope", "kv_append"):
            x = dict(reads)["x"]
            unit = params["dim"] if "dim" in params else params["head_dim"]
            span = _cols_expr(x) if kind in ("rope", "kv_append") else cols
            return [rows, ir.AffineExpr.get_floor_div(span, ir.AffineConstantExpr.get(unit))]
        if kind in ("silu_mul", "gelu", "add", "elementwise"):
            return [rows, ir.AffineExpr.get_ceil_div(cols, ir.AffineConstantExpr.get(params["tile_c"]))]
        raise _Error(op, f"tile kind '{kind}' has no grid rule")

    def attention_grids(self, op, base, params, reads, writes, rows) -> list[_Grid]:
        read = dict(reads)
        cache = read["k_cache"]
        heads, kv_heads, d, chunk = params["num_heads"], params["num_kv_heads"], params["head_dim"], params["kv_chunk"]
        splits = ir.AffineExpr.get_ceil_div(cache.shape[2], ir.AffineConstantExpr.get(chunk))
        c = ir.AffineConstantExpr.get
        part_out = _Buffer(self.unique(f"{base}.partial_out"), "workspace", "f32", [rows, c(heads), splits, c(d)],
                           op.location)
        part_stats = _Buffer(self.unique(f"{base}.partial_stats"), "workspace", "f32",
                             [rows, c(heads), splits, c(2)], op.location)
        for b in (part_out, part_stats):
            self.buffers[b.name] = b
        partial = _Grid(self.unique(f"{base}.partial"), "attention_partial", [rows, c(kv_heads), splits],
                        reads, [("partial_out", part_out), ("partial_stats", part_stats)], dict(params), op.location)
        merge = _Grid(self.unique(f"{base}.merge"), "attention_merge", [rows, c(kv_heads)],
                      [("partial_out", part_out), ("partial_stats", part_stats)], [("out", writes[0][1])],
                      dict(params), op.location)
        return [partial, merge]

    # ------------------------------------------------------------ events

    def join(self, producer_of: dict[str, _Grid]) -> dict:
        """Give every consumer grid a wait per (producer, access pattern); returns event key -> info."""
        events: dict = {}
        for grid in self.grids:
            for role, buf in grid.reads:
                producer = producer_of.get(buf.name)
                if producer is None or producer is grid:
                    continue
                prole = next(r for r, b in producer.writes if b is buf)
                notify, wait, shape = self.event_maps(producer, prole, grid, role, buf)
                key = (producer.name, tuple(notify), tuple(shape))  # affine exprs compare and hash by value
                if key not in events:
                    events[key] = dict(producer=producer, notify=notify, shape=shape,
                                       name=self.unique(f"{producer.name}.done"))
                    producer.notifies.append((key, notify))
                if (key, tuple(wait)) not in {(k, tuple(w)) for k, w in grid.waits}:
                    grid.waits.append((key, wait))
        return events

    def event_maps(self, producer: _Grid, prole: str, consumer: _Grid, crole: str, buf: _Buffer):
        rank = len(buf.shape)
        rp = _regions(producer, prole, rank)
        rc = _regions(consumer, crole, rank)
        notify, wait, shape = [], [], []
        for k in range(rank):
            p, c = rp[k], rc[k]
            if not isinstance(p, tiles.Tiled):
                continue  # the producer tile covers this dim: nothing to tell apart
            extent = producer.grid[p.grid_dim]
            if p.share > 1:  # tiles that share a block notify it together
                if not mlir.is_constant(extent):
                    continue
                extent = ir.AffineConstantExpr.get(-(-mlir.constant_value(extent) // p.share))
            if isinstance(c, tiles.Tiled):
                # a consumer tile reading part of a shared block waits for the whole block
                if c.size % p.size == 0:
                    ratio = c.size // p.size
                    if ratio == 1 or (mlir.is_constant(extent) and mlir.constant_value(extent) % ratio == 0):
                        notify.append(_block(p.grid_dim, p.share * ratio))
                        wait.append(_block(c.grid_dim, c.share))
                        shape.append(extent if ratio == 1 else
                                     ir.AffineConstantExpr.get(mlir.constant_value(extent) // ratio))
                        continue
                elif p.size % c.size == 0:
                    notify.append(_block(p.grid_dim, p.share))
                    wait.append(_block(c.grid_dim, c.share * (p.size // c.size)))
                    shape.append(extent)
                    continue
            # The consumer reads across producer tiles along this dim: the dim collapses.
        if not shape:
            zero = ir.AffineConstantExpr.get(0)
            notify, wait, shape = [zero], [zero], [ir.AffineConstantExpr.get(1)]
        return notify, wait, shape

    # ------------------------------------------------------------ IR

    def rebuild(self, block: ir.Block, events: dict) -> None:
        n_syms = len(self.symbols)
        old_ops = [o.operation for o in block.operations]
        terminator = old_ops[-1]
        index = ir.IndexType.get()
        buf_type = ir.Type.parse("!event_tensor.buf")
        event_type = ir.Type.parse("!event_tensor.event")

        def extents(exprs):
            return ir.AffineMap.get(0, n_syms, exprs)

        with ir.InsertionPoint(terminator), self.func.location:
            dims = []
            for name in self.symbols:
                lo, hi = self.graph.symbols[name]
                dims.append(ir.Operation.create("event_tensor.dim", results=[index], attributes={
                    "name": ir.StringAttr.get(name), "min": mlir.python_to_attr(lo),
                    "max": mlir.python_to_attr(hi)}).result)
            for buf in self.buffers.values():
                attrs = {"name": ir.StringAttr.get(buf.name), "role": ir.StringAttr.get(buf.role),
                         "element_type": ir.TypeAttr.get(ir.Type.parse(buf.element_type)),
                         "sizes": ir.AffineMapAttr.get(extents(buf.shape))}
                if buf.output_index is not None:
                    attrs["output_index"] = mlir.python_to_attr(buf.output_index)
                buf.value = ir.Operation.create("event_tensor.buffer", results=[buf_type], operands=dims,
                                                attributes=attrs, loc=buf.loc).result
            event_values = {}
            for key, ev in events.items():
                rank = len(ev["shape"])
                event_values[key] = ir.Operation.create("event_tensor.event_tensor", results=[event_type],
                                                        operands=dims, attributes={
                    "name": ir.StringAttr.get(ev["name"]),
                    "shape": ir.AffineMapAttr.get(extents(ev["shape"])),
                    "wait_count": ir.AffineMapAttr.get(ir.AffineMap.get(rank, n_syms, [ir.AffineConstantExpr.get(0)])),
                }, loc=ev["producer"].loc).result
            for grid in self.grids:
                rank = len(grid.grid)
                reads = [b.value for _, b in grid.reads]
                writes = [b.value for _, b in grid.writes]
                waits = [event_values[k] for k, _ in grid.waits]
                notifies = [event_values[k] for k, _ in grid.notifies]
                params = dict(grid.params, read_roles=[r for r, _ in grid.reads],
                              write_roles=[r for r, _ in grid.writes])
                ir.Operation.create("event_tensor.task_grid", operands=dims + reads + writes + waits + notifies,
                                    attributes={
                    "operandSegmentSizes": ir.DenseI32ArrayAttr.get(
                        [len(dims), len(reads), len(writes), len(waits), len(notifies)]),
                    "name": ir.StringAttr.get(grid.name), "kind": ir.StringAttr.get(grid.kind),
                    "grid": ir.AffineMapAttr.get(extents(grid.grid)),
                    "wait_maps": ir.ArrayAttr.get([ir.AffineMapAttr.get(ir.AffineMap.get(rank, n_syms, m))
                                                   for _, m in grid.waits]),
                    "notify_maps": ir.ArrayAttr.get([ir.AffineMapAttr.get(ir.AffineMap.get(rank, n_syms, m))
                                                     for _, m in grid.notifies]),
                    "params": mlir.python_to_attr(params),
                }, loc=grid.loc)
            ir.Operation.create("func.return", operands=[])
        for op in reversed(old_ops):  # users before definitions
            op.erase()
        while len(block.arguments):
            block.erase_argument(0)
        with self.func.context:
            self.func.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get([], []))
            for attr in ("arg_attrs", "res_attrs"):
                if attr in self.func.attributes:
                    del self.func.attributes[attr]


def _arg_role(func, index: int) -> str:
    if "arg_attrs" in func.attributes:
        attrs = ir.ArrayAttr(func.attributes["arg_attrs"])[index].maybe_downcast()
        if "etc.role" in attrs:
            return attrs["etc.role"].maybe_downcast().value
    return "input"


def _first(buf: _Buffer | None) -> ir.AffineExpr:
    return buf.shape[0] if buf is not None and buf.shape else ir.AffineConstantExpr.get(1)


def _cols_expr(buf: _Buffer) -> ir.AffineExpr:
    cols = ir.AffineConstantExpr.get(1)
    for d in buf.shape[1:]:
        cols = cols * d
    return cols


def _block(grid_dim: int, tiles_per_block: int):
    """The affine coordinate of the block a tile falls in: d, or d floordiv n."""
    d = ir.AffineDimExpr.get(grid_dim)
    return d if tiles_per_block == 1 else ir.AffineExpr.get_floor_div(d, tiles_per_block)


def _regions(grid: _Grid, role: str, rank: int) -> tuple:
    region = tiles.regions(grid.kind, grid.params, role, rank)
    return region if len(region) == rank else (tiles.Full(),) * rank
