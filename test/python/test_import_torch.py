"""etc.import_torch: PyTorch decoders -> event_tensor IR. Structure checked against hand counts."""
from __future__ import annotations

import collections
import time

import pytest
import torch
from torch import nn

import etc
from etc import event_ir
from etc import mlir_adapter as mlir
from etc.models.decoder import CONFIGS, DecoderConfig, DecoderLM, build_model, dynamic_shapes_for, example_inputs

SIZES = {"batch": 3, "kv_len": 40}


def imported(name, **options):
    c = CONFIGS[name]
    model = build_model(name, weights="meta")
    module = etc.import_torch(model, example_inputs(c, batch=2, ctx=16, device="meta"), dynamic_shapes_for(c),
                              **options)
    return c, module


def dims(module):
    return [(mlir.str_attr(op, "name"), op.results[0]) for op in mlir.ops_named(module.operation, "event_tensor.dim")]


def evaluate(m, grid_or_event, sizes=SIZES):
    """Evaluate a ()[symbols] map of an op whose dims operands are event_tensor.dim values."""
    names = event_ir.symbol_names(grid_or_event.dims)
    return mlir.eval_map(m, (), tuple(sizes[n] for n in names))


def count_of(event, sizes=SIZES):
    names = event_ir.symbol_names(event.dims)
    return mlir.eval_map(event.wait_count, (0,) * event.rank, tuple(sizes[n] for n in names))[0]


def producers(module):
    """event value -> the task grids that notify it."""
    out = collections.defaultdict(list)
    for g in event_ir.task_grids(module.operation):
        for e in g.notifies:
            out[e].append(g)
    return out


@pytest.fixture(scope="module")
def llama():
    return imported("tiny-llama", kv_chunk=8)


def test_grid_count_and_kinds(llama):
    c, module = llama
    grids = event_ir.task_grids(module.operation)
    kinds = collections.Counter(g.kind for g in grids)
    # embedding; per layer q, k, v, o(+residual), gate/up(+silu*mul), down(+residual) and the attention
    # split, whose last split of each kv group merges into o_proj's x (attention-merge-last: no merge grid,
    # no merge prologue); the final norm folds into the LM head.
    assert kinds == {"embedding": 1, "linear": 6 * c.num_layers + 1, "attention_partial": c.num_layers}
    prologues = collections.Counter(mlir.attr_to_python(g.op.attributes["params"]).get("prologue", "none")
                                    for g in grids if g.kind == "linear")
    assert prologues["attention_merge"] == 0
    assert all(mlir.attr_to_python(g.op.attributes["params"])["write_roles"][-1] == "out"
               for g in grids if g.kind == "attention_partial")
    epilogues = collections.Counter(tuple(mlir.attr_to_python(g.op.attributes["params"]).get("epilogue", []))
                                    for g in grids if g.kind == "linear")
    assert epilogues == {("rope",): 2, ("rope", "kv_append"): 2, ("kv_append",): 2, ("residual_add",): 4,
                         ("silu_mul",): 2, (): 1}


def test_symbolic_dims_and_extents(llama):
    c, module = llama
    assert [n for n, _ in dims(module)] == ["batch", "kv_len"]
    grids = {g.name: g for g in event_ir.task_grids(module.operation)}
    partial = grids["model.layers.0.self_attn.q_proj"]  # a linear: 4 heads of 16 -> 4 tiles, batch-independent
    assert evaluate(partial.grid, partial) == (4,)
    att = next(g for g in grids.values() if g.kind == "attention_partial")
    assert str(att.grid) == "()[s0, s1] -> (s0, 2, s1 ceildiv 8)"  # batch x kv heads x KV chunks of 8
    assert evaluate(att.grid, att, {"batch": 5, "kv_len": 33}) == (5, 2, 5)
    for b in mlir.ops_named(module.operation, "event_tensor.buffer"):
        if mlir.str_attr(b, "name").startswith("k_caches."):
            assert str(mlir.map_attr(b, "sizes")) == "()[s0, s1] -> (s0, 2, s1, 16)"


def test_wait_counts_match_a_hand_count(llama):
    c, module = llama
    by_name = {e.name: e for e in event_ir.event_tensors(module.operation)}
    b, t = SIZES["batch"], SIZES["kv_len"]
    group = c.num_heads // c.num_kv_heads
    # q tiles (one head each) -> attention partial tiles of one KV group: `group` q tiles per element.
    q = by_name["model.layers.0.self_attn.q_proj.done"]
    assert evaluate(q.shape, q) == (c.num_kv_heads,) and count_of(q) == group
    # the k projection writes the cache of one KV head per tile; partial tiles wait on their head only.
    k = by_name["model.layers.0.self_attn.k_proj.done"]
    assert evaluate(k.shape, k) == (c.num_kv_heads,) and count_of(k) == 1
    # o_proj merges the attention splits of every row itself: it waits for every partial tile
    # (rows x KV heads x KV chunks; a semi-affine count).
    part = next(e for n, e in by_name.items() if n.startswith("attention.partial") and n.endswith(".done"))
    assert evaluate(part.shape, part) == (1,) and count_of(part) == b * c.num_kv_heads * -(-t // 8)
    assert not any(n.startswith("attention.merge") for n in by_name)
    # the embedding writes one row per tile; the first projections read whole rows of every sequence.
    emb = by_name["model.embed_tokens.done"]
    assert count_of(emb) == b
    # o_proj -> gate/up: hidden 64 in tiles of 8 -> 8 tiles.
    o = by_name["model.layers.0.self_attn.o_proj.done"]
    assert count_of(o) == 8


def test_no_whole_layer_barrier(llama):
    """Each event has one producer grid, and each grid waits only on grids whose buffers it reads."""
    _, module = llama
    grids = event_ir.task_grids(module.operation)
    notifiers = producers(module)
    writes = {g.name: set(g.writes) for g in grids}
    for g in grids:
        for e in g.waits:
            assert len(notifiers[e]) == 1, f"{g.name} waits on an event notified by several grids"
            producer = notifiers[e][0]
            assert writes[producer.name] & set(g.reads), f"{g.name} waits on {producer.name} without reading it"
    # The attention tiles of one KV group start when that group's q and k/v tiles are done, not the layer's:
    # each of its three waits (q, k cache, v cache) is on an event with one element per group or head.
    events = {e.value: e for e in event_ir.event_tensors(module.operation)}
    att = next(g for g in grids if g.kind == "attention_partial")
    assert len(att.waits) == 3
    assert all(evaluate(events[e].shape, events[e]) == (2,) for e in att.waits)


def test_kv_caches_alias_their_outputs(llama):
    _, module = llama
    buffers = {mlir.str_attr(b, "name"): b for b in mlir.ops_named(module.operation, "event_tensor.buffer")}
    for name in ("k_caches.0", "k_caches.1", "v_caches.0", "v_caches.1"):
        b = buffers[name]
        assert mlir.str_attr(b, "role") == "kv_cache"
        assert "output_index" in b.attributes
    assert mlir.str_attr(buffers["model.embed_tokens.weight"], "role") == "weight"
    assert mlir.int_attr(next(b for b in buffers.values() if mlir.str_attr(b, "role") == "output"),
                         "output_index") == 0


@pytest.mark.parametrize("name", ["tiny-qwen3", "tiny-gpt"])
def test_other_tiny_models(name):
    c, module = imported(name, kv_chunk=8)
    kinds = collections.Counter(g.kind for g in event_ir.task_grids(module.operation))
    assert kinds == {"embedding": 1, "linear": 6 * c.num_layers + 1, "attention_partial": c.num_layers}


def test_fusions_can_be_switched_off():
    c, module = imported("tiny-llama", fuse=False)
    kinds = collections.Counter(g.kind for g in event_ir.task_grids(module.operation))
    assert kinds["rms_norm"] == 2 * c.num_layers + 1 and kinds["add"] == 2 * c.num_layers
    assert kinds["rope"] == 2 * c.num_layers and kinds["kv_append"] == 2 * c.num_layers
    assert kinds["silu_mul"] == c.num_layers and kinds["linear"] == 7 * c.num_layers + 1
    _, only_norm = imported("tiny-llama", fuse={"norm-linear": True, "linear-residual": False,
                                                 "silu-mul": False, "rope-kv-append": False})
    kinds = collections.Counter(g.kind for g in event_ir.task_grids(only_norm.operation))
    assert kinds["rms_norm"] == 0 and kinds["add"] == 2 * c.num_layers


def test_llama_1b_shapes_import_on_meta_within_60s():
    c = CONFIGS["llama-3.2-1b"]
    t0 = time.perf_counter()
    _, module = imported("llama-3.2-1b")
    elapsed = time.perf_counter() - t0
    assert elapsed < 60, elapsed
    grids = event_ir.task_grids(module.operation)
    assert len(grids) == 1 + 7 * c.num_layers + 1  # per layer: q, k, v, attention, o (+ merge), gate/up, down
    lm_head = grids[-1]
    params = mlir.attr_to_python(lm_head.op.attributes["params"])
    assert params["out_features"] == 128256 and params["tile_n"] == 976  # 132 tiles, the last one short


# ---------------------------------------------------------------- bad input


class Sorts(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)

    def forward(self, x):
        return torch.sort(self.fc(x), dim=-1).values  # no tile kind sorts


def test_unsupported_op_names_the_op_and_source_line():
    with pytest.raises(etc.EtcError) as e:
        etc.import_torch(Sorts(), (torch.randn(2, 16),))
    message = str(e.value)
    assert "unsupported op 'torch.aten.sort'" in message
    assert "test_import_torch.py:" in message and "torch.sort(self.fc(x)" in message
    assert "\n" not in message.strip()


def test_shape_no_tile_covers():
    odd = DecoderConfig(vocab_size=64, hidden_size=36, num_layers=1, num_heads=2, num_kv_heads=2, head_dim=18,
                        intermediate_size=72, max_context=32)
    model = DecoderLM(odd)
    with pytest.raises(etc.EtcError, match="no tile covers this linear: in_features 36 is not a multiple of 8"):
        etc.import_torch(model, example_inputs(odd, batch=2, ctx=8), dynamic_shapes_for(odd))


class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # Python control flow on tensor data
            return x * 2
        return x


def test_data_dependent_control_flow():
    with pytest.raises(etc.EtcError, match="data-dependent"):
        etc.import_torch(DataDependent(), (torch.randn(2, 8),))


def test_generic_elementwise_tile_keeps_its_body():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 16, dtype=torch.bfloat16)

        def forward(self, x):
            return torch.exp(self.fc(x)) * 0.5

    module = etc.import_torch(Scaled(), (torch.randn(2, 16, dtype=torch.bfloat16),))
    grids = event_ir.task_grids(module.operation)
    assert [g.kind for g in grids] == ["linear", "elementwise", "elementwise"]
    text = mlir.to_text(module)
    assert "math.exp" in text and "arith.mulf" in text
