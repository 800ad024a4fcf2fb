// Does an acquire drop the SM's L1 copy of local and read-only data? (H200)
// The megakernel's waits are ld.acquire.gpu (SASS: LDG.STRONG.GPU then CCTL.IVALL) and its signals follow
// fence.acq_rel.gpu (MEMBAR.GPU then CCTL.IVALL). After them a tile reads its operand table (a local-memory
// array its run function filled) and, before the shared-memory constants, `sizes` (global). One thread of
// one block times (clock64) a dependent load of a local-memory word and of a global word that were both
// just read (so L1 holds them), after one of:
//   relaxed : ld.relaxed.gpu of a flag (no invalidation; the control)
//   acquire : ld.acquire.gpu of the flag
//   fence   : fence.acq_rel.gpu
// (check the SASS: the compiler may move the private local load above the acquire, as it did on CUDA 13)
// Prints the median and p90 cycles of each (load kind, preceding op) over NSAMP samples (first 8 dropped).
// An L1 hit costs ~30-40 cycles, an L2 hit several hundred.
// Build: nvcc -O3 -arch=sm_90a -o probe_local probe_local.cu
#include <algorithm>
#include <vector>

#include "probe_ptx.h"

constexpr int NSAMP = 264;
constexpr int KINDS = 2, OPS = 3;

__device__ __forceinline__ uint64_t clk() {
  uint64_t t; asm volatile("mov.u64 %0, %%clock64;" : "=l"(t) :: "memory"); return t;
}
__device__ __forceinline__ void sink(uint64_t v) { asm volatile("" :: "l"(v) : "memory"); }

__device__ __forceinline__ void preceding(int op, const uint64_t* flag) {
  uint64_t v;
  if (op == 0) asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(flag) : "memory");
  else if (op == 1) asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(flag) : "memory");
  else { asm volatile("fence.acq_rel.gpu;" ::: "memory"); v = 0; }
  sink(v);
}

__global__ void probe(const uint64_t* flag, const uint64_t* table, int idx, uint64_t* out) {
  __shared__ uint64_t slot[1];
  if (threadIdx.x != 0) return;
  volatile uint64_t local[16];
  for (int i = 0; i < 16; ++i) local[i] = table[i];
  for (int s = 0; s < NSAMP; ++s) {
    for (int op = 0; op < OPS; ++op) {
      for (int kind = 0; kind < KINDS; ++kind) {
        uint64_t warm = kind ? table[idx] : local[idx];  // into L1
        sink(warm);
        preceding(op, flag);
        uint64_t t0 = clk();
        uint64_t v;
        if (kind) asm volatile("ld.global.u64 %0, [%1];" : "=l"(v) : "l"(table + idx) : "memory");
        else v = local[idx];
        // a shared-memory store of the value, then the timer: a warp issues in order, so the timer waits
        uint64_t t1;
        asm volatile("st.shared.u64 [%1], %2;\n\tmov.u64 %0, %%clock64;" : "=l"(t1) : "r"(smem_u32(slot)), "l"(v) : "memory");
        out[(s * OPS + op) * KINDS + kind] = t1 - t0;
      }
    }
  }
}

int main() {
  uint64_t *flag, *table, *out;
  CHECK(cudaMalloc(&flag, 8));
  CHECK(cudaMalloc(&table, 16 * 8));
  CHECK(cudaMalloc(&out, NSAMP * OPS * KINDS * 8));
  CHECK(cudaMemset(flag, 0, 8));
  CHECK(cudaMemset(table, 1, 16 * 8));
  probe<<<1, 32>>>(flag, table, 5, out);
  CHECK(cudaDeviceSynchronize());
  std::vector<uint64_t> h(NSAMP * OPS * KINDS);
  CHECK(cudaMemcpy(h.data(), out, h.size() * 8, cudaMemcpyDeviceToHost));
  const char* kinds[KINDS] = {"local", "global"};
  const char* ops[OPS] = {"relaxed", "acquire", "fence"};
  printf("%-8s %-8s %8s %8s   (cycles, %d samples)\n", "load", "after", "median", "p90", NSAMP - 8);
  for (int kind = 0; kind < KINDS; ++kind)
    for (int op = 0; op < OPS; ++op) {
      std::vector<uint64_t> v;
      for (int s = 8; s < NSAMP; ++s) v.push_back(h[(s * OPS + op) * KINDS + kind]);
      std::sort(v.begin(), v.end());
      printf("%-8s %-8s %8llu %8llu\n", kinds[kind], ops[op], (unsigned long long)v[v.size() / 2],
             (unsigned long long)v[v.size() * 9 / 10]);
    }
  return 0;
}
