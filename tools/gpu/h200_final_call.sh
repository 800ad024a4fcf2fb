#!/usr/bin/env bash
# The device call that produces the committed benchmark table (repo root on the GPU machine; $OUT comes
# back as final.tgz): etc bench with torch.compile at batch 1 for Llama-3.2-1B and Qwen3-0.6B, without it
# for batches 4 and 16 and for Qwen3-8B (whose best baseline is the CUDA graph); etc profile of the
# *.prof bundles; then the GPU tests (1B accuracy static + dynamic, prepared step, tiny models).
# Bundles: .gpu/bundles/MODEL.static (other MODEL.* variants are benched beside it), llama-3.2-1b.dynamic,
# tiny-*.static, tiny-llama.dynamic, *.prof; packed as .gpu/bundles.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/etc-out}; F=$OUT/final; mkdir -p "$F"
export PYTHONPATH=$PWD/python PYTHONUNBUFFERED=1
( OUT=$F/a BENCH="llama-3.2-1b:1 qwen3-0.6b:1" BENCH_ARGS="--iters 100" BENCH_TIMEOUT=220 NOPROFILE=1 \
  timeout 230 bash tools/gpu/h200_bench.sh ) > "$F/a.log" 2>&1
( OUT=$F/b BENCH="llama-3.2-1b:4,16 qwen3-0.6b:4,16 qwen3-8b:1,4,16" BENCH_TIMEOUT=110 \
  timeout 260 bash tools/gpu/h200_bench.sh ) > "$F/b.log" 2>&1
ETC_RUNTIME_LIB=$PWD/runtime/build/libetc_runtime.so ETC_GPU_BUNDLES=$PWD/.gpu/bundles ETC_GPU_RESULTS=$F/gpu.jsonl \
  timeout 90 python3 -m pytest -q -p no:cacheprovider test/python/test_gpu.py -k "1b or prepared or tiny" > "$F/pytest.txt" 2>&1
tar czf "$OUT/final.tgz" -C "$OUT" final
