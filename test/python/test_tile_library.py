"""The tile library (etc.codegen.tile_library): every tile kind of etc.tiles as MLIR tile functions.

- Numerics: every task of the tiny models (fused and unfused), Llama-3.2-1B-shaped tasks and the param
  variants the models do not produce run on the CPU SIMT simulator (etc.codegen.tiles_simt) and must
  match etc.reference.run_tile.
- Lowering: each program's tile functions, wrapped in kernels, go through the upstream pipeline to PTX
  and `ptxas -arch=sm_90a -v` (skipped without ptxas): they assemble, and nothing spills.
- The GPU check bundle (tools/gpu/check_tiles.py --prepare) round-trips through --simulate.
- Unsupported params are one-line EtcErrors.
"""
import dataclasses
import importlib.util
import os
import re

import numpy as np
import pytest

from etc import tiles as contract
from etc.codegen import ptxas
from etc.codegen.tile_library import DYNAMIC_SHARED_DECL, _emitters, emit_tile_function, tile_shared_bytes
from etc.codegen.tiles_cases import all_cases, extra_programs, make_case
from etc.codegen.tiles_harness import default_indices, harness_module_text, program_of_text, program_text, unique_tasks
from etc.codegen.tiles_simt import simulate
from etc.errors import EtcError

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
HAVE_PTXAS = ptxas.ptxas_path() is not None


def _load_check_tiles():
    spec = importlib.util.spec_from_file_location("check_tiles", os.path.join(ROOT, "tools", "gpu", "check_tiles.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_tiles = _load_check_tiles()


@pytest.fixture(scope="module")
def cases():
    return all_cases()


def _groups(cases):
    groups = {}
    for case in cases:
        groups.setdefault(id(case.program), []).append(case)
    return list(groups.values())


# ---------------------------------------------------------------- numerics (CPU simulator)


def _mismatches(case, got) -> list[str]:
    """'<case> <buffer>: max_rel=...' for each buffer the case's task writes whose simulated values (`got`)
    are not the reference's within check_tiles' tolerance."""
    out = []
    for name in case.expected:
        etype = case.program.buffer(name).element_type
        storage = check_tiles.STORAGE[etype]
        rel, _, ok = check_tiles.compare(_storage(got[name], etype, storage),
                                         _storage(case.expected[name], etype, storage), etype)
        if not ok:
            out.append(f"{case.name} {name}: max_rel={rel:.3g}")
    return out


@pytest.mark.parametrize("prefix", ["tiny-llama", "tiny-qwen3", "tiny-gpt", "llama-1b", "extra"])
def test_tiles_match_the_reference(cases, prefix):
    selected = [c for c in cases if c.name.startswith(prefix + "/") or c.name.startswith(prefix + "-")]
    assert selected
    failures = []
    for case in selected:
        failures += _mismatches(case, simulate(case.program, case.task, case.sizes, case.arrays, case.block))
    assert not failures, "\n".join(failures)


def test_linear_tiles_with_weight_streams_match_the_reference(cases):
    """Linear tiles whose weights stream through shared memory (bulk copies into a ring of stages on
    mbarriers, the first blocks issued by the issue function before the tile): every Llama-shaped case
    (several K slices, several row groups, split heads) and the extra ones. The simulator raises on an
    mbarrier wait that could never complete, a barrier re-initialized while live or invalidated mid-phase."""
    from etc.codegen.tiles_harness import harness_module_text as harness

    selected = [c for c in cases if c.task.kind == "linear" and c.name.startswith(("llama-1b/", "extra/"))]
    failures, streamed, tensor_cores = [], 0, 0
    for case in selected:
        text = harness(case.program, [case.task], weight_stream=True)
        streams = "nvvm.cp.async.bulk" in text
        assert streams == (case.task.params["in_features"] % 256 == 0), case.name  # bf16 / f32 weights here
        streamed += streams
        tensor_cores += "nvvm.mma.sync" in text and case.sizes["batch"] >= 2  # rows >= 2: the mma dot
        got = simulate(case.program, case.task, case.sizes, case.arrays, case.block, weight_stream=True)
        failures += _mismatches(case, got)
    assert streamed >= 12 and tensor_cores >= 12 and not failures, (streamed, tensor_cores, failures)


@pytest.mark.parametrize("ring_kib", [32, 64])
def test_weight_streams_through_part_of_the_ring_match_the_reference(cases, ring_kib):
    """A stream through 64 KiB of the ring (what small models get) or 32 (one stage for blocks of 32 KiB
    or more): fewer stages, the same bytes, the same outputs, for Llama-shaped tiles of one and more rows."""
    import re

    from etc.codegen.tiles_harness import harness_module_text as harness

    names = ("llama-1b/gate_up", "llama-1b/gate_up-b1", "llama-1b/down-b9", "llama-1b/q_proj_split-b1")
    picked = [c for c in cases if c.name in names]
    assert len(picked) == len(names)
    for case in picked:
        stages = {ring: len(re.findall(r"nvvm\.mbarrier\.init", harness(case.program, [case.task], weight_stream=True,
                                                                         ring_bytes=ring)))
                  for ring in (ring_kib * 1024, None)}
        assert 1 <= stages[ring_kib * 1024] < stages[None], (case.name, stages)
        stats = {}
        got = simulate(case.program, case.task, case.sizes, case.arrays, case.block, weight_stream=True,
                       stats=stats, ring_bytes=ring_kib * 1024)
        p = case.task.params
        roles = 2 if "silu_mul" in p.get("epilogue", ()) else 1
        passes = 1 if case.sizes["batch"] <= 16 else 2
        assert stats["bulk_bytes"] == passes * roles * p["out_features"] * p["in_features"] * 2, case.name
        assert not _mismatches(case, got), case.name


def test_one_row_whose_blocks_fit_the_ring_takes_every_column_group_in_one_pass(cases):
    """In 64 KiB of ring (what small models get) a one-row tile whose weight blocks all fit waits for every
    block up front and reduces all its column groups in one pass: its one-row function refills nothing
    and has one wait per column group. A tile with more blocks than stages (gate/up) keeps the
    group-by-group loop with its refills. Both match the reference at one row."""
    import re

    from etc.codegen.tiles_harness import harness_module_text as harness

    expected = {"llama-1b/q_proj_split-b1": 2, "llama-1b/o_proj_merge_one_row-b1": 2, "llama-1b/gate_up-b1": 0}
    picked = {c.name: c for c in cases if c.name in expected}
    assert picked.keys() == expected.keys()
    for name, groups in expected.items():
        case = picked[name]
        text = harness(case.program, [case.task], weight_stream=True, ring_bytes=64 * 1024)
        one_row = re.search(r"func\.func @etc_tile_\d+_one_row\(.*?\n  \}", text, re.S).group(0)
        waits, refills = one_row.count("nvvm.mbarrier.try_wait"), one_row.count("nvvm.cp.async.bulk")
        if groups:
            assert (waits, refills) == (groups, 0), (name, waits, refills)
        else:
            assert (waits, refills) == (1, 1), (name, waits, refills)
        got = simulate(case.program, case.task, case.sizes, case.arrays, case.block, weight_stream=True,
                       ring_bytes=64 * 1024)
        assert not _mismatches(case, got), name


def test_auto_ring_is_half_for_models_of_at_most_64_mib_of_weights_a_worker():
    from types import SimpleNamespace

    from etc.codegen.weight_stream import RING_BYTES, auto_ring_bytes

    def program(weight_mib: int, workers: int):
        buf = SimpleNamespace(role="weight", element_type="bf16", shape=lambda sizes: (weight_mib << 19,))
        act = SimpleNamespace(role="workspace", element_type="f32", shape=lambda sizes: (1 << 40,))  # not counted
        return SimpleNamespace(buffers=[buf, act], kernel=SimpleNamespace(num_workers=workers), default_sizes=dict)
    assert auto_ring_bytes(program(2470, 132)) == 64 * 1024  # Llama-3.2-1B: 19 MiB a worker
    assert auto_ring_bytes(program(64 * 132, 132)) == 64 * 1024
    assert auto_ring_bytes(program(64 * 132 + 1, 132)) == RING_BYTES
    assert auto_ring_bytes(program(16400, 132)) == RING_BYTES  # Qwen3-8B: 124 MiB a worker


def test_attention_tiles_with_kv_prefetch_match_the_reference(cases):
    """With weight streams an attention chunk whose K and V rows fit the ring bulk-copies the rows of its
    slots before positions[r] (written in earlier steps) into shared memory from its issue function, before
    its waits, and copies slot positions[r] (appended this step) after them: every attention case (rows at
    different positions, chunks past a row's position, head_dim 64 and 128, wide chunks) matches the
    reference; a chunk whose rows do not fit (600 slots) reads them from global memory. Where a chunk's K
    rows are 32 KiB or more (head_dim 128, chunks of 128) the issue function copies only K and the tile
    copies V after its waits, on a barrier of its own."""
    from etc.codegen.tiles_harness import harness_module_text as harness

    selected = [c for c in cases if c.task.kind == "attention_partial"]
    prefetched, v_after, failures = 0, 0, []
    copy = "nvvm.cp.async.bulk.shared.cluster.global"
    for case in selected:
        text = harness(case.program, [case.task], weight_stream=True)
        p = case.task.params
        fits = 2 * p["kv_chunk"] * (2 if p.get("wide_rows") else 1) * p["head_dim"] * 2 <= 128 * 1024
        assert ("nvvm.cp.async.bulk" in text) == fits, case.name
        prefetched += "nvvm.cp.async.bulk" in text
        if fits:  # K (and V) before the waits, V after them from 32 KiB of K rows a chunk
            functions = dict(re.findall(r"func\.func @(etc_tile_\d+\w*)\((.*?)(?=func\.func|\Z)", text, re.S))
            issue = next(body for name, body in functions.items() if name.endswith("_issue"))
            tile = next(body for name, body in functions.items() if re.fullmatch(r"etc_tile_\d+", name))
            after = p["kv_chunk"] * p["head_dim"] * 2 >= 32 * 1024
            assert (issue.count(copy), tile.count(copy)) == ((1, 1) if after else (2, 0)), case.name
            v_after += after
        got = simulate(case.program, case.task, case.sizes, case.arrays, case.block, weight_stream=True)
        failures += _mismatches(case, got)
    assert prefetched >= 5 and v_after >= 3 and not failures, (prefetched, v_after, failures)


def test_a_wide_steps_empty_chunks_are_skipped_and_written_by_the_chunks_that_stand_in(cases):
    """At a wide step the chunks E = ceildiv(T, 2 kv_chunk) .. S - 1 hold no slot. The harness skips a tile
    whose `_idle` companion says so, as a worker does, so the empty chunks' outputs (and, merging by the
    last split, the group's merge, which needs every split's arrival) are there only if split s - E
    writes them and arrives for them; the tile's signals then count 2 (`_signal_count`)."""
    selected = [c for c in cases if c.task.kind == "attention_partial" and c.task.params.get("wide_rows")]
    skipped, failures = 0, []
    for case in selected:
        text = harness_module_text(case.program, [case.task])
        assert "_idle(" in text and "_signal_count(" in text, case.name
        p = case.task.params
        rows, T = case.sizes["batch"], case.sizes["kv_len"]
        S, E = -(-T // p["kv_chunk"]), -(-T // (2 * p["kv_chunk"]))
        if rows >= p["wide_rows"]:
            skipped += S - E
        failures += _mismatches(case, simulate(case.program, case.task, case.sizes, case.arrays, case.block))
    merging = [c for c in selected if any(b.name == "out" or "out" in b.name for b in c.program.buffers)]
    assert skipped >= 10 and merging and not failures, (skipped, failures)


def test_prefetching_attention_takes_rope_cos_sin_from_its_issue_function(cases):
    """With the q/k norm and RoPE in the attention tile and the K / V rows prefetched, RoPE's f64 cos and
    sin are computed by the issue function before the waits (a table in shared memory) and not by the
    tile function after them; the tile's values still match the reference (the table's rounding is
    rope_cos_sin's), also with a block of two warps, where warp 1 alone computes the 64 pairs of head_dim
    128. Without a weight stream the tile computes them itself."""
    from etc.codegen.tiles_harness import harness_module_text as harness

    case = next(c for c in cases if c.name.endswith("attention_norm_d128"))

    def trig_by_function(text):
        out = {}
        for chunk in text.split("func.func @")[1:]:
            name = chunk.split("(", 1)[0]
            out[name] = chunk.count("math.cos") + chunk.count("math.sin")
        return out
    streamed = trig_by_function(harness(case.program, [case.task], weight_stream=True))
    issue = [n for n in streamed if n.endswith("_issue")]
    assert issue and streamed[issue[0]] == 2, streamed
    assert sum(v for n, v in streamed.items() if n not in issue) == 0, streamed
    plain = trig_by_function(harness(case.program, [case.task], weight_stream=False))
    assert not any(n.endswith("_issue") for n in plain) and sum(plain.values()) > 0, plain
    got = simulate(case.program, case.task, case.sizes, case.arrays, case.block, weight_stream=True)
    assert not _mismatches(case, got)
    two_warps = dataclasses.replace(case.program, kernel=dataclasses.replace(case.program.kernel, block_size=64))
    small = make_case("attention_norm_d128-block64", two_warps, two_warps.tasks[0], {"batch": 2, "kv_len": 700},
                      seed=31, block=64)
    got = simulate(small.program, small.task, small.sizes, small.arrays, 64, weight_stream=True)
    assert not _mismatches(small, got)


def test_bulk_copies_of_weights_and_kv_rows_are_evicted_first_from_l2(cases):
    """Every bulk copy a streamed linear or a prefetching attention tile makes (weights, K and V rows:
    read once a step) carries the L2 evict-first policy, so those bytes leave L2 before the code, the
    activations and the counters that later tiles reuse (BENCHMARKS.md, twenty-fourth session)."""
    from etc.codegen.tiles_harness import harness_module_text as harness

    checked = set()
    for case in cases:
        if case.task.kind not in ("linear", "attention_partial"):
            continue
        text = harness(case.program, [case.task], weight_stream=True)
        copies = [line for line in text.splitlines() if "nvvm.cp.async.bulk.shared.cluster.global" in line]
        if not copies:
            continue
        assert "createpolicy.fractional.L2::evict_first" in text, case.name
        assert all("l2_cache_hint" in line for line in copies), case.name
        checked.add(case.task.kind)
    assert checked == {"linear", "attention_partial"}


def test_profiled_tiles_stamp_ordered_phases_and_compute_the_same_values(cases):
    """The profiling build's phase stamps (thread 0, into shared memory past the weight stream's ring):
    every tile of a streamed linear (q_proj with split-head rope and KV append) and of an attention
    chunk stamps all phases in order, and the outputs stay the reference's."""
    for name in ("tiny-llama/2-linear", "llama-1b/k_proj_split", "llama-1b/down-b9", "tiny-llama/4-attention_partial"):
        case = next(c for c in cases if c.name == name)
        phases = []
        got = simulate(case.program, case.task, case.sizes, case.arrays, case.block, weight_stream=True,
                       phases=phases)
        assert len(phases) == case.task.tile_count(case.sizes), name
        # the simulated %globaltimer counts ops: strictly later phase by phase; an attention chunk with no
        # visible slot (past a row's position) stamps none
        stamped = [p for p in phases if any(p)]
        assert len(stamped) == len(phases) or (case.task.kind == "attention_partial" and stamped), name
        for stamps in stamped:  # (down-b9: three row groups; the phases are the first group's)
            assert 0 < stamps[0] < stamps[1] < stamps[2], (name, stamps)
        assert not _mismatches(case, got)


@pytest.mark.parametrize("name", ["extra/q_proj_split_norm-b1", "extra/k_proj_split_norm-b18"])
@pytest.mark.parametrize("order", ["reversed", "interleaved"])
def test_split_head_norm_is_finished_by_whichever_tile_of_the_head_arrives_last(cases, name, order):
    """A split head with a head_rms_norm (4 tiles per head of 128): the last tile to arrive normalizes the
    whole head, whatever order the tiles finish in; the others leave their values unnormalized. Here the
    tiles run one after another in reverse or interleaved order, with the weights streamed."""
    case = next(c for c in cases if c.name == name)
    n = case.task.tile_count(case.sizes)
    tiles = list(reversed(range(n))) if order == "reversed" else [j for k in (1, 3, 0, 2) for j in range(k, n, 4)]
    got = simulate(case.program, case.task, case.sizes, case.arrays, case.block, weight_stream=True, order=tiles)
    assert not _mismatches(case, got)


def test_a_split_head_is_gathered_16_bytes_a_lane(cases):
    """The tile that finishes a split head (here q of 2 heads of 128 over 18 rows, 4 tiles a head) reads the
    head's unnormalized values back 16 bytes (8 bf16) a lane: 2 x 18 x 128 / 8 lanes load y, all in flight
    at once; the outputs match the reference."""
    from etc.codegen.tiles_simt import REGION_SHIFT
    case = next(c for c in cases if c.name == "extra/q_proj_split_norm-b18")
    y = case.task.writes[0]
    stats = {}
    got = simulate(case.program, case.task, case.sizes, case.arrays, case.block, weight_stream=True, stats=stats)
    assert not _mismatches(case, got)
    assert stats["loads"].get(stats["addresses"][y] >> REGION_SHIFT, 0) == 2 * 18 * 128 // 8


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("weight_stream", [False, True])
def test_merge_one_row_prologue_merges_at_one_row_and_reads_x_above(cases, batch, weight_stream):
    """prologue attention_merge_one_row (the merge folded per batch): at one row the tile merges the
    attention splits itself and never reads x; at more rows it reads the merged x and never the partials.
    Either way the outputs are the reference's."""
    case = next(c for c in cases if c.name == f"llama-1b/o_proj_merge_one_row-b{batch}")
    stats = {}
    got = simulate(case.program, case.task, case.sizes, case.arrays, case.block, weight_stream=weight_stream,
                   stats=stats)
    assert not _mismatches(case, got)
    read = {name: stats["loads"].get(addr >> 40, 0) + stats["async_reads"].get(addr >> 40, 0)
            for name, addr in stats["addresses"].items()}
    assert (read["x"] == 0, read["po"] == 0) == ((True, False) if batch == 1 else (False, True)), read


@pytest.mark.parametrize("name, merges", [("extra/attention_norm_d128_c128_last1-b1", True),
                                          ("extra/attention_d128_last1-b1", True),
                                          ("extra/attention_d128_last", True),  # every batch merges
                                          ("extra/attention_d128_last1", False)])  # 2 rows: a merge grid's job
def test_splits_that_merge_their_group_leave_the_partial_buffers_alone(cases, name, merges):
    """Where the group merges in its splits, the partials reach the merging split as published words only:
    partial_out and partial_stats (read by an attention_merge grid alone, which has no tiles then) keep
    what they held, and out is the reference's. Where a merge grid merges (merge_one_row at 2 rows), the
    splits store the partials and write no out."""
    case = next(c for c in cases if c.name == name)
    po, ps = case.task.writes[:2]
    assert case.task.params["write_roles"][:2] == ["partial_out", "partial_stats"]
    got = simulate(case.program, case.task, case.sizes, case.arrays, case.block, weight_stream=True)
    assert not _mismatches(case, got)
    assert (po in case.expected, ps in case.expected) == (not merges, not merges)
    for name_ in (po, ps):
        assert np.array_equal(got[name_], case.arrays[name_], equal_nan=True) == merges


@pytest.mark.parametrize("name", ["llama-1b/q_proj", "llama-1b/q_proj_split", "extra/linear_stream_short-b2",
                                  "extra/linear_stream_rows-b1",
                                  "llama-1b/down", "llama-1b/gate_up", "llama-1b/down-b9",
                                  "extra/linear_norm_k4096-b9", "extra/lm_head_k4096-b1", "extra/lm_head_k4096-b3"])
def test_weight_stream_copies_every_weight_byte_once_per_pass(cases, name):
    """One pass over x (batch <= 16) bulk-copies every weight byte of every role exactly once (short last
    groups and split heads included): a column group's whole rows (if they fit WHOLE_ROW_STAGE_BYTES) one
    copy per role, longer rows one copy per row and K slice (the largest fitting STAGE_BYTES a group).
    Rows of 8192 and 4096 at batch 9 stage x a segment of K at a time, so they too pass once. Qwen3-8B's
    LM head tile (1152 columns, too wide to segment) streams too, at batch 1 and 3: its one-row variant
    follows the tile's stream, whose issue function the worker calls (the missing issue function hung
    the Qwen3-8B megakernel at its LM head)."""
    from etc.codegen.weight_stream import STAGE_BYTES, WHOLE_ROW_STAGE_BYTES
    case = next(c for c in cases if c.name == name)
    p = case.task.params
    N, K, TN = p["out_features"], p["in_features"], p["tile_n"]
    roles = 2 if "silu_mul" in p.get("epilogue", ()) else 1
    warps = case.block // 32
    assert case.sizes["batch"] <= 16
    stats = {}
    simulate(case.program, case.task, case.sizes, case.arrays, case.block, weight_stream=True, stats=stats)
    assert stats["bulk_bytes"] == roles * N * K * 2, name
    if warps * roles * K * 2 <= WHOLE_ROW_STAGE_BYTES:
        groups = sum(-(-min(TN, N - n0) // warps) for n0 in range(0, N, TN))
        assert stats["bulk_copies"] == roles * groups, name
    else:
        slice_k = max(s for s in range(256, K + 1, 256) if K % s == 0 and warps * roles * s * 2 <= STAGE_BYTES)
        assert stats["bulk_copies"] == roles * N * (K // slice_k), name


def _reads_of(case, role: str) -> list[tuple[int, int, int]]:
    """Simulate the case with and without weight streams, checking its outputs against the reference each
    time; per run the lanes that read `role`'s buffer with plain loads and with cp.async, and the plain
    loads counted in all."""
    from etc.codegen.tiles_simt import REGION_SHIFT
    from etc.reference.tiles import roles as tile_roles
    reads, _ = tile_roles(case.task.kind, case.task.params, len(case.task.reads), len(case.task.writes))
    buffer = dict(zip(reads, case.task.reads))[role]
    counts = []
    for stream in (False, True):
        stats = {}
        got = simulate(case.program, case.task, case.sizes, case.arrays, case.block, weight_stream=stream,
                       stats=stats)
        assert not _mismatches(case, got), (case.name, stream)
        region = stats["addresses"][buffer] >> REGION_SHIFT
        counts.append((stats["loads"].get(region, 0), stats["async_reads"].get(region, 0),
                       sum(stats["loads"].values())))
    return counts


@pytest.mark.parametrize("name", ["llama-1b/o_proj_merge", "llama-1b/down-b9", "extra/o_proj_merge_k4096-b18",
                                  "tiny-llama/8-linear-b1", "extra/linear_f32"])
def test_a_residual_add_reads_the_residual_once_by_cp_async(cases, name):
    """A residual_add epilogue stages the tile's slice of the residual into shared memory with cp.async
    while x stages (one pass, segmented, one-row variant, f32), so no output waits on a global load of it:
    the residual buffer sees no plain load, and the outputs still match the reference."""
    case = next(c for c in cases if c.name == name)
    assert "residual_add" in case.task.params.get("epilogue", ())
    for loads, _, all_loads in _reads_of(case, "residual"):
        assert loads == 0, f"{name}: {loads} lanes loaded the residual"
        assert all_loads, "no plain loads counted at all"


@pytest.mark.parametrize("name", ["llama-1b/gate_up-b9", "llama-1b/down-b9", "extra/linear_stream_rows-b12",
                                  "llama-1b/o_proj_merge_one_row-b3"])
def test_x_of_several_rows_is_staged_by_cp_async(cases, name):
    """Several rows of 16-bit x (an rms_norm of 9 rows, two of them on one warp; a segmented plain copy; a
    plain copy; the merged x of o_proj above one row) reach shared memory by cp.async only, every chunk in
    flight at once, and the outputs still match the reference."""
    case = next(c for c in cases if c.name == name)
    for loads, copied, _ in _reads_of(case, "x"):
        assert loads == 0, f"{name}: {loads} lanes loaded x"
        assert copied > 0, f"{name}: x never copied"


def test_simulated_inline_asm_knows_only_cache_policies_and_empty_statements():
    from etc.codegen.tiles_simt import Simulator
    text = """module attributes {gpu.container_module} {
  gpu.module @etc {
    gpu.func @k(%p: !llvm.ptr) kernel {
      %pol = llvm.inline_asm has_side_effects "createpolicy.fractional.L2::evict_first.b64 $0, 1.0;", "=l" : () -> i64
      %v = llvm.inline_asm has_side_effects "mov.u64 $0, %clock64;", "=l" : () -> i64
      gpu.return
    }
  }
}"""
    with pytest.raises(EtcError, match="unsupported inline asm 'mov.u64"):
        Simulator(text).run("k", 1, 32, 0, [0])


def _mma_kernel(partial: bool = False) -> str:
    """Lane l loads its A, B, C registers from a[4l..], b[2l..], c[4l..], runs one bf16 mma.sync
    m16n8k16 and stores D to d[4l..] (partial: lanes 16+ skip the mma)."""
    loads = []
    for name, n, t in (("a", 4, "i32"), ("b", 2, "i32"), ("c", 4, "f32")):
        for i in range(n):
            loads.append(f"%{name}p{i} = llvm.getelementptr %{name}[%l{n}_{i}] : (!llvm.ptr, i64) -> !llvm.ptr, {t}\n"
                         f"      %{name}{i} = llvm.load %{name}p{i} : !llvm.ptr -> {t}")
    index = "\n".join(f"      %l{n}_{i} = arith.addi %l{n}, %k{i} : i64" for n in (2, 4) for i in range(n))
    mma = ("%r = nvvm.mma.sync A[%a0, %a1, %a2, %a3] B[%b0, %b1] C[%c0, %c1, %c2, %c3] {layoutA = "
           "#nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>, multiplicandAPtxType = #nvvm.mma_type<bf16>, "
           "multiplicandBPtxType = #nvvm.mma_type<bf16>, shape = #nvvm.shape<m = 16, n = 8, k = 16>} : "
           "(i32, i32, f32) -> !llvm.struct<(f32, f32, f32, f32)>")
    stores = "\n".join(f"      %d{i} = llvm.extractvalue %r[{i}] : !llvm.struct<(f32, f32, f32, f32)>\n"
                       f"      %dp{i} = llvm.getelementptr %d[%l4_{i}] : (!llvm.ptr, i64) -> !llvm.ptr, f32\n"
                       f"      llvm.store %d{i}, %dp{i} : f32, !llvm.ptr" for i in range(4))
    cond = "arith.constant 16 : index" if partial else "arith.constant 32 : index"
    return f"""module attributes {{gpu.container_module}} {{
  gpu.module @etc {{
    gpu.func @k(%a: !llvm.ptr, %b: !llvm.ptr, %c: !llvm.ptr, %d: !llvm.ptr) kernel {{
      %t = gpu.thread_id x
      %lanes = {cond}
      %in = arith.cmpi ult, %t, %lanes : index
      %l = arith.index_cast %t : index to i64
      %two = arith.constant 2 : i64
      %four = arith.constant 4 : i64
      %l2 = arith.muli %l, %two : i64
      %l4 = arith.muli %l, %four : i64
{chr(10).join(f"      %k{i} = arith.constant {i} : i64" for i in range(4))}
{index}
      scf.if %in {{
      {(chr(10) + "      ").join(loads)}
      {mma}
{stores}
      }}
      gpu.return
    }}
  }}
}}"""


def test_simulated_mma_follows_the_ptx_fragment_layout():
    """The simulator's mma.sync m16n8k16 reads A, B and C and writes D where the PTX ISA puts them (lane l:
    A rows l/4 and l/4 + 8 at k = 2(l%4) + {0, 1} and + 8, B column l/4 at the same k, D columns
    2(l%4) + {0, 1}), with bf16 pairs packed lower half first; run by part of a warp it is an error."""
    from etc.codegen.tiles_simt import Simulator, from_storage, to_storage

    rng = np.random.default_rng(3)
    A = from_storage(to_storage(rng.standard_normal((16, 16)), "bf16"), "bf16", (16, 16))
    B = from_storage(to_storage(rng.standard_normal((16, 8)), "bf16"), "bf16", (16, 8))
    C = rng.standard_normal((16, 8)).astype(np.float32)

    def pack(lo, hi):  # two bf16 values in one i32, lo in the lower half
        bits = to_storage(np.array([lo, hi]), "bf16").astype(np.uint32)
        return np.array(bits[0] | (bits[1] << 16), np.uint32).view(np.int32)
    a = np.zeros((32, 4), np.int32)
    b = np.zeros((32, 2), np.int32)
    c = np.zeros((32, 4), np.float32)
    for lane in range(32):
        g, q = lane // 4, 2 * (lane % 4)
        a[lane] = [pack(A[g, q], A[g, q + 1]), pack(A[g + 8, q], A[g + 8, q + 1]),
                   pack(A[g, q + 8], A[g, q + 9]), pack(A[g + 8, q + 8], A[g + 8, q + 9])]
        b[lane] = [pack(B[q, g], B[q + 1, g]), pack(B[q + 8, g], B[q + 9, g])]
        c[lane] = [C[g, q], C[g, q + 1], C[g + 8, q], C[g + 8, q + 1]]
    sim = Simulator(_mma_kernel())
    ptrs = [sim.memory.add(x.reshape(-1).view(np.uint8).copy()) for x in (a, b, c)] + [sim.memory.add(32 * 16)]
    sim.run("k", 1, 32, 0, ptrs)
    d = sim.memory.view(ptrs[3]).view(np.float32).reshape(32, 4)
    D = A.astype(np.float64) @ B + C
    for lane in range(32):
        g, q = lane // 4, 2 * (lane % 4)
        np.testing.assert_allclose(d[lane], [D[g, q], D[g, q + 1], D[g + 8, q], D[g + 8, q + 1]], rtol=1e-6)
    partial = Simulator(_mma_kernel(partial=True))
    ptrs = [partial.memory.add(x.reshape(-1).view(np.uint8).copy()) for x in (a, b, c)] + [partial.memory.add(512)]
    with pytest.raises(EtcError, match="part of a warp"):
        partial.run("k", 1, 32, 0, ptrs)


def _ldmatrix_kernel(layout: str) -> str:
    """Lane l points at row l % 8 of matrix l / 8 of m (four 8 x 8 bf16 matrices, rows of 16 bytes), runs
    ldmatrix .x4 (layout col: .trans) and stores its four registers to d[4l..]."""
    st = "!llvm.struct<(i32, i32, i32, i32)>"
    stores = "\n".join(f"      %r{i} = llvm.extractvalue %r[{i}] : {st}\n"
                        f"      %i{i} = arith.constant {i} : i64\n"
                        f"      %j{i} = arith.addi %l4, %i{i} : i64\n"
                        f"      %dp{i} = llvm.getelementptr %d[%j{i}] : (!llvm.ptr, i64) -> !llvm.ptr, i32\n"
                        f"      llvm.store %r{i}, %dp{i} : i32, !llvm.ptr" for i in range(4))
    return f"""module attributes {{gpu.container_module}} {{
  gpu.module @etc {{
    gpu.func @k(%m: !llvm.ptr, %d: !llvm.ptr) kernel {{
      %t = gpu.thread_id x
      %l = arith.index_cast %t : index to i64
      %eight = arith.constant 8 : i64
      %four = arith.constant 4 : i64
      %row = arith.muli %l, %eight : i64
      %l4 = arith.muli %l, %four : i64
      %g = llvm.getelementptr %m[%row] : (!llvm.ptr, i64) -> !llvm.ptr, bf16
      %s = llvm.addrspacecast %g : !llvm.ptr to !llvm.ptr<3>
      %r = nvvm.ldmatrix %s {{num = 4 : i32, layout = #nvvm.mma_layout<{layout}>, shape = #nvvm.ld_st_matrix_shape<m = 8, n = 8>, eltType = #nvvm.ld_st_matrix_elt_type<b16>}} : (!llvm.ptr<3>) -> {st}
{stores}
      gpu.return
    }}
  }}
}}"""


@pytest.mark.parametrize("layout", ["row", "col"])
def test_simulated_ldmatrix_follows_the_ptx_fragment_layout(layout):
    """The simulator's ldmatrix .x4 gives lane l, in register i, matrix i's elements [l/4][2(l%4) + {0, 1}]
    (layout col, .trans: [2(l%4) + {0, 1}][l/4]), the lower half first, as the PTX ISA lays them out; the
    attention tile takes V's B fragments this way."""
    from etc.codegen.tiles_simt import Simulator, to_storage

    bits = to_storage(np.random.default_rng(5).standard_normal((4, 8, 8)), "bf16").astype(np.uint16)
    sim = Simulator(_ldmatrix_kernel(layout))
    ptrs = [sim.memory.add(bits.reshape(-1).view(np.uint8).copy()), sim.memory.add(32 * 16)]
    sim.run("k", 1, 32, 0, ptrs)
    d = sim.memory.view(ptrs[1]).view(np.uint32).reshape(32, 4)
    for lane in range(32):
        g, q = lane // 4, 2 * (lane % 4)
        for i in range(4):
            lo, hi = (bits[i, q, g], bits[i, q + 1, g]) if layout == "col" else (bits[i, g, q], bits[i, g, q + 1])
            assert d[lane, i] == int(lo) | int(hi) << 16, (layout, lane, i)


def test_weight_stream_traps_on_a_block_of_another_size(cases):
    """A stream's column groups are made for the compiled block size; another one traps, never computes
    wrong columns."""
    case = next(c for c in cases if c.name == "extra/linear_stream_block128")
    with pytest.raises(EtcError, match="trapped"):
        simulate(case.program, case.task, case.sizes, case.arrays, 256, weight_stream=True)


def test_simulated_mbarrier_wait_that_never_completes_is_an_error():
    from etc.codegen.tiles_simt import Simulator

    text = """module attributes {gpu.container_module} {
gpu.module @etc {
gpu.func @k() kernel {
  %smem = llvm.mlir.addressof @etc_dynamic_smem : !llvm.ptr<3>
  %c1 = arith.constant 1 : i32
  %c0 = arith.constant 0 : i32
  %true = arith.constant true
  %t = gpu.thread_id x
  %z = arith.constant 0 : index
  %first = arith.cmpi eq, %t, %z : index
  scf.if %first {
    nvvm.mbarrier.init %smem, %c1 : !llvm.ptr<3>, i32
  }
  scf.while : () -> () {
    %ok = nvvm.mbarrier.try_wait %smem, %c0 : !llvm.ptr<3>, i32 -> i1
    %no = arith.xori %ok, %true : i1
    scf.condition(%no)
  } do {
    scf.yield
  }
  gpu.return
}
}
}"""
    sim = Simulator(text.replace("gpu.module @etc {", "gpu.module @etc {\n" + DYNAMIC_SHARED_DECL))
    with pytest.raises(EtcError, match="never completes"):
        sim.run("k", 1, 32, 64, [])


def test_simulated_cp_async_lands_only_at_the_wait():
    """A cp.async destination keeps its old bytes until the issuing thread waits; copies never waited for
    are an error (on the GPU they would land at an unknown time)."""
    from etc.codegen.tiles_simt import Simulator

    def kernel(wait_before_read: bool, wait_at_all: bool = True) -> str:
        wait = "nvvm.cp.async.commit.group\n  nvvm.cp.async.wait.group 0"
        return f"""module attributes {{gpu.container_module}} {{
gpu.module @etc {{
{DYNAMIC_SHARED_DECL}
gpu.func @k(%src: !llvm.ptr, %out: !llvm.ptr) kernel {{
  %smem = llvm.mlir.addressof @etc_dynamic_smem : !llvm.ptr<3>
  %g = llvm.addrspacecast %src : !llvm.ptr to !llvm.ptr<1>
  nvvm.cp.async.shared.global %smem, %g, 8, cache = ca : !llvm.ptr<3>, !llvm.ptr<1>
  {wait if wait_before_read and wait_at_all else ""}
  %v = llvm.load %smem : !llvm.ptr<3> -> i64
  llvm.store %v, %out : i64, !llvm.ptr
  {wait if wait_at_all and not wait_before_read else ""}
  gpu.return
}}
}}
}}"""
    for wait_before_read, want in ((True, 42), (False, 0)):
        sim = Simulator(kernel(wait_before_read))
        src, out = sim.memory.add(np.array([42], np.int64)), sim.memory.add(np.zeros(1, np.int64))
        sim.run("k", 1, 32, 64, [src, out])
        assert int(sim.memory.view(out).view(np.int64)[0]) == want
    sim = Simulator(kernel(True, wait_at_all=False))
    with pytest.raises(EtcError, match="never waited for"):
        sim.run("k", 1, 32, 64, [sim.memory.add(np.array([42], np.int64)), sim.memory.add(np.zeros(1, np.int64))])


def _storage(values, etype, storage):
    from etc.codegen.tiles_simt import to_storage
    return to_storage(values, etype).astype(storage)


def test_cases_cover_every_kind_and_linear_variant(cases):
    kinds = {c.task.kind for c in cases}
    assert kinds == set(contract.KINDS)
    linear = {(c.task.params.get("prologue", "none"), tuple(c.task.params.get("epilogue", ())))
              for c in cases if c.task.kind == "linear"}
    for want in [("rms_norm", ("rope",)), ("rms_norm", ("rope", "kv_append")), ("rms_norm", ("kv_append",)),
                 ("none", ("residual_add",)), ("rms_norm", ("silu_mul",)), ("rms_norm", ()),
                 ("rms_norm", ("head_rms_norm", "rope")), ("rms_norm", ("head_rms_norm", "rope", "kv_append")),
                 ("layer_norm", ("rope",)), ("layer_norm", ("gelu",)), ("none", ())]:
        assert want in linear, want
    assert any(c.task.params.get("tile_n") == 976 and c.task.params["in_features"] == 2048 for c in cases)
    assert any(c.task.params.get("in_features") == 8192 for c in cases)


# ---------------------------------------------------------------- lowering and ptxas


def _check_lowering(program, tasks, weight_stream: bool = False):
    ptx = ptxas.compile_ptx_text(harness_module_text(program, tasks, weight_stream=weight_stream))
    assert ".target sm_90a" in ptx
    if weight_stream:  # bulk copies completing on mbarriers
        assert "cp.async.bulk" in ptx and "mbarrier.try_wait" in ptx, "no weight stream"
    assert ".extern .shared .align 16 .b8 etc_dynamic_smem[]" in ptx or ".shared" not in ptx
    if not HAVE_PTXAS:
        return {}
    report = ptxas.ptxas_report(ptx)
    for task in tasks:
        assert f"etc_check_{task.id}" in report, report.keys()
    spills = {f: r for f, r in report.items() if r["spill_stores"] or r["spill_loads"]}
    assert not spills, spills
    return report


def test_case_programs_lower_and_assemble_without_spills(cases):
    for group in _groups(cases):
        _check_lowering(group[0].program, list({c.task.id: c.task for c in group}.values()))


@pytest.mark.parametrize("fuse,stream", [(True, True), (True, False), (False, False)])
def test_llama_3_2_1b_tasks_lower_without_spills(fuse, stream):
    """The real front end's tasks for one Llama-3.2-1B layer and the lm_head (vocab 128256, tile_n 976),
    with weight streams (bulk copies, mbarriers) as compiled by default and without."""
    import etc
    from etc.models.decoder import CONFIGS, build_model, dynamic_shapes_for, example_inputs
    from etc.sm_task_ir import SmTaskProgram

    c = dataclasses.replace(CONFIGS["llama-3.2-1b"], num_layers=1)
    module = etc.compile_to_tasks(build_model(c, weights="meta"), example_inputs(c, batch=2, ctx=16, device="meta"),
                                  schedule="static", num_sms=132, dynamic_shapes=dynamic_shapes_for(c), fuse=fuse)
    program = SmTaskProgram.of(module)
    tasks = unique_tasks(program)
    lm_head = [t for t in tasks if t.kind == "linear" and t.params["out_features"] == 128256]
    assert lm_head and lm_head[0].params["tile_n"] == 976
    # fused: each kv group's last split merges at one row, o_proj reading its copy (the merge grid has
    # tiles at 2+ rows only)
    kinds = {"embedding", "linear", "attention_partial", "attention_merge"}
    unfused = {"rms_norm", "rope", "kv_append", "add", "silu_mul"}
    assert kinds | (set() if fuse else unfused) <= {t.kind for t in tasks}
    assert fuse == any(t.params.get("prologue") == "x_one_row" for t in tasks)
    assert fuse == any(t.params.get("merge_one_row") for t in tasks if t.kind == "attention_partial")
    report = _check_lowering(program, tasks, weight_stream=stream)
    if report and not stream:  # below the 255 limit (with streams the k_proj tile reaches 255, no spills) (one block per SM: registers do not cost occupancy; spills would)
        assert max(r["registers"] for f, r in report.items() if f.startswith("etc_check_")) < 255
    shared = {t.id: tile_shared_bytes(t, program) for t in tasks}
    assert max(shared.values()) <= 80 * 1024, shared


def test_ptxas_report_parsing():
    text = """ptxas info    : 272 bytes gmem
ptxas info    : Compiling entry function 'etc_check_9' for 'sm_90a'
ptxas info    : Function properties for etc_check_9
    1264 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 1264 bytes cumulative stack size, 1 bytes smem
ptxas info    : Compile time = 222.279 ms
ptxas info    : Function properties for etc_tile_9
    0 bytes stack frame, 1574 bytes spill stores, 1744 bytes spill loads
"""
    report = ptxas.parse_ptxas_report(text)
    assert report["etc_check_9"] == {"registers": 255, "spill_stores": 0, "spill_loads": 0, "stack": 1264}
    assert report["etc_tile_9"] == {"registers": None, "spill_stores": 1574, "spill_loads": 1744, "stack": 0}


# ---------------------------------------------------------------- the function text and its ABI


def test_tile_function_signature_and_shared_bytes():
    program = extra_programs()["linear_heads_gelu_y"]
    task = program.tasks[0]
    buffer_index, symbol_index = default_indices(program)
    text = emit_tile_function(task, program, buffer_index, symbol_index)
    assert text.startswith("func.func @etc_tile_0(%buffers: !llvm.ptr, %sizes: !llvm.ptr, %c0: i64, %c1: i64, "
                           "%c2: i64)")
    shared = int(re.search(r"etc.shared_bytes = (\d+) : i64", text).group(1))
    assert shared == tile_shared_bytes(task, program) > 0
    assert "gpu.dynamic_shared_memory" in text and "scf.for" in text
    assert set(_emitters()) == set(contract.KINDS)


def test_buffer_and_size_tables_follow_the_given_indices():
    program = extra_programs()["attention_subchunks"]
    task = program.tasks[0]
    buffer_index = {"q": 7, "kc": 3, "vc": 5, "pos": 0, "po": 1, "ps": 2}
    text = emit_tile_function(task, program, buffer_index, {"batch": 4, "kv_len": 2})
    for i in buffer_index.values():
        assert f"llvm.getelementptr %buffers[{i}]" in text or (i == 0 and "llvm.load %buffers" in text)
    assert "llvm.getelementptr %sizes[2]" in text  # the KV length is a runtime size


# ---------------------------------------------------------------- errors


def _linear_program(**params):
    base = {"in_features": 64, "out_features": 32, "tile_n": 16, "has_bias": False, "prologue": "none",
            "epilogue": [], "read_roles": ["x", "weight"], "write_roles": ["y"]}
    base.update(params)
    return program_of_text(program_text(
        [("batch", 1, 8)], [("x", "workspace", "bf16", "s0, 64"), ("w", "weight", "bf16", "32, 64"),
                            ("y", "workspace", "bf16", "s0, 32")], "linear", "2", ["x", "w"], ["y"], base))


@pytest.mark.parametrize("params,message", [
    ({"epilogue": ["softmax"]}, r"linear tile of task 'linear': unknown epilogue step 'softmax'"),
    ({"prologue": "batch_norm"}, r"unknown prologue 'batch_norm'"),
    ({"epilogue": ["residual_add"]}, r"epilogue 'residual_add' needs a 'residual' operand"),
    ({"in_features": 60}, r"x has 64 columns, in_features is 60"),
])
def test_unsupported_params_are_one_line_errors(params, message):
    program = _linear_program(**params)
    buffer_index, symbol_index = default_indices(program)
    with pytest.raises(EtcError, match=message) as info:
        emit_tile_function(program.tasks[0], program, buffer_index, symbol_index)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("heads,kv_heads,d,kv_type,message", [
    (8, 2, 24, "bf16", r"head_dim 24 must be a multiple of 16 and a kv group at most 16 heads \(got 4\)"),
    (34, 2, 64, "bf16", r"a kv group at most 16 heads \(got 17\)"),
    (8, 2, 64, "f32", r"q, k_cache and v_cache must share one 16-bit float type \(got bf16, f32, f32\)"),
])
def test_attention_shapes_the_tensor_cores_cannot_take_are_one_line_errors(heads, kv_heads, d, kv_type, message):
    """The attention tile runs on mma.sync m16n8k16: head_dim a multiple of 16, at most 16 heads a kv group
    (the A rows), and q / K / V of one 16-bit float type; anything else is refused at compile time."""
    program = _attention_program(heads, kv_heads, d, kv_type)
    buffer_index, symbol_index = default_indices(program)
    with pytest.raises(EtcError, match=message) as info:
        emit_tile_function(program.tasks[0], program, buffer_index, symbol_index)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("block,fits", [(1024, False), (256, True)])
def test_attention_scratch_that_does_not_fit_its_block_is_a_one_line_error(block, fits):
    """The attention tile's shared memory (each warp's partial sums and V rows) grows with the block: two
    heads of 128 a kv group, their K and V rows prefetched into the ring, fit below it with 8 warps, not with
    32, which are refused at compile time with the count."""
    program = _attention_program(4, 2, 128, "bf16")
    program = dataclasses.replace(program, kernel=dataclasses.replace(program.kernel, block_size=block))
    buffer_index, symbol_index = default_indices(program)
    if fits:
        emit_tile_function(program.tasks[0], program, buffer_index, symbol_index, weight_stream=True)
        return
    with pytest.raises(EtcError, match=r"2 heads of 128 need \d+ bytes of shared memory for the partial sums "
                                       r"and V rows of 32 warps \(at most \d+; fewer threads a block need less\)"):
        emit_tile_function(program.tasks[0], program, buffer_index, symbol_index, weight_stream=True)


def _attention_program(heads: int, kv_heads: int, d: int, kv_type: str):
    return program_of_text(program_text(
        [("batch", 1, 8), ("kv_len", 2, 512)],
        [("q", "workspace", "bf16", f"s0, {heads * d}"), ("kc", "kv_cache", kv_type, f"s0, {kv_heads}, s1, {d}"),
         ("vc", "kv_cache", kv_type, f"s0, {kv_heads}, s1, {d}"), ("pos", "input", "i64", "s0"),
         ("po", "workspace", "f32", f"s0, {heads}, s1 ceildiv 64, {d}"),
         ("ps", "workspace", "f32", f"s0, {heads}, s1 ceildiv 64, 2")],
        "attention_partial", f"s0, {kv_heads}, s1 ceildiv 64", ["q", "kc", "vc", "pos"], ["po", "ps"],
        {"head_dim": d, "kv_chunk": 64, "num_heads": heads, "num_kv_heads": kv_heads,
         "read_roles": ["q", "k_cache", "v_cache", "positions"], "write_roles": ["partial_out", "partial_stats"]}))


@pytest.mark.parametrize("epilogue", [["rope", "head_rms_norm"], ["head_rms_norm", "rope", "head_rms_norm"]])
def test_a_split_head_takes_its_norm_first_and_once(epilogue):
    """The last tile of a split head gathers the head for its norm; a norm after another per-head step (or a
    second one) would see only the tile's columns, so it is refused."""
    from etc.codegen.tiles_cases import _linear

    program = _linear("qn", 256, 64, 16, epilogue=epilogue, head_dim=32)
    buffer_index, symbol_index = default_indices(program)
    with pytest.raises(EtcError, match="a split head takes 'head_rms_norm' as its first epilogue step, and once"):
        emit_tile_function(program.tasks[0], program, buffer_index, symbol_index)


def test_elementwise_body_with_an_unknown_op_names_it():
    body = """
func.func private @bad(%x: f32) -> f32 {
  %y = math.acos %x : f32
  return %y : f32
}"""
    program = program_of_text(program_text([("batch", 1, 8)], [("x", "workspace", "f32", "s0, 8"),
                                                               ("y", "workspace", "f32", "s0, 8")],
                                           "elementwise", "s0, 1", ["x"], ["y"],
                                           {"tile_c": 8, "body": "bad", "broadcast": ["full"]}, extra=body))
    buffer_index, symbol_index = default_indices(program)
    with pytest.raises(EtcError, match=r"elementwise body @bad: unsupported op 'math.acos' on \(f32\) -> f32 at "
                                       r"tile-case.mlir:\d+:\d+"):
        emit_tile_function(program.tasks[0], program, buffer_index, symbol_index)


# ---------------------------------------------------------------- the GPU check bundle


def test_check_bundle_round_trips_through_the_simulator(tmp_path, cases, capsys):
    picked = [c for c in cases if c.name in ("tiny-qwen3/2-linear", "extra/argmax", "extra/elementwise_int",
                                             "tiny-gpt-unfused/9-attention_partial")]
    assert len(picked) == 4
    check_tiles.prepare(str(tmp_path), picked)
    manifest = check_tiles.load_manifest(str(tmp_path))
    assert [c["name"] for c in manifest["cases"]] == [c.name for c in picked] or \
        sorted(c["name"] for c in manifest["cases"]) == sorted(c.name for c in picked)
    assert check_tiles.simulate(str(tmp_path))
    out = capsys.readouterr().out
    assert out.count("PASS") == 4 and "FAIL" not in out


def test_compare_flags_wrong_values_and_missing_writes():
    want = np.array([1.0, 2.0, -3.0, 0.0], np.float32)
    ok = check_tiles.compare(want.copy(), want, "f32")
    assert ok[2] and ok[0] == 0
    bad = want.copy()
    bad[2] = -2.0
    assert not check_tiles.compare(bad, want, "f32")[2]
    nan = want.copy()
    nan[0] = np.nan
    assert not check_tiles.compare(nan, want, "f32")[2]
    assert not check_tiles.compare(np.array([1, 2]), np.array([1, 3]), "i64")[2]


def test_weights_computed_in_the_step_do_not_stream():
    """Only model weights stream: a weight buffer written during the step (a workspace, e.g. a merged
    adapter) is read after the tile's waits, never copied before them."""
    from etc.codegen.tiles_cases import DIMS

    def program(role):
        return program_of_text(program_text(
            DIMS, [("x", "workspace", "bf16", "s0, 256"), ("w", role, "bf16", "16, 256"), ("y", "workspace", "bf16", "s0, 16")],
            "linear", "2", ["x", "w"], ["y"], {"in_features": 256, "out_features": 16, "tile_n": 8, "has_bias": False,
                                              "read_roles": ["x", "weight"], "write_roles": ["y"]}))
    assert "nvvm.cp.async.bulk" in harness_module_text(program("weight"), program("weight").tasks, weight_stream=True)
    computed = program("workspace")
    assert "nvvm.cp.async.bulk" not in harness_module_text(computed, computed.tasks, weight_stream=True)


def test_explicit_tile_n_may_split_heads_finer_than_the_automatic_choice():
    from etc.pipeline import run_pipeline

    text = """func.func @f(%x: !torch.vtensor<[?,2048],bf16>, %w: !torch.vtensor<[512,2048],bf16>, %pos: !torch.vtensor<[?],si64>, %inv: !torch.vtensor<[32],f32>) {
  %0 = "etc.tile"(%x, %w, %pos, %inv) {kind = "linear", params = {operand_roles = ["x", "weight", "positions", "inv_freq"], result_roles = ["y"], in_features = 2048 : i64, out_features = 512 : i64, has_bias = false, epilogue = ["rope"], head_dim = 64 : i64}} : (!torch.vtensor<[?,2048],bf16>, !torch.vtensor<[512,2048],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[32],f32>) -> !torch.vtensor<[?,512],bf16>
  return
}"""
    from etc import mlir_adapter as mlir

    for option, tile_n in (("", 32), ("{tile-n=16}", 16)):  # automatic: at least 32 (SPLIT_MIN)
        assert f"tile_n = {tile_n} : i64" in mlir.to_text(run_pipeline(text, f"etc-tile{option}")), option
