#!/usr/bin/env bash
# One device call of performance work (repo root on the GPU machine; $OUT comes back): etc bench and
# etc profile through tools/gpu/h200_bench.sh, the SASS of the main bundle, all packed as $OUT/perf.tgz
# (a call returns few files). $BENCH as in h200_bench.sh. With .gpu/tiles (check_tiles.py --prepare) the
# tile checks run first (tiles.txt).
set -uo pipefail
OUT=${OUT:-/tmp/etc-out}; mkdir -p "$OUT/perf"
if [ -d .gpu/tiles ]; then
  PYTHONPATH=$PWD/python timeout 120 python3 tools/gpu/check_tiles.py --run .gpu/tiles > "$OUT/perf/tiles.txt" 2>&1
  echo "tiles rc=$? $(grep -c PASS "$OUT/perf/tiles.txt") PASS"; grep FAIL "$OUT/perf/tiles.txt" | head -20
fi
OUT=$OUT/perf timeout ${PERF_TIMEOUT:-500} bash tools/gpu/h200_bench.sh > "$OUT/perf/run.log" 2>&1
if [ -n "${SASS_BUNDLE:-}" ] && command -v cuobjdump > /dev/null; then
  cuobjdump -sass ".gpu/bundles/$SASS_BUNDLE/kernel.cubin" | gzip > "$OUT/perf/$SASS_BUNDLE.sass.gz"
fi
tar czf "$OUT/perf.tgz" -C "$OUT" perf && rm -rf "$OUT/perf"
