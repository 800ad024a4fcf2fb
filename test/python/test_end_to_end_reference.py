"""The tiny models, compiled once each to sm_task IR, run on the CPU reference executor under many worker
interleavings, each policy, and several runtime sizes; results match PyTorch within bf16 tolerance."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from mlir import ir

import etc
from etc import mlir_adapter as mlir
from etc import reference
from etc.models.decoder import CONFIGS, build_model, dynamic_shapes_for, example_inputs
from etc.pipeline import run_pipeline, scheduling_pipeline

SEEDS = 100
WORKERS = 6
# (batch, kv_len, positions): runtime sizes that differ from the export example (batch 2, kv_len 16).
CASES = [(1, 12, [5]), (3, 20, [0, 7, 19]), (4, 33, [32, 1, 16, 8])]
POLICIES = ("static", "dynamic", "hybrid")


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-qwen3", "tiny-gpt"])
def compiled(request):
    """One event_tensor import per model, scheduled with each policy for WORKERS workers."""
    name = request.param
    c = CONFIGS[name]
    model = build_model(name, seed=1)
    event_ir = etc.import_torch(model, example_inputs(c, batch=2, ctx=16), dynamic_shapes_for(c), num_sms=WORKERS,
                                kv_chunk=8)
    text = mlir.to_text(event_ir)
    modules = {p: run_pipeline(text, scheduling_pipeline(p, WORKERS)) for p in POLICIES}
    return name, model, modules


def case_inputs(c, batch, kv_len, positions, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, c.vocab_size, (batch,), generator=g)
    shape = (batch, c.num_kv_heads, kv_len, c.head_dim)
    k = [torch.randn(shape, generator=g).to(c.dtype) for _ in range(c.num_layers)]
    v = [torch.randn(shape, generator=g).to(c.dtype) for _ in range(c.num_layers)]
    return tokens, torch.tensor(positions), k, v


def torch_step(model, inputs):
    tokens, positions, k, v = inputs
    k, v = [t.clone() for t in k], [t.clone() for t in v]
    with torch.no_grad():
        logits, k, v = model(tokens, positions, k, v)
    return logits.float().numpy(), [t.float().numpy() for t in k], [t.float().numpy() for t in v]


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


@pytest.mark.parametrize("policy", POLICIES)
def test_matches_pytorch_under_many_interleavings(compiled, policy):
    name, model, modules = compiled
    c = model.config
    for batch, kv_len, positions in CASES:
        inputs = case_inputs(c, batch, kv_len, positions)
        ref_logits, ref_k, ref_v = torch_step(model, inputs)
        first = None
        for seed in range(SEEDS):
            bound = reference.arguments(model, inputs)
            logits = reference.execute(modules[policy], bound, seed=seed)[0]
            if first is None:
                first = logits
                assert rel(logits, ref_logits) < 1e-2, (name, policy, batch, kv_len)
                assert (logits.argmax(-1) == ref_logits.argmax(-1)).all()
                for i in range(c.num_layers):  # the new slot written in place, every other slot untouched
                    assert rel(bound[f"k_caches.{i}"], ref_k[i]) < 1e-2
                    assert rel(bound[f"v_caches.{i}"], ref_v[i]) < 1e-2
            else:  # every interleaving computes the same bits: tiles never race
                np.testing.assert_array_equal(logits, first)


def test_counters_carry_across_steps_with_changing_sizes(compiled):
    """Three decode steps with batch 3, 1, 4 on one Executor: counters are never reset."""
    name, model, modules = compiled
    c = model.config
    executor = reference.Executor(modules["hybrid"])
    for step, (batch, kv_len, positions) in enumerate([CASES[1], CASES[0], CASES[2]]):
        inputs = case_inputs(c, batch, kv_len, positions, seed=step)
        logits = executor.step(reference.arguments(model, inputs), seed=step)[0]
        assert rel(logits, torch_step(model, inputs)[0]) < 1e-2


def _broken(modules, policy, counter_name: str, delta: int | None):
    """A private copy of a scheduled module whose counter `counter_name` expects `delta` more signals
    (None: no signals at all, as if the wait were removed)."""
    module = run_pipeline(mlir.to_text(modules[policy]), "etc-verify-event-tensor")
    for op in mlir.ops_named(module.operation, "sm_task.counter"):
        if mlir.str_attr(op, "name") == counter_name:
            old = mlir.map_attr(op, "target")
            with module.context:
                op.attributes["target"] = ir.AffineMapAttr.get(ir.AffineMap.get(
                    old.n_dims, old.n_symbols,
                    [ir.AffineConstantExpr.get(0) if delta is None else old.results[0] + ir.AffineConstantExpr.get(delta)]))
            return module
    raise AssertionError(f"no counter {counter_name}")


def test_a_missing_wait_is_caught_as_a_race(compiled):
    name, model, modules = compiled
    c = model.config
    # Merge tiles no longer wait for the attention partials of their (row, KV head).
    counter = next(mlir.str_attr(op, "name") for op in mlir.ops_named(modules["dynamic"].operation, "sm_task.counter")
                   if mlir.str_attr(op, "name").startswith("attention.partial"))
    broken = _broken(modules, "dynamic", counter, None)
    inputs = case_inputs(c, *CASES[1])
    with pytest.raises(reference.RaceError, match="attention"):
        for seed in range(SEEDS):
            reference.execute(broken, reference.arguments(model, inputs), seed=seed)


def test_a_wrong_wait_count_is_caught(compiled):
    name, model, modules = compiled
    c = model.config
    inputs = case_inputs(c, *CASES[1])
    too_low = _broken(modules, "static", "model.layers.1.self_attn.o_proj.done", -1)
    with pytest.raises(reference.RaceError):
        for seed in range(SEEDS):
            reference.execute(too_low, reference.arguments(model, inputs), seed=seed)
    too_high = _broken(modules, "static", "model.layers.1.self_attn.o_proj.done", +1)
    with pytest.raises(reference.DeadlockError, match="o_proj"):
        reference.execute(too_high, reference.arguments(model, inputs), seed=0)


def test_llama_1b_shapes_schedule_for_132_sms_within_30s():
    c = CONFIGS["llama-3.2-1b"]
    model = build_model("llama-3.2-1b", weights="meta")
    module = etc.import_torch(model, example_inputs(c, batch=2, ctx=16, device="meta"), dynamic_shapes_for(c))
    for policy in POLICIES:
        text = mlir.to_text(module)
        t0 = time.perf_counter()
        scheduled = run_pipeline(text, scheduling_pipeline(policy, 132))
        elapsed = time.perf_counter() - t0
        assert elapsed < 30, (policy, elapsed)
        # per layer: q, k, v, attention (the merge folded into o_proj), o, gate/up, down
        assert len(mlir.ops_named(scheduled.operation, "sm_task.task")) == 1 + 7 * c.num_layers + 1


@pytest.mark.parametrize("policy", POLICIES)
def test_unfused_tiles_match_pytorch(policy):
    """With every fusion off, the separate norm, add, rope, kv_append and silu_mul tiles run too."""
    c = CONFIGS["tiny-llama"]
    model = build_model("tiny-llama", seed=2)
    module = etc.compile_to_tasks(model, example_inputs(c, batch=2, ctx=16), schedule=policy, num_sms=WORKERS,
                                  dynamic_shapes=dynamic_shapes_for(c), fuse=False, kv_chunk=8)
    kinds = {mlir.str_attr(op, "kind") for op in mlir.ops_named(module.operation, "sm_task.task")}
    assert {"rms_norm", "add", "rope", "kv_append", "silu_mul"} <= kinds
    inputs = case_inputs(c, *CASES[2])
    ref_logits = torch_step(model, inputs)[0]
    first = None
    for seed in range(20):
        logits = reference.execute(module, reference.arguments(model, inputs), seed=seed)[0]
        if first is None:
            first = logits
            assert rel(logits, ref_logits) < 1e-2 and (logits.argmax(-1) == ref_logits.argmax(-1)).all()
        else:
            np.testing.assert_array_equal(logits, first)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("base", ["tiny-llama", "tiny-qwen3"])
def test_split_heads_and_folded_merge_match_pytorch(base, policy):
    """Heads of 64 split over two projection tiles of 32 (rotate-half pairs; for Qwen3 with its per-head
    q/k norm over the whole head, gathered by the head's last tile), the attention merge folded into
    o_proj, the same model with both off, and with the merge in each kv group's last split; then (Qwen3) the q/k norm and RoPE in the attention tile
    instead (etc-fuse-head-norm-attention, the default): all match PyTorch, k cache included, under many
    interleavings. (8 SMs: q, k and v share them, 256 columns.)"""
    import dataclasses

    c = dataclasses.replace(CONFIGS[base], num_heads=2, num_kv_heads=1, head_dim=64)
    model = build_model(c, seed=3)
    inputs = case_inputs(c, *CASES[2])
    ref_logits, ref_k, _ = torch_step(model, inputs)
    qwen = base == "tiny-qwen3"
    for split, fold, in_attention, last in ((True, True, False, False), (False, False, False, False),
                                            (True, False, False, True)) + ((True, True, True, False),) * qwen:
        module = etc.compile_to_tasks(model, example_inputs(c, batch=2, ctx=16), schedule=policy, num_sms=8,
                                      dynamic_shapes=dynamic_shapes_for(c), kv_chunk=8, split_heads=split,
                                      fuse={"attention-merge": fold, "attention-merge-per-batch": False,
                                            "attention-merge-last": last, "head-norm-attention": in_attention})
        tasks = mlir.ops_named(module.operation, "sm_task.task")
        for proj in ("q_proj", "k_proj"):
            op = next(op for op in tasks if mlir.str_attr(op, "name").endswith(proj))
            params = mlir.attr_to_python(op.attributes["params"])
            assert params["tile_n"] == (32 if split else 64)
            assert ("head_rms_norm" in params.get("epilogue", [])) == (qwen and not in_attention)
        attention = next(op for op in tasks if mlir.str_attr(op, "kind") == "attention_partial")
        assert ("head_norm_eps" in mlir.attr_to_python(attention.attributes["params"])) == in_attention
        kinds = [mlir.str_attr(op, "kind") for op in tasks]
        assert ("attention_merge" in kinds) == (not fold and not last)
        assert ("out" in mlir.attr_to_python(attention.attributes["params"])["write_roles"]) == last
        first = None
        for seed in range(20):
            bound = reference.arguments(model, inputs)
            logits = reference.execute(module, bound, seed=seed)[0]
            if first is None:
                first = logits
                assert rel(logits, ref_logits) < 1e-2 and (logits.argmax(-1) == ref_logits.argmax(-1)).all()
                assert rel(bound["k_caches.0"], ref_k[0]) < 1e-2
            else:
                np.testing.assert_array_equal(logits, first)


@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen3"])
def test_merge_per_batch_matches_pytorch_at_one_and_more_rows(name, last):
    """With the attention merge per batch (fuse attention-merge-per-batch), one row merges in o_proj, or
    with attention-merge-last in each kv group's last split (the merge grid has no tiles and o_proj's wait
    on it has a target of 0), and more rows merge in the merge grid: both match PyTorch under many interleavings, across steps that change the batch on one
    Executor (batch 3, 1, 4). The ready queue cannot run it (o_proj would never be pushed at one row: on
    the GPU such a bundle faulted): the dynamic schedule rejects it with a one-line error."""
    c = CONFIGS[name]
    model = build_model(name, seed=1)
    event_ir = etc.import_torch(model, example_inputs(c, batch=2, ctx=16), dynamic_shapes_for(c), num_sms=WORKERS,
                                kv_chunk=8, fuse={"attention-merge-per-batch": True, "attention-merge-last": last})
    merges = [op for op in mlir.ops_named(event_ir.operation, "event_tensor.task_grid")
              if mlir.str_attr(op, "kind") == "attention_merge"]
    assert len(merges) == c.num_layers
    with pytest.raises(etc.PassFailure) as info:
        run_pipeline(mlir.to_text(event_ir), scheduling_pipeline("dynamic", WORKERS))
    assert "waits on counter 'attention.merge.done', which no tile signals at the smallest sizes" in str(info.value)
    for policy in ("static",):
        module = run_pipeline(mlir.to_text(event_ir), scheduling_pipeline(policy, WORKERS))
        executor = reference.Executor(module)
        for step, (batch, kv_len, positions) in enumerate([CASES[1], CASES[0], CASES[2]]):
            inputs = case_inputs(c, batch, kv_len, positions, seed=step)
            ref_logits = torch_step(model, inputs)[0]
            logits = executor.step(reference.arguments(model, inputs), seed=step)[0]
            assert rel(logits, ref_logits) < 1e-2, (policy, batch)
            for seed in range(10):
                again = reference.execute(module, reference.arguments(model, inputs), seed=seed)[0]
                np.testing.assert_array_equal(again, logits)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen3"])
def test_wide_kv_chunks_match_pytorch_from_wide_rows_on(name):
    """etc-tile's wide-kv (default on): for 6 workers and 2 kv heads an attention split covers twice
    kv_chunk from ceildiv(6, 2 * 2) = 2 rows on, the splits past the KV length then empty. Across steps of
    1, 3 and 4 rows on one Executor (kv_len 12, 20, 33: one to three wide splits of 16 slots) the logits
    match PyTorch, with and without wide chunks (wide-kv=false: wide_rows 0)."""
    c = CONFIGS[name]
    model = build_model(name, seed=1)
    for wide, wide_rows in ((True, 2), (False, 0)):
        event_ir = etc.import_torch(model, example_inputs(c, batch=2, ctx=16), dynamic_shapes_for(c),
                                    num_sms=WORKERS, kv_chunk=8, wide_kv=wide)
        grids = [op for op in mlir.ops_named(event_ir.operation, "event_tensor.task_grid")
                 if mlir.str_attr(op, "kind") == "attention_partial"]
        assert {mlir.attr_to_python(op.attributes["params"])["wide_rows"] for op in grids} == {wide_rows}
        module = run_pipeline(mlir.to_text(event_ir), scheduling_pipeline("static", WORKERS))
        executor = reference.Executor(module)
        for step, (batch, kv_len, positions) in enumerate(CASES):
            inputs = case_inputs(c, batch, kv_len, positions, seed=step)
            logits = executor.step(reference.arguments(model, inputs), seed=step)[0]
            assert rel(logits, torch_step(model, inputs)[0]) < 1e-2, (wide, batch)
