"""The code regions of one megakernel launch with the most warp stall samples (14), each with its
instruction mix (MUFU, HMMA, bulk copies, cp.async, shuffles, barriers: enough to tell which tile function
a region is) and its main stall reasons. Input: Nsight Compute's source page (tools/gpu/ncu_step.sh's
source.csv.gz); regions as in ncu_stalls.py.

    python3 tools/gpu/ncu_mix.py source.csv.gz
"""
import bisect
import collections
import csv
import gzip
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ncu_stalls import region_starts, regions  # noqa: E402

OPCODES = ("MUFU", "HMMA", "UBLKCP", "LDGSTS", "SHFL", "BAR")
REASONS = ("barrier", "long_sb", "no_inst", "wait", "short_sb", "selected")


def main(path: str, top: int = 14) -> None:
    rows = list(csv.reader(gzip.open(path, "rt")))
    data = rows[2:]
    base, starts = int(data[0][0], 16), region_starts(data)
    mix = collections.defaultdict(collections.Counter)
    for r in data:
        words = r[1].split()
        if words and words[0].startswith("@"):  # a predicate
            words = words[1:]
        if words:
            mix[starts[bisect.bisect_right(starts, int(r[0], 16)) - 1] - base][words[0].split(".")[0]] += 1
    per = regions(rows)
    total = sum(c["samples"] for c in per.values())
    for offset, c in sorted(per.items(), key=lambda kv: -kv[1]["samples"])[:top]:
        print(f"{offset:#9x} samples {c['samples']:7d} ({100 * c['samples'] / total:4.1f}%) executed "
              f"{c['executed']:9d} " + " ".join(f"{op} {mix[offset][op]}" for op in OPCODES)
              + f" insts {c['instructions']} " + " ".join(f"{k}:{c[k]}" for k in REASONS))


if __name__ == "__main__":
    main(sys.argv[1])
