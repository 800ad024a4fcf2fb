"""How much of a timed decode step is the host's launch, not the GPU's work.

`etc bench` times a step like a CUDA graph replay: start event, launch, end event, on an idle GPU, so the
host's launch path (Python, the runtime, the driver) runs while the start event's clock already ticks. Here
every step is also timed with the launch queued behind a ~100 us GPU spin (torch.cuda._sleep) that comes
before the start event: then the events time only what the GPU does. The difference is the host's part.

    PYTHONPATH=python ETC_RUNTIME_LIB=... python3 tools/gpu/launch_gap.py --model llama-3.2-1b \
        --bundle .gpu/bundles/llama-3.2-1b.C [--bundle ...] [--batch 1] [--ctx 1024]
"""
from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    import torch

    from etc.bench import _graph, timings_ms
    from etc.models.decoder import CONFIGS, build_model, make_kv_caches
    from etc.runtime import Megakernel

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--bundle", action="append", default=[])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--ctx", type=int, default=1024)
    a = ap.parse_args()
    c = CONFIGS[a.model]
    model = build_model(a.model, seed=0).cuda().eval()
    g = torch.Generator(device="cuda").manual_seed(1)
    tokens = torch.randint(0, c.vocab_size, (a.batch,), device="cuda", generator=g)
    positions = torch.full((a.batch,), a.ctx - 1, dtype=torch.int64, device="cuda")
    k, v = make_kv_caches(c, a.batch, a.ctx, device="cuda")

    def spin():
        torch.cuda._sleep(200_000)  # ~100 us at 1.98 GHz: the launch is queued before the GPU gets to it

    def call_us(fn) -> float:
        """Median host microseconds of the call fn() itself (the GPU idle before each)."""
        times = []
        for _ in range(100):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
        return statistics.median(times) * 1e6

    def both(name, fn):
        for _ in range(2):  # twice: the first round may still warm clocks and caches
            host = statistics.median(timings_ms(fn))
            gpu = statistics.median(timings_ms(fn, before=spin))
            call = call_us(fn)
            print(f"{a.model} b{a.batch} {name:24s} timed as bench {host * 1e3:7.1f} us  GPU only {gpu * 1e3:7.1f} us"
                  f"  difference {(host - gpu) * 1e3:5.1f} us  host call {call:5.1f} us", flush=True)

    def eager():
        with torch.no_grad():
            model(tokens, positions, k, v)
    both("cuda graph", _graph(eager))
    for path in a.bundle:
        with Megakernel.from_model(path, model) as mk:
            step = mk.prepare(tokens, positions, k, v)
            both(path.rstrip("/").split("/")[-1], step)


if __name__ == "__main__":
    main()
