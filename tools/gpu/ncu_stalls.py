"""Warp stall samples of one megakernel launch per code region, from Nsight Compute's source page
(tools/gpu/ncu_step.sh writes it as source.csv.gz). A region is the kernel body (worker loop and the
inlined run functions) or one called function (a tile function: the targets of CALL instructions).

    python3 tools/gpu/ncu_stalls.py source.csv.gz             # per region
    python3 tools/gpu/ncu_stalls.py source.csv.gz 0xb41a0     # one region's instructions with >= 0.5%
                                                              # of its samples, in address order
"""
import bisect
import collections
import csv
import gzip
import sys

COLUMNS = ("barrier", "long_sb", "no_inst", "selected", "wait", "short_sb", "branch_resolving")


def region_starts(data: list[list[str]]) -> list[int]:
    """The regions' first addresses: the kernel's first instruction and every CALL target."""
    starts = {int(data[0][0], 16)}
    for r in data:
        if "CALL.REL" in r[1]:
            try:
                starts.add(int(r[1].split()[-1].rstrip(";"), 16))
            except ValueError:
                pass
    return sorted(starts)


def regions(rows: list[list[str]]) -> dict[int, collections.Counter]:
    """Per region (its offset from the kernel's first instruction): distinct instructions, those executed,
    instructions executed, and the samples of every stall reason (without the "stall_" prefix). `rows`:
    the CSV rows (a title row, the header, then one row per SASS instruction)."""
    header, data = rows[1], rows[2:]
    col = {h: i for i, h in enumerate(header)}
    stalls = [h for h in header if h.startswith("stall_") and "Not Issued" not in h]
    base = int(data[0][0], 16)
    starts = region_starts(data)
    out = {s - base: collections.Counter() for s in starts}
    for r in data:
        region = out[starts[bisect.bisect_right(starts, int(r[0], 16)) - 1] - base]
        executed = int(r[col["Instructions Executed"]] or 0)
        region["instructions"] += 1
        region["executed_distinct"] += executed > 0
        region["executed"] += executed
        for s in stalls:
            region[s[len("stall_"):]] += int(r[col[s]] or 0)
        region["samples"] += sum(int(r[col[s]] or 0) for s in stalls)
    return out


def main(path: str) -> None:
    per_region = regions(list(csv.reader(gzip.open(path, "rt"))))
    total = sum(c["samples"] for c in per_region.values())
    print(f"warp stall samples: {total}; per region (offset from the kernel start; KB = distinct executed "
          "instructions x 16 B)")
    print(f"{'region':>9} {'KB':>6} {'executed':>10} {'samples':>8} " + " ".join(f"{c:>8.8}" for c in COLUMNS))
    overall = collections.Counter()
    for offset, c in per_region.items():
        overall.update({k: v for k, v in c.items() if k not in ("instructions", "executed_distinct",
                                                                 "executed", "samples")})
        if c["samples"]:
            print(f"{offset:#9x} {c['executed_distinct'] * 16 / 1024:6.1f} {c['executed']:10d} {c['samples']:8d} "
                  + " ".join(f"{c[k]:8d}" for k in COLUMNS))
    print("all regions: " + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in overall.most_common(8)))


def hot(path: str, region: int) -> None:
    """The instructions of one region (offset from the kernel start) with >= 0.5% of its samples: offset,
    samples, times executed, SASS, the top three stall reasons."""
    rows = list(csv.reader(gzip.open(path, "rt")))
    header, data = rows[1], rows[2:]
    col = {h: i for i, h in enumerate(header)}
    stalls = [h for h in header if h.startswith("stall_") and "Not Issued" not in h]
    base, starts = int(data[0][0], 16), region_starts(data)
    mine = [r for r in data if starts[bisect.bisect_right(starts, int(r[0], 16)) - 1] - base == region]
    samples = {id(r): sum(int(r[col[s]] or 0) for s in stalls) for r in mine}
    total = sum(samples.values())
    print(f"region {region:#x}: {len(mine)} instructions, {total} samples")
    for r in mine:
        if total and samples[id(r)] >= 0.005 * total:
            top = sorted(((int(r[col[s]] or 0), s[len("stall_"):]) for s in stalls), reverse=True)[:3]
            print(f"{int(r[0], 16) - base:#9x} {samples[id(r)]:6d} {r[col['Instructions Executed']] or 0:>9}  "
                  f"{r[1].strip()[:60]:60} " + " ".join(f"{name}:{n}" for n, name in top if n))


if __name__ == "__main__":
    if len(sys.argv) > 2:
        hot(sys.argv[1], int(sys.argv[2], 16))
    else:
        main(sys.argv[1])
