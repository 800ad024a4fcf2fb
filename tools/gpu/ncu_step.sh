#!/usr/bin/env bash
# Nsight Compute on one decode step of a bundle (run on the GPU machine from the repo root, after
# tools/gpu/build_runtime.sh): warp stall reasons and per-instruction stall samples of the megakernel.
#   bash tools/gpu/ncu_step.sh MODEL BUNDLE_DIR   ->  $OUT/ncu/{details.txt, source.csv.gz}
set -uo pipefail
model=$1; bundle=$2; OUT=${OUT:-/tmp/etc-out}; mkdir -p "$OUT/ncu"
export PYTHONPATH=$PWD/python ETC_RUNTIME_LIB=$PWD/runtime/build/libetc_runtime.so
cat > /tmp/etc_ncu_step.py <<'PY'
import sys, torch
from etc.models.decoder import CONFIGS, build_model, make_kv_caches
from etc.runtime import Megakernel
name, path = sys.argv[1], sys.argv[2]
c = CONFIGS[name]
model = build_model(name, seed=0).cuda().eval()
tokens = torch.randint(0, c.vocab_size, (1,), device="cuda")
positions = torch.full((1,), 1023, dtype=torch.int64, device="cuda")
k, v = make_kv_caches(c, 1, 1024, device="cuda")
with Megakernel.from_model(path, model) as mk:
    step = mk.prepare(tokens, positions, k, v)
    for _ in range(6):
        step()
    torch.cuda.synchronize()
print("ran 6 steps")
PY
timeout 400 ncu --clock-control none -k regex:etc_megakernel --launch-skip 4 --launch-count 1 \
  --section WarpStateStats --section SourceCounters --section LaunchStats --section SpeedOfLight \
  -f -o "$OUT/ncu/step" python3 /tmp/etc_ncu_step.py "$model" "$bundle" > "$OUT/ncu/run.log" 2>&1
tail -5 "$OUT/ncu/run.log"
ncu -i "$OUT/ncu/step.ncu-rep" --page details > "$OUT/ncu/details.txt" 2>&1
ncu -i "$OUT/ncu/step.ncu-rep" --page source --csv --print-source sass 2> "$OUT/ncu/source.err" | gzip > "$OUT/ncu/source.csv.gz"
rm -f "$OUT/ncu/step.ncu-rep"
