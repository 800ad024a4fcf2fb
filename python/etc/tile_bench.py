"""Tile micro-benchmarks: one tile kind at a time, each its own megakernel, against the read bandwidth.

Each case is a one-op PyTorch module (Llama-3.2-1B shapes; attention also Qwen3-8B's head_dim 128)
compiled with the profiling build, so the tile's time is read from its own %globaltimer stamps (first
tile start to last tile end, no launch in it), with L2 flushed before every step (the smaller weight
matrices would otherwise stay in L2); each task's mean phases come from the same stamps. Achieved
bandwidth = the bytes the op must move (inputs, weights, outputs once) over that time, next to a read
bandwidth measured in the same run and the same op in PyTorch (CUDA-graph replay,
launch included). Compile where MLIR is; run on the GPU:

    etc bench-tiles --compile DIR                  # one profiling bundle per case
    etc bench-tiles --bundles DIR [--batch 1 16] [--out rows.jsonl]
"""
from __future__ import annotations

import dataclasses
import inspect
import statistics
from pathlib import Path
from typing import Callable

from etc.errors import EtcError

L2_FLUSH_BYTES = 256 << 20  # written between timed steps; the H200's L2 holds 60 MB
ATTENTION_CTX = 1024  # the attention cases' cache slots, all visible


def _modules():
    import torch
    import torch.nn.functional as F
    from torch import nn

    from etc.models.decoder import RMSNorm

    bf16 = torch.bfloat16

    class Linear(nn.Module):  # a projection (q_proj / o_proj, down_proj, LM head shapes)
        def __init__(self, n, k):
            super().__init__()
            self.proj = nn.Linear(k, n, bias=False, dtype=bf16)

        def forward(self, x):
            return self.proj(x)

    class GateUp(nn.Module):  # the MLP's gate and up projections with SiLU * mul (one fused tile)
        def __init__(self, n, k):
            super().__init__()
            self.gate_proj = nn.Linear(k, n, bias=False, dtype=bf16)
            self.up_proj = nn.Linear(k, n, bias=False, dtype=bf16)

        def forward(self, x):
            return F.silu(self.gate_proj(x)) * self.up_proj(x)

    class Norm(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.norm = RMSNorm(k, 1e-5, dtype=bf16)

        def forward(self, x):
            return self.norm(x)

    class Embed(nn.Module):
        def __init__(self, vocab, k):
            super().__init__()
            self.embed = nn.Embedding(vocab, k, dtype=bf16)

        def forward(self, ids):
            return self.embed(ids)

    class Attention(nn.Module):  # decode attention over a KV cache (split-KV partials, the last split merging)
        def __init__(self, heads, kv_heads):
            super().__init__()
            self.heads, self.kv_heads = heads, kv_heads

        def forward(self, q, positions, k_cache, v_cache):
            B, T, D = q.shape[0], k_cache.shape[2], k_cache.shape[3]
            mask = (torch.arange(T, device=q.device)[None, :] <= positions[:, None])[:, None, None, :]
            out = F.scaled_dot_product_attention(q.view(B, 1, self.heads, D).transpose(1, 2), k_cache, v_cache,
                                                 attn_mask=mask, enable_gqa=self.heads > self.kv_heads)
            return out.transpose(1, 2).reshape(B, self.heads * D)

    return Linear, GateUp, Norm, Embed, Attention


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    make: Callable  # () -> nn.Module (on the meta device when compiling)
    inputs: Callable  # (batch, device) -> tuple of example inputs
    moved: Callable | None = None  # (batch) -> bytes the op must move, when not every buffer once
    kv_len: bool = False  # inputs 2 and 3 are KV caches whose dim 2 is the symbolic kv_len


def cases() -> list[Case]:
    import torch

    Linear, GateUp, Norm, Embed, Attention = _modules()

    def x(k):
        return lambda batch, device: (torch.randn(batch, k, dtype=torch.bfloat16, device=device),)

    def ids(vocab):
        return lambda batch, device: (torch.randint(0, vocab, (batch,), device=device),)

    def attention(heads, kv_heads, d, ctx=ATTENTION_CTX):
        def make(batch, device):
            cache = (batch, kv_heads, ctx, d)
            return (torch.randn(batch, heads * d, dtype=torch.bfloat16, device=device),
                    torch.full((batch,), ctx - 1, dtype=torch.int64, device=device),
                    torch.randn(cache, dtype=torch.bfloat16, device=device),
                    torch.randn(cache, dtype=torch.bfloat16, device=device))
        return make

    return [
        Case("linear 2048x2048 (q/o_proj)", lambda: Linear(2048, 2048), x(2048)),
        Case("linear 8192x2048 + silu*mul (gate/up)", lambda: GateUp(8192, 2048), x(2048)),
        Case("linear 2048x8192 (down_proj)", lambda: Linear(2048, 8192), x(8192)),
        Case("linear 128256x2048 (LM head)", lambda: Linear(128256, 2048), x(2048)),
        Case("rms_norm 2048", lambda: Norm(2048), x(2048)),
        # a gather moves only its rows (ids, one table row read and written per sequence)
        Case("embedding 128256x2048", lambda: Embed(128256, 2048), ids(128256),
             moved=lambda batch: batch * (8 + 2 * 2048 * 2)),
        # every slot visible: a step reads q, both caches whole, and writes the output
        Case("attention 32x64, 8 kv heads, ctx 1024 (Llama-1B)", lambda: Attention(32, 8),
             attention(32, 8, 64), kv_len=True),
        Case("attention 32x128, 8 kv heads, ctx 1024 (Qwen3-8B)", lambda: Attention(32, 8),
             attention(32, 8, 128), kv_len=True),
    ]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.split(" (")[0]).strip("-")


def compile_all(out_dir, num_sms: int = 132) -> list[Path]:
    """One profiling bundle per case (needs MLIR); batch is symbolic in [1, 16]."""
    import torch

    import etc

    out = []
    for case in cases():
        with torch.device("meta"):
            model = case.make()
        example = case.inputs(2, "meta")
        batch = torch.export.Dim("batch", min=1, max=16)
        dynamic = [{0: batch} for _ in example]
        if case.kv_len:
            kv_len = torch.export.Dim("kv_len", min=2, max=ATTENTION_CTX)
            dynamic[2] = dynamic[3] = {0: batch, 2: kv_len}
        path = Path(out_dir) / _slug(case.name)
        etc.compile(model, example, dynamic_shapes=tuple(dynamic), num_sms=num_sms, out=path, profile=True,
                    model_info={"name": case.name})
        out.append(path)
    return out


def moved_bytes(bundle, sizes) -> int:
    """Bytes the op must move once: every input, weight and output buffer at `sizes`."""
    return sum(bundle.nbytes(b.name, sizes) for b in bundle.buffers if b.role in ("input", "weight", "output"))


def run(bundles_dir, *, batch: int = 1, iters: int = 50) -> list[dict]:
    """Time every case whose bundle is in `bundles_dir` (GPU)."""
    import torch

    from etc.bench import _graph, need_cuda, read_bandwidth_gbps, timings_ms
    from etc.bundle import load
    from etc.runtime import Megakernel

    need_cuda("etc bench-tiles")
    read = read_bandwidth_gbps()
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device="cuda")
    rows = []
    for case in cases():
        path = Path(bundles_dir) / _slug(case.name)
        if not path.is_dir():
            continue
        bundle = load(path)
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = case.make()
        args = case.inputs(batch, "cuda")
        inputs = _inputs_by_name(bundle, model, args)
        with Megakernel.from_model(bundle, model) as mk:
            step = mk.prepare(inputs=inputs)
            spans, timed = [], []
            for i in range(10 + iters):
                flush.fill_(i)  # evict the last step's weights from L2: a step must read them from HBM
                step()
                step.wait()
                if i >= 10:
                    recs = mk.profile()
                    if not recs:
                        raise EtcError(f"{path}: the step left no tile records (not a profiling bundle?)")
                    spans.append((max(r.end_ns for r in recs) - min(r.start_ns for r in recs)) / 1e3)
                    timed += recs
            with torch.no_grad():
                ours = next(iter(step.outputs.values())).float()
                ref = model(*args).float()
            err = float((ours - ref).norm() / ref.norm().clamp_min(1e-30))
        with torch.no_grad():
            replay = _graph(lambda: model(*args))
        # the same op in PyTorch, replayed from a CUDA graph, L2 flushed too
        torch_ms = statistics.median(timings_ms(replay, warmup=10, iters=iters, before=lambda: flush.fill_(1)))
        us = statistics.median(spans)
        nbytes = case.moved(batch) if case.moved else moved_bytes(bundle, step.sizes)
        rows.append({"case": case.name, "batch": batch, "tile_us": round(us, 2), "bytes": nbytes,
                     "GBps": round(nbytes / us / 1e3, 1), "of_read_bw": round(nbytes / us / 1e3 / read, 3),
                     "read_GBps": round(read, 1), "torch_graph_us": round(torch_ms * 1e3, 2),
                     "tiles": len({(r.task, r.tile) for r in recs}), "tasks": task_phases(timed),
                     "rel_err_vs_torch": err,
                     "gpu": torch.cuda.get_device_name()})
    return rows


def task_phases(records) -> list[dict]:
    """Per task, in order: its kind, and the mean of its tiles' spans from the waits met (start) through
    each phase the tile kind stamps to its end (us), e.g. a linear's [x staged, dot, per-head steps, tail]."""
    by_task: dict[int, list] = {}
    for r in records:
        by_task.setdefault(r.task, []).append(r)
    out = []
    for task, recs in sorted(by_task.items()):
        stamped = [i for i in range(len(recs[0].phases)) if all(r.phases[i] for r in recs)]
        spans = [[b - a for a, b in zip(marks, marks[1:])]
                 for marks in ([r.start_ns] + [r.phases[i] for i in stamped] + [r.end_ns] for r in recs)]
        out.append({"task": recs[0].name, "kind": recs[0].kind,
                    "tile_us": round(statistics.mean(r.end_ns - r.start_ns for r in recs) / 1e3, 2),
                    "phases_us": [round(statistics.mean(col) / 1e3, 2) for col in zip(*spans)]})
    return out


def _inputs_by_name(bundle, model, args) -> dict:
    """The example inputs under the bundle's input names (forward's parameter names, in any order)."""
    given = dict(zip(inspect.signature(model.forward).parameters, args))
    names = [b.name for b in bundle.by_role("input")]
    missing = [n for n in names if n not in given]
    if missing:
        raise EtcError(f"{bundle.path}: bundle inputs {missing} are not parameters of the case's forward")
    return {n: given[n] for n in names}


def table(rows: list[dict]) -> str:
    head = f"{'case':<40} {'B':>3} {'tile us':>8} {'GB/s':>8} {'of read':>8} {'torch us':>9} {'rel err':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['case']:<40} {r['batch']:>3} {r['tile_us']:>8.2f} {r['GBps']:>8.1f} "
                     f"{r['of_read_bw']:>8.0%} {r['torch_graph_us']:>9.2f} {r['rel_err_vs_torch']:>8.1e}")
        for t in r.get("tasks", []):
            lines.append(f"    {t['kind']:<36} tile {t['tile_us']:.2f} us, phases " +
                         " / ".join(f"{p:.2f}" for p in t["phases_us"]))
    if rows:
        lines.append(f"read bandwidth measured in this run: {rows[0]['read_GBps']} GB/s")
    return "\n".join(lines)
