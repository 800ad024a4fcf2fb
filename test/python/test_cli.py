"""`etc compile`, the main job: imports a reference model and writes what it produced."""
import json

from etc import cli
from etc import mlir_adapter as mlir


def test_compile_tiny_model_writes_ir_and_metadata(tmp_path, capsys):
    assert cli.main(["compile", "--model", "tiny-qwen3", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "symbolic sizes: batch in [1, 64], kv_len in [2, 64]" in printed
    assert "4 KV caches ['batch', 2, 'kv_len', 32], each aliasing its input" in printed
    text = (tmp_path / "tiny-qwen3.torch.mlir").read_text()
    assert "dense_resource" not in text
    module = mlir.parse(text, mlir.new_context(allow_unregistered=True), "reparsed")  # it is valid IR
    assert mlir.ops_named(module.operation, "torch.aten.scaled_dot_product_attention")
    meta = json.loads((tmp_path / "tiny-qwen3.import.json").read_text())
    assert meta["symbols"]["kv_len"] == [2, 64]


def test_unknown_model_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["compile", "--model", "gpt-17", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("etc: error: unknown model 'gpt-17'; known: tiny-llama")
    assert len(err.strip().splitlines()) == 1
