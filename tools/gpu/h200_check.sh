#!/usr/bin/env bash
# One GPU-machine session of checks (run from the repo root there; results under $OUT):
# build the runtime, check every tile kind against the numpy reference, run the GPU tests on the
# prebuilt bundles in .gpu/bundles, and run compute-sanitizer memcheck on the tiny model.
# Prepare here first (needs MLIR): etc compile --model M --weights random --out .gpu/bundles/M.static,
# python tools/gpu/check_tiles.py --prepare .gpu/tiles; bundles may come packed as .gpu/bundles.tgz
# (tar czf .gpu/bundles.tgz -C .gpu bundles).
set -uo pipefail
OUT=${OUT:-/tmp/etc-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD/python PYTHONUNBUFFERED=1
if [ -f .gpu/bundles.tgz ] && [ ! -d .gpu/bundles ]; then tar xzf .gpu/bundles.tgz -C .gpu; fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; git rev-parse HEAD 2>/dev/null; date -u; } > "$OUT/machine.txt"
bash tools/gpu/build_runtime.sh > "$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
export ETC_RUNTIME_LIB=$PWD/runtime/build/libetc_runtime.so
if [ -d .gpu/tiles ]; then
  timeout 100 python3 tools/gpu/check_tiles.py --run .gpu/tiles > "$OUT/tiles.txt" 2>&1; echo "tiles rc=$?"
  grep -c PASS "$OUT/tiles.txt"; grep FAIL "$OUT/tiles.txt" | head -20
fi
ETC_GPU_BUNDLES=$PWD/.gpu/bundles ETC_GPU_RESULTS=$OUT/gpu.jsonl timeout ${GPU_TEST_TIMEOUT:-300} \
  python3 -m pytest -q -p no:cacheprovider test/python/test_gpu.py ${GPU_TEST_ARGS:-} 2>&1 | tail -25 | tee "$OUT/pytest.txt"
if [ -z "${SKIP_MEMCHECK:-}" ]; then
  timeout 100 compute-sanitizer --tool memcheck --print-limit 20 python3 -m etc.cli generate \
    --bundle .gpu/bundles/tiny-llama.static --max-new-tokens 8 > "$OUT/memcheck.txt" 2>&1; echo "memcheck rc=$?"
  tail -4 "$OUT/memcheck.txt"
fi
