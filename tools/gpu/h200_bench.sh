#!/usr/bin/env bash
# One GPU-machine session of performance runs (run from the repo root there; results under $OUT).
# Prepare here first (needs MLIR): bundles .gpu/bundles/MODEL.VARIANT from `etc compile`, packed with
#   tar czf .gpu/bundles.tgz -C .gpu bundles        (PTX packs ~10x; a call carries 64 MiB at most)
# Then: builds the runtime; for each MODEL:BATCHES in $BENCH runs `etc bench` on every bundle
# .gpu/bundles/MODEL.* except profiling builds (*.prof*) and dynamic ones; runs `etc profile` on each
# .gpu/bundles/*.prof* bundle (unless $NOPROFILE is set). $BENCH_ARGS (default --no-compile --instances 3:
# one bundle's instances differ by up to ~4%, BENCHMARKS.md) goes to etc bench. $BENCH_TIMEOUT (default
# 480 s) limits each model's `etc bench`: Qwen3-8B needs about 5 minutes for two bundles at batches 1, 4
# and 16 with two instances (building the reference model and its f32 copy alone takes over a minute).
# The profiles (a breakdown, records and a timeline per bundle) are also packed into $OUT/profiles.tgz: the
# device tool brings back at most 8 files, so bring that one instead of the profile/ folder.
set -uo pipefail
OUT=${OUT:-/tmp/etc-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD/python PYTHONUNBUFFERED=1
if [ -f .gpu/bundles.tgz ] && [ ! -d .gpu/bundles ]; then tar xzf .gpu/bundles.tgz -C .gpu; fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader
  git rev-parse HEAD 2>/dev/null; date -u; } > "$OUT/machine.txt"
bash tools/gpu/build_runtime.sh > "$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
export ETC_RUNTIME_LIB=$PWD/runtime/build/libetc_runtime.so
for spec in ${BENCH:-llama-3.2-1b:1,4,16}; do
  model=${spec%%:*}; batches=${spec#*:}
  bundles=$(ls -d .gpu/bundles/"$model".* 2>/dev/null | grep -v -e '\.prof' -e '\.dynamic$')
  echo "== bench $model batches $batches: $(echo $bundles | xargs -n1 basename | tr '\n' ' ')" | tee -a "$OUT/bench.txt"
  timeout ${BENCH_TIMEOUT:-480} python3 -m etc.cli bench --model "$model" --bundle $bundles --batch ${batches//,/ } \
    --ctx ${CTX:-1024} ${BENCH_ARGS:---no-compile --instances 3} --out "$OUT/bench.jsonl" 2>&1 | tee -a "$OUT/bench.txt"
done
for p in $([ -z "${NOPROFILE:-}" ] && ls -d .gpu/bundles/*.prof* 2>/dev/null); do
  name=$(basename "$p")
  echo "== profile $name" | tee -a "$OUT/profile.txt"
  timeout 120 python3 -m etc.cli profile --bundle "$p" --batch ${PROFILE_BATCH:-1} --ctx ${CTX:-1024} \
    --out "$OUT/profile/$name" 2>&1 | tail -60 | tee -a "$OUT/profile.txt"
done
if [ -d "$OUT/profile" ]; then tar czf "$OUT/profiles.tgz" -C "$OUT" profile profile.txt; fi
