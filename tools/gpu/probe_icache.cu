// Instruction-fetch probe (H200): how much straight-line code a multiprocessor runs from its instruction
// caches, and what code that is not cached costs. One block per SM loops over KB kilobytes of
// straight-line integer adds (SASS instructions are 16 bytes: 64 per KB); the time per instruction jumps
// where the loop no longer fits a cache level. "first" is the first pass (code from L2 or DRAM), "steady"
// the mean of the later passes.
// Build: nvcc -O3 -arch=sm_90a -o probe_icache probe_icache.cu
#include <cstdio>
#include <cstdint>
#include <cuda_runtime.h>

#define I2 "xor.b32 %0, %0, %1;\nadd.u32 %0, %0, %1;\n"  // two instructions ptxas cannot fuse
#define I8 I2 I2 I2 I2
#define I32 I8 I8 I8 I8
#define I64 I32 I32  // one KB of SASS
#define KB1 asm volatile(I64 : "+r"(x) : "r"(y));
#define KB4 KB1 KB1 KB1 KB1
#define KB16 KB4 KB4 KB4 KB4

__device__ __forceinline__ uint64_t now_ns() {
  uint64_t t; asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); return t;
}

template <int N16>  // N16 x 16 KB of code
__device__ __forceinline__ void body(uint32_t& x, uint32_t y) {
  if constexpr (N16 > 0) { KB16 body<N16 - 1>(x, y); }
}

template <int KB>
__global__ void run(int passes, uint64_t* first, uint64_t* steady, uint32_t* sink) {
  uint32_t x = threadIdx.x, y = blockIdx.x | 1;
  uint64_t t0 = now_ns(), t1 = t0;
  for (int p = 0; p < passes; p++) {
    if constexpr (KB < 16) { KB4 } else { body<KB / 16>(x, y); }
    if (p == 0) t1 = now_ns();
  }
  uint64_t t2 = now_ns();
  if (threadIdx.x == 0) { first[blockIdx.x] = t1 - t0; steady[blockIdx.x] = (t2 - t1) / (passes - 1); }
  if (x == 0xdeadbeef) sink[0] = x;
}

template <int KB>
int measure(int warps, uint64_t* first, uint64_t* steady, uint32_t* sink) {
  const int passes = 20;
  run<KB><<<132, 32 * warps>>>(passes, first, steady, sink);
  if (cudaDeviceSynchronize() != cudaSuccess) { printf("launch failed\n"); return 1; }
  uint64_t f[132], s[132];
  cudaMemcpy(f, first, sizeof f, cudaMemcpyDeviceToHost);
  cudaMemcpy(s, steady, sizeof s, cudaMemcpyDeviceToHost);
  double fm = 0, sm = 0;
  for (int i = 0; i < 132; i++) { fm += f[i]; sm += s[i]; }
  fm /= 132; sm /= 132;
  int kb = KB < 16 ? 4 : KB, instrs = kb * 64;
  printf("%4d KB  %d warps  first %9.0f ns (%6.2f ns/instr)  steady %9.0f ns (%6.3f ns/instr)\n", kb, warps, fm,
         fm / instrs, sm, sm / instrs);
  return 0;
}

int main() {
  uint64_t *first, *steady; uint32_t* sink;
  cudaMalloc(&first, 132 * 8); cudaMalloc(&steady, 132 * 8); cudaMalloc(&sink, 4);
  for (int warps : {1, 8}) {
    measure<4>(warps, first, steady, sink);
    measure<16>(warps, first, steady, sink);
    measure<32>(warps, first, steady, sink);
    measure<48>(warps, first, steady, sink);
    measure<64>(warps, first, steady, sink);
    measure<96>(warps, first, steady, sink);
    measure<128>(warps, first, steady, sink);
    measure<192>(warps, first, steady, sink);
    measure<256>(warps, first, steady, sink);
  }
  return 0;
}
