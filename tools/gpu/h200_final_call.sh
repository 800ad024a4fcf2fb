#!/usr/bin/env bash
# The device call that produces the committed benchmark table (repo root on the GPU machine; $OUT comes
# back as final.tgz): etc bench with torch.compile for Llama-3.2-1B (batch 1, 4, 16) and Qwen3-0.6B
# (batch 1), without it for the other rows (Qwen3-8B's best baseline is the CUDA graph), then the 1B
# accuracy and prepared-step GPU tests. Bundles: .gpu/bundles/MODEL.static (+ llama-3.2-1b.dynamic,
# tiny-llama.static), packed as .gpu/bundles.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/etc-out}; F=$OUT/final; mkdir -p "$F"
export PYTHONPATH=$PWD/python PYTHONUNBUFFERED=1
( OUT=$F/a BENCH="llama-3.2-1b:1,4,16 qwen3-0.6b:1" BENCH_ARGS="--iters 100" BENCH_TIMEOUT=310 NOPROFILE=1 \
  timeout 320 bash tools/gpu/h200_bench.sh ) > "$F/a.log" 2>&1
( OUT=$F/b BENCH="qwen3-0.6b:4,16 qwen3-8b:1,4,16" BENCH_TIMEOUT=150 NOPROFILE=1 \
  timeout 160 bash tools/gpu/h200_bench.sh ) > "$F/b.log" 2>&1
ETC_RUNTIME_LIB=$PWD/runtime/build/libetc_runtime.so ETC_GPU_BUNDLES=$PWD/.gpu/bundles ETC_GPU_RESULTS=$F/gpu.jsonl \
  timeout 105 python3 -m pytest -q -p no:cacheprovider test/python/test_gpu.py -k "1b or prepared" > "$F/pytest.txt" 2>&1
tar czf "$OUT/final.tgz" -C "$OUT" final
