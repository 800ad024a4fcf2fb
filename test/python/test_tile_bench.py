"""etc bench-tiles: one profiling bundle per tile kind, the bytes each must move, errors without a GPU."""
import json

import pytest
import torch

from etc import bundle as B
from etc import cli, tile_bench
from etc.errors import EtcError


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiles")
    return out, tile_bench.compile_all(out)


def test_one_profiling_bundle_per_case(bundles):
    out, paths = bundles
    assert [p.name for p in paths] == ["linear-2048x2048", "linear-8192x2048---silu-mul", "linear-2048x8192",
                                       "linear-128256x2048", "rms-norm-2048", "embedding-128256x2048",
                                       "attention-32x64--8-kv-heads--ctx-1024", "attention-32x128--8-kv-heads--ctx-1024"]
    kinds = {p.name: [t["kind"] for t in json.loads((p / "bundle.json").read_text())["tasks"]] for p in paths}
    assert kinds["linear-8192x2048---silu-mul"] == ["linear"]  # gate, up and SiLU*mul: one fused tile
    assert kinds["rms-norm-2048"] == ["rms_norm"] and kinds["embedding-128256x2048"] == ["embedding"]
    # the attention's output is returned: each kv group's last split merges it (no merge grid)
    assert kinds["attention-32x128--8-kv-heads--ctx-1024"] == ["attention_partial"]
    for p in paths:
        assert B.load(p).meta["profile"]["offsets"]  # the profiling build: per-tile time stamps


def test_moved_bytes(bundles):
    out, _ = bundles
    b = B.load(out / "linear-2048x2048")
    assert tile_bench.moved_bytes(b, {"batch": 1}) == 2048 * 2048 * 2 + 2048 * 2 + 2048 * 2
    gate_up = B.load(out / "linear-8192x2048---silu-mul")
    assert tile_bench.moved_bytes(gate_up, {"batch": 4}) == 2 * 8192 * 2048 * 2 + 4 * 2048 * 2 + 4 * 8192 * 2
    embed = next(c for c in tile_bench.cases() if c.name.startswith("embedding"))
    assert embed.moved(3) == 3 * (8 + 2 * 2048 * 2)
    # attention: q, positions, both caches whole (kv_len stays symbolic in the bundle), the output
    att = B.load(out / "attention-32x128--8-kv-heads--ctx-1024")
    assert tile_bench.moved_bytes(att, {"batch": 2, "kv_len": 1024}) == \
        2 * (4096 * 2 + 8 + 2 * 8 * 1024 * 128 * 2 + 4096 * 2)


def test_inputs_follow_the_bundle_names(bundles):
    """The bundle orders its inputs by use (q, k_cache, v_cache, positions), not as forward takes them."""
    out, _ = bundles
    case = next(c for c in tile_bench.cases() if c.name.startswith("attention 32x64"))
    bundle = B.load(out / "attention-32x64--8-kv-heads--ctx-1024")
    model = case.make()
    args = case.inputs(2, "cpu")
    inputs = tile_bench._inputs_by_name(bundle, model, args)
    assert list(inputs) == [b.name for b in bundle.by_role("input")] == ["q", "k_cache", "v_cache", "positions"]
    assert inputs["positions"] is args[1] and inputs["k_cache"] is args[2]
    assert inputs["positions"].tolist() == [tile_bench.ATTENTION_CTX - 1] * 2  # every slot visible
    with pytest.raises(EtcError, match="bundle inputs \\['ids'\\] are not parameters"):
        tile_bench._inputs_by_name(B.load(out / "embedding-128256x2048"), model, args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_bench_tiles_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["bench-tiles", "--bundles", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == "etc: error: etc bench-tiles needs a CUDA GPU; none is visible to PyTorch"
    assert cli.main(["bench-tiles"]) == 1
    assert "takes --compile DIR (where MLIR is) or --bundles DIR (on the GPU)" in capsys.readouterr().err


def test_task_phases_are_means_between_the_stamps():
    from etc.profile import Record

    recs = [Record(1, "attn", "attention_partial", 0, 0, 1000, 5000, (2000, 4000, 4500)),
            Record(1, "attn", "attention_partial", 1, 1, 1000, 7000, (3000, 6000, 6500)),
            Record(2, "merge", "attention_merge", 0, 2, 8000, 9000, (0, 0, 0)),  # stamps no phases
            Record(0, "q", "linear", 0, 3, 0, 900, (100, 0, 800))]  # a phase one tile left unstamped
    assert tile_bench.task_phases(recs) == [
        {"task": "q", "kind": "linear", "tile_us": 0.9, "phases_us": [0.1, 0.7, 0.1]},
        {"task": "attn", "kind": "attention_partial", "tile_us": 5.0, "phases_us": [1.5, 2.5, 0.5, 0.5]},
        {"task": "merge", "kind": "attention_merge", "tile_us": 1.0, "phases_us": [1.0]}]
    assert "attention_partial                    tile 5.00 us, phases 1.50 / 2.50 / 0.50 / 0.50" in \
        tile_bench.table([{"case": "c", "batch": 1, "tile_us": 8.0, "GBps": 1.0, "of_read_bw": 0.5,
                           "torch_graph_us": 9.0, "rel_err_vs_torch": 0.0, "read_GBps": 4000.0,
                           "tasks": tile_bench.task_phases(recs)}])
