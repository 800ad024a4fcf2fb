"""The profiling build's tile records: a per-stage breakdown of one decode step and a per-SM timeline.

A bundle compiled with etc.compile(..., profile=True) stamps %globaltimer (ns) when each tile's waits
are met and when it has signalled; Megakernel.profile() returns them as Records. No MLIR needed.

    recs = mk.profile()
    print(format_breakdown(breakdown(recs)))
    timeline_png(recs, "timeline.png")
"""
from __future__ import annotations

import collections
import dataclasses


@dataclasses.dataclass(frozen=True)
class Record:
    task: int
    name: str
    kind: str
    tile: int
    worker: int
    start_ns: int
    end_ns: int


def records(meta: dict, words: list[int]) -> list[Record]:
    """Records of the tiles that ran, from the bundle metadata and the profile buffer's i64 words."""
    profile = meta.get("profile") or {}
    offsets = {int(k): v for k, v in (profile.get("offsets") or {}).items()}
    tasks = {t["id"]: t for t in meta["tasks"]}
    ends = sorted(offsets.values()) + [len(words) // 3]
    out = []
    for task_id, first in offsets.items():
        last = min(e for e in ends if e > first) if any(e > first for e in ends) else first
        for tile in range(last - first):
            start, end, worker = words[3 * (first + tile): 3 * (first + tile) + 3]
            if start and end:  # tiles beyond this step's sizes never ran
                t = tasks[task_id]
                out.append(Record(task_id, t["name"], t["kind"], tile, worker, start, end))
    return out


def breakdown(recs: list[Record]) -> list[dict]:
    """Per task, in start order: first start and last end (us from the step's first start), busy time
    summed over its tiles, tiles and workers used."""
    if not recs:
        return []
    t0 = min(r.start_ns for r in recs)
    by_task = collections.defaultdict(list)
    for r in recs:
        by_task[r.task].append(r)
    rows = []
    for task, rs in by_task.items():
        rows.append({"task": task, "name": rs[0].name, "kind": rs[0].kind, "tiles": len(rs),
                     "workers": len({r.worker for r in rs}),
                     "start_us": (min(r.start_ns for r in rs) - t0) / 1e3,
                     "end_us": (max(r.end_ns for r in rs) - t0) / 1e3,
                     "busy_us": sum(r.end_ns - r.start_ns for r in rs) / 1e3})
    return sorted(rows, key=lambda row: (row["start_us"], row["task"]))


def format_breakdown(rows: list[dict]) -> str:
    lines = [f"{'task':<44} {'kind':<18} {'tiles':>5} {'SMs':>4} {'start':>8} {'end':>8} {'busy':>8}  (us)"]
    for r in rows:
        lines.append(f"{r['name'][:44]:<44} {r['kind']:<18} {r['tiles']:>5} {r['workers']:>4} "
                     f"{r['start_us']:>8.1f} {r['end_us']:>8.1f} {r['busy_us']:>8.1f}")
    if rows:
        lines.append(f"step: {max(r['end_us'] for r in rows):.1f} us from the first tile start to the last signal")
    return "\n".join(lines)


def timeline_png(recs: list[Record], path, *, title: str = "") -> None:
    """One row per SM (worker), one bar per tile, coloured by tile kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = min(r.start_ns for r in recs)
    kinds = sorted({r.kind for r in recs})
    colors = {k: plt.cm.tab10(i % 10) for i, k in enumerate(kinds)}
    workers = max(r.worker for r in recs) + 1
    fig, ax = plt.subplots(figsize=(14, max(4, workers * 0.06)))
    for r in recs:
        ax.barh(r.worker, (r.end_ns - r.start_ns) / 1e3, left=(r.start_ns - t0) / 1e3, height=0.8,
                color=colors[r.kind], linewidth=0)
    ax.set_xlabel("us since the step's first tile")
    ax.set_ylabel("SM (worker)")
    ax.set_title(title or "megakernel decode step")
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colors[k]) for k in kinds], labels=kinds,
              loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
