// Critical-load latency probe (H200): how long do a tile's small latency-critical accesses take while
// cp.async.bulk weight copies are in flight on its own SM and/or on all the other SMs?
// One launch per (measure, condition): a grid of one 288-thread block per SM (200 KiB of dynamic shared
// memory each); block 0 is the victim (warps 0-7 measure, warp 8 waits on its copies), block 1 is its
// partner in `signal`, the other blocks stream or exit at once. The victim spins 20 us, then takes
// NSAMP samples; for each it warms its row / counter into L2, issues its own copies, measures at once
// (before waiting on the copies), then waits on them.
// Measures:
//   poll      : thread 0, dependent chain of 8 ld.acquire.gpu.global.u32 of an L2-resident counter; per load
//   row-ld    : 256 threads load 16 B each of a 4 KiB L2-resident row (ld.global), then a 256-thread
//   row-cg      barrier; issue -> barrier. row-cg: ld.global.cg, row-rlx: ld.relaxed.gpu.global (CUDA 13
//   row-rlx     compiles both to LDG.E.128.STRONG.GPU; row-ld is LDG.E.128, through L1, which misses)
//   sig-rtt/2 : block 0 red.release.gpu.global.add -> block 1 spins on ld.acquire.gpu, answers the same
//               way -> block 0 sees it; round trip / 2
//   sig-1way  : the same samples: block 1's %globaltimer when it saw the flag minus block 0's at send
// Conditions (K = KiB of the victim's own copies, from a cold buffer: L2 flushed before each launch):
//   idle            : the victim (and partner) alone
//   own             : K KiB as 16 KiB cp.async.bulk copies (L2::cache_hint evict_first), one mbarrier per
//                     16 KiB, issued by thread 0 (the measuring thread) just before measuring
//   own-4Kcopies    : the same as 4 KiB copies;  own-warp8: the copies issued by warp 8 instead
//   strm-bulk       : the other blocks stream a cold 2 GiB buffer through a 4 x 32 KiB ring of bulk copies
//                     (16 KiB each, evict_first) until the victim sets `done`
//   strm-ld         : the others stream with plain 16-byte ld.global, 16 in flight per thread
//   strm-*+own*     : streaming and the victim's own 128 KiB of copies
// Columns: median / p90 in ns from %globaltimer, the same from clock64 (converted with the SM clock
// measured in the launch), the median time from issuing the victim's copies to their completion, the
// aggregate GB/s of the streaming blocks, the SM clock, the victim's SM (and partner's). The first 8
// samples are dropped. Every spin gives up after 100 ms (then the row says TIMEOUT).
// Build: nvcc -O3 -arch=sm_90a -o probe_latency probe_latency.cu
#include <cstdio>
#include <cstdint>
#include <vector>
#include <algorithm>
#include <cuda_runtime.h>
#include "probe_ptx.h"


constexpr int MEAS_THREADS = 256, THREADS = MEAS_THREADS + 32;  // warps 0-7 measure, warp 8 waits on copies
constexpr int NSAMP = 200, DROP = 8, CHAIN = 8, ROW_BYTES = 4096;
constexpr uint32_t RING_STAGE = 32768, RING_STAGES = 4, RING_COPY = 16384, OWN_MAX = 131072, OWN_BAR = 16384;
constexpr size_t SMEM = 200 * 1024, BIG_BYTES = 2ull << 30, FLUSH_BYTES = 256ull << 20;
constexpr uint64_t DEADLINE_NS = 100000000ull, WARMUP_NS = 20000;
enum { F_CTR = 0, F_AB = 64, F_BA = 128, F_DONE = 192, F_ERR = 256, F_WORDS = 512 };  // 256-byte apart
enum { POLL = 0, ROW_LD, ROW_CG, ROW_RLX, SIGNAL, NMEAS };
static_assert(MEAS_THREADS == 256, "bar.sync 1, 256 below");

struct Params {
  int meas, own_bytes, own_gran, stream, issuer;  // stream: 0 none, 1 bulk ring, 2 ld; issuer: 0 thread 0, 1 warp 8
  uint32_t* flags; const char* rows; const char* cold; const char* big; size_t slice;
  uint64_t* out;   // [5][NSAMP]: globaltimer ns, clock64 cycles, copy cycles, sent ns (block 0), seen ns (block 1)
  uint64_t* meta;  // [0] victim ns span, [1] its cycles, [4] victim smid, [5] partner smid
  uint64_t* sbytes; uint64_t* st0; uint64_t* st1; float* sink;  // per streaming block
};

__device__ __forceinline__ uint64_t now_clk() {
  uint64_t c; asm volatile("mov.u64 %0, %%clock64;" : "=l"(c)); return c;
}
__device__ __forceinline__ uint32_t smid() {
  uint32_t r; asm volatile("mov.u32 %0, %%smid;" : "=r"(r)); return r;
}
__device__ __forceinline__ uint32_t ld_acquire(const uint32_t* p) {
  uint32_t v; asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory"); return v;
}
__device__ __forceinline__ uint32_t ld_relaxed(const uint32_t* p) {
  uint32_t v; asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory"); return v;
}
__device__ __forceinline__ void red_release(uint32_t* p, uint32_t v) {
  asm volatile("red.release.gpu.global.add.u32 [%0], %1;" :: "l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ void st_relaxed(uint32_t* p, uint32_t v) {
  asm volatile("st.relaxed.gpu.global.u32 [%0], %1;" :: "l"(p), "r"(v) : "memory");
}
// 16-byte global load: ROW_CG = ld.global.cg, ROW_RLX = ld.relaxed.gpu, otherwise plain ld.global
__device__ __forceinline__ uint4 ld16(int how, const void* p) {
  uint4 v;
  if (how == ROW_CG)
    asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
  else if (how == ROW_RLX)
    asm volatile("ld.relaxed.gpu.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
  else
    asm volatile("ld.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
  return v;
}
__device__ bool bar_wait(uint64_t* bar, uint32_t parity, uint64_t deadline, uint32_t* flags) {
  while (!bar_try(bar, parity))
    if (now_ns() > deadline) { atomicOr(flags + F_ERR, 1u); return false; }
  return true;
}

// thread 0 of a streaming block: a 4 x 32 KiB ring of bulk copies over its slice of the big buffer
__device__ void stream_bulk(const Params& p, int sidx, char* smem, uint64_t* bars, uint64_t deadline) {
  if (threadIdx.x != 0) return;
  const char* src = p.big + (size_t)sidx * p.slice;
  const uint64_t pol = evict_first_policy();
  for (uint32_t s = 0; s < RING_STAGES; s++) bar_init(&bars[s], 1);
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  size_t off = 0;
  uint64_t bytes = 0;
  uint32_t issued = 0, done = 0;
  const uint64_t t0 = now_ns();
  auto issue = [&]() {
    const uint32_t s = issued % RING_STAGES;
    expect_tx(&bars[s], RING_STAGE);
    for (uint32_t c = 0; c < RING_STAGE; c += RING_COPY)
      bulk_copy(smem + s * RING_STAGE + c, src + off + c, RING_COPY, &bars[s], pol);
    off += RING_STAGE;
    if (off >= p.slice) off = 0;
    issued++;
  };
  for (uint32_t s = 0; s < RING_STAGES; s++) issue();
  bool stop = false;
  while (done < issued) {  // after `stop`, drains what is in flight
    if (!bar_wait(&bars[done % RING_STAGES], (done / RING_STAGES) & 1, deadline, p.flags)) break;
    done++;
    bytes += RING_STAGE;
    if (!stop && (done & 3) == 0) stop = ld_relaxed(p.flags + F_DONE) != 0 || now_ns() > deadline;
    if (!stop) issue();
  }
  p.sbytes[blockIdx.x] = bytes; p.st0[blockIdx.x] = t0; p.st1[blockIdx.x] = now_ns();
}

// all threads of a streaming block: 16-byte ld.global, 16 per thread in flight, over its slice
__device__ void stream_ld(const Params& p, int sidx, uint64_t deadline) {
  constexpr int U = 16;
  const uint4* src = reinterpret_cast<const uint4*>(p.big + (size_t)sidx * p.slice);
  const uint32_t n = (uint32_t)(p.slice / 16), step = blockDim.x * U;
  uint32_t k = 0, acc = 0;
  uint64_t bytes = 0;
  const uint64_t t0 = now_ns();
  for (uint32_t it = 0;; it++) {
    bool stop = false;
    if (threadIdx.x == 0 && (it & 3) == 0) stop = ld_relaxed(p.flags + F_DONE) != 0 || now_ns() > deadline;
    if (__syncthreads_or(stop)) break;
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
      uint32_t i = k + threadIdx.x + u * blockDim.x;
      if (i >= n) i -= n;
      v[u] = ld16(ROW_LD, src + i);
    }
#pragma unroll
    for (int u = 0; u < U; u++) acc += v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;  // all 4: else ptxas splits the load
    k += step;
    if (k >= n) k -= n;
    bytes += (uint64_t)step * 16;
  }
  if (acc == 0x12345678u) p.sink[0] = (float)acc;
  if (threadIdx.x == 0) { p.sbytes[blockIdx.x] = bytes; p.st0[blockIdx.x] = t0; p.st1[blockIdx.x] = now_ns(); }
}

// block 1 in `signal`: thread 0 answers each of block 0's flags
__device__ void partner(const Params& p, uint64_t deadline) {
  if (threadIdx.x != 0) return;
  p.meta[5] = smid();
  for (uint32_t s = 0; s < NSAMP; s++) {
    uint32_t it = 0;
    while (ld_acquire(p.flags + F_AB) < s + 1)
      if ((++it & 63) == 0 && now_ns() > deadline) { atomicOr(p.flags + F_ERR, 2u); return; }
    const uint64_t t = now_ns();
    red_release(p.flags + F_BA, 1);
    p.out[4 * NSAMP + s] = t;
  }
}

__device__ void victim(const Params& p, char* smem, uint64_t* bars, volatile uint32_t* xs,
                       volatile uint64_t* ci_sh, uint64_t deadline) {
  const int tid = threadIdx.x;
  const bool watcher = tid == MEAS_THREADS;
  const int issuer_tid = p.issuer ? MEAS_THREADS : 0;
  const int nbar = p.own_bytes / (int)OWN_BAR;
  uint32_t* ctr = p.flags + F_CTR;
  if (watcher) {
    for (uint32_t j = 0; j < OWN_MAX / OWN_BAR; j++) bar_init(&bars[j], 1);
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  if (tid == 0) {  // let the streaming blocks reach their steady state
    p.meta[4] = smid();
    const uint64_t t = now_ns();
    while (now_ns() - t < WARMUP_NS) {}
  }
  __syncthreads();
  const uint64_t g0 = now_ns(), c0 = now_clk();
  const uint64_t pol = evict_first_policy();
  for (int s = 0; s < NSAMP; s++) {
    // 1. this sample's row (ld.global.cg: L2, not L1) and the counter into L2
    const char* row = p.rows + (size_t)s * ROW_BYTES;
    if (tid < MEAS_THREADS) { uint4 w = ld16(ROW_CG, row + tid * 16); xs[tid] = w.x ^ w.y ^ w.z ^ w.w; }
    if (tid == 0) xs[MEAS_THREADS] = ld_acquire(ctr);
    __syncthreads();
    // 2. the victim's own bulk copies from cold memory (a fresh 128 KiB region per sample)
    if (tid == issuer_tid && nbar > 0) {
      *ci_sh = now_clk();
      const char* src = p.cold + (size_t)s * OWN_MAX;
      for (int j = 0; j < nbar; j++) {
        expect_tx(&bars[j], OWN_BAR);
        for (int c = 0; c < (int)OWN_BAR; c += p.own_gran)
          bulk_copy(smem + j * OWN_BAR + c, src + j * OWN_BAR + c, (uint32_t)p.own_gran, &bars[j], pol);
      }
    }
    __syncthreads();
    // 3. measure (warps 0-7) while warp 8 waits on the copies
    bool bad = false;
    if (tid < MEAS_THREADS) {
      uint64_t t0 = 0, k0 = 0;
      if (tid == 0) { t0 = now_ns(); k0 = now_clk(); }
      if (p.meas == POLL) {
        if (tid == 0) {
          uint32_t v = 0;  // the counter holds 0: each address depends on the value before
          for (int i = 0; i < CHAIN; i++) v = ld_acquire(ctr + v);
          xs[0] = v;
        }
      } else if (p.meas == SIGNAL) {
        if (tid == 0) {
          red_release(p.flags + F_AB, 1);
          uint32_t v, it = 0;
          while ((v = ld_acquire(p.flags + F_BA)) < (uint32_t)s + 1)
            if ((++it & 63) == 0 && now_ns() > deadline) { atomicOr(p.flags + F_ERR, 4u); bad = true; break; }
          xs[0] = v;
        }
      } else {
        uint4 w = ld16(p.meas, row + tid * 16);
        xs[tid] = w.x ^ w.y ^ w.z ^ w.w;  // the store waits for the load, the barrier for the store
      }
      asm volatile("bar.sync 1, 256;" ::: "memory");
      if (tid == 0) {
        const uint64_t k1 = now_clk(), t1 = now_ns();
        p.out[s] = t1 - t0; p.out[NSAMP + s] = k1 - k0; p.out[3 * NSAMP + s] = t0;
      }
    } else if (watcher && nbar > 0) {
      for (int j = 0; j < nbar && !bad; j++) bad = !bar_wait(&bars[j], s & 1, deadline, p.flags);
      p.out[2 * NSAMP + s] = now_clk() - *ci_sh;
    }
    if (__syncthreads_or(bad)) break;
  }
  if (tid == 0) {
    p.meta[0] = now_ns() - g0; p.meta[1] = now_clk() - c0;
    st_relaxed(p.flags + F_DONE, 1);
  }
}

__global__ void __launch_bounds__(THREADS, 1) probe(Params p) {
  extern __shared__ __align__(128) char smem[];
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + OWN_MAX);                   // 8 mbarriers
  volatile uint64_t* ci_sh = reinterpret_cast<volatile uint64_t*>(smem + OWN_MAX + 128);
  volatile uint32_t* xs = reinterpret_cast<volatile uint32_t*>(smem + OWN_MAX + 256);  // THREADS words
  const uint64_t deadline = now_ns() + DEADLINE_NS;
  const int nvict = p.meas == SIGNAL ? 2 : 1;
  if (blockIdx.x >= nvict) {
    if (p.stream == 1) stream_bulk(p, blockIdx.x - nvict, smem, bars, deadline);
    else if (p.stream == 2) stream_ld(p, blockIdx.x - nvict, deadline);
    return;
  }
  if (blockIdx.x == 1) { partner(p, deadline); return; }
  victim(p, smem, bars, xs, ci_sh, deadline);
}

__global__ void touch(const char* src, size_t bytes, float* sink) {  // read through L2 (flush)
  const uint4* s = reinterpret_cast<const uint4*>(src);
  float acc = 0.f;
  for (size_t k = blockIdx.x * blockDim.x + threadIdx.x; k < bytes / 16; k += gridDim.x * blockDim.x)
    acc += __int_as_float(s[k].x);
  if (acc == 1.2345f) sink[0] = acc;
}

static void stats(std::vector<double> v, double& med, double& p90) {
  std::sort(v.begin(), v.end());
  med = v[v.size() / 2];
  p90 = v[std::min(v.size() - 1, v.size() * 9 / 10)];
}

struct Cond { const char* name; int own, gran, stream, issuer; };

int main() {
  int dev = 0;
  CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, dev));
  const int nsm = prop.multiProcessorCount;
  if (nsm < 4) { printf("need >= 4 SMs, have %d\n", nsm); return 1; }
  if (nsm != 132) printf("note: %d SMs (expected 132); grid = %d blocks\n", nsm, nsm);
  CHECK(cudaFuncSetAttribute(probe, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SMEM));
  int occ = 0;
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, probe, THREADS, SMEM));
  if (occ != 1) { printf("expected exactly 1 block per SM, occupancy says %d\n", occ); return 1; }

  char *big, *flush, *cold, *rows; uint32_t* flags; uint64_t *out, *meta, *sbytes, *st0, *st1; float* sink;
  CHECK(cudaMalloc(&big, BIG_BYTES)); CHECK(cudaMalloc(&flush, FLUSH_BYTES));
  CHECK(cudaMalloc(&cold, (size_t)NSAMP * OWN_MAX)); CHECK(cudaMalloc(&rows, (size_t)NSAMP * ROW_BYTES));
  CHECK(cudaMalloc(&flags, F_WORDS * sizeof(uint32_t))); CHECK(cudaMalloc(&out, 5 * NSAMP * sizeof(uint64_t)));
  CHECK(cudaMalloc(&meta, 8 * sizeof(uint64_t))); CHECK(cudaMalloc(&sink, 16));
  CHECK(cudaMalloc(&sbytes, nsm * sizeof(uint64_t))); CHECK(cudaMalloc(&st0, nsm * sizeof(uint64_t)));
  CHECK(cudaMalloc(&st1, nsm * sizeof(uint64_t)));
  CHECK(cudaMemset(big, 1, BIG_BYTES)); CHECK(cudaMemset(flush, 1, FLUSH_BYTES));
  CHECK(cudaMemset(cold, 1, (size_t)NSAMP * OWN_MAX)); CHECK(cudaMemset(rows, 1, (size_t)NSAMP * ROW_BYTES));
  CHECK(cudaDeviceSynchronize());
  const size_t slice = (BIG_BYTES / nsm) & ~(size_t)(RING_STAGE - 1);

  const Cond conds[] = {
    {"idle", 0, 16384, 0, 0},
    {"own", 16384, 16384, 0, 0}, {"own", 32768, 16384, 0, 0}, {"own", 65536, 16384, 0, 0},
    {"own", 131072, 16384, 0, 0},
    {"own-4Kcopies", 131072, 4096, 0, 0},
    {"own-warp8", 131072, 16384, 0, 1},
    {"strm-bulk", 0, 16384, 1, 0},
    {"strm-bulk+own", 131072, 16384, 1, 0},
    {"strm-bulk+own4K", 131072, 4096, 1, 0},
    {"strm-ld", 0, 16384, 2, 0},
    {"strm-ld+own", 131072, 16384, 2, 0},
  };
  const char* mnames[NMEAS] = {"poll", "row-ld", "row-cg", "row-rlx", "sig-rtt/2"};
  printf("device %s, %d SMs, %d samples per row (first %d dropped); ns: %%globaltimer, cyc->ns: clock64 "
         "converted; poll = per load; copy = victim's copies issue->complete\n", prop.name, nsm, NSAMP, DROP);
  printf("%-9s %-16s %4s %8s %8s %8s %8s %8s %9s %5s %8s\n", "measure", "condition", "K", "med_ns", "p90_ns",
         "med_cyc", "p90_cyc", "copy_ns", "strm_GB/s", "MHz", "sm");
  std::vector<uint64_t> h(5 * NSAMP), hm(8), hb(nsm), h0(nsm), h1(nsm);
  for (int m = 0; m < NMEAS; m++) {
    for (const Cond& c : conds) {
      touch<<<2 * nsm, 512>>>(flush, FLUSH_BYTES, sink);  // evict everything (cold buffer) from L2
      CHECK(cudaGetLastError());
      CHECK(cudaMemset(flags, 0, F_WORDS * sizeof(uint32_t))); CHECK(cudaMemset(out, 0, 5 * NSAMP * sizeof(uint64_t)));
      CHECK(cudaMemset(meta, 0, 8 * sizeof(uint64_t))); CHECK(cudaMemset(sbytes, 0, nsm * sizeof(uint64_t)));
      Params p{m, c.own, c.gran, c.stream, c.issuer, flags, rows, cold, big, slice, out, meta, sbytes, st0, st1, sink};
      probe<<<nsm, THREADS, SMEM>>>(p);
      CHECK(cudaGetLastError()); CHECK(cudaDeviceSynchronize());
      uint32_t err = 0;
      CHECK(cudaMemcpy(&err, flags + F_ERR, sizeof(err), cudaMemcpyDeviceToHost));
      CHECK(cudaMemcpy(h.data(), out, h.size() * sizeof(uint64_t), cudaMemcpyDeviceToHost));
      CHECK(cudaMemcpy(hm.data(), meta, hm.size() * sizeof(uint64_t), cudaMemcpyDeviceToHost));
      CHECK(cudaMemcpy(hb.data(), sbytes, nsm * sizeof(uint64_t), cudaMemcpyDeviceToHost));
      CHECK(cudaMemcpy(h0.data(), st0, nsm * sizeof(uint64_t), cudaMemcpyDeviceToHost));
      CHECK(cudaMemcpy(h1.data(), st1, nsm * sizeof(uint64_t), cudaMemcpyDeviceToHost));
      const double ns_per_cyc = hm[1] ? (double)hm[0] / (double)hm[1] : 0.0;
      const double div = m == POLL ? CHAIN : m == SIGNAL ? 2.0 : 1.0;
      std::vector<double> g, k, cp, ow;
      for (int s = DROP; s < NSAMP; s++) {
        g.push_back(h[s] / div); k.push_back(h[NSAMP + s] * ns_per_cyc / div);
        cp.push_back(h[2 * NSAMP + s] * ns_per_cyc);
        ow.push_back((double)(int64_t)(h[4 * NSAMP + s] - h[3 * NSAMP + s]));
      }
      double gm, g9, km, k9, cm, c9, om, o9;
      stats(g, gm, g9); stats(k, km, k9); stats(cp, cm, c9); stats(ow, om, o9);
      uint64_t bsum = 0, tmin = UINT64_MAX, tmax = 0;
      for (int b = 0; b < nsm; b++)
        if (hb[b]) { bsum += hb[b]; tmin = std::min(tmin, h0[b]); tmax = std::max(tmax, h1[b]); }
      char gbs[32] = "-", cps[32] = "-", sms[32];
      if (bsum && tmax > tmin) snprintf(gbs, sizeof(gbs), "%.0f", (double)bsum / (double)(tmax - tmin));
      if (c.own) snprintf(cps, sizeof(cps), "%.0f", cm);
      if (m == SIGNAL) snprintf(sms, sizeof(sms), "%d,%d", (int)hm[4], (int)hm[5]);
      else snprintf(sms, sizeof(sms), "%d", (int)hm[4]);
      const double mhz = ns_per_cyc > 0 ? 1000.0 / ns_per_cyc : 0.0;
      printf("%-9s %-16s %4d %8.0f %8.0f %8.0f %8.0f %8s %9s %5.0f %8s%s\n", mnames[m], c.name, c.own / 1024,
             gm, g9, km, k9, cps, gbs, mhz, sms, err ? "  TIMEOUT" : "");
      if (m == SIGNAL)
        printf("%-9s %-16s %4d %8.0f %8.0f %8s %8s %8s %9s %5.0f %8s%s\n", "sig-1way", c.name, c.own / 1024,
               om, o9, "-", "-", cps, gbs, mhz, sms, err ? "  TIMEOUT" : "");
    }
  }
  CHECK(cudaFree(big)); CHECK(cudaFree(flush)); CHECK(cudaFree(cold)); CHECK(cudaFree(rows));
  CHECK(cudaFree(flags)); CHECK(cudaFree(out)); CHECK(cudaFree(meta)); CHECK(cudaFree(sink));
  CHECK(cudaFree(sbytes)); CHECK(cudaFree(st0)); CHECK(cudaFree(st1));
  return 0;
}
