// Cross-SM hand-off latency probe (H200): a producer tile writes a slice of an activation row to global
// memory, a consumer tile on another SM needs the whole row (4 KiB of data) in registers. One persistent
// launch of one 256-thread block per SM (160 KiB dynamic smem => 1 block/SM; cooperative launch).
// Block 0 = consumer, blocks 1..P = producers (each writes 1/P of the row), the rest = streamers or idle.
// Protocols (one 16-byte store / load per "unit"; the row is never reset, rounds are told apart by epoch):
//   A   : weak st.global.v4 data; __syncthreads; thread 0 fence.acq_rel.gpu + red.relaxed.gpu.add.u64
//         counter. Consumer thread 0 spins ld.acquire.gpu counter >= round*P, __syncthreads, every
//         thread ld.relaxed.gpu.v4 its 16 B, __syncthreads.
//   A2  : as A, but the producer signals with one red.release.gpu.add.u64 (no separate fence).
//   B   : NCCL LL: 8-byte words {data u32, flag u32 = epoch}; 16-byte st.relaxed.gpu.v4 = 2 LL words,
//         no fence, no counter; 4 KiB of data = 8 KiB of LL words = 512 units (2 per consumer thread).
//         Consumer: every thread ld.relaxed.gpu.v4 its units until both flags == epoch, then
//         __syncthreads. Relies only on 8-byte single-copy atomicity of each {data, flag} half.
//   Bv  : as B with st.volatile / ld.volatile.
//   B2  : LL128-ish: 16-byte units of 12 B data + 4 B flag (P*ceil(342/P) units, >= 4 KiB of data).
//         This relies on 16-byte store/load atomicity, which PTX does not promise: torn reads show
//         up as mismatches.
// Round r: producers acquire-poll the 'back' counter >= r-1 (the consumer red.release's it when done
// with round r-1), time-stamp (%globaltimer), store. The consumer time-stamps after its final barrier.
//   handoff = consumer_done(r) - max_p producer_start(r);  back = max_p producer_start(r) -
//   consumer_done(r-1) (one-way ping-back incl. producer wake-up);  cycle = done(r) - done(r-1).
// Conditions: idle (other blocks exit); loaded (the other blocks stream a 2 GiB cold buffer HBM->smem
// through a 4 x 32 KiB ring of 8 x 4 KiB cp.async.bulk copies on mbarriers with an L2 evict_first
// cache hint (createpolicy.fractional + .L2::cache_hint), until the consumer sets 'done'); loaded+own
// (as loaded, and producers / consumer also issue 64 KiB (16 x 4 KiB) of bulk copies right before
// their stores / polls and wait for them after the hand-off).
// Every spin is bounded by a 200 ms globaltimer timeout (sets an error bit). Every round the consumer
// checks all words it got; mismatches are counted and the first one printed.
// Usage: ./probe_handoff [rounds=1000]  (50 warm-up rounds more, discarded). Runs < 1 s on H200.
// Build: nvcc -O3 -arch=sm_90a -o probe_handoff probe_handoff.cu
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <vector>
#include <algorithm>
#include <cuda_runtime.h>
#include "probe_ptx.h"


constexpr int THREADS = 256, MAXP = 16, WARM = 50;
constexpr int STAGES = 4, STAGE = 32768, ROW = 4096, OWN_BYTES = 65536;
constexpr int BAR_OFF = STAGES * STAGE;        // mbarriers: [0..3] ring, [4] own copies
constexpr int SMEM = 160 * 1024;
constexpr uint64_t TIMEOUT_NS = 200000000ull, STREAM_LIMIT_NS = 2000000000ull;
constexpr size_t OWN_REGION = 8ull << 20;      // per protocol block, source of its own copies
enum { PA, PA2, PB, PBV, PB2, NPROTO };
enum { E_BACK = 1, E_POLL = 2, E_OWN = 4, E_STREAM_LIMIT = 8, E_STREAM_BAR = 16 };
const char* proto_names[NPROTO] = {"A fence+red", "A2 red.release", "B LL relaxed", "Bv LL volatile",
                                   "B2 LL128-ish 12+4"};
const char* cond_names[3] = {"idle", "loaded", "loaded+own"};

__device__ bool bar_wait_to(uint64_t* bar, uint32_t parity) {  // false on timeout
  uint64_t t0 = now_ns();
  while (!bar_try(bar, parity)) if (now_ns() - t0 > TIMEOUT_NS) return false;
  return true;
}
__device__ __forceinline__ unsigned long long ld_acquire(const unsigned long long* p) {
  unsigned long long v; asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory"); return v;
}
__device__ __forceinline__ uint32_t ld_relaxed_u32(const uint32_t* p) {
  uint32_t v; asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory"); return v;
}
__device__ __forceinline__ void red_add_relaxed(unsigned long long* p) {
  asm volatile("red.relaxed.gpu.global.add.u64 [%0], %1;" :: "l"(p), "l"(1ull) : "memory");
}
__device__ __forceinline__ void red_add_release(unsigned long long* p) {
  asm volatile("red.release.gpu.global.add.u64 [%0], %1;" :: "l"(p), "l"(1ull) : "memory");
}
__device__ __forceinline__ void st16(uint4* p, uint4 v, int mode) {  // 0 weak, 1 relaxed.gpu, 2 volatile
  if (mode == 0)
    asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" :: "l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
  else if (mode == 1)
    asm volatile("st.relaxed.gpu.global.v4.u32 [%0], {%1, %2, %3, %4};" :: "l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
  else
    asm volatile("st.volatile.global.v4.u32 [%0], {%1, %2, %3, %4};" :: "l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
}
__device__ __forceinline__ uint4 ld16(const uint4* p, bool vol) {
  uint4 v;
  if (vol) asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
  else asm volatile("ld.relaxed.gpu.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                    : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
  return v;
}
__device__ void spin_ns(uint64_t ns) { uint64_t t0 = now_ns(); while (now_ns() - t0 < ns) {} }

struct Args {
  int proto, P, cond, rounds;
  uint4* row;                                   // the hand-off row, in 16-byte units
  unsigned long long *counter, *back, *mism;
  uint32_t *done, *err, *mism_info;             // mism_info: round, word, got, expected
  unsigned long long *tprod, *tcons;            // [round][MAXP], [round]
  const char* stream; size_t stream_bytes; const char* own;
  unsigned long long *sbytes, *sbeg, *send; int* smid; float* sink;
};

__host__ __device__ inline int units_per_producer(int proto, int P) {
  return proto <= PA2 ? 256 / P : proto <= PBV ? 512 / P : (342 + P - 1) / P;
}
__device__ __forceinline__ uint32_t val(int r, int i) { return (uint32_t)r * 4096u + (uint32_t)i + 1u; }
__device__ __forceinline__ uint4 make_unit(int proto, int r, int j) {
  if (proto <= PA2) return make_uint4(val(r, 4 * j), val(r, 4 * j + 1), val(r, 4 * j + 2), val(r, 4 * j + 3));
  if (proto <= PBV) return make_uint4(val(r, 2 * j), (uint32_t)r, val(r, 2 * j + 1), (uint32_t)r);
  return make_uint4(val(r, 3 * j), val(r, 3 * j + 1), val(r, 3 * j + 2), (uint32_t)r);
}
__device__ __forceinline__ bool unit_ready(int proto, uint4 v, int r) {
  return proto <= PBV ? (v.y == (uint32_t)r && v.w == (uint32_t)r) : v.w == (uint32_t)r;
}

// Streams this block's share of the cold buffer through the 4 x 32 KiB ring until a.done is set.
__device__ void streamer(const Args& a, char* smem, uint64_t* bars) {
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int ns = gridDim.x - 1 - a.P, s = blockIdx.x - 1 - a.P;
  const long nst = (long)(a.stream_bytes / ns / STAGE);  // stages in this block's region
  const char* base = a.stream + (size_t)s * nst * STAGE;
  if (tid == 0) {
    for (int i = 0; i < STAGES; i++) bar_init(&bars[i], 1);
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncthreads();
  const uint64_t pol = evict_first_policy();
  auto issue = [&](long i) {  // warp 0 only
    uint64_t* bar = &bars[i % STAGES];
    char* dst = smem + (i % STAGES) * STAGE;
    const char* src = base + (size_t)(i % nst) * STAGE;
    if (lane == 0) expect_tx(bar, STAGE);
    __syncwarp();
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    if (lane < STAGE / ROW) bulk_copy(dst + lane * ROW, src + lane * ROW, ROW, bar, pol);
  };
  const uint64_t t0 = now_ns();
  if (warp == 0) for (int i = 0; i < STAGES; i++) issue(i);
  float acc = 0.f;
  long i = 0;
  for (;; i++) {
    bool ok = bar_wait_to(&bars[i % STAGES], (uint32_t)(i / STAGES) & 1);
    if (ok) {
      const uint4* st = reinterpret_cast<const uint4*>(smem + (i % STAGES) * STAGE);
      for (int k = tid; k < STAGE / 16; k += THREADS) {
        uint4 v = st[k]; acc += __int_as_float(v.x) + __int_as_float(v.y) + __int_as_float(v.z) + __int_as_float(v.w);
      }
    }
    if (__syncthreads_or(!ok)) { if (tid == 0) atomicOr(a.err, E_STREAM_BAR); return; }
    bool over = tid == 0 && now_ns() - t0 > STREAM_LIMIT_NS;
    if (over) atomicOr(a.err, E_STREAM_LIMIT);
    if (__syncthreads_or(over || (tid == 0 && ld_relaxed_u32(a.done) != 0))) break;
    if (warp == 0) issue(i + STAGES);
  }
  const uint64_t t1 = now_ns();
  for (long j = i + 1; j < i + STAGES; j++)  // drain the copies still in flight
    if (!bar_wait_to(&bars[j % STAGES], (uint32_t)(j / STAGES) & 1)) { atomicOr(a.err, E_STREAM_BAR); break; }
  if (acc == 1.2345f) a.sink[0] = acc;
  if (tid == 0) { a.sbytes[blockIdx.x] = (unsigned long long)(i + 1) * STAGE; a.sbeg[blockIdx.x] = t0; a.send[blockIdx.x] = t1; }
}

__global__ void __launch_bounds__(THREADS, 1) handoff(Args a) {
  extern __shared__ __align__(128) char smem[];
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + BAR_OFF);
  const int tid = threadIdx.x, b = blockIdx.x;
  if (tid == 0) { uint32_t id; asm volatile("mov.u32 %0, %%smid;" : "=r"(id)); a.smid[b] = (int)id; }
  const bool consumer = b == 0, producer = b >= 1 && b <= a.P;
  if (!consumer && !producer) { if (a.cond > 0) streamer(a, smem, bars); return; }
  if (tid == 0) { bar_init(&bars[4], 1); asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
  __syncthreads();
  if (a.cond > 0) spin_ns(20000);  // let the streamers ramp up
  const uint64_t pol = evict_first_policy();
  const char* own = a.own + (size_t)b * OWN_REGION;
  auto issue_own = [&](int r) {  // thread 0: 64 KiB in flight on bars[4]
    expect_tx(&bars[4], OWN_BYTES);
    const char* src = own + (size_t)((r - 1) % (int)(OWN_REGION / OWN_BYTES)) * OWN_BYTES;
    for (int k = 0; k < OWN_BYTES / ROW; k++) bulk_copy(smem + k * ROW, src + k * ROW, ROW, &bars[4], pol);
  };
  const int Up = units_per_producer(a.proto, a.P), U = Up * a.P;
  bool fail = false;
  if (producer) {
    const int p = b - 1, stmode = a.proto <= PA2 ? 0 : a.proto == PBV ? 2 : 1;
    for (int r = 1; r <= a.rounds; r++) {
      if (tid == 0) {
        uint64_t t0 = now_ns(); uint32_t it = 0;
        while (!fail && ld_acquire(a.back) < (unsigned long long)(r - 1))
          if ((++it & 15) == 0 && now_ns() - t0 > TIMEOUT_NS) { fail = true; atomicOr(a.err, E_BACK); }
        if (!fail && a.cond == 2) issue_own(r);
      }
      if (__syncthreads_or(fail)) break;
      uint4 w[2];
      for (int i = 0; i < 2; i++) if (tid + i * THREADS < Up) w[i] = make_unit(a.proto, r, p * Up + tid + i * THREADS);
      uint64_t ts = 0;
      if (tid == 0) ts = now_ns();
      for (int i = 0; i < 2; i++) if (tid + i * THREADS < Up) st16(a.row + p * Up + tid + i * THREADS, w[i], stmode);
      if (a.proto <= PA2) {
        __syncthreads();
        if (tid == 0) {
          if (a.proto == PA) { asm volatile("fence.acq_rel.gpu;" ::: "memory"); red_add_relaxed(a.counter); }
          else red_add_release(a.counter);
        }
      }
      if (tid == 0) {
        a.tprod[(size_t)(r - 1) * MAXP + p] = ts;
        if (a.cond == 2 && !bar_wait_to(&bars[4], (uint32_t)(r - 1) & 1)) { fail = true; atomicOr(a.err, E_OWN); }
      }
    }
  } else {
    const bool vol = a.proto == PBV;
    for (int r = 1; r <= a.rounds; r++) {
      if (tid == 0 && a.cond == 2 && !fail) issue_own(r);
      uint4 v[2] = {make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0)};
      uint64_t t0 = now_ns(); uint32_t it = 0;
      if (a.proto <= PA2) {
        if (tid == 0) {
          const unsigned long long target = (unsigned long long)r * a.P;
          while (!fail && ld_acquire(a.counter) < target)
            if ((++it & 15) == 0 && now_ns() - t0 > TIMEOUT_NS) { fail = true; atomicOr(a.err, E_POLL); }
        }
        if (__syncthreads_or(fail)) break;
        for (int i = 0; i < 2; i++) if (tid + i * THREADS < U) v[i] = ld16(a.row + tid + i * THREADS, false);
        __syncthreads();
      } else {
        bool rdy0 = tid >= U, rdy1 = tid + THREADS >= U;
        while (!fail && !(rdy0 && rdy1)) {
          if (!rdy0) { v[0] = ld16(a.row + tid, vol); rdy0 = unit_ready(a.proto, v[0], r); }
          if (!rdy1) { v[1] = ld16(a.row + tid + THREADS, vol); rdy1 = unit_ready(a.proto, v[1], r); }
          if ((++it & 15) == 0 && now_ns() - t0 > TIMEOUT_NS) { fail = true; atomicOr(a.err, E_POLL); }
        }
        if (__syncthreads_or(fail)) break;
      }
      if (tid == 0) { uint64_t td = now_ns(); red_add_release(a.back); a.tcons[r - 1] = td; }
      unsigned cnt = 0; uint32_t wi = 0, wg = 0, we = 0;  // verify (outside the measured window)
      for (int i = 0; i < 2; i++) {
        int j = tid + i * THREADS;
        if (j >= U) continue;
        uint4 e = make_unit(a.proto, r, j);
        uint32_t g4[4] = {v[i].x, v[i].y, v[i].z, v[i].w}, e4[4] = {e.x, e.y, e.z, e.w};
        for (int f = 0; f < 4; f++)
          if (g4[f] != e4[f]) { if (!cnt) { wi = 4 * j + f; wg = g4[f]; we = e4[f]; } cnt++; }
      }
      if (cnt && atomicAdd(a.mism, (unsigned long long)cnt) == 0) {
        a.mism_info[0] = r; a.mism_info[1] = wi; a.mism_info[2] = wg; a.mism_info[3] = we;
      }
      if (tid == 0 && a.cond == 2 && !bar_wait_to(&bars[4], (uint32_t)(r - 1) & 1)) { fail = true; atomicOr(a.err, E_OWN); }
    }
  }
  if (tid == 0 && (consumer || fail)) atomicExch(a.done, 1u);  // stops the streamers
}

__global__ void timer_res(unsigned long long* out) {  // globaltimer granularity
  uint64_t t0 = now_ns(), prev = t0, mind = ~0ull, changes = 0;
  for (int i = 0; i < 200000; i++) {
    uint64_t t = now_ns();
    if (t != prev) { mind = t - prev < mind ? t - prev : mind; changes++; prev = t; }
  }
  out[0] = mind; out[1] = changes; out[2] = prev - t0;
}

static void stats(std::vector<long long> v, double& med, double& p90, double& mean) {
  med = p90 = mean = 0;
  if (v.empty()) return;
  std::sort(v.begin(), v.end());
  med = (double)v[v.size() / 2]; p90 = (double)v[v.size() * 9 / 10];
  for (long long x : v) mean += (double)x;
  mean /= (double)v.size();
}

int main(int argc, char** argv) {
  const int meas = argc > 1 ? atoi(argv[1]) : 1000, rounds = meas + WARM;
  if (meas < 10) { printf("rounds must be >= 10\n"); return 1; }
  cudaDeviceProp prop; CHECK(cudaGetDeviceProperties(&prop, 0));
  const int nsm = prop.multiProcessorCount;
  printf("%s, %d SMs; grid = %d blocks x %d threads, %d KiB dyn smem\n", prop.name, nsm, nsm, THREADS, SMEM / 1024);
  if (nsm < MAXP + 3) { printf("need >= %d SMs\n", MAXP + 3); return 1; }
  if (!prop.cooperativeLaunch) { printf("no cooperative launch support\n"); return 1; }
  CHECK(cudaFuncSetAttribute(handoff, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
  int occ = 0; CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, handoff, THREADS, SMEM));
  if (occ != 1) { printf("occupancy %d blocks/SM, need exactly 1\n", occ); return 1; }

  const size_t stream_bytes = 2ull << 30, own_bytes = (MAXP + 1) * OWN_REGION;
  char *stream, *own; uint4* row; unsigned long long *sync, *tprod, *tcons, *sbytes, *sbeg, *send, *tr;
  int* smid; float* sink;
  CHECK(cudaMalloc(&stream, stream_bytes)); CHECK(cudaMalloc(&own, own_bytes));
  CHECK(cudaMalloc(&row, 16384)); CHECK(cudaMalloc(&sync, 1024));
  CHECK(cudaMalloc(&tprod, (size_t)rounds * MAXP * 8)); CHECK(cudaMalloc(&tcons, (size_t)rounds * 8));
  CHECK(cudaMalloc(&sbytes, nsm * 8)); CHECK(cudaMalloc(&sbeg, nsm * 8)); CHECK(cudaMalloc(&send, nsm * 8));
  CHECK(cudaMalloc(&smid, nsm * 4)); CHECK(cudaMalloc(&sink, 16)); CHECK(cudaMalloc(&tr, 32));
  CHECK(cudaMemset(stream, 1, stream_bytes)); CHECK(cudaMemset(own, 1, own_bytes));

  timer_res<<<1, 1>>>(tr);
  CHECK(cudaGetLastError()); CHECK(cudaDeviceSynchronize());
  unsigned long long h_tr[3]; CHECK(cudaMemcpy(h_tr, tr, 24, cudaMemcpyDeviceToHost));
  printf("globaltimer: min step %llu ns, %llu updates in %llu ns%s\n", h_tr[0], h_tr[1], h_tr[2],
         h_tr[0] > 100 ? "  (COARSE: trust the means more than med/p90)" : "");
  printf("%d measured rounds (+%d warm-up); ns; handoff = consumer done - last producer start; back = last producer"
         " start - previous consumer done; cycle = done(r) - done(r-1)\n", meas, WARM);
  printf("%-18s %3s %-10s | %7s %7s %7s | %8s %8s | %9s | %8s | %5s %s\n", "protocol", "P", "condition",
         "med", "p90", "mean", "back med", "back p90", "cycle med", "GB/s", "mism", "err");

  std::vector<unsigned long long> hp((size_t)rounds * MAXP), hc(rounds), hb(nsm), hs(nsm), he(nsm);
  std::vector<int> hsm(nsm);
  for (int proto = 0; proto < NPROTO; proto++)
    for (int P : {1, 16})
      for (int cond = 0; cond < 3; cond++) {
        CHECK(cudaMemset(row, 0, 16384)); CHECK(cudaMemset(sync, 0, 1024));
        CHECK(cudaMemset(tprod, 0, (size_t)rounds * MAXP * 8)); CHECK(cudaMemset(tcons, 0, (size_t)rounds * 8));
        CHECK(cudaMemset(sbytes, 0, nsm * 8)); CHECK(cudaMemset(sbeg, 0, nsm * 8)); CHECK(cudaMemset(send, 0, nsm * 8));
        Args a{proto, P, cond, rounds, row, sync + 0, sync + 16, sync + 64,
               (uint32_t*)(sync + 32), (uint32_t*)(sync + 48), (uint32_t*)(sync + 80),
               tprod, tcons, stream, stream_bytes, own, sbytes, sbeg, send, smid, sink};
        void* kargs[] = {&a};
        CHECK(cudaLaunchCooperativeKernel((void*)handoff, dim3(nsm), dim3(THREADS), kargs, SMEM, 0));
        CHECK(cudaGetLastError()); CHECK(cudaDeviceSynchronize());
        unsigned long long hsync[128];
        CHECK(cudaMemcpy(hsync, sync, 1024, cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(hp.data(), tprod, hp.size() * 8, cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(hc.data(), tcons, hc.size() * 8, cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(hb.data(), sbytes, nsm * 8, cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(hs.data(), sbeg, nsm * 8, cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(he.data(), send, nsm * 8, cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(hsm.data(), smid, nsm * 4, cudaMemcpyDeviceToHost));
        const uint32_t err = (uint32_t)(hsync[48] & 0xffffffffu);
        const unsigned long long mism = hsync[64];
        const uint32_t* mi = (const uint32_t*)&hsync[80];
        std::vector<long long> ho, bk, cy;
        for (int r = WARM + 1; r <= rounds; r++) {  // 1-based rounds
          unsigned long long last = 0;
          for (int p = 0; p < P; p++) last = std::max(last, hp[(size_t)(r - 1) * MAXP + p]);
          if (!hc[r - 1] || !hc[r - 2] || !last) continue;  // missing (error run)
          ho.push_back((long long)(hc[r - 1] - last));
          bk.push_back((long long)(last - hc[r - 2]));
          cy.push_back((long long)(hc[r - 1] - hc[r - 2]));
        }
        double med, p90, mean, bmed, bp90, bmean, cmed, cp90, cmean;
        stats(ho, med, p90, mean); stats(bk, bmed, bp90, bmean); stats(cy, cmed, cp90, cmean);
        double gbs = 0;
        if (cond > 0) {
          unsigned long long tot = 0, t0 = ~0ull, t1 = 0;
          for (int b = P + 1; b < nsm; b++) if (hb[b]) { tot += hb[b]; t0 = std::min(t0, hs[b]); t1 = std::max(t1, he[b]); }
          if (t1 > t0) gbs = (double)tot / (double)(t1 - t0);
        }
        bool dup = false;
        for (int i = 0; i <= P; i++) for (int j = 0; j < i; j++) dup |= hsm[i] == hsm[j];
        printf("%-18s %3d %-10s | %7.0f %7.0f %7.0f | %8.0f %8.0f | %9.0f | %8.1f | %5llu 0x%x%s%s\n",
               proto_names[proto], P, cond_names[cond], med, p90, mean, bmed, bp90, cmed, gbs, mism, err,
               ho.size() < (size_t)meas ? " (rounds missing)" : "", dup ? " (SM SHARED!)" : "");
        if (mism) printf("    first mismatch: round %u word %u got 0x%08x expected 0x%08x\n", mi[0], mi[1], mi[2], mi[3]);
        if (err) printf("    errors:%s%s%s%s%s\n", err & E_BACK ? " producer back-poll timeout" : "",
                        err & E_POLL ? " consumer poll timeout" : "", err & E_OWN ? " own-copy wait timeout" : "",
                        err & E_STREAM_LIMIT ? " streamer ran past 2 s" : "", err & E_STREAM_BAR ? " streamer mbarrier timeout" : "");
      }
  return 0;
}
