"""TorchGraph decodes imported torch IR: symbolic shapes, dtypes, constants, argument names, users."""
import collections

import pytest

from etc import mlir_adapter as mlir
from etc.errors import EtcError
from etc.frontend.torch_graph import TensorInfo, TorchGraph
from etc.frontend.torch_import import export_torch_ir
from etc.models import CONFIGS, build_model, dynamic_shapes_for, example_inputs


@pytest.fixture(scope="module")
def graph():
    config = CONFIGS["tiny-llama"]
    model = build_model("tiny-llama", weights="meta")
    imported = export_torch_ir(model, example_inputs(config, batch=2, ctx=8, device="meta"), dynamic_shapes_for(config))
    module = mlir.parse(imported.text, mlir.new_context(allow_unregistered=True), "tiny-llama")
    return TorchGraph.of(module.operation)


def test_arguments_and_symbols(graph):
    assert graph.symbols == {"batch": (1, 64), "kv_len": (2, 64)}
    names = graph.argument_names
    assert names[:6] == ["tokens", "positions", "k_caches.0", "k_caches.1", "v_caches.0", "v_caches.1"]
    assert "model.layers.1.mlp.down_proj.weight" in names
    tokens = graph.arguments[0]
    assert graph.tensor(tokens) == TensorInfo(("batch",), "si64", False)
    k0 = graph.arguments[2]
    assert graph.tensor(k0) == TensorInfo(("batch", 2, "kv_len", 16), "bf16", True)
    assert graph.argument_name(k0) == "k_caches.0"


def test_nodes_shapes_and_constants(graph):
    kinds = collections.Counter(n.name for n in graph.nodes)
    assert kinds["torch.aten.linear"] == 15  # 2 layers x (q, k, v, o, gate, up, down) + lm head
    assert kinds["torch.aten.scaled_dot_product_attention"] == 2
    assert not any(n.name.startswith("torch.constant") for n in graph.nodes)
    (embed,) = [n for n in graph.nodes if n.name == "torch.aten.embedding"]
    assert graph.tensor(embed.results[0]) == TensorInfo(("batch", 64), "bf16", False)
    assert graph.argument_name(embed.operands[0]) == "model.embed_tokens.weight"
    assert graph.constant(embed.operands[2]) == -1  # padding_idx
    mean = next(n for n in graph.nodes if n.name == "torch.aten.mean.dim")
    assert graph.constant(mean.operands[1]) == [-1] and graph.constant(mean.operands[2]) is True
    assert "decoder.py" in mean.where()  # locations point at the PyTorch source line


def test_users_producers_and_returns(graph):
    writes = [n for n in graph.nodes if n.name == "torch.aten.index_put"]
    assert len(writes) == 4
    for w in writes:
        users = {u.name for u in graph.users(w.results[0])}
        assert "torch.overwrite.tensor.contents" in users
    assert graph.producer(graph.arguments[0]) is None
    logits = graph.returned[0]
    assert graph.producer(logits).name == "torch.aten.linear"
    assert graph.tensor(logits).shape == ("batch", 256)
    with pytest.raises(EtcError, match="not a constant"):
        graph.constant(logits)
