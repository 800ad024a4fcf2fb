"""Decode latency, side by side in one run: the ETC megakernel, PyTorch eager, the same model captured in
a CUDA graph, and torch.compile(max-autotune-no-cudagraphs) captured in a CUDA graph.

Method: CUDA events around each step, warm-up first, the median of at least 100 steps. Like the CUDA graph
replays, the ETC step is bound to its tensors once (Megakernel.prepare) and each timed step is one launch;
etc_call_ms also times Megakernel.__call__, which checks and binds every input on each call. The floor is the
bytes one step must read (every weight once, plus the KV cache up to the context) over a read bandwidth
measured in the same run. Needs a CUDA GPU; the byte counting and the report work anywhere.

instances > 1 loads each bundle that many times, round-robin over the bundles (a, b, a, b, ...), and reports
the median of the instances' medians (etc_instances_ms lists them): on the H200 one bundle loaded twice in
one run measured 4.768 and 4.592 ms (Qwen3-8B batch 1), so a single instance cannot settle a few percent.
A step that hangs (the runtime's watchdog) ends the run: its kernel may still hold the GPU, so the rows
measured so far are reported (Hung) and `etc bench` exits with the hang's message.

    rows = run(model_name, batch=1, ctx=1024, bundles=["etc-out/llama-3.2-1b"])
    print(table(rows))
"""
from __future__ import annotations

import datetime
import json
import statistics
import subprocess
from pathlib import Path

from etc.errors import EtcError

ROW_KEYS = ("model", "batch", "ctx", "etc_ms", "eager_ms", "cudagraph_ms", "compile_ms", "floor_ms", "read_GBps",
            "gpu", "commit", "date")
EXTRA_KEYS = ("bundle", "etc_instances_ms", "etc_spread_ms", "cudagraph_spread_ms", "compile_spread_ms", "etc_call_ms", "etc_rel_err", "etc_vs_f32", "torch_vs_f32", "image", "etc_error")


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


def _exact_logits(model, tokens, positions, k, v):
    """The step's logits in f32 arithmetic (an f32 copy of the bf16 weights and caches): how far each bf16
    implementation is from exact tells bf16 rounding apart from wrong results."""
    import copy

    import torch

    exact = copy.deepcopy(model).float()
    with torch.no_grad():
        out = exact(tokens, positions, [t.float() for t in k], [t.float() for t in v])[0].float()
    del exact
    torch.cuda.empty_cache()
    return out


def need_cuda(what: str) -> None:
    """EtcError (one line) unless PyTorch sees a CUDA GPU."""
    import torch

    if not torch.cuda.is_available():
        raise EtcError(f"{what} needs a CUDA GPU; none is visible to PyTorch")


def step_bytes(config, batch: int, ctx: int) -> int:
    """Bytes one decode step must read: every weight once (tied embeddings once) and the K and V caches
    of every layer up to `ctx` slots."""
    c = config
    attn = c.hidden_size * (c.num_heads + 2 * c.num_kv_heads) * c.head_dim + c.num_heads * c.head_dim * c.hidden_size
    mlp = (3 if c.mlp == "silu" else 2) * c.hidden_size * c.intermediate_size
    norms = 2 * c.hidden_size + (2 * c.head_dim if c.qk_norm else 0)
    params = c.num_layers * (attn + mlp + norms) + c.vocab_size * c.hidden_size * (1 if c.tie_embeddings else 2)
    params += c.hidden_size
    item = 2  # bf16
    kv = c.num_layers * 2 * batch * c.num_kv_heads * ctx * c.head_dim * item
    return params * item + kv


def timings_ms(fn, *, warmup: int = 20, iters: int = 100, before=None) -> list[float]:
    """Milliseconds of each of `iters` runs of fn(), each between two CUDA events, after a warm-up;
    before(), when given, runs ahead of every timed run, outside the events (e.g. an L2 flush)."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        if before is not None:
            before()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def median_ms(fn, *, warmup: int = 20, iters: int = 100) -> float:
    """Median milliseconds of fn() (see timings_ms)."""
    return statistics.median(timings_ms(fn, warmup=warmup, iters=iters))


def spread(times: list[float]) -> list[float]:
    """[10th, 90th] percentile of the timed steps (ms, 4 decimals)."""
    if len(times) < 2:
        return [round(times[0], 4)] * 2 if times else [None, None]
    q = statistics.quantiles(times, n=10)
    return [round(q[0], 4), round(q[-1], 4)]


def read_bandwidth_gbps(nbytes: int = 4 << 30) -> float:
    """GB/s of a pure read (a sum over a large bf16 tensor), measured now."""
    import torch

    x = torch.randn(nbytes // 2, dtype=torch.bfloat16, device="cuda")
    ms = median_ms(lambda: x.sum(dtype=torch.float32), warmup=5, iters=30)
    del x
    return nbytes / (ms * 1e-3) / 1e9


def _graph(fn):
    """fn captured in a CUDA graph (static inputs): returns the replay function."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


class Hung(EtcError):
    """A bundle's step hung (the runtime's watchdog raised StepTimeout: its kernel may still be running) or
    faulted on the GPU (GpuFault: the CUDA context is lost), so nothing else can run on the GPU in this
    process. `rows` holds the rows measured so far (the failed bundle's and the ones not run carry
    etc_error); the caller reports them and exits at once."""

    def __init__(self, message: str, rows: list[dict]):
        super().__init__(message)
        self.rows = rows


def check_instances(instances: int) -> None:
    if instances < 1:
        raise EtcError(f"instances must be at least 1, not {instances}")


def measure_instances(bundles: list, instances: int, measure) -> dict:
    """Per bundle path, its row fields from `instances` measurements taken round-robin over the bundles.
    measure(path) -> (fields, step times in ms), or raises EtcError. A bundle's fields are its first
    instance's, with etc_ms the median of the instances' medians, etc_instances_ms those medians in order,
    etc_spread_ms the spread of all their steps and etc_rel_err / etc_vs_f32 the worst instance's; a
    failing instance gives the bundle etc_error (its first) and the other bundles still run, unless its
    step hung (StepTimeout) or faulted on the GPU (GpuFault: the CUDA context is lost): then nothing more
    runs, the bundles not run get an etc_error that says so, and out["hung"] holds the message."""
    from etc.runtime import GpuFault, StepTimeout

    firsts, medians, steps, errors = {}, {p: [] for p in bundles}, {p: [] for p in bundles}, {}
    hung, stopped = None, "hung"
    for _ in range(instances):
        for path in bundles:
            if path in errors or hung:
                continue
            try:
                fields, times = measure(path)
            except (StepTimeout, GpuFault) as e:  # the hung kernel may still run, or the context is lost:
                errors[path] = hung = str(e).splitlines()[0]  # run nothing after it
                stopped = "hung" if isinstance(e, StepTimeout) else "failed on the GPU"
                continue
            except EtcError as e:  # one bundle that does not load or run must not hide the others
                errors[path] = str(e).splitlines()[0]
                continue
            first = firsts.setdefault(path, dict(fields))
            for key in ("etc_rel_err", "etc_vs_f32"):
                if fields.get(key) is not None:
                    first[key] = max(first.get(key) or 0.0, fields[key])
            medians[path].append(statistics.median(times))
            steps[path] += times
    out = {}
    for path in bundles:
        row = dict(firsts.get(path, {}))
        if hung and path not in errors and len(medians[path]) < instances:
            errors[path] = f"not run: an earlier bundle's step {stopped} (restart the process)"
        if medians[path] and path not in errors:
            row.update(etc_ms=statistics.median(medians[path]), etc_spread_ms=spread(steps[path]),
                       etc_instances_ms=[round(m, 4) for m in medians[path]])
        else:
            row["etc_ms"] = None
        if path in errors:
            row["etc_error"] = errors[path]
        out[path] = row
    if hung:
        out["hung"] = hung
    return out


def run(name: str, *, batch: int = 1, ctx: int = 1024, bundle=None, seed: int = 0, iters: int = 100,
        with_compile: bool = True, bundles=None, model=None, instances: int = 1) -> list[dict]:
    """Benchmark rows for reference model `name` (random weights, bf16) at `batch` and `ctx`: the baselines
    are measured once, then one row per bundle (`bundle`, or each of `bundles`; none: one row without
    ETC), each bundle timed on `instances` freshly loaded Megakernels (measure_instances). Each row also
    gives etc_rel_err, ETC's logits against eager's on the timed inputs.
    model: the reference model already on the GPU (built from `name` and `seed` when None)."""
    import torch

    from etc.models.decoder import CONFIGS, build_model, make_kv_caches

    check_instances(instances)
    need_cuda("etc bench")
    if name not in CONFIGS:
        raise EtcError(f"unknown model '{name}'; known: {', '.join(CONFIGS)}")
    c = CONFIGS[name]
    if ctx > c.max_context:
        raise EtcError(f"ctx {ctx} exceeds {name}'s max context {c.max_context}")
    bundles = list(bundles or ([bundle] if bundle is not None else []))
    model = model if model is not None else build_model(name, seed=seed).cuda().eval()
    g = torch.Generator(device="cuda").manual_seed(seed + batch)
    tokens = torch.randint(0, c.vocab_size, (batch,), device="cuda", generator=g)
    positions = torch.full((batch,), ctx - 1, dtype=torch.int64, device="cuda")
    k, v = make_kv_caches(c, batch, ctx, device="cuda")
    for t in k + v:
        t.normal_(generator=g)
    base = {"model": name, "batch": batch, "ctx": ctx}
    read = read_bandwidth_gbps()
    base["read_GBps"] = round(read, 1)
    base["floor_ms"] = step_bytes(c, batch, ctx) / (read * 1e9) * 1e3

    def eager():
        with torch.no_grad():
            return model(tokens, positions, k, v)[0]

    reference = eager().float()  # the step writes slot ctx-1 in place: every later run computes the same
    exact = _exact_logits(model, tokens, positions, k, v)
    base["torch_vs_f32"] = _rel(reference, exact)
    base["eager_ms"] = median_ms(eager, iters=iters)
    graph_times = timings_ms(_graph(eager), iters=iters)
    base["cudagraph_ms"], base["cudagraph_spread_ms"] = statistics.median(graph_times), spread(graph_times)
    base["compile_ms"] = None
    if with_compile:
        compiled = torch.compile(model, mode="max-autotune-no-cudagraphs", dynamic=False)

        def compiled_step():
            with torch.no_grad():
                compiled(tokens, positions, k, v)

        compiled_step()
        compile_times = timings_ms(_graph(compiled_step), iters=iters)
        base["compile_ms"], base["compile_spread_ms"] = statistics.median(compile_times), spread(compile_times)
    base.update(gpu=torch.cuda.get_device_name(), commit=_commit(), date=datetime.date.today().isoformat())

    def measure(path):
        from etc.runtime import Megakernel

        with Megakernel.from_model(path, model) as mk:
            logits = mk(tokens, positions, k, v)[0].float()
            # timed like the graph replays: bound once, each step one launch (Megakernel.prepare)
            times = timings_ms(mk.prepare(tokens, positions, k, v), iters=iters)
            return {"etc_rel_err": _rel(logits, reference), "etc_vs_f32": _rel(logits, exact), "image": mk.image,
                    "etc_call_ms": median_ms(lambda: mk(tokens, positions, k, v), iters=max(10, iters // 5))}, times

    measured = measure_instances(bundles, instances, measure)
    rows = []
    for path in bundles or [None]:
        row = dict(base, etc_ms=None)
        if path is not None:
            row.update(measured[path], bundle=Path(path).name)
        rows.append({key: row.get(key) for key in ROW_KEYS + EXTRA_KEYS})
    if "hung" in measured:
        raise Hung(measured["hung"], rows)
    return rows


def run_batches(name: str, batches, **kwargs) -> list[dict]:
    """run() for each batch size, with the reference model built once. A hang (Hung) stops the batches
    too, its rows then holding every row measured."""
    from etc.models.decoder import CONFIGS, build_model

    check_instances(kwargs.get("instances", 1))
    need_cuda("etc bench")
    model = build_model(name, seed=kwargs.get("seed", 0)).cuda().eval() if name in CONFIGS else None
    rows = []
    for b in batches:
        try:
            rows += run(name, batch=b, model=model, **kwargs)
        except Hung as e:
            raise Hung(str(e), rows + e.rows) from None
    return rows


def _commit() -> str:
    """$ETC_COMMIT (a copied working tree may carry another HEAD), else git's HEAD."""
    import os

    if os.environ.get("ETC_COMMIT"):
        return os.environ["ETC_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table(rows: list[dict]) -> str:
    """The report: per row the times, the floor, the fraction of the floor reached, the speed-ups."""
    def ms(x):
        return "-" if x is None else f"{x:.3f}"

    def ratio(a, b):
        return "-" if a is None or b is None else f"{a / b:.2f}x"

    head = (f"{'model':<14} {'bundle':<24} {'B':>3} {'ctx':>5} {'etc':>8} {'eager':>8} {'graph':>8} {'compile':>8} {'floor':>7} "
            f"{'floor/etc':>9} {'vs eager':>8} {'vs graph':>8} {'vs comp.':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        etc_ms = r["etc_ms"]
        reached = "-" if etc_ms is None else f"{r['floor_ms'] / etc_ms:.0%}"
        lines.append(
            f"{r['model']:<14} {str(r.get('bundle') or '-'):<24} {r['batch']:>3} {r['ctx']:>5} {ms(etc_ms):>8} {ms(r['eager_ms']):>8} "
            f"{ms(r['cudagraph_ms']):>8} {ms(r['compile_ms']):>8} {ms(r['floor_ms']):>7} {reached:>9} "
            f"{ratio(r['eager_ms'], etc_ms):>8} {ratio(r['cudagraph_ms'], etc_ms):>8} {ratio(r['compile_ms'], etc_ms):>8}")
    lines += [f"{r['model']} {r.get('bundle')} batch {r['batch']}: {r['etc_error']}" for r in rows if r.get("etc_error")]
    return "\n".join(lines)


def write_rows(rows: list[dict], path) -> None:
    with open(path, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
