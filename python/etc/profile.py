"""The profiling build's tile records: a per-stage breakdown of one decode step and a per-SM timeline.

A bundle compiled with etc.compile(..., profile=True) stamps %globaltimer (ns) when the worker reaches
each tile, when it has issued the tile's first weight copies and starts its waits, when the waits are met
and when it has signalled, and in between the phases its tile kind stamps (linear: x staged, dot products
done, per-head steps done; attention_partial: q staged, chunk done, outputs stored);
Megakernel.profile() returns them as Records. No MLIR needed.

    recs = mk.profile()
    print(format_breakdown(breakdown(recs)))
    legend = timeline_png(recs, "timeline.png")      # {tile kind: colour}
"""
from __future__ import annotations

import collections
import dataclasses
import statistics

from etc.codegen.abi import PROFILE_PHASES


@dataclasses.dataclass(frozen=True)
class Record:
    task: int
    name: str
    kind: str
    tile: int
    worker: int
    start_ns: int
    end_ns: int
    phases: tuple[int, ...] = ()  # the tile's phase stamps (ns), 0 where the tile kind stamps none
    reached_ns: int = 0  # the worker came to the tile (0: a bundle without these stamps)
    polled_ns: int = 0  # it had issued the tile's first weight copies and started the waits


def records(meta: dict, words: list[int]) -> list[Record]:
    """Records of the tiles that ran, from the bundle metadata and the profile buffer's i64 words."""
    profile = meta.get("profile") or {}
    # [start, end, worker, phases..., reached, polled]; older bundles: 3 words, or 6 (no reached, polled)
    n = int(profile.get("record_words", 3))
    offsets = {int(k): v for k, v in (profile.get("offsets") or {}).items()}
    tasks = {t["id"]: t for t in meta["tasks"]}
    ends = sorted(offsets.values()) + [len(words) // n]
    out = []
    for task_id, first in offsets.items():
        last = min(e for e in ends if e > first) if any(e > first for e in ends) else first
        for tile in range(last - first):
            start, end, worker, *rest = words[n * (first + tile): n * (first + tile) + n]
            if start and end:  # tiles beyond this step's sizes never ran
                t = tasks[task_id]
                phases, stamps = rest[:PROFILE_PHASES], rest[PROFILE_PHASES:]
                reached, polled = stamps if len(stamps) == 2 else (0, 0)
                out.append(Record(task_id, t["name"], t["kind"], tile, worker, start, end, tuple(phases),
                                  reached, polled))
    return out


def phase_spans(r: Record) -> list[float] | None:
    """us from the start to each phase stamp, then to the end (None when the tile stamped no phase). An
    unstamped phase takes the previous point's time, so its span is 0."""
    if not any(r.phases):
        return None
    spans, prev = [], r.start_ns
    for p in list(r.phases) + [r.end_ns]:
        point = p or prev
        spans.append((point - prev) / 1e3)
        prev = point
    return spans


def arrival_spans(r: Record, previous_end_ns: int | None) -> list[float] | None:
    """us from the end of the worker's previous tile to reaching this one (0 for the worker's first tile),
    then to issuing its first weight copies, then to its waits being met (None without these stamps)."""
    if not r.reached_ns:
        return None
    into = (r.reached_ns - previous_end_ns) / 1e3 if previous_end_ns else 0.0
    return [into, (r.polled_ns - r.reached_ns) / 1e3, (r.start_ns - r.polled_ns) / 1e3]


def breakdown(recs: list[Record]) -> list[dict]:
    """Per task, in start order: first start and last end (us from the step's first start), busy time
    summed over its tiles, the median and the longest tile (waits met to signal), tiles and workers used;
    where the tiles stamped them, the mean us per tile from the worker's previous tile end to reaching the
    tile, to issuing its weights and to its waits met (arrival_spans), and from the start to the first
    phase, between phases, and from the last phase to the end."""
    if not recs:
        return []
    t0 = min(r.start_ns for r in recs)
    by_task, by_worker = collections.defaultdict(list), collections.defaultdict(list)
    for r in recs:
        by_task[r.task].append(r)
        by_worker[r.worker].append(r)
    previous_end = {}
    for rs in by_worker.values():
        rs.sort(key=lambda r: r.start_ns)
        for before, r in zip(rs, rs[1:]):
            previous_end[(r.task, r.tile)] = before.end_ns
    rows = []
    for task, rs in by_task.items():
        spans = [(r.end_ns - r.start_ns) / 1e3 for r in rs]  # each tile's, waits met to signal
        rows.append({"task": task, "name": rs[0].name, "kind": rs[0].kind, "tiles": len(rs),
                     "workers": len({r.worker for r in rs}),
                     "start_us": (min(r.start_ns for r in rs) - t0) / 1e3,
                     "end_us": (max(r.end_ns for r in rs) - t0) / 1e3,
                     "busy_us": sum(spans),
                     # a stage ends with its slowest tiles: the median tile and the slowest one
                     "tile_us": (statistics.median(spans), max(spans)),
                     "arrival_us": _mean_spans([arrival_spans(r, previous_end.get((r.task, r.tile))) for r in rs]),
                     "phase_us": _mean_spans([phase_spans(r) for r in rs])})
    return sorted(rows, key=lambda row: (row["start_us"], row["task"]))


def _mean_spans(spans: list) -> list[float] | None:
    stamped = [s for s in spans if s is not None]
    if not stamped:
        return None
    return [sum(col) / len(stamped) for col in zip(*stamped)]


def format_breakdown(rows: list[dict]) -> str:
    arrivals = any(r.get("arrival_us") for r in rows)
    lines = [f"{'task':<44} {'kind':<18} {'tiles':>5} {'SMs':>4} {'start':>8} {'end':>8} {'busy':>8} "
             f"{'tile p50   max':>15}  "
             + ("arrival (us)       " if arrivals else "") + "per-tile phases (us)"]
    for r in rows:
        cols = [f"{r['name'][:44]:<44} {r['kind']:<18} {r['tiles']:>5} {r['workers']:>4} "
                f"{r['start_us']:>8.1f} {r['end_us']:>8.1f} {r['busy_us']:>8.1f} "
                f"{r['tile_us'][0]:>9.2f} {r['tile_us'][1]:>5.2f}"]
        if arrivals:  # blank where this task's tiles have no arrival stamps, to keep the phases aligned
            cols.append(" ".join(f"{x:5.2f}" for x in r["arrival_us"]) if r.get("arrival_us") else " " * 17)
        if r.get("phase_us"):
            cols.append(" ".join(f"{x:5.2f}" for x in r["phase_us"]))
        lines.append("  ".join(cols).rstrip())
    if arrivals:
        lines.append("arrival: mean us from the worker's previous tile end to reaching the tile, to issuing its "
                     "first weight copies, to its waits met")
    if any(r.get("phase_us") for r in rows):
        lines.append("per-tile phases: mean us from the waits met to phase 0, to phase 1, to phase 2, to the signal "
                     "(linear: stage x, dot products, per-head steps, tail; attention_partial: stage q, chunk, "
                     "outputs, tail)")
    if rows:
        lines.append("tile p50, max: us from a tile's waits met to its signal, the median tile and the slowest")
        lines.append(f"step: {max(r['end_us'] for r in rows):.1f} us from the first tile start to the last signal")
    return "\n".join(lines)


# Tile-kind colours of the timeline (RGB), given to the kinds in name order.
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def timeline_png(recs: list[Record], path, *, width: int = 1600, row_px: int = 5) -> dict[str, str]:
    """A per-SM timeline picture: one row of `row_px` pixels per SM (worker), time left to right over
    `width` pixels, one bar per tile coloured by tile kind, grey ticks every 10 us. Written with numpy
    and zlib only (no plotting library on GPU machines). Returns {kind: "#rrggbb"}, the legend."""
    import struct
    import zlib

    import numpy as np

    t0 = min(r.start_ns for r in recs)
    span = max(max(r.end_ns for r in recs) - t0, 1)
    kinds = sorted({r.kind for r in recs})
    colors = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(kinds)}
    workers = max(r.worker for r in recs) + 1
    img = np.full((workers * row_px, width, 3), 255, dtype=np.uint8)
    for us in range(0, int(span / 1e3) + 1, 10):
        img[:, min(width - 1, int(us * 1e3 / span * (width - 1))), :] = 220
    for r in recs:
        x0 = int((r.start_ns - t0) / span * (width - 1))
        x1 = max(x0 + 1, int((r.end_ns - t0) / span * (width - 1)))
        y = r.worker * row_px
        img[y:y + max(1, row_px - 1), x0:x1, :] = colors[r.kind]
    raw = b"".join(b"\x00" + row.tobytes() for row in img)  # filter type 0 per scanline

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, img.shape[0], 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)
    return {k: "#%02x%02x%02x" % c for k, c in colors.items()}
