"""etc: ETC's command line.

  etc compile [--model NAME] [--weights meta|random] [--batch N] [--ctx T] [--out DIR]

Compiles a reference model as far as the pipeline goes today: torch.export + torch-mlir import with
symbolic batch and KV length and parameters as function arguments, then hands the IR to ETC's MLIR
context. It writes the IR and its metadata under --out and prints what was produced.
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

from etc.errors import EtcError

DEFAULT_MODEL = "llama-3.2-1b"


def _compile(args) -> int:
    from etc import mlir_adapter as mlir
    from etc.frontend.torch_import import export_torch_ir
    from etc.models import CONFIGS, build_model, dynamic_shapes_for, example_inputs

    if args.model not in CONFIGS:
        raise EtcError(f"unknown model '{args.model}'; known: {', '.join(CONFIGS)}")
    config = CONFIGS[args.model]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    model = build_model(args.model, weights=args.weights)
    example = example_inputs(config, batch=args.batch, ctx=args.ctx, device="meta" if args.weights == "meta" else None)
    imported = export_torch_ir(model, example, dynamic_shapes_for(config))
    ctx = mlir.new_context(allow_unregistered=True)
    module = mlir.parse(imported.text, ctx, f"{args.model}.torch.mlir")
    seconds = time.perf_counter() - start

    ir_path = out / f"{args.model}.torch.mlir"
    meta_path = out / f"{args.model}.import.json"
    ir_path.write_text(mlir.to_text(module, debug_info=True, generic=True))
    meta_path.write_text(imported.to_json())

    ops = collections.Counter()
    mlir.walk(module.operation, lambda op: ops.update([op.name]))
    weight_bytes = sum(p.dtype.itemsize * _numel(p.shape) for p in imported.params)
    print(f"model {args.model}: {config.num_layers} layers, hidden {config.hidden_size}, "
          f"{config.num_heads} heads / {config.num_kv_heads} KV heads, vocab {config.vocab_size}")
    print(f"imported through torch-mlir in {seconds:.1f} s ({args.weights} weights, none in the IR)")
    print("symbolic sizes: " + ", ".join(f"{n} in [{lo}, {hi}]" for n, (lo, hi) in imported.symbols.items()))
    print(f"parameters: {len(imported.params)} function arguments, {weight_bytes / 1e6:,.1f} MB when bound")
    for o in imported.outputs:
        if not o.aliases:
            print(f"output {o.index}: {o.name} {list(o.shape)}")
    aliased = [o for o in imported.outputs if o.aliases]
    if aliased:
        print(f"outputs {aliased[0].index}-{aliased[-1].index}: {len(aliased)} KV caches {list(aliased[0].shape)}, "
              "each aliasing its input (updated in place)")
    compute = [(n, k) for n, k in ops.most_common() if n.startswith(("torch.aten.", "torch.prims."))]
    print(f"{sum(ops.values())} ops; compute: " + ", ".join(f"{n[6:]} x{k}" for n, k in compute))
    print(f"wrote {ir_path} and {meta_path}")
    print("next stage (raising torch ops into event_tensor task grids) is not implemented yet")
    return 0


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d if isinstance(d, int) else 1
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="etc", description="ETC, the Event Tensor Compiler")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile", help="compile a reference model as far as the pipeline goes")
    c.add_argument("--model", default=DEFAULT_MODEL, help=f"reference model config (default {DEFAULT_MODEL})")
    c.add_argument("--weights", default="meta", choices=("meta", "random"), help="meta: shapes only (default)")
    c.add_argument("--batch", type=int, default=2, help="example batch for export (>= 2; batch stays symbolic)")
    c.add_argument("--ctx", type=int, default=16, help="example KV length for export (stays symbolic)")
    c.add_argument("--out", default="etc-out", help="output directory (default etc-out)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return _compile(args)
    except EtcError as e:
        print(f"etc: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
