"""`etc compile`, the main job: compiles a reference model to a megakernel bundle and says what it built."""
import json

import pytest

from etc import cli


def test_compile_tiny_model_writes_a_bundle(tmp_path, capsys):
    out = tmp_path / "b"
    assert cli.main(["compile", "--model", "tiny-qwen3", "--num-sms", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "symbolic sizes: batch in [1, 64], kv_len in [2, 64]" in printed
    # per batch: the merge grids stay (no tiles at one row), o_proj merges the partials itself at one row
    assert "18 task grids: linear x13, attention_partial x2, attention_merge x2, embedding x1" in printed
    assert "8 workers x 256 threads" in printed and "4 KV caches updated in place" in printed
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["model"]["name"] == "tiny-qwen3" and (out / "kernel.ptx").read_text().startswith("//")
    from etc.codegen.ptxas import ptxas_path
    if ptxas_path():  # the kernel's ptxas resources, in bundle.json and printed
        r = meta["kernel_resources"]
        assert 0 < r["registers"] <= 255 and r["stack"] >= r["spill_stores"] >= 0 and (out / "kernel.cubin").exists()
        assert f"ptxas: {r['registers']} registers per thread, {r['spill_stores']} B spill stores" in printed
        # the code: the kernel's own, and the functions it calls (at least one per tile kind)
        assert r["code_bytes"] > 0 and r["functions"] >= 3 and r["function_bytes"] > 0
        assert f"MB in the {r['functions']} functions it calls" in printed
    else:
        assert meta["kernel_resources"] is None and "ptxas: not assembled" in printed


@pytest.mark.parametrize("no_fuse, merge_grid", [
    ([], ["batch", "(((batch + 62) // 64) * 2)"]),  # the default: one row merges in the last split
    (["attention-merge-per-batch"], None),  # each kv group's last split merges at every batch
    (["attention-merge-last"], ["batch", "(((batch + 62) // 64) * 2)"]),  # one row merges in o_proj
    (["attention-merge-last", "attention-merge-per-batch"], None),  # folded into o_proj at every batch
    (["attention-merge-last", "attention-merge"], ["batch", "2"]),  # a merge stage at every batch
    (["attention-merge-last", "attention-merge", "attention-merge-per-batch"], ["batch", "2"])])
def test_the_attention_merge_is_in_the_last_split_at_one_row_unless_asked(tmp_path, no_fuse, merge_grid):
    out = tmp_path / "b"
    args = [a for name in no_fuse for a in ("--no-fuse", name)]
    assert cli.main(["compile", "--model", "tiny-qwen3", "--num-sms", "8", *args, "--out", str(out)]) == 0
    tasks = json.loads((out / "bundle.json").read_text())["tasks"]
    merges = [t["grid"] for t in tasks if t["kind"] == "attention_merge"]
    assert merges == ([merge_grid] * 2 if merge_grid else [])


@pytest.mark.parametrize("flags, wide", [([], True), (["--no-wide-kv"], False)])
def test_wide_attention_chunks_unless_asked(tmp_path, flags, wide):
    """By default attention tiles take twice kv_chunk slots at batches of many rows, and the kernel asks
    each attention tile's `_idle` companion whether another tile stands in for it (an empty chunk, then
    skipped); --no-wide-kv builds neither."""
    out = tmp_path / "b"
    assert cli.main(["compile", "--model", "tiny-qwen3", "--num-sms", "8", *flags, "--out", str(out)]) == 0
    ptx = (out / "kernel.ptx").read_text()
    assert ("_idle(" in ptx) == wide and ("_signal_count(" in ptx) == wide


def test_generate_without_a_gpu_is_a_one_line_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        return
    assert cli.main(["generate", "--bundle", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == "etc: error: generate needs a CUDA GPU; none is visible to PyTorch"


@pytest.mark.parametrize("kib", ["40", "256", "-16"])
def test_a_ring_size_that_does_not_fit_is_a_one_line_error_before_compiling(tmp_path, capsys, kib):
    assert cli.main(["compile", "--model", "tiny-llama", "--ring-kib", kib, "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"etc: error: ring_kib must be 0 or a multiple of 16 from 32 to 128, got {kib}"
    assert not (tmp_path / "b").exists()


def test_unknown_model_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["compile", "--model", "gpt-17", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("etc: error: unknown model 'gpt-17'; known: tiny-llama")
    assert len(err.strip().splitlines()) == 1


def test_cli_fusion_names_match_the_pipeline(tmp_path, capsys):
    from etc import cli, pipeline

    assert cli.FUSIONS == pipeline.FUSIONS + (pipeline.MERGE_PER_BATCH,)
    out = tmp_path / "b"
    assert cli.main(["compile", "--model", "tiny-llama", "--no-fuse", "rope-kv-append", "--out", str(out)]) == 0
    kinds = [t["kind"] for t in json.loads((out / "bundle.json").read_text())["tasks"]]
    assert "rope" in kinds and "kv_append" in kinds  # unfused: their own task grids


def test_a_tile_n_that_fits_no_linear_is_an_error_at_each_op(tmp_path, capsys):
    """--tile-n 12 neither holds Qwen3's heads of 32 nor splits them, and is no multiple of 8 for the other
    linears: each op gets its error with its source location, then the pass fails; no traceback."""
    assert cli.main(["compile", "--model", "tiny-qwen3", "--tile-n", "12", "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "error: no tile covers this linear: tile-n 12 neither holds whole heads of 32 nor splits them" in err
    assert "error: no tile covers this linear: tile-n 12 is not a multiple of 8 (16-byte bf16 loads)" in err
    assert "decoder.py:" in err and "pass 'etc-tile' failed" in err and "Traceback" not in err


def test_the_merge_is_folded_at_every_batch_under_a_ready_queue(tmp_path, capsys):
    """The dynamic schedule releases a tile when its waits are met, which a wait on the per-batch merge
    (no tiles at one row) never is: there the merge folds at every batch, and asking for it is an error."""
    out = tmp_path / "b"
    assert cli.main(["compile", "--model", "tiny-qwen3", "--num-sms", "8", "--schedule", "dynamic", "--out", str(out)]) == 0
    assert not [t for t in json.loads((out / "bundle.json").read_text())["tasks"] if t["kind"] == "attention_merge"]
    import etc
    from etc.models import CONFIGS, build_model, dynamic_shapes_for, example_inputs

    config = CONFIGS["tiny-qwen3"]
    with pytest.raises(etc.PipelineError) as info:
        etc.compile_to_tasks(build_model("tiny-qwen3", weights="meta"), example_inputs(config, batch=2, ctx=16, device="meta"),
                             dynamic_shapes=dynamic_shapes_for(config), schedule="dynamic", num_sms=8,
                             fuse={"attention-merge-per-batch": True})
    assert str(info.value) == "attention-merge-per-batch needs the static schedule, not 'dynamic'"


def test_a_larger_block_gets_a_kernel_whose_registers_fit_it(tmp_path, capsys):
    """A worker block of 512 threads: the PTX declares the block (.maxntid, one a SM), so ptxas fits the
    registers to the SM's 64K (128 a thread), which a kernel built for 256 threads (up to 255) would
    exceed at launch."""
    out = tmp_path / "b"
    assert cli.main(["compile", "--model", "tiny-qwen3", "--num-sms", "8", "--block-size", "512",
                     "--out", str(out)]) == 0
    assert "8 workers x 512 threads" in capsys.readouterr().out
    ptx = (out / "kernel.ptx").read_text()
    assert ".maxntid 512, 1, 1" in ptx and ".minnctapersm 1" in ptx  # one block a SM: not two blocks' worth
    from etc.codegen.ptxas import ptxas_path
    if ptxas_path():
        assert json.loads((out / "bundle.json").read_text())["kernel_resources"]["registers"] * 512 <= 65536
