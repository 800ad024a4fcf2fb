// A hand-written megakernel that follows the kernel ABI (python/etc/codegen/abi.py), for testing the
// runtime on a GPU without the compiler (runtime/test/gpu_smoke.py compiles it with nvcc -ptx).
//
// Buffers: 0 tokens i64[batch], 1 positions i64[batch], 2 k_caches.0 f32[batch, kv_len],
// 3 v_caches.0 f32[batch, kv_len], 4 weight f32[V, V], 5 logits f32[batch, V], 6 ws i64[batch].
// Task 0 "embed", grid [batch]: ws[b] = tokens[b]; k[b, positions[b]] = tokens[b]; v[...] = 2 tokens[b];
//   signals counter word b.
// Task 1 "lm_head", grid [batch]: waits on word b (target 1, or 2 with -DHANG: never reached);
//   logits[b, :] = weight[ws[b], :].
#include <stdint.h>

#ifndef V
#define V 64
#endif
#ifdef HANG
#define TARGET 2
#else
#define TARGET 1
#endif

enum { kIdle = 0, kWaiting = 1, kRunning = 2, kDone = 3 };

__device__ void set_progress(volatile uint32_t* p, uint32_t state, uint32_t task, uint32_t tile) {
  p[0] = state;
  p[1] = task;
  p[2] = tile;
  __threadfence_system();
}

extern "C" __global__ void etc_megakernel(const uint64_t* buffers, const int64_t* sizes, unsigned long long* counters,
                                          const int32_t* queue_offsets, const int32_t* queue_entries,
                                          uint32_t* ready, volatile uint32_t* progress, int64_t epoch) {
  (void)ready;
  const int w = blockIdx.x;
  volatile uint32_t* mine = progress + 5 * w;  // state, task, tile, counter word, target count
  const int64_t batch = sizes[0], kv_len = sizes[1];
  const int64_t* tokens = reinterpret_cast<const int64_t*>(buffers[0]);
  const int64_t* positions = reinterpret_cast<const int64_t*>(buffers[1]);
  float* k = reinterpret_cast<float*>(buffers[2]);
  float* v = reinterpret_cast<float*>(buffers[3]);
  const float* weight = reinterpret_cast<const float*>(buffers[4]);
  float* logits = reinterpret_cast<float*>(buffers[5]);
  int64_t* ws = reinterpret_cast<int64_t*>(buffers[6]);
  const unsigned long long base = static_cast<unsigned long long>(epoch) << 32;
  for (int e = queue_offsets[w]; e < queue_offsets[w + 1]; e += 3) {
    const int task = queue_entries[e], first = queue_entries[e + 1], stride = queue_entries[e + 2];
    for (int64_t tile = first; tile < batch; tile += stride) {
      if (threadIdx.x == 0) {
        set_progress(mine, kWaiting, task, static_cast<uint32_t>(tile));
        if (task == 1) {
          mine[3] = static_cast<uint32_t>(tile);
          mine[4] = TARGET;
          volatile unsigned long long* word = counters + tile;
          while (*word < base + TARGET) __nanosleep(100);
        }
        set_progress(mine, kRunning, task, static_cast<uint32_t>(tile));
      }
      __syncthreads();
      __threadfence();
      if (task == 0 && threadIdx.x == 0) {
        ws[tile] = tokens[tile];
        k[tile * kv_len + positions[tile]] = static_cast<float>(tokens[tile]);
        v[tile * kv_len + positions[tile]] = 2.0f * static_cast<float>(tokens[tile]);
      } else if (task == 1) {
        for (int i = threadIdx.x; i < V; i += blockDim.x) logits[tile * V + i] = weight[ws[tile] * V + i];
      }
      __threadfence();
      __syncthreads();
      if (threadIdx.x == 0) {
        if (task == 0) {
          atomicMax(counters + tile, base);
          atomicAdd(counters + tile, 1ull);
        }
        set_progress(mine, kDone, task, static_cast<uint32_t>(tile));
      }
    }
  }
}
