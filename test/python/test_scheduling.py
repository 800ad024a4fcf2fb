"""Scheduling: event_tensor task grids -> sm_task tasks, static queues, ready queue, schedule summary."""
from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import etc
from etc import cost_model
from etc import mlir_adapter as mlir
from etc.pipeline import scheduling_pipeline
from etc.schedule_summary import summarize
from etc.sm_task_ir import SmTaskProgram

ROOT = Path(__file__).resolve().parents[2]


def synthetic(layers: int, grids_per_layer: int, tiles: int, symbolic_every: int = 0, fan_in: bool = True) -> str:
    """event_tensor IR of a decode-step-like chain: each grid waits tile by tile on the previous grid's
    event tensor (with fan_in, grid 0 of a layer waits on element 0 only, so its tiles all share one).
    Every `symbolic_every`-th grid is batch x tiles instead of tiles."""
    out = ["func.func @step() {",
           '  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 64 : i64} : () -> index',
           '  %t = "event_tensor.dim"() {name = "kv_len", min = 1 : i64, max = 4096 : i64} : () -> index',
           '  %x = "event_tensor.buffer"(%b) {name = "x", role = "workspace", element_type = bf16, '
           'sizes = affine_map<()[s0] -> (s0, 4096)>} : (index) -> !event_tensor.buf',
           f'  %w = "event_tensor.buffer"() {{name = "w", role = "weight", element_type = bf16, '
           f'sizes = affine_map<() -> ({tiles * 32}, 4096)>}} : () -> !event_tensor.buf']
    prev = None  # (ssa event, is_symbolic)
    for layer in range(layers):
        for g in range(grids_per_layer):
            name = f"l{layer}_g{g}"
            sym = bool(symbolic_every) and g % symbolic_every == symbolic_every - 1
            grid = f"({'s0, ' if sym else ''}{tiles})"
            coords = "(d0, d1)" if sym else "(d0)"
            last = "d1" if sym else "d0"
            out.append(f'  %e_{name} = "event_tensor.event_tensor"(%b, %t) {{name = "{name}", '
                       f'shape = affine_map<()[s0, s1] -> ({tiles})>, wait_count = affine_map<(d0)[s0, s1] -> (1)>}}'
                       ' : (index, index) -> !event_tensor.event')
            waits, wait_maps = [], []
            if prev is not None:
                waits.append(prev)
                spread = fan_in and g == 0
                wait_maps.append(f"affine_map<{coords}[s0, s1] -> ({'0' if spread else last})>")
            operands = ["%b", "%t", "%x", "%w", "%x"] + waits + [f"%e_{name}"]
            types = ["index", "index"] + ["!event_tensor.buf"] * 3 + ["!event_tensor.event"] * (len(waits) + 1)
            out.append(
                f'  "event_tensor.task_grid"({", ".join(operands)}) {{operandSegmentSizes = array<i32: 2, 2, 1, '
                f'{len(waits)}, 1>, name = "{name}", kind = "linear", grid = affine_map<()[s0, s1] -> {grid}>, '
                f'wait_maps = [{", ".join(wait_maps)}], notify_maps = [affine_map<{coords}[s0, s1] -> ({last})>], '
                'params = {tile_n = 32 : i64, in_features = 4096 : i64, read_roles = ["x", "weight"], '
                f'write_roles = ["y"]}}}} : ({", ".join(types)}) -> ()')
            prev = f"%e_{name}"
    out += ["  return", "}"]
    return "\n".join(out)


def scheduled(text: str, schedule: str = "static", num_sms: int = 132, extra: str = "") -> SmTaskProgram:
    module = etc.run_pipeline(text, "etc-verify-event-tensor,etc-derive-wait-counts," + scheduling_pipeline(
        schedule, num_sms) + extra)
    return SmTaskProgram.of(module)


def static_tiles(program: SmTaskProgram, sizes: dict) -> collections.Counter:
    """(task id, tile) -> how many times the static queues run it at `sizes`."""
    counts = collections.Counter()
    for entries in program.static_queues.values():
        for e in entries:
            for tile in e.tiles(program.task(e.task).tile_count(sizes)):
                counts[(e.task, tile)] += 1
    return counts


def simulate(program: SmTaskProgram, sizes: dict) -> list[tuple[int, int]]:
    """Run one step: workers take their static queue in order and, when the head is not ready or the
    queue is done, pop a ready dynamic tile. Returns the execution order; fails on a deadlock or a
    counter that ends off its target."""
    counters = {c.name: c for c in program.counters}
    count = collections.Counter()
    tiles = {}
    for task in program.tasks:
        extents = task.grid_extents(sizes)
        coords = [()]
        for n in extents:
            coords = [c + (i,) for c in coords for i in range(n)]
        tiles[task.id] = coords if all(n > 0 for n in extents) else []

    def ready(task, coords):
        syms = tuple(sizes[s] for s in task.symbols)
        for name, m in zip(task.waits, task.wait_maps):
            element = mlir.eval_map(m, coords, syms)
            c = counters[name]
            target = mlir.eval_map(c.target, element, tuple(sizes[s] for s in c.symbols))[0]
            if count[(name, element)] < target:
                return False
        return True

    def run(task, index):
        syms = tuple(sizes[s] for s in task.symbols)
        for name, m in zip(task.signals, task.signal_maps):
            count[(name, mlir.eval_map(m, tiles[task.id][index], syms))] += 1
        order.append((task.id, index))

    heads = {w: [(e.task, t) for e in q for t in e.tiles(len(tiles[e.task]))] for w, q in program.static_queues.items()}
    dynamic = [(t.id, i) for t in program.tasks if t.schedule == "dynamic" for i in range(len(tiles[t.id]))]
    order: list[tuple[int, int]] = []
    while any(heads.values()) or dynamic:
        progressed = False
        for w in range(program.kernel.num_workers):
            queue = heads.get(w, [])
            if queue and ready(program.task(queue[0][0]), tiles[queue[0][0]][queue[0][1]]):
                run(program.task(queue[0][0]), queue.pop(0)[1])
                progressed = True
                continue
            for k, (tid, i) in enumerate(dynamic):
                if ready(program.task(tid), tiles[tid][i]):
                    run(program.task(tid), dynamic.pop(k)[1])
                    progressed = True
                    break
        assert progressed, f"deadlock with {sum(map(len, heads.values()))} static and {len(dynamic)} dynamic tiles left"
    for (name, element), n in count.items():
        c = counters[name]
        assert n == mlir.eval_map(c.target, element, tuple(sizes[s] for s in c.symbols))[0], (name, element)
    return order


# ---------------------------------------------------------------- static queues


@pytest.mark.parametrize("schedule", ["static", "hybrid"])
@pytest.mark.parametrize("batch", [1, 5, 64])
def test_static_queues_cover_every_static_tile_once(schedule, batch):
    program = scheduled(synthetic(2, 5, 12, symbolic_every=2), schedule, num_sms=7)
    sizes = {"batch": batch, "kv_len": 300}
    counts = static_tiles(program, sizes)
    for task in program.tasks:
        n = task.tile_count(sizes)
        got = {tile: counts[(task.id, tile)] for tile in range(n)}
        if task.schedule == "static":
            assert got == {tile: 1 for tile in range(n)}, task.name
        else:
            assert not any(got.values()), task.name
    assert all(tile < program.task(tid).tile_count(sizes) for tid, tile in counts)
    assert program.kernel.num_workers == 7
    assert set(program.static_queues) <= set(range(7))


def test_queues_list_tasks_in_topological_order():
    program = scheduled(synthetic(3, 4, 20, symbolic_every=3), "static", num_sms=16)
    producers = {c: {t.id for t in program.tasks if c in t.signals} for c in (c.name for c in program.counters)}
    for task in program.tasks:
        assert all(p < task.id for c in task.waits for p in producers[c])
    for entries in program.static_queues.values():
        ids = [e.task for e in entries]
        assert ids == sorted(ids) and len(ids) == len(set(ids))


@pytest.mark.parametrize("schedule", ["static", "dynamic", "hybrid"])
@pytest.mark.parametrize("batch", [1, 3])
def test_schedules_run_to_completion(schedule, batch):
    program = scheduled(synthetic(2, 4, 6, symbolic_every=2), schedule, num_sms=5)
    order = simulate(program, {"batch": batch, "kv_len": 17})
    assert len(order) == sum(t.tile_count({"batch": batch, "kv_len": 17}) for t in program.tasks)


def test_busy_workers_are_avoided_and_finish_times_balance():
    """Two independent tasks: the second goes to the workers the first left idle."""
    text = synthetic(1, 1, 3).replace("  return", '  %e2 = "event_tensor.event_tensor"() {name = "other", shape = affine_map<() -> (1)>, '
                        'wait_count = affine_map<(d0) -> (1)>} : () -> !event_tensor.event\n'
                        '  "event_tensor.task_grid"(%x, %w, %x, %e2) {operandSegmentSizes = array<i32: 0, 2, 1, 0, 1>, '
                        'name = "other", kind = "linear", grid = affine_map<() -> (1)>, wait_maps = [], '
                        'notify_maps = [affine_map<(d0) -> (0)>], params = {tile_n = 32 : i64, in_features = 4096 : i64, '
                        'read_roles = ["x", "weight"], write_roles = ["y"]}} : (!event_tensor.buf, !event_tensor.buf, '
                        '!event_tensor.buf, !event_tensor.event) -> ()\n  return')
    program = scheduled(text, "static", num_sms=4)
    assert program.static_queues[3] == [type(program.static_queues[3][0])(1, 0, 1)]
    assert [e.task for w in range(3) for e in program.static_queues[w]] == [0, 0, 0]


def test_large_module_schedules_quickly():
    """16 layers x 10 grids of 128 tiles: the static schedule must stay far below 30 s."""
    ctx = etc.new_context()
    module = mlir.parse(synthetic(16, 10, 128, symbolic_every=5), ctx)
    etc.run_pipeline(module, "etc-derive-wait-counts,etc-lower-to-sm-task{policy=static}")
    start = time.perf_counter()
    etc.run_pipeline(module, "etc-static-schedule{num-sms=132}")
    elapsed = time.perf_counter() - start
    program = SmTaskProgram.of(module)
    # A chain of 128-tile grids: each runs one tile per worker on the same 128 workers; the grids that
    # grow with the batch (every 5th) list the other 4 workers too, for their tiles past 128.
    assert len(program.tasks) == 160 and len(program.static_queues) == 132
    counts = static_tiles(program, {"batch": 2, "kv_len": 1})
    assert len(counts) == sum(t.tile_count({"batch": 2, "kv_len": 1}) for t in program.tasks)
    assert set(counts.values()) == {1}
    assert elapsed < 10, f"etc-static-schedule took {elapsed:.1f} s"


# ---------------------------------------------------------------- lowering


HYBRID = """
func.func @step() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 8 : i64} : () -> index
  "event_tensor.task_grid"(%b) {operandSegmentSizes = array<i32: 1, 0, 0, 0, 0>, name = "const", kind = "gelu", grid = affine_map<()[s0] -> (4, 2)>, wait_maps = [], notify_maps = [], params = {}} : (index) -> ()
  "event_tensor.task_grid"(%b) {operandSegmentSizes = array<i32: 1, 0, 0, 0, 0>, name = "rows", kind = "gelu", grid = affine_map<()[s0] -> (s0, 2)>, wait_maps = [], notify_maps = [], params = {}} : (index) -> ()
  "event_tensor.task_grid"(%b) {operandSegmentSizes = array<i32: 1, 0, 0, 0, 0>, name = "pinned", kind = "gelu", schedule = "static", grid = affine_map<()[s0] -> (s0)>, wait_maps = [], notify_maps = [], params = {}} : (index) -> ()
  "event_tensor.task_grid"(%b) {operandSegmentSizes = array<i32: 1, 0, 0, 0, 0>, name = "freed", kind = "gelu", schedule = "dynamic", grid = affine_map<()[s0] -> (3)>, wait_maps = [], notify_maps = [], params = {}} : (index) -> ()
  return
}
"""


@pytest.mark.parametrize("policy, expected", [
    ("hybrid", ["static", "dynamic", "static", "dynamic"]),
    ("static", ["static"] * 4),
    ("dynamic", ["dynamic"] * 4),
])
def test_policy_marks_tasks(policy, expected):
    program = scheduled(HYBRID, policy, num_sms=4)
    assert [(t.id, t.name) for t in program.tasks] == [(0, "const"), (1, "rows"), (2, "pinned"), (3, "freed")]
    assert [t.schedule for t in program.tasks] == expected
    dynamic = [t.id for t, s in zip(program.tasks, expected) if s == "dynamic"]
    if dynamic:
        assert program.ready_queue.tasks == dynamic
        # Capacity: dynamic tiles at the max sizes (batch = 8).
        assert program.ready_queue.capacity == sum(t.tile_count({"batch": 8}) for t in program.tasks if t.id in dynamic)
    else:
        assert program.ready_queue is None


def test_early_push_and_explicit_capacity():
    module = etc.run_pipeline(HYBRID, "etc-lower-to-sm-task{policy=dynamic},etc-static-schedule{num-sms=2},"
                                      "etc-dynamic-schedule{early-push=true capacity=5}")
    queue = SmTaskProgram.of(module).ready_queue
    assert (queue.capacity, queue.tasks, queue.early_push) == (5, [0, 1, 2, 3], True)


def test_view_gives_plain_python_values():
    program = scheduled(synthetic(1, 2, 4), "static", num_sms=2)
    assert program.dims[0].name == "batch" and (program.dims[0].min, program.dims[0].max) == (1, 64)
    x = program.buffer("x")
    assert (x.role, x.element_type, x.symbols, x.output_index) == ("workspace", "bf16", ["batch"], None)
    assert x.shape({"batch": 3}) == (3, 4096)
    task = program.tasks[1]
    assert task.params == {"tile_n": 32, "in_features": 4096, "read_roles": ["x", "weight"], "write_roles": ["y"]}
    assert task.reads == ["x", "w"] and task.writes == ["x"] and task.waits == ["l0_g0"] and task.signals == ["l0_g1"]
    assert program.kernel.name == "step" and program.kernel.block_size == 256


def test_bad_input_is_a_located_error_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("ETC_REPRODUCER_DIR", str(tmp_path))
    bad = HYBRID.replace('schedule = "static"', 'schedule = "soon"')
    with pytest.raises(etc.PassFailure) as info:
        etc.run_pipeline(bad, scheduling_pipeline("hybrid", 4))
    assert str(info.value).startswith("pass 'etc-lower-to-sm-task' failed: <input>:6:3: error: task grid 'pinned' "
                                      "has schedule 'soon'")


def test_scheduling_pipeline_text():
    assert scheduling_pipeline("hybrid", 8, early_push=True) == (
        "etc-lower-to-sm-task{policy=hybrid block-size=256},etc-static-schedule{num-sms=8},"
        "etc-dynamic-schedule{early-push=true}")
    assert "block-size=512" in scheduling_pipeline("static", 8, block_size=512)
    for bad in (("sometimes", 8), ("static", 0), ("static", 8, False, 100), ("static", 8, False, 2048)):
        with pytest.raises(etc.PipelineError):
            scheduling_pipeline(*bad)


# ---------------------------------------------------------------- cost model and summary


def test_representative_sizes():
    from etc.sm_task_ir import Dim

    dims = [Dim("batch", 1, 64), Dim("kv_len", 1, 512), Dim("kv_len2", 1, 8192)]
    assert cost_model.representative_sizes(dims) == {"batch": 1, "kv_len": 512, "kv_len2": 1024}
    assert cost_model.representative_sizes(dims, {"batch": 4})["batch"] == 4
    with pytest.raises(etc.EtcError, match="outside its range"):
        cost_model.representative_sizes(dims, {"batch": 65})
    with pytest.raises(etc.EtcError, match="no symbolic size named heads"):
        cost_model.representative_sizes(dims, {"heads": 2})


TINY = """
func.func @tiny() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 4 : i64} : () -> index
  %x = "event_tensor.buffer"() {name = "x", role = "input", element_type = bf16, sizes = affine_map<() -> (3, 1000)>} : () -> !event_tensor.buf
  %y = "event_tensor.buffer"() {name = "y", role = "workspace", element_type = bf16, sizes = affine_map<() -> (3, 1000)>} : () -> !event_tensor.buf
  %z = "event_tensor.buffer"() {name = "z", role = "output", element_type = f32, sizes = affine_map<() -> (1, 500)>} : () -> !event_tensor.buf
  "sm_task.kernel"(%b, %x, %y, %z) {operandSegmentSizes = array<i32: 1, 3>, sym_name = "tiny", num_workers = 2 : i64, block_size = 128 : i64} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf) -> ()
  %c = "sm_task.counter"() {name = "c", shape = affine_map<() -> (1)>, target = affine_map<(d0) -> (3)>} : () -> !sm_task.counters
  "sm_task.task"(%x, %y, %c) {operandSegmentSizes = array<i32: 0, 1, 1, 0, 1>, id = 0 : i64, name = "p", kind = "gelu", schedule = "static", grid = affine_map<() -> (3, 1)>, wait_maps = [], signal_maps = [affine_map<(d0, d1) -> (0)>], params = {tile_c = 1000 : i64, read_roles = ["x"], write_roles = ["y"]}} : (!event_tensor.buf, !event_tensor.buf, !sm_task.counters) -> ()
  "sm_task.task"(%y, %z, %c) {operandSegmentSizes = array<i32: 0, 1, 1, 1, 0>, id = 1 : i64, name = "q", kind = "gelu", schedule = "static", grid = affine_map<() -> (1, 1)>, wait_maps = [affine_map<(d0, d1) -> (0)>], signal_maps = [], params = {tile_c = 1000 : i64, read_roles = ["x"], write_roles = ["y"]}} : (!event_tensor.buf, !event_tensor.buf, !sm_task.counters) -> ()
  "sm_task.task"(%x, %y) {operandSegmentSizes = array<i32: 0, 1, 1, 0, 0>, id = 2 : i64, name = "d", kind = "gelu", schedule = "dynamic", grid = affine_map<() -> (1, 1)>, wait_maps = [], signal_maps = [], params = {tile_c = 1000 : i64, read_roles = ["x"], write_roles = ["y"]}} : (!event_tensor.buf, !event_tensor.buf) -> ()
  "sm_task.static_queue"() {worker = 0 : i64, entries = array<i64: 0, 0, 2, 1, 0, 1>} : () -> ()
  "sm_task.static_queue"() {worker = 1 : i64, entries = array<i64: 0, 1, 2>} : () -> ()
  "sm_task.ready_queue"() {capacity = 1 : i64, tasks = array<i64: 2>, early_push = false} : () -> ()
  return
}
"""


def test_summary_matches_a_hand_computation():
    # 1000 B/us per worker, no overhead, free flops. A tile of p or d moves 1000 bf16 in and out: 4000 B = 4 us.
    # A tile of q reads 1000 bf16 (2000 B) and writes its 500 f32 (2000 B): 4 us too.
    machine = cost_model.Machine(num_sms=2, hbm_bytes_per_s=2e9, flops_per_s=1e30, tile_overhead_us=0.0)
    program = SmTaskProgram.of(mlir.parse(TINY, etc.new_context()))
    s = summarize(program, {"batch": 1}, machine)
    # Worker 0: p tiles 0 and 2 (0-4, 4-8), then q once all 3 p tiles signalled (8-12). Worker 1: p tile 1 (0-4).
    assert [(w.tasks, w.tiles, w.load_us) for w in s.workers] == [(2, 3, pytest.approx(12.0)), (1, 1, pytest.approx(4.0))]
    assert (s.dynamic_tasks, s.dynamic_tiles, s.dynamic_load_us) == (1, 1, pytest.approx(4.0))
    assert s.critical_path_us == pytest.approx(12.0)
    # mean = (12 + 4 + 4) / 2 = 10; max = 12.
    assert s.imbalance == pytest.approx(1.2)


def test_schedule_summary_flag(tmp_path):
    path = tmp_path / "tiny.mlir"
    path.write_text(TINY)
    out = subprocess.run([sys.executable, "-m", "etc.opt", str(path), "--schedule-summary", "--sizes", "batch=2"],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "python")))
    assert out.returncode == 0, out.stderr
    assert "2 workers, sizes batch=2" in out.stdout
    assert "estimated critical path:" in out.stdout and "load imbalance (max/mean worker load):" in out.stdout
    rows = [line.split() for line in out.stdout.splitlines() if line.split() and line.split()[0].isdigit()]
    assert [r[:3] for r in rows] == [["0", "2", "3"], ["1", "1", "1"]]
    bad = subprocess.run([sys.executable, "-m", "etc.opt", str(path), "--schedule-summary", "--sizes", "batch=9"],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "python")))
    assert bad.returncode == 1 and bad.stderr.strip() == "etc-opt: error: size batch=9 is outside its range [1, 4]"
