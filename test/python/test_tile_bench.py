"""etc bench-tiles: one profiling bundle per tile kind, the bytes each must move, errors without a GPU."""
import json

import pytest
import torch

from etc import bundle as B
from etc import cli, tile_bench


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiles")
    return out, tile_bench.compile_all(out)


def test_one_profiling_bundle_per_case(bundles):
    out, paths = bundles
    assert [p.name for p in paths] == ["linear-2048x2048", "linear-8192x2048---silu-mul", "linear-2048x8192",
                                       "linear-128256x2048", "rms-norm-2048", "embedding-128256x2048"]
    kinds = {p.name: [t["kind"] for t in json.loads((p / "bundle.json").read_text())["tasks"]] for p in paths}
    assert kinds["linear-8192x2048---silu-mul"] == ["linear"]  # gate, up and SiLU*mul: one fused tile
    assert kinds["rms-norm-2048"] == ["rms_norm"] and kinds["embedding-128256x2048"] == ["embedding"]
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


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_bench_tiles_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["bench-tiles", "--bundles", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == "etc: error: etc bench-tiles needs a CUDA GPU; none is visible to PyTorch"
    assert cli.main(["bench-tiles"]) == 1
    assert "takes --compile DIR (where MLIR is) or --bundles DIR (on the GPU)" in capsys.readouterr().err
