"""The reference executor (etc.reference.execute / Executor) on hand-written sm_task IR.

Programs: embedding -> rms_norm -> linear -> argmax (static, dynamic, hybrid, early push) and a q/k/v
projection -> KV append -> split-KV attention program, checked against torch over many seeds and sizes;
counters across decode steps; broken schedules caught as races, deadlocks or queue errors.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from etc import mlir_adapter as mlir
from etc.errors import EtcError
from etc.reference import DeadlockError, Executor, RaceError, execute

from etc.codegen.tiles_harness import attr_text  # noqa: E402

BF = torch.bfloat16


# ---------------------------------------------------------------- writing sm_task IR


attr = attr_text  # Python values as MLIR attribute text


class Program:
    """Builds the text of one sm_task function; every op takes all dims, so maps use s0, s1, ... for them."""

    def __init__(self, dims, workers=3):
        self.dims = dims  # [(name, min, max)]
        self.workers = workers
        self.buffers, self.counters, self.tasks, self.queues, self.ready = [], [], [], {}, None
        self.syms = "[" + ", ".join(f"s{i}" for i in range(len(dims))) + "]"

    def buffer(self, name, role, etype, sizes, output_index=None):
        self.buffers.append((name, role, etype, sizes, output_index))

    def counter(self, name, shape, target, rank=1):
        self.counters.append((name, shape, target, rank))

    def task(self, name, kind, grid, reads, writes, waits=(), signals=(), params=None, schedule="static"):
        """grid: extents text; waits/signals: [(counter, results text)], maps over the tile coords."""
        self.tasks.append(dict(name=name, kind=kind, grid=grid, reads=reads, writes=writes, waits=list(waits),
                               signals=list(signals), params=params or {}, schedule=schedule))
        return len(self.tasks) - 1

    def spread(self, task_ids, workers=None):
        """Static queues: each task's tiles round-robin over the workers, rotating the first worker."""
        workers = workers or self.workers
        for t in task_ids:
            for w in range(workers):
                self.queues.setdefault(w, []).extend([t, (w + t) % workers, workers])

    def text(self) -> str:
        n = len(self.dims)
        dims = ", ".join(f"%d{i}" for i in range(n))
        idx = ", ".join(["index"] * n)
        lines = ["func.func @step() {"]
        for i, (name, lo, hi) in enumerate(self.dims):
            lines.append(f'  %d{i} = "event_tensor.dim"() {{name = "{name}", min = {lo} : i64, max = {hi} : i64}}'
                         " : () -> index")
        bufs = {}
        for i, (name, role, etype, sizes, out) in enumerate(self.buffers):
            bufs[name] = f"%b{i}"
            extra = f", output_index = {out} : i64" if out is not None else ""
            lines.append(f'  %b{i} = "event_tensor.buffer"({dims}) {{name = "{name}", role = "{role}", '
                         f"element_type = {etype}, sizes = affine_map<(){self.syms} -> ({sizes})>{extra}}}"
                         f" : ({idx}) -> !event_tensor.buf")
        all_bufs = ", ".join(bufs.values())
        lines.append(f'  "sm_task.kernel"({dims}, {all_bufs}) {{operandSegmentSizes = array<i32: {n}, {len(bufs)}>, '
                     f'sym_name = "step_kernel", num_workers = {self.workers} : i64, block_size = 128 : i64}} : '
                     f"({', '.join(['index'] * n + ['!event_tensor.buf'] * len(bufs))}) -> ()")
        ctrs = {}
        for i, (name, shape, target, rank) in enumerate(self.counters):
            ctrs[name] = f"%c{i}"
            coords = ", ".join(f"d{j}" for j in range(rank))
            lines.append(f'  %c{i} = "sm_task.counter"({dims}) {{name = "{name}", shape = affine_map<(){self.syms} -> '
                         f"({shape})>, target = affine_map<({coords}){self.syms} -> ({target})>}} : ({idx}) -> "
                         "!sm_task.counters")
        for tid, t in enumerate(self.tasks):
            rank = len(t["grid"].split(","))
            coords = ", ".join(f"d{j}" for j in range(rank))
            operands = [f"%d{i}" for i in range(n)] + [bufs[b] for b in t["reads"]] + [bufs[b] for b in t["writes"]] \
                + [ctrs[c] for c, _ in t["waits"]] + [ctrs[c] for c, _ in t["signals"]]
            types = ["index"] * n + ["!event_tensor.buf"] * (len(t["reads"]) + len(t["writes"])) \
                + ["!sm_task.counters"] * (len(t["waits"]) + len(t["signals"]))
            maps = lambda pairs: "[" + ", ".join(f"affine_map<({coords}){self.syms} -> ({m})>" for _, m in pairs) + "]"
            seg = f"{n}, {len(t['reads'])}, {len(t['writes'])}, {len(t['waits'])}, {len(t['signals'])}"
            lines.append(f'  "sm_task.task"({", ".join(operands)}) {{operandSegmentSizes = array<i32: {seg}>, '
                         f'id = {tid} : i64, name = "{t["name"]}", kind = "{t["kind"]}", '
                         f"grid = affine_map<(){self.syms} -> ({t['grid']})>, wait_maps = {maps(t['waits'])}, "
                         f"signal_maps = {maps(t['signals'])}, params = {attr(t['params'])}, "
                         f'schedule = "{t["schedule"]}"}} : ({", ".join(types)}) -> ()')
        for w, entries in sorted(self.queues.items()):
            lines.append(f'  "sm_task.static_queue"() {{worker = {w} : i64, entries = array<i64: '
                         f'{", ".join(map(str, entries))}>}} : () -> ()')
        if self.ready is not None:
            tasks, early, capacity = self.ready
            lines.append(f'  "sm_task.ready_queue"() {{capacity = {capacity} : i64, tasks = array<i64: '
                         f'{", ".join(map(str, tasks))}>, early_push = {attr(early)}}} : () -> ()')
        lines += ["  return", "}"]
        return "\n".join(lines)

    def module(self):
        return mlir.parse(self.text(), mlir.new_context(), "step.mlir")


# ---------------------------------------------------------------- embedding -> rms_norm -> linear -> argmax

V, H, TILE_N = 64, 32, 16
LM_TILES = V // TILE_N


def lm_program(schedule="static", early_push=False, drop_wait=None, hn_target="s0", workers=3):
    """schedule: "static" | "dynamic" | "hybrid" (lm_head dynamic, the rest static)."""
    p = Program([("batch", 1, 8)], workers)
    p.buffer("tokens", "input", "i64", "s0")
    p.buffer("embed.weight", "weight", "bf16", f"{V}, {H}")
    p.buffer("norm.weight", "weight", "bf16", f"{H}")
    p.buffer("lm_head.weight", "weight", "bf16", f"{V}, {H}")
    p.buffer("h", "workspace", "bf16", f"s0, {H}")
    p.buffer("hn", "workspace", "bf16", f"s0, {H}")
    p.buffer("logits", "output", "bf16", f"s0, {V}", output_index=1)
    p.buffer("next_token", "output", "i64", "s0", output_index=0)
    p.counter("h_ready", "s0", "1")
    p.counter("hn_ready", "1", hn_target)
    p.counter("logits_ready", "1", f"{LM_TILES}")
    kinds = {"static": ["static"] * 4, "dynamic": ["dynamic"] * 4,
             "hybrid": ["static", "static", "dynamic", "static"]}[schedule]
    waits = {"norm": [("h_ready", "d0")], "lm_head": [("hn_ready", "0")], "argmax": [("logits_ready", "0")]}
    if drop_wait:
        waits[drop_wait] = []
    p.task("embed", "embedding", "s0", ["embed.weight", "tokens"], ["h"], signals=[("h_ready", "d0")],
           schedule=kinds[0])
    p.task("norm", "rms_norm", "s0, 1", ["h", "norm.weight"], ["hn"], waits["norm"], [("hn_ready", "0")],
           {"eps": 1e-5, "dim": H}, kinds[1])
    p.task("lm_head", "linear", f"{LM_TILES}", ["hn", "lm_head.weight"], ["logits"], waits["lm_head"],
           [("logits_ready", "0")], {"in_features": H, "out_features": V, "tile_n": TILE_N, "has_bias": False,
                                     "prologue": "none", "epilogue": [], "read_roles": ["x", "weight"],
                                     "write_roles": ["y"]}, kinds[2])
    p.task("argmax", "argmax", "s0", ["logits"], ["next_token"], waits["argmax"], schedule=kinds[3])
    static = [i for i, k in enumerate(kinds) if k == "static"]
    dynamic = [i for i, k in enumerate(kinds) if k == "dynamic"]
    p.spread(static)
    if dynamic:
        p.ready = (dynamic, early_push, 64)
    return p


def lm_weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"embed.weight": torch.randn(V, H, generator=g).to(BF),
            "norm.weight": (1 + torch.randn(H, generator=g) / 4).to(BF),
            "lm_head.weight": (torch.randn(V, H, generator=g) / 4).to(BF)}


def lm_args(weights, batch, seed=0):
    g = torch.Generator().manual_seed(100 + seed)
    args = {k: v.float().numpy() for k, v in weights.items()}
    args["tokens"] = torch.randint(0, V, (batch,), generator=g).numpy()
    return args


def lm_reference(weights, tokens):
    h = F.embedding(torch.from_numpy(tokens), weights["embed.weight"])
    x = h.float()
    hn = weights["norm.weight"] * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)).to(BF)
    logits = F.linear(hn, weights["lm_head.weight"])
    return logits.float().numpy(), torch.argmax(logits, -1).numpy()


def check_lm(outputs, weights, tokens):
    next_token, logits = outputs
    want_logits, want_next = lm_reference(weights, tokens)
    np.testing.assert_allclose(logits, want_logits, rtol=2 ** -7, atol=1e-6)
    np.testing.assert_array_equal(next_token, np.argmax(logits, -1))
    assert next_token.dtype == np.int64 and logits.dtype == np.float32
    return want_next


@pytest.fixture(scope="module")
def weights():
    return lm_weights()


@pytest.mark.parametrize("schedule,early_push", [("static", False), ("dynamic", False), ("dynamic", True),
                                                 ("hybrid", False), ("hybrid", True)])
def test_lm_program_matches_torch_over_seeds(weights, schedule, early_push):
    module = lm_program(schedule, early_push).module()
    args = lm_args(weights, 3)
    first = None
    for seed in range(25):
        out = execute(module, args, seed=seed)
        check_lm(out, weights, args["tokens"])
        if first is None:
            first = out
        for a, b in zip(out, first):  # every interleaving computes the same bits
            np.testing.assert_array_equal(a, b)


def test_runtime_sizes_from_one_module(weights):
    module = lm_program("hybrid").module()
    for batch in (1, 5, 8):
        args = lm_args(weights, batch, seed=batch)
        out = execute(module, args, seed=batch, workers=5)  # 2 workers only pop
        assert out[1].shape == (batch, V)
        check_lm(out, weights, args["tokens"])


@pytest.mark.parametrize("schedule", ["static", "dynamic", "hybrid"])
def test_counters_across_steps_with_different_batches(weights, schedule):
    ex = Executor(lm_program(schedule, early_push=schedule == "dynamic").module())
    for step, batch in enumerate((4, 7, 2), start=1):
        args = lm_args(weights, batch, seed=step)
        check_lm(ex.step(args, seed=step), weights, args["tokens"])
        # Never reset: each counter element holds (step << 32) + this step's signals.
        assert ex.counter_values[("hn_ready", (0,))] == (step << 32) + batch
        assert ex.counter_values[("logits_ready", (0,))] == (step << 32) + LM_TILES
    assert ex.counter_values[("h_ready", (1,))] == (3 << 32) + 1
    assert ex.counter_values[("h_ready", (5,))] == (2 << 32) + 1  # row 5 was last signalled in step 2


def test_missing_wait_is_a_race_in_some_seed(weights):
    module = lm_program(drop_wait="norm").module()
    args = lm_args(weights, 4)
    errors = []
    for seed in range(40):
        try:
            execute(module, args, seed=seed)
        except RaceError as e:
            errors.append(str(e))
    assert errors, "no interleaving exposed the race"
    assert any("race on buffer 'h' element (" in e and "task 'norm' tile (" in e and "task 'embed' tile (" in e
               for e in errors)


@pytest.mark.parametrize("schedule", ["static", "dynamic"])
def test_too_small_wait_count_is_a_race_in_some_seed(weights, schedule):
    module = lm_program(schedule, hn_target="s0 - 1").module()
    args = lm_args(weights, 4)
    caught = 0
    for seed in range(40):
        try:
            execute(module, args, seed=seed)
        except RaceError as e:
            assert "buffer 'hn'" in str(e) and "task 'lm_head' tile" in str(e)
            caught += 1
    assert caught


@pytest.mark.parametrize("schedule,early_push", [("static", False), ("dynamic", False), ("dynamic", True),
                                                 ("hybrid", True)])
def test_too_large_wait_count_deadlocks(weights, schedule, early_push):
    module = lm_program(schedule, early_push, hn_target="s0 + 1").module()
    for seed in range(5):
        with pytest.raises(DeadlockError) as e:
            execute(module, lm_args(weights, 3), seed=seed)
        msg = str(e.value)
        assert "\n" not in msg
        assert "task 'lm_head' tile (0,)" in msg and "counter 'hn_ready' element (0,)" in msg
        assert ": 3 signals, needs 4" in msg or "3 producers dispatched, needs 4" in msg


def test_static_queue_missing_a_tile(weights):
    p = lm_program()
    p.queues = {0: [0, 0, 1, 1, 0, 1, 2, 0, 1, 3, 0, 2]}  # argmax: only the even rows
    with pytest.raises(EtcError, match=r"task 'argmax' tile \(1,\) is in no queue"):
        execute(p.module(), lm_args(weights, 3))
    p.queues = {0: [0, 0, 1, 1, 0, 1, 2, 0, 1, 3, 0, 1], 2: [3, 2, 5]}
    with pytest.raises(EtcError, match=r"task 'argmax' tile \(2,\) is in the static queues of workers 0 and 2"):
        execute(p.module(), lm_args(weights, 3))


def test_ready_queue_overflow(weights):
    p = lm_program("dynamic")
    p.ready = (p.ready[0], False, 2)
    with pytest.raises(EtcError, match="ready queue overflow"):
        execute(p.module(), lm_args(weights, 3))


def test_bad_arguments_are_one_line_errors(weights):
    module = lm_program().module()
    good = lm_args(weights, 3)
    cases = [
        ({k: v for k, v in good.items() if k != "tokens"}, r"missing argument 'tokens' \(input\)"),
        ({**good, "bias": good["norm.weight"]}, "unknown argument 'bias'"),
        ({**good, "h": np.zeros((3, H), np.float32)}, "argument 'h' is a workspace buffer"),
        ({**good, "embed.weight": good["embed.weight"][:, :16]}, r"argument 'embed.weight' dim 1: expected 32, got 16"),
        ({**good, "tokens": np.zeros(9, np.int64)}, r"argument 'tokens' dim 0: size 'batch' = 9 is outside \[1, 8\]"),
        ({**good, "tokens": np.zeros((3, 1), np.int64)}, "argument 'tokens' has 2 dims, expected 1"),
        ({**good, "tokens": np.full(3, 70)},
         r"task 'embed' tile \((\d),\): embedding tile: tokens\[\1\] = 70 is outside"),
    ]
    for args, pattern in cases:
        with pytest.raises(EtcError, match=pattern) as e:
            execute(module, args)
        assert "\n" not in str(e.value)
    with pytest.raises(EtcError, match="num_workers = 0"):
        Executor(lm_program(workers=0).module())


# ---------------------------------------------------------------- q/k/v -> KV append -> split-KV attention

HQ, KVH, D, HID = 4, 2, 16, 32


def attn_program(kv_chunk, schedule="static", wait_kv=True, early_push=False):
    p = Program([("batch", 1, 4), ("kv_len", 1, 64)], workers=4)
    p.buffer("x", "input", "bf16", f"s0, {HID}")
    p.buffer("positions", "input", "i64", "s0")
    p.buffer("inv_freq", "weight", "f32", f"{D // 2}")
    p.buffer("wq", "weight", "bf16", f"{HQ * D}, {HID}")
    p.buffer("wk", "weight", "bf16", f"{KVH * D}, {HID}")
    p.buffer("wv", "weight", "bf16", f"{KVH * D}, {HID}")
    p.buffer("k_cache", "kv_cache", "bf16", f"s0, {KVH}, s1, {D}")
    p.buffer("v_cache", "kv_cache", "bf16", f"s0, {KVH}, s1, {D}")
    p.buffer("q", "workspace", "bf16", f"s0, {HQ * D}")
    chunks = f"s1 ceildiv {kv_chunk}"
    p.buffer("partial_out", "workspace", "f32", f"s0, {HQ}, {chunks}, {D}")
    p.buffer("partial_stats", "workspace", "f32", f"s0, {HQ}, {chunks}, 2")
    p.buffer("attn", "output", "bf16", f"s0, {HQ * D}", output_index=0)
    p.counter("q_ready", "1", "2")
    p.counter("kv_ready", "1", "2")
    p.counter("partials", f"s0, {KVH}", chunks, rank=2)
    lin = {"in_features": HID, "tile_n": 2 * D, "has_bias": False, "prologue": "none", "head_dim": D}
    p.task("q_proj", "linear", "2", ["x", "wq", "positions", "inv_freq"], ["q"], signals=[("q_ready", "0")],
           params={**lin, "out_features": HQ * D, "epilogue": ["rope"],
                   "read_roles": ["x", "weight", "positions", "inv_freq"], "write_roles": ["y"]})
    p.task("k_proj", "linear", "1", ["x", "wk", "positions", "inv_freq"], ["k_cache"], signals=[("kv_ready", "0")],
           params={**lin, "out_features": KVH * D, "epilogue": ["rope", "kv_append"],
                   "read_roles": ["x", "weight", "positions", "inv_freq"], "write_roles": ["cache"]})
    p.task("v_proj", "linear", "1", ["x", "wv", "positions"], ["v_cache"], signals=[("kv_ready", "0")],
           params={**lin, "out_features": KVH * D, "epilogue": ["kv_append"],
                   "read_roles": ["x", "weight", "positions"], "write_roles": ["cache"]})
    att = {"num_heads": HQ, "num_kv_heads": KVH, "head_dim": D, "scale": 1 / math.sqrt(D), "kv_chunk": kv_chunk}
    p.task("attn_partial", "attention_partial", f"s0, {KVH}, {chunks}",
           ["q", "k_cache", "v_cache", "positions"], ["partial_out", "partial_stats"],
           [("q_ready", "0")] + ([("kv_ready", "0")] if wait_kv else []), [("partials", "d0, d1")], att,
           schedule)
    p.task("attn_merge", "attention_merge", f"s0, {KVH}", ["partial_out", "partial_stats"], ["attn"],
           [("partials", "d0, d1")], params=att, schedule=schedule)
    p.spread([0, 1, 2] + ([3, 4] if schedule == "static" else []))
    if schedule == "dynamic":
        p.ready = ([3, 4], early_push, 256)
    return p


def attn_case(batch, kv_len, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = {"x": torch.randn(batch, HID, generator=g).to(BF), "wq": (torch.randn(HQ * D, HID, generator=g) / 4).to(BF),
         "wk": (torch.randn(KVH * D, HID, generator=g) / 4).to(BF), "wv": torch.randn(KVH * D, HID, generator=g).to(BF),
         "k_cache": torch.randn(batch, KVH, kv_len, D, generator=g).to(BF),
         "v_cache": torch.randn(batch, KVH, kv_len, D, generator=g).to(BF),
         "positions": torch.randint(0, kv_len, (batch,), generator=g),
         "inv_freq": 1.0 / (10000.0 ** (torch.arange(0, D, 2).float() / D))}
    t["positions"][0] = kv_len - 1
    args = {k: (v.float().numpy() if v.is_floating_point() else v.numpy()).copy() for k, v in t.items()}
    return t, args


def attn_reference(t):
    b = t["x"].shape[0]
    f = t["positions"][:, None].float() * t["inv_freq"][None, :]
    e = torch.cat([f, f], -1)[:, None, :]
    cos, sin = e.cos().to(BF), e.sin().to(BF)

    def rope(x):
        rot = torch.cat([-x[..., D // 2:], x[..., : D // 2]], -1)
        return x * cos + rot * sin

    q = rope(F.linear(t["x"], t["wq"]).view(b, HQ, D))
    k = rope(F.linear(t["x"], t["wk"]).view(b, KVH, D))
    v = F.linear(t["x"], t["wv"]).view(b, KVH, D)
    kc, vc = t["k_cache"].clone(), t["v_cache"].clone()
    rows = torch.arange(b)
    kc[rows, :, t["positions"]] = k
    vc[rows, :, t["positions"]] = v
    mask = torch.arange(kc.shape[2])[None, None, None, :] <= t["positions"][:, None, None, None]
    out = F.scaled_dot_product_attention(q.view(b, HQ, 1, D), kc, vc, attn_mask=mask, enable_gqa=True)
    return out.reshape(b, HQ * D).float().numpy(), kc.float().numpy(), vc.float().numpy()


@pytest.mark.parametrize("kv_chunk,schedule,early_push", [(4, "static", False), (7, "dynamic", False),
                                                          (16, "dynamic", True), (64, "static", False)])
def test_attention_program_matches_torch(kv_chunk, schedule, early_push):
    module = attn_program(kv_chunk, schedule, early_push=early_push).module()
    for seed, (batch, kv_len) in enumerate([(3, 40), (1, 5), (4, 64), (2, 17)]):
        t, args = attn_case(batch, kv_len, seed)
        k_cache = args["k_cache"]
        (out,) = execute(module, args, seed=seed)
        want, want_k, want_v = attn_reference(t)
        np.testing.assert_allclose(out, want, rtol=2 ** -6, atol=2e-3)
        # The caches are updated in place, in the caller's arrays.
        assert args["k_cache"] is k_cache
        np.testing.assert_allclose(args["k_cache"], want_k, rtol=2 ** -7, atol=1e-6)
        np.testing.assert_array_equal(args["v_cache"], want_v)


def test_attention_before_kv_append_is_a_race():
    module = attn_program(8, wait_kv=False).module()
    caught = []
    for seed in range(30):
        _, args = attn_case(2, 24, seed)
        try:
            execute(module, args, seed=seed)
        except RaceError as e:
            caught.append(str(e))
    assert caught
    assert any(("buffer 'k_cache'" in e or "buffer 'v_cache'" in e) and "task 'attn_partial' tile (" in e
               and "read it before task '" in e for e in caught)


def test_kv_cache_argument_must_be_updatable():
    module = attn_program(8).module()
    _, args = attn_case(1, 8)
    args["k_cache"] = args["k_cache"].astype(np.float64)
    with pytest.raises(EtcError, match="kv_cache argument 'k_cache' must be a writeable C-contiguous numpy array"):
        execute(module, args)
    _, args = attn_case(2, 8)
    args["v_cache"] = args["v_cache"][:, :, :7].copy()
    with pytest.raises(EtcError, match=r"argument 'v_cache' dim 2 \(kv_len\): expected 8 \(from 'k_cache'\), got 7"):
        execute(module, args)


# ---------------------------------------------------------------- elementwise bodies through the executor


def test_elementwise_task_body_from_the_module():
    p = Program([("batch", 1, 4)], workers=2)
    p.buffer("x", "input", "bf16", "s0, 20")
    p.buffer("scale", "input", "bf16", "s0, 1")
    p.buffer("y", "output", "bf16", "s0, 20", output_index=0)
    p.task("scaled", "elementwise", "s0, 3", ["x", "scale"], ["y"],
           params={"tile_c": 8, "body": "mul_add_one", "broadcast": ["full", "row"]})
    p.spread([0])
    body = """
func.func private @mul_add_one(%x: bf16, %s: bf16) -> bf16 {
  %p = arith.mulf %x, %s : bf16
  %one = arith.constant 1.0 : bf16
  %y = arith.addf %p, %one : bf16
  return %y : bf16
}"""
    module = ir_module(p.text() + body)
    x, s = torch.randn(3, 20).to(BF), torch.randn(3, 1).to(BF)
    for seed in range(3):
        (y,) = execute(module, {"x": x.float().numpy(), "scale": s.float().numpy()}, seed=seed)
        np.testing.assert_array_equal(y, (x * s + 1).float().numpy())


def ir_module(text):
    """An ir.Module (not its op), as a caller of the public API may hold one."""
    from mlir import ir

    ctx = mlir.new_context()
    with ctx:
        return ir.Module.parse(text)
