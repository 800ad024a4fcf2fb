"""Tests for etc.frontend.torch_import: PyTorch decode step -> torch-dialect IR text."""

import re
import time

import pytest
import torch

from etc import mlir_adapter
from etc.errors import EtcError
from etc.frontend.torch_import import TorchImport, export_torch_ir
from etc.models import build_model, dynamic_shapes_for, example_inputs

_CACHE = {}


def imported(name, weights) -> tuple:
    """(model, TorchImport), exported once per session (export dominates the test time)."""
    key = (name, weights)
    if key not in _CACHE:
        model = build_model(name, weights=weights)
        c = model.config
        _CACHE[key] = model, export_torch_ir(model, example_inputs(c, batch=2, ctx=16), dynamic_shapes_for(c))
    return _CACHE[key]


def parse(text):
    ctx = mlir_adapter.new_context(allow_unregistered=True)
    return ctx, mlir_adapter.parse(text, ctx, "model")


CASES = [(n, w) for n in ("tiny-llama", "tiny-qwen3") for w in ("meta", "random")]


@pytest.mark.parametrize("name,weights", CASES)
def test_import_parses_in_mlir22(name, weights):
    model, imp = imported(name, weights)
    assert isinstance(imp, TorchImport)
    ctx, module = parse(imp.text)
    with ctx:
        func = module.regions[0].blocks[0].operations[0]
        assert func.operation.name == "func.func"
        nargs = len(func.regions[0].blocks[0].arguments)
    assert nargs == len(imp.inputs) + len(imp.params)
    assert "dense_resource" not in imp.text
    assert "torch.vtensor.literal" not in imp.text  # no weights, not even small ones
    assert len(imp.text) < 200_000
    assert set(imp.timings) == {"export", "decompose", "import", "print"}


@pytest.mark.parametrize("name,weights", CASES)
def test_params_match_state_dict(name, weights):
    model, imp = imported(name, weights)
    sd = model.state_dict()
    names = [p.name for p in imp.params]
    assert len(set(names)) == len(names)
    # Every persistent tensor once, in state_dict order; inv_freq (non-persistent) lifted too.
    assert [n for n in names if n in sd] == list(sd)
    assert set(names) - set(sd) == set(imp.non_persistent) == {"model.rotary_emb.inv_freq"}
    for p in imp.params:
        ref = sd[p.name] if p.name in sd else model.get_buffer(p.name)
        assert p.shape == tuple(ref.shape) and p.dtype == ref.dtype, p
    # Parameters follow the user inputs, in argument order.
    assert [p.index for p in imp.params] == list(range(len(imp.inputs), len(imp.inputs) + len(imp.params)))
    for p in imp.params:
        assert f'{{etc.name = "{p.name}", etc.role = "weight"}}' in imp.text


@pytest.mark.parametrize("name,weights", CASES)
def test_symbolic_dims_and_inputs(name, weights):
    model, imp = imported(name, weights)
    c = model.config
    assert imp.symbols == {"batch": (1, 64), "kv_len": (2, c.max_context)}
    assert re.search(r'"torch.symbolic_int"\(\) <\{[^}]*symbol_name = "batch"', imp.text)
    assert re.search(r'"torch.symbolic_int"\(\) <\{[^}]*symbol_name = "kv_len"', imp.text)
    assert imp.text.count('"torch.bind_symbolic_shape"') > 10
    n = c.num_layers
    expected = ["tokens", "positions"] + [f"k_caches.{i}" for i in range(n)] + [f"v_caches.{i}" for i in range(n)]
    assert [i.name for i in imp.inputs] == expected
    assert [i.index for i in imp.inputs] == list(range(len(expected)))
    assert imp.inputs[0].shape == ("batch",) and imp.inputs[0].dtype == torch.int64
    cache_shape = ("batch", c.num_kv_heads, "kv_len", c.head_dim)
    for i in imp.inputs[2:]:
        assert i.shape == cache_shape and i.mutable and i.dtype == c.dtype


@pytest.mark.parametrize("name,weights", CASES)
def test_cache_mutation_and_outputs(name, weights):
    model, imp = imported(name, weights)
    n = model.config.num_layers
    # In-place cache writes: !torch.tensor arguments, index_put then overwrite.tensor.contents.
    assert imp.text.count('"torch.copy.to_vtensor"') == 2 * n
    assert imp.text.count('"torch.overwrite.tensor.contents"') == 2 * n
    assert imp.text.count('"torch.aten.index_put"') == 2 * n
    overwritten = re.findall(r'"torch.overwrite.tensor.contents"\(%\w+, %arg(\d+)\)', imp.text)
    assert sorted(int(a) for a in overwritten) == [i.index for i in imp.inputs if i.mutable]
    # Results: logits, then each cache (aliasing its input).
    assert imp.outputs[0].name == "logits" and imp.outputs[0].aliases is None
    assert imp.outputs[0].shape == ("batch", model.config.vocab_size)
    assert [o.aliases for o in imp.outputs[1:]] == [i.name for i in imp.inputs[2:]]


@pytest.mark.parametrize("name,weights", CASES)
def test_high_level_ops_kept(name, weights):
    model, imp = imported(name, weights)
    n = model.config.num_layers
    ops = set(imp.op_names)
    for op in ("linear", "embedding", "scaled_dot_product_attention", "silu", "index_put"):
        assert f"torch.aten.{op}" in ops
    assert imp.text.count('"torch.aten.scaled_dot_product_attention"') == n
    # q, k, v, o, gate, up, down per layer + the lm head (F.linear on the tied embedding, or lm_head).
    assert imp.text.count('"torch.aten.linear"') == 7 * n + 1
    for op in ("torch.aten.bmm", "torch.aten.mm", "torch.aten._softmax", "torch.aten.sigmoid"):
        assert op not in ops


def test_meta_and_random_give_same_ir():
    assert imported("tiny-llama", "meta")[1].text == imported("tiny-llama", "random")[1].text


def test_gpt_keeps_gelu_and_layer_norm():
    model, imp = imported("tiny-gpt", "meta")
    ops = set(imp.op_names)
    assert {"torch.aten.gelu", "torch.aten.layer_norm", "torch.aten.linear"} <= ops
    assert "dense_resource" not in imp.text
    assert [p.name for p in imp.params if p.name in model.state_dict()] == list(model.state_dict())


def test_llama_1b_meta_import_is_quick():
    t0 = time.perf_counter()
    model = build_model("llama-3.2-1b", weights="meta")
    c = model.config
    imp = export_torch_ir(model, example_inputs(c, batch=2, ctx=16), dynamic_shapes_for(c))
    elapsed = time.perf_counter() - t0
    assert elapsed < 60, f"1B meta import took {elapsed:.1f}s {imp.timings}"
    assert "dense_resource" not in imp.text and len(imp.text) < 2_000_000
    assert imp.symbols["kv_len"] == (2, c.max_context)
    sd = model.state_dict()
    assert [(p.name, p.shape) for p in imp.params if p.name in sd] == [(k, tuple(v.shape)) for k, v in sd.items()]
    assert imp.text.count('"torch.overwrite.tensor.contents"') == 2 * c.num_layers


class _BranchOnData(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent: cannot be exported
            return self.proj(x)
        return x


def test_data_dependent_control_flow_is_one_line_etc_error():
    with pytest.raises(EtcError) as info:
        export_torch_ir(_BranchOnData(), (torch.randn(2, 4),))
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg
    assert "data-dependent control flow" in msg
    assert "test_torch_import.py" in msg and "if x.sum() > 0:" in msg


class _BadView(torch.nn.Module):
    def forward(self, x):
        return x.view(3, -1)


def test_other_export_failure_is_one_line_etc_error():
    with pytest.raises(EtcError) as info:
        export_torch_ir(_BadView(), (torch.randn(2, 4),))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("torch.export failed: ")
    assert "x.view(3, -1)" in msg


def test_batch_of_one_with_dynamic_batch_explains():
    model = build_model("tiny-llama", weights="meta")
    c = model.config
    with pytest.raises(EtcError, match="size >= 2") as info:
        export_torch_ir(model, example_inputs(c, batch=1, ctx=16), dynamic_shapes_for(c))
    assert "\n" not in str(info.value)
