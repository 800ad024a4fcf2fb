"""Why freshly loaded instances of one bundle differ in step time (2-5% on the H200, BENCHMARKS.md).

    python tools/gpu/instance_spread.py MODEL BUNDLE [BUNDLE ...] --instances N [--batch B] [--ctx C]

Loads each bundle N times (round-robin), as `etc bench --instances` does, with the bench's inputs (seeded
random weights, every sequence at ctx - 1). Per instance it times 100 steps twice (is an instance's time
its own?), then re-allocates the instance's workspace buffers (new addresses, same counters and code) and
times again (do the workspace addresses decide it?). Optionally also:
- --groups: each group of workspace buffers (one name across the layers) re-allocated alone;
- --untouched: while holding allocations as large as the workspace that the step never touches;
- --packed: the workspace packed at the step's sizes into one allocation (the logits compared);
- --arena: the workspace packed into one allocation at the largest step's sizes;
- --records (a profiling bundle): a step's tile records after the first timing and after the
  re-allocation (for tools/gpu/profile_stages.py).
Prints one JSON line per instance: the medians (ms) and the workspace buffers' addresses after each of
the two re-allocations.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import re
import statistics

import torch

from etc.bench import timings_ms
from etc.codegen.abi import PROFILE_BUFFER
from etc.models.decoder import CONFIGS, build_model, make_kv_caches
from etc.runtime import Megakernel


def median_ms(step) -> float:
    return round(statistics.median(timings_ms(step, iters=100)), 4)


def workspace(mk: Megakernel) -> list[tuple[int, int]]:
    """(buffer index, bytes) of every workspace buffer the runtime allocates, as Megakernel sizes them (not
    the profile records, which Megakernel keeps in a tensor of its own)."""
    sizes = mk.bundle.max_sizes()
    return [(i, max(1, mk.bundle.nbytes(b.name, sizes) // b.itemsize) * b.itemsize)
            for i, b in enumerate(mk.bundle.buffers) if b.role == "workspace" and b.name != PROFILE_BUFFER]


def groups(mk: Megakernel) -> dict[str, list[tuple[int, int]]]:
    """The workspace buffers by name with the layer numbers taken out (model.layers.mlp.down_proj.y)."""
    out = collections.defaultdict(list)
    for i, nbytes in workspace(mk):
        out[re.sub(r"\.\d+", "", mk.bundle.buffers[i].name)].append((i, nbytes))
    return dict(out)


def arena(mk: Megakernel, align: int, sizes: dict | None = None) -> tuple[int, int]:
    """Every workspace buffer packed into one new allocation (buffer order, `align`-byte offsets), each
    sized for `sizes` (None: the largest step, as Megakernel allocates them; a small step's sizes pack its
    workspace into a few pages). (its base, its bytes)"""
    spans, total = [], 0
    for i, nbytes in workspace(mk):
        if sizes is not None:
            nbytes = max(1, mk.bundle.nbytes(mk.bundle.buffers[i].name, sizes))
        spans.append((i, total))
        total += -(-nbytes // align) * align
    base = mk._rt.allocate(spans[0][0], total)  # noqa: SLF001 (zeroed, bound to the first buffer)
    mk._rt.bind({i: base + off for i, off in spans})  # noqa: SLF001
    return base, total


def untouched(mk: Megakernel, device="cuda") -> list:
    """Allocations the step never touches, one per workspace buffer and as large (torch tensors, so
    through PyTorch's allocator): does memory the step does not use move its time?"""
    return [torch.empty(nbytes, dtype=torch.uint8, device=device) for _, nbytes in workspace(mk)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("bundles", nargs="+")
    p.add_argument("--instances", type=int, default=8)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--ctx", type=int, default=1024)
    p.add_argument("--arena", type=int, default=0, help="also time the workspace packed at this alignment")
    p.add_argument("--packed", type=int, default=0,
                   help="also time the workspace packed at the step's sizes (256-byte offsets) this many times, "
                        "checking the logits against the first timing's")
    p.add_argument("--untouched", type=int, default=0,
                   help="also time this many times while holding allocations as large as the workspace that "
                        "the step never touches (`untouched`), freed after each timing")
    p.add_argument("--records", help="a profiling bundle's tile records after each timing go to this folder")
    p.add_argument("--groups", type=int, default=0,
                   help="also re-allocate each group of workspace buffers (`groups`) alone this many times, "
                        "timing after each: which buffers' placement moves the time")
    a = p.parse_args()
    c = CONFIGS[a.model]
    model = build_model(a.model, seed=0).cuda().eval()
    g = torch.Generator(device="cuda").manual_seed(a.batch)
    tokens = torch.randint(0, c.vocab_size, (a.batch,), device="cuda", generator=g)
    positions = torch.full((a.batch,), a.ctx - 1, dtype=torch.int64, device="cuda")
    k, v = make_kv_caches(c, a.batch, a.ctx, device="cuda")
    for t in k + v:
        t.normal_(generator=g)
    def keep_records(mk, name):  # one more step, its tile records kept
        if a.records:
            mk(tokens, positions, k, v)
            with open(os.path.join(a.records, name + ".json"), "w") as f:
                json.dump([dataclasses.asdict(r) for r in mk.profile()], f)

    if a.records:
        os.makedirs(a.records, exist_ok=True)
    for n in range(a.instances):
        for path in a.bundles:
            name = path.rstrip("/").split("/")[-1]
            with Megakernel.from_model(path, model) as mk:
                step = mk.prepare(tokens, positions, k, v)
                first, second = median_ms(step), median_ms(step)
                keep_records(mk, f"{name}.{n}")
                moved = {i: mk._rt.allocate(i, nbytes) for i, nbytes in workspace(mk)}  # noqa: SLF001
                third = median_ms(mk.prepare(tokens, positions, k, v))
                keep_records(mk, f"{name}.{n}.moved")
                again = {i: mk._rt.allocate(i, nbytes) for i, nbytes in workspace(mk)}  # noqa: SLF001
                fourth = median_ms(mk.prepare(tokens, positions, k, v))
                row = {}
                if a.groups:
                    row["group_ms"] = {}
                    for group, members in groups(mk).items():  # (not `name`: the row's bundle name)
                        row["group_ms"][group] = []
                        for _ in range(a.groups):
                            for i, nbytes in members:
                                mk._rt.allocate(i, nbytes)  # noqa: SLF001
                            row["group_ms"][group].append(median_ms(mk.prepare(tokens, positions, k, v)))
                if a.untouched:
                    row["untouched_ms"] = []
                    for _ in range(a.untouched):
                        held = untouched(mk)
                        row["untouched_ms"].append(median_ms(mk.prepare(tokens, positions, k, v)))
                        del held
                        torch.cuda.empty_cache()  # back to the driver: the next allocations land elsewhere
                if a.packed:
                    torch.cuda.synchronize()
                    logits = {n: t.clone() for n, t in step.outputs.items()}
                    row["packed_ms"], row["packed_base"] = [], []
                    for _ in range(a.packed):
                        base, total = arena(mk, 256, step.sizes)
                        row["packed_base"].append(hex(base))
                        row["packed_bytes"] = total
                        repacked = mk.prepare(tokens, positions, k, v)
                        row["packed_ms"].append(median_ms(repacked))
                        row["packed_same"] = all(torch.equal(repacked.outputs[n], t) for n, t in logits.items())
                if a.arena:  # the workspace packed into one allocation, twice
                    row["arena_ms"], row["arena_base"] = [], []
                    for _ in range(2):
                        row["arena_base"].append(hex(arena(mk, a.arena)[0]))
                        row["arena_ms"].append(median_ms(mk.prepare(tokens, positions, k, v)))
                print(json.dumps({"bundle": name, "instance": n, "ms": [first, second],
                                  "realloc_ms": [third, fourth], **row,
                                  "workspace": {i: [hex(moved[i]), hex(again[i])] for i in moved}}), flush=True)


if __name__ == "__main__":
    main()
