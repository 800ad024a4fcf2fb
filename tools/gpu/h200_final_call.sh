#!/usr/bin/env bash
# The device calls that produce the committed benchmark table (repo root on the GPU machine; $OUT comes
# back as final.tgz). A call has 10 minutes, so PART picks half of the work:
#   PART=1: etc bench with torch.compile at batch 1 for Llama-3.2-1B and Qwen3-0.6B, without it at
#           batches 4 and 16; etc profile of the *.prof bundles;
#   PART=2: Qwen3-8B at batches 1, 4, 16 (its best baseline is the CUDA graph; building the model and the
#           baselines takes minutes), then the GPU tests (1B accuracy static + dynamic, prepared step,
#           tiny models).
# Bundles: .gpu/bundles/MODEL.static (other MODEL.* variants are benched beside it), llama-3.2-1b.dynamic,
# tiny-*.static, tiny-llama.dynamic, *.prof; packed as .gpu/bundles.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/etc-out}; F=$OUT/final; mkdir -p "$F"
export PYTHONPATH=$PWD/python PYTHONUNBUFFERED=1
if [ "${PART:-1}" = 1 ]; then
  ( OUT=$F/a BENCH="llama-3.2-1b:1 qwen3-0.6b:1" BENCH_ARGS="--iters 100" BENCH_TIMEOUT=220 NOPROFILE=1 \
    timeout 230 bash tools/gpu/h200_bench.sh ) > "$F/a.log" 2>&1
  ( OUT=$F/b BENCH="llama-3.2-1b:4,16 qwen3-0.6b:4,16" BENCH_TIMEOUT=120 \
    timeout 330 bash tools/gpu/h200_bench.sh ) > "$F/b.log" 2>&1
else
  ( OUT=$F/c BENCH="qwen3-8b:1,4,16" BENCH_TIMEOUT=380 NOPROFILE=1 \
    timeout 390 bash tools/gpu/h200_bench.sh ) > "$F/c.log" 2>&1
  ETC_RUNTIME_LIB=$PWD/runtime/build/libetc_runtime.so ETC_GPU_BUNDLES=$PWD/.gpu/bundles ETC_GPU_RESULTS=$F/gpu.jsonl \
    timeout 180 python3 -m pytest -q -p no:cacheprovider test/python/test_gpu.py -k "1b or prepared or tiny" > "$F/pytest.txt" 2>&1
fi
tar czf "$OUT/final.tgz" -C "$OUT" final
