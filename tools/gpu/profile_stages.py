"""Per-layer stage spans and attention split tails from a profiling build's records (`etc profile --out D`
writes D/records.json). Names follow the Hugging Face models' (model.layers.N.self_attn.q_proj, ...,
attention.partial[.N]); runs on any machine, no GPU or MLIR.

    python tools/gpu/profile_stages.py D/records.json --layers 5 20

Stage span: from the stage's first tile's waits met to its last tile's signal; gap: from the previous
stage's last signal to this stage's first waits met. Attention splits: per split index (the grid's last
coordinate, `--splits` of them), the median times from the layer's first attention reach; then the tail
from a tile's outputs stored (phase 2) to its signal, for the last split of its kv group to end (which
merges the group) and for the others.
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import statistics as st

ORDER = ("q/k/v", "attention", "o_proj", "gate_proj", "down_proj")


def stage_of(name: str) -> str | None:
    if name.startswith("attention"):
        return "attention"
    if re.search(r"\.(q_proj|k_proj|v_proj)$", name):
        return "q/k/v"
    return next((s for s in ORDER[2:] if name.endswith("." + s)), None)


def layer_of(name: str) -> int | None:
    m = re.search(r"layers\.(\d+)\.", name)
    if m:
        return int(m.group(1))
    m = re.fullmatch(r"attention\.partial(?:\.(\d+))?", name)  # the n-th attention grid: layer n - 1
    return int(m.group(1) or 1) - 1 if m else None


def stages(records: list[dict], lo: int, hi: int) -> str:
    by = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in records:
        s, layer = stage_of(r["name"]), layer_of(r["name"])
        if s and layer is not None and lo <= layer <= hi:
            by[layer][s].append(r)
    rows, layers, prev = collections.defaultdict(list), [], None
    for layer in sorted(by):
        prev = prev if layer - 1 in by else None  # the previous layer's down_proj ends q/k/v's gap
        for s in ORDER:
            rs = by[layer][s]
            if not rs:
                continue
            a, b = min(r["start_ns"] for r in rs), max(r["end_ns"] for r in rs)
            rows[s].append(((b - a) / 1e3, (a - prev) / 1e3 if prev else None,
                            st.median((r["end_ns"] - r["start_ns"]) / 1e3 for r in rs)))
            prev = b
        if by[layer + 1]["q/k/v"] and by[layer]["q/k/v"]:
            layers.append((min(r["start_ns"] for r in by[layer + 1]["q/k/v"])
                           - min(r["start_ns"] for r in by[layer]["q/k/v"])) / 1e3)
    out = [f"layers {lo}-{hi}, medians over layers (us)", f"{'stage':<10} {'span':>6} {'gap':>6} {'tile p50':>9}"]
    for s in ORDER:
        if rows[s]:
            gaps = [g for _, g, _ in rows[s] if g is not None]
            out.append(f"{s:<10} {st.median(x for x, _, _ in rows[s]):6.2f} "
                       f"{st.median(gaps) if gaps else float('nan'):6.2f} {st.median(t for _, _, t in rows[s]):9.2f}")
    if layers:
        out.append(f"layer: {st.median(layers):.2f} (first q/k/v waits met to the next layer's)")
    return "\n".join(out)


def attention_splits(records: list[dict], lo: int, hi: int, splits: int) -> str:
    att = [r for r in records if r["kind"] == "attention_partial" and lo <= (layer_of(r["name"]) or -1) <= hi]
    per, last_count, tails = collections.defaultdict(list), collections.Counter(), {"last": [], "other": []}
    grids = collections.defaultdict(list)
    for r in att:
        grids[r["name"]].append(r)
    for rs in grids.values():
        t0 = min(r["reached_ns"] for r in rs)
        for r in rs:
            start = r["start_ns"]
            per[r["tile"] % splits].append(((r["reached_ns"] - t0) / 1e3, (r["start_ns"] - t0) / 1e3,
                                            *((p - start) / 1e3 for p in r["phases"][:3]),
                                            (r["end_ns"] - start) / 1e3))
        groups = collections.defaultdict(list)
        for r in rs:
            groups[r["tile"] // splits].append(r)
        for g in groups.values():
            g.sort(key=lambda r: r["end_ns"])
            last_count[g[-1]["tile"] % splits] += 1
            tails["last"].append((g[-1]["end_ns"] - g[-1]["phases"][2]) / 1e3)
            tails["other"] += [(r["end_ns"] - r["phases"][2]) / 1e3 for r in g[:-1]]
    out = ["attention splits, medians (us): reach and waits met from the grid's first reach; q staged, chunk "
           "done, outputs stored and signalled from the tile's waits met",
           f"{'split':>5} {'reach':>6} {'met':>6} {'q':>6} {'chunk':>6} {'out':>6} {'signal':>6} {'last':>5}"]
    for s in sorted(per):
        med = [st.median(c) for c in zip(*per[s])]
        out.append(f"{s:>5} " + " ".join(f"{x:6.2f}" for x in med) + f" {last_count[s]:>5}")
    out.append("last: how many (layer, kv group)s this split ended last in (it merges the group)")
    for k, v in tails.items():
        if v:
            out.append(f"outputs stored -> signal, {k} split of a group: {st.median(v):.2f} us")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records")
    ap.add_argument("--layers", type=int, nargs=2, default=(5, 20))
    ap.add_argument("--splits", type=int, default=8, help="attention splits per (row, kv group)")
    a = ap.parse_args()
    records = json.load(open(a.records))
    print(stages(records, *a.layers))
    print()
    print(attention_splits(records, *a.layers, a.splits))


if __name__ == "__main__":
    main()
