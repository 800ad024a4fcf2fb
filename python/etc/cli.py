"""etc: ETC's command line.

  etc compile  [--model NAME] [--weights meta|random] [--schedule static] [--num-sms 132] [--kv-chunk 128] [--tile-n N]
               [--profile] [--no-weight-stream] [--ring-kib 0] [--no-split-heads] [--no-wide-kv] [--spin-sleep 32] [--no-fuse FUSION] [--block-size 256] [--out DIR]
  etc generate --bundle DIR [--model NAME] [--seed 0] [--batch 1] [--prompt-len 4] [--max-new-tokens 32]
  etc bench    --model NAME [--bundle DIR ...] [--batch 1 ...] [--ctx 1024] [--no-compile] [--out rows.jsonl]
  etc bench-tiles --compile DIR | --bundles DIR [--batch 1 ...] [--out rows.jsonl]
  etc profile  --bundle DIR [--model NAME] [--batch 1] [--ctx 1024] [--out DIR]

`compile` turns a reference model's decode step into a megakernel bundle (PTX, task tables, metadata;
no weights) and prints what it built. `generate` runs a bundle on the GPU with the reference model's
seeded random weights, next to PyTorch, and prints both greedy continuations. `bench` times a decode
step of the bundle against PyTorch eager, a CUDA graph and torch.compile on the GPU (etc.bench).
`profile` runs one step of a profiling bundle (etc compile --profile) and writes the per-stage
breakdown (with the mean per-tile phases of linear and attention tiles) and a per-SM timeline picture.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sys
import time
from pathlib import Path

from etc.errors import EtcError

DEFAULT_MODEL = "llama-3.2-1b"
# = etc.pipeline.FUSIONS, then etc.pipeline.MERGE_PER_BATCH (kept apart: importing etc.pipeline needs MLIR)
FUSIONS = ("norm-linear", "linear-residual", "silu-mul", "rope-kv-append", "head-norm-attention", "attention-merge",
           "attention-merge-last", "attention-merge-per-batch")


def compile_reference(name: str, out, *, weights: str = "meta", schedule: str = "static", num_sms: int = 132,
                      kv_chunk: int = 128, seed: int = 0, profile: bool = False,
                      weight_stream: bool = True, block_size: int = 256, no_fuse=(), split_heads: bool = True,
                      spin_sleep_ns: int = 32, tile_n: int = 0, ring_kib: int = 0, wide_kv: bool = True) -> Path:
    """Compile reference model `name` (etc.models) into a bundle at `out`."""
    import etc
    from etc.models import CONFIGS, build_model, dynamic_shapes_for, example_inputs

    if name not in CONFIGS:
        raise EtcError(f"unknown model '{name}'; known: {', '.join(CONFIGS)}")
    config = CONFIGS[name]
    # the per-batch and last-split merges are named only when off: their defaults follow the schedule
    fuse = {f: f not in no_fuse for f in FUSIONS
            if f not in ("attention-merge-per-batch", "attention-merge-last") or f in no_fuse}
    model = build_model(name, weights=weights, seed=seed)
    example = example_inputs(config, batch=2, ctx=16, device="meta" if weights == "meta" else None)
    etc.compile(model, example, dynamic_shapes=dynamic_shapes_for(config), schedule=schedule, num_sms=num_sms,
                kv_chunk=kv_chunk, out=out, model_info={"name": name}, profile=profile, weight_stream=weight_stream, split_heads=split_heads,
                spin_sleep_ns=spin_sleep_ns, tile_n=tile_n, ring_kib=ring_kib, wide_kv=wide_kv,
                block_size=block_size, fuse=fuse)
    return Path(out)


def _compile(args) -> int:
    out = Path(args.out or f"etc-out/{args.model}")
    t0 = time.perf_counter()
    compile_reference(args.model, out, weights=args.weights, schedule=args.schedule, num_sms=args.num_sms,
                      kv_chunk=args.kv_chunk, profile=args.profile, weight_stream=not args.no_weight_stream,
                      split_heads=not args.no_split_heads, spin_sleep_ns=args.spin_sleep, tile_n=args.tile_n,
                      block_size=args.block_size, no_fuse=args.no_fuse, ring_kib=args.ring_kib,
                      wide_kv=not args.no_wide_kv)
    seconds = time.perf_counter() - t0
    meta = json.loads((out / "bundle.json").read_text())
    kinds = collections.Counter(t["kind"] for t in meta["tasks"])
    entries = meta["static_queues"]["entries"]
    ptx = (out / meta["ptx"]).stat().st_size
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in meta["compile_seconds"].items())
    print(f"compiled {args.model} in {seconds:.1f} s ({stages}) -> {out}")
    print("symbolic sizes: " + ", ".join(f"{s['name']} in [{s['min']}, {s['max']}]" for s in meta["symbols"]))
    print(f"{len(meta['tasks'])} task grids: " + ", ".join(f"{k} x{n}" for k, n in kinds.most_common()))
    print(f"{len(meta['counters'])} event tensors ({meta['counter_words']} counters); "
          f"{meta['num_workers']} workers x {meta['block_size']} threads, {len(entries) // 3} static queue entries")
    print(f"buffers: {sum(b['role'] == 'weight' for b in meta['buffers'])} weights (bound at load, none in the bundle), "
          f"{sum(b['role'] == 'kv_cache' for b in meta['buffers'])} KV caches updated in place")
    print(f"PTX: {ptx / 1e6:.2f} MB for {meta['kernel']} (target {meta['model'].get('target')})")
    r = meta.get("kernel_resources")
    print(f"ptxas: {r['registers']} registers per thread, {r['spill_stores']} B spill stores, {r['spill_loads']} B "
          f"spill loads, {r['stack']} B stack frame" if r else "ptxas: not assembled (the runtime JIT-compiles the PTX)")
    if r and "code_bytes" in r:
        print(f"code: {r['code_bytes'] / 1e6:.2f} MB in {meta['kernel']}, {r['function_bytes'] / 1e6:.2f} MB in the "
              f"{r['functions']} functions it calls")
    return 0


def _gpu_model(command: str, bundle: str, model_name: str | None, seed: int = 0):
    """(name, config, model on the GPU) of the reference model a bundle was compiled from."""
    from etc.bench import need_cuda
    from etc.models import CONFIGS, build_model

    need_cuda(command)
    meta = json.loads((Path(bundle) / "bundle.json").read_text())
    name = model_name or meta.get("model", {}).get("name")
    if name not in CONFIGS:
        raise EtcError(f"say which reference model the bundle was compiled from (--model); got {name!r}")
    return name, CONFIGS[name], build_model(name, seed=seed).cuda().eval()


def _generate(args) -> int:
    import torch

    from etc.models import make_kv_caches
    from etc.runtime import Megakernel

    name, c, model = _gpu_model("generate", args.bundle, args.model, args.seed)
    g = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(0, c.vocab_size, (args.batch, args.prompt_len), generator=g)
    with Megakernel.from_model(args.bundle, model) as mk:
        t0 = time.perf_counter()
        ours = mk.generate(prompt.cuda(), args.max_new_tokens)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    ref = _torch_generate(model, c, prompt.cuda(), args.max_new_tokens, make_kv_caches)
    for b in range(args.batch):
        print(f"sequence {b}: prompt {prompt[b].tolist()}")
        print(f"  etc:     {ours[b, args.prompt_len:].tolist()}")
        print(f"  pytorch: {ref[b, args.prompt_len:].tolist()}")
    same = torch.equal(ours.cpu(), ref.cpu())
    print(f"{args.max_new_tokens} new tokens x {args.batch} in {seconds:.3f} s; "
          f"{'same tokens as PyTorch' if same else 'DIFFERENT tokens from PyTorch'}")
    return 0 if same else 1


def _report(rows: list[dict], table: str, out) -> None:
    from etc import bench

    print(table)
    if out:
        bench.write_rows(rows, out)
        print(f"wrote {len(rows)} rows to {out}")


def _bench(args) -> int:
    from etc import bench

    try:
        rows = bench.run_batches(args.model, args.batch, ctx=args.ctx, bundles=args.bundle, iters=args.iters,
                                 with_compile=not args.no_compile, instances=args.instances)
    except bench.Hung as e:  # report what was measured, then leave: the hung kernel may hold the GPU
        _report(e.rows, bench.table(e.rows), args.out)
        print(f"etc: error: {e}", file=sys.stderr)
        _exit_now(1)
        return 1
    _report(rows, bench.table(rows), args.out)
    return 0


def _exit_now(code: int) -> None:
    """Exit without the interpreter's teardown, whose CUDA clean-up would wait for a hung kernel forever."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _bench_tiles(args) -> int:
    from etc import tile_bench

    if bool(args.compile) == bool(args.bundles):
        raise EtcError("etc bench-tiles takes --compile DIR (where MLIR is) or --bundles DIR (on the GPU)")
    if args.compile:
        for path in tile_bench.compile_all(args.compile):
            print(f"compiled {path}")
        return 0
    rows = [row for b in args.batch for row in tile_bench.run(args.bundles, batch=b)]
    _report(rows, tile_bench.table(rows), args.out)
    return 0


def _profile(args) -> int:
    import torch

    from etc.models import make_kv_caches
    from etc.profile import breakdown, format_breakdown, timeline_png
    from etc.runtime import Megakernel

    name, c, model = _gpu_model("profile", args.bundle, args.model)
    tokens = torch.randint(0, c.vocab_size, (args.batch,), device="cuda")
    positions = torch.full((args.batch,), args.ctx - 1, dtype=torch.int64, device="cuda")
    k, v = make_kv_caches(c, args.batch, args.ctx, device="cuda")
    for t in k + v:
        t.normal_()  # not zeros: they can run faster than real data
    with Megakernel.from_model(args.bundle, model) as mk:
        for _ in range(3):  # warm up, then keep the last step's records
            mk(tokens, positions, k, v)
        recs = mk.profile()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = format_breakdown(breakdown(recs))
    legend = timeline_png(recs, out / "timeline.png")
    text += (f"\ntimeline.png: {name} batch {args.batch} ctx {args.ctx}; one row per SM, ticks every 10 us; "
             + ", ".join(f"{k} {c}" for k, c in legend.items()))
    (out / "breakdown.txt").write_text(text + "\n")
    (out / "records.json").write_text(json.dumps([dataclasses.asdict(r) for r in recs]))
    print(text)
    print(f"wrote {out / 'breakdown.txt'} and {out / 'timeline.png'}")
    return 0


def _torch_generate(model, c, prompt, new, make_kv_caches):
    import torch

    batch, length = prompt.shape
    k, v = make_kv_caches(c, batch, length + new, device=prompt.device)
    out = [prompt]
    token = prompt[:, 0]
    with torch.no_grad():
        for pos in range(length + new - 1):
            logits, _, _ = model(token, torch.full((batch,), pos, device=prompt.device), k, v)
            token = prompt[:, pos + 1] if pos + 1 < length else logits.argmax(-1)
            if pos + 1 >= length:
                out.append(token[:, None])
    return torch.cat(out, dim=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="etc", description="ETC, the Event Tensor Compiler")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile", help="compile a reference model to a megakernel bundle")
    c.add_argument("--model", default=DEFAULT_MODEL, help=f"reference model config (default {DEFAULT_MODEL})")
    c.add_argument("--weights", default="meta", choices=("meta", "random"), help="meta: shapes only (default)")
    c.add_argument("--schedule", default="static", choices=("static", "dynamic"),
                   help="static per-SM queues, or the on-GPU ready queue")
    c.add_argument("--num-sms", type=int, default=132, help="workers (SMs) to schedule for (H200: 132)")
    c.add_argument("--kv-chunk", type=int, default=128, help="KV slots per attention split")
    c.add_argument("--tile-n", type=int, default=0,
                   help="output features of every linear tile (0: about one tile per SM; etc-tile's tile-n)")
    c.add_argument("--out", default=None, help="bundle directory (default etc-out/MODEL)")
    c.add_argument("--profile", action="store_true", help="stamp %%globaltimer per tile (for etc profile)")
    c.add_argument("--block-size", type=int, default=256, help="threads per worker block")
    c.add_argument("--no-fuse", action="append", default=[], choices=FUSIONS, metavar="FUSION",
                   help=f"turn a front-end fusion off (repeatable): {', '.join(FUSIONS)}")
    c.add_argument("--spin-sleep", type=int, default=32, metavar="NS",
                   help="nanoseconds a waiting worker sleeps between counter polls (0: spin)")
    c.add_argument("--no-split-heads", action="store_true",
                   help="keep whole heads in every rope / kv_append projection tile")
    c.add_argument("--no-wide-kv", action="store_true",
                   help="attention splits of --kv-chunk slots at every batch (default: twice that from "
                        "ceil(num-sms / (2 * kv heads)) rows on)")
    c.add_argument("--ring-kib", type=int, default=0, metavar="KIB",
                   help="KiB of the 128 KiB weight ring the streams use (32-128, steps of 16; 0: 64 for models of at "
                        "most 64 MiB of weights per worker, else 128)")
    c.add_argument("--no-weight-stream", action="store_true",
                   help="linear tiles load weights from global memory in every lane (no bulk-copy stream)")
    g = sub.add_parser("generate", help="run a bundle on the GPU next to PyTorch (random weights)")
    g.add_argument("--bundle", required=True)
    g.add_argument("--model", default=None, help="reference model of the bundle (default: from bundle.json)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch", type=int, default=1)
    g.add_argument("--prompt-len", type=int, default=4)
    g.add_argument("--max-new-tokens", type=int, default=32)
    b = sub.add_parser("bench", help="time a decode step: ETC vs eager, CUDA graph, torch.compile (GPU)")
    b.add_argument("--model", default=DEFAULT_MODEL)
    b.add_argument("--bundle", nargs="*", default=[], help="bundles of the model, one row each (none: baselines only)")
    b.add_argument("--batch", type=int, nargs="+", default=[1])
    b.add_argument("--ctx", type=int, default=1024)
    b.add_argument("--iters", type=int, default=100, help="timed steps per measurement (median)")
    b.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes of autotuning)")
    b.add_argument("--instances", type=int, default=1,
                   help="load and time each bundle this many times, round-robin; report the median")
    b.add_argument("--out", default=None, help="append JSON rows here")
    t = sub.add_parser("bench-tiles", help="time each tile kind on its own against the read bandwidth (GPU)")
    t.add_argument("--compile", default=None, metavar="DIR", help="write one profiling bundle per case (MLIR)")
    t.add_argument("--bundles", default=None, metavar="DIR", help="time the bundles in DIR (GPU)")
    t.add_argument("--batch", type=int, nargs="+", default=[1])
    t.add_argument("--out", default=None, help="append JSON rows here")
    p = sub.add_parser("profile", help="per-stage breakdown and per-SM timeline of one step (GPU)")
    p.add_argument("--bundle", required=True, help="a bundle compiled with --profile")
    p.add_argument("--model", default=None)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--ctx", type=int, default=1024)
    p.add_argument("--out", default="etc-profile")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    commands = {"compile": _compile, "generate": _generate, "bench": _bench, "bench-tiles": _bench_tiles,
                "profile": _profile}
    try:
        return commands[args.command](args)
    except EtcError as e:
        print(f"etc: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
