// A fake libcuda.so.1 for testing the runtime's host side without a GPU (test/python/test_runtime_build.py).
// "Device" memory is host memory. A launch runs a fake kernel at once, according to $FAKE_CUDA_MODE:
//   ok (default)  every worker ends "done"; every counter word gets the step's signal (max(epoch<<32), +1)
//   hang          worker 0 waits in task 2 tile 5 on counter word $FAKE_CUDA_WAIT_WORD (default 1, signalled
//                 once) for count 4, worker 1 runs task 1
//                 tile 3, the rest are done; the step's event never completes
//   jit_error     cuModuleLoadDataEx fails with a JIT error log
//   other_arch    a cubin (an ELF image) is for another architecture: CUDA_ERROR_NO_BINARY_FOR_GPU
//   fault         the step faults: its event reports CUDA_ERROR_MISALIGNED_ADDRESS
// Each launch appends a line to $FAKE_CUDA_LOG: epoch, grid, block, shared bytes, buffer table, sizes;
// each host-to-device copy a line "upload N bytes".
// Build: c++ -std=c++17 -shared -fPIC -o libcuda.so.1 fake_cuda.cpp
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {
using CUdeviceptr = unsigned long long;
constexpr int kSuccess = 0, kInvalidValue = 1, kNoBinary = 209, kInvalidPtx = 218, kNotFound = 500, kNotReady = 600,
              kMisaligned = 716;
bool hung = false;

std::string mode() {
  const char* m = std::getenv("FAKE_CUDA_MODE");
  return m ? m : "ok";
}
void* addr(CUdeviceptr p) { return reinterpret_cast<void*>(static_cast<uintptr_t>(p)); }
}  // namespace

extern "C" {
int cuInit(unsigned) { return kSuccess; }
int cuDriverGetVersion(int* v) { *v = 12080; return kSuccess; }
int cuDeviceGetCount(int* n) { *n = 1; return kSuccess; }
int cuDeviceGet(int* d, int ordinal) { *d = ordinal; return ordinal == 0 ? kSuccess : kInvalidValue; }
int cuDeviceGetName(char* name, int len, int) { std::snprintf(name, len, "Fake GPU"); return kSuccess; }
int cuDeviceGetAttribute(int* v, int attribute, int) {
  switch (attribute) {
    case 16: *v = 132; break;      // SMs
    case 97: *v = 232448; break;   // opt-in shared memory
    default: *v = 1;               // cooperative launch, host mapping
  }
  return kSuccess;
}
int cuGetErrorName(int status, const char** name) {
  switch (status) {
    case kInvalidValue: *name = "CUDA_ERROR_INVALID_VALUE"; return kSuccess;
    case kInvalidPtx: *name = "CUDA_ERROR_INVALID_PTX"; return kSuccess;
    case kNoBinary: *name = "CUDA_ERROR_NO_BINARY_FOR_GPU"; return kSuccess;
    case kNotFound: *name = "CUDA_ERROR_NOT_FOUND"; return kSuccess;
    case kNotReady: *name = "CUDA_ERROR_NOT_READY"; return kSuccess;
    case kMisaligned: *name = "CUDA_ERROR_MISALIGNED_ADDRESS"; return kSuccess;
    default: return kInvalidValue;
  }
}
int cuGetErrorString(int status, const char** text) {
  *text = status == kInvalidPtx   ? "a PTX JIT compilation failed"
          : status == kMisaligned ? "misaligned address"
                                  : "fake error";
  return kSuccess;
}
int cuDevicePrimaryCtxRetain(void** ctx, int) { static int c; *ctx = &c; return kSuccess; }
int cuDevicePrimaryCtxRelease_v2(int) { return kSuccess; }
int cuCtxPushCurrent_v2(void*) { return kSuccess; }
int cuCtxPopCurrent_v2(void** ctx) { if (ctx) *ctx = nullptr; return kSuccess; }
int cuModuleLoadDataEx(void** module, const void* image, unsigned n, int* options, void** values) {
  static int m;
  if (std::memcmp(image, "\x7f" "ELF", 4) == 0) {  // a cubin
    if (mode() == "other_arch") return kNoBinary;
    *module = &m;
    return kSuccess;
  }
  if (mode() == "jit_error") {
    for (unsigned i = 0; i < n; ++i)
      if (options[i] == 5) std::snprintf(static_cast<char*>(values[i]), 64, "ptxas fatal: line 3: bad thing");
    return kInvalidPtx;
  }
  *module = &m;
  return std::strstr(static_cast<const char*>(image), ".entry") ? kSuccess : kInvalidPtx;
}
int cuModuleUnload(void*) { return kSuccess; }
int cuModuleGetFunction(void** fn, void*, const char* name) {
  static int f;
  *fn = &f;
  return std::strcmp(name, "etc_megakernel") == 0 ? kSuccess : kNotFound;
}
int cuFuncGetAttribute(int* v, int, void*) { *v = 64; return kSuccess; }
int cuFuncSetAttribute(void*, int, int) { return kSuccess; }
int cuOccupancyMaxActiveBlocksPerMultiprocessor(int* n, void*, int, size_t) { *n = 1; return kSuccess; }
int cuMemAlloc_v2(CUdeviceptr* p, size_t n) { *p = reinterpret_cast<uintptr_t>(std::malloc(n)); return kSuccess; }
int cuMemFree_v2(CUdeviceptr p) { std::free(addr(p)); return kSuccess; }
int cuMemHostAlloc(void** p, size_t n, unsigned) { *p = std::malloc(n); return kSuccess; }
int cuMemFreeHost(void* p) { std::free(p); return kSuccess; }
int cuMemHostGetDevicePointer_v2(CUdeviceptr* d, void* p, unsigned) { *d = reinterpret_cast<uintptr_t>(p); return kSuccess; }
int cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* s, size_t n, void*) {
  std::memcpy(addr(d), s, n);
  if (const char* log = std::getenv("FAKE_CUDA_LOG"))
    if (FILE* f = std::fopen(log, "a")) {
      std::fprintf(f, "upload %zu bytes\n", n);
      std::fclose(f);
    }
  return kSuccess;
}
int cuMemcpyDtoHAsync_v2(void* d, CUdeviceptr s, size_t n, void*) { std::memcpy(d, addr(s), n); return kSuccess; }
int cuMemsetD32Async(CUdeviceptr d, unsigned v, size_t n, void*) {
  auto* w = static_cast<uint32_t*>(addr(d));
  for (size_t i = 0; i < n; ++i) w[i] = v;
  return kSuccess;
}
int cuStreamCreate(void** s, unsigned) { static int st; *s = &st; return kSuccess; }
int cuStreamDestroy_v2(void*) { return kSuccess; }
int cuStreamQuery(void*) { return kSuccess; }
int cuEventCreate(void** e, unsigned) { static int ev; *e = &ev; return kSuccess; }
int cuEventDestroy_v2(void*) { return kSuccess; }
int cuEventRecord(void*, void*) { return kSuccess; }
int cuEventQuery(void*) { return hung ? kNotReady : mode() == "fault" ? kMisaligned : kSuccess; }

// Kernel parameters (etc.codegen.abi): buffers, sizes, counters, queue_offsets, queue_entries, ready,
// progress, epoch. $FAKE_CUDA_BUFFERS / $FAKE_CUDA_SYMBOLS / $FAKE_CUDA_COUNTERS say how many to log.
int cuLaunchCooperativeKernel(void*, unsigned gx, unsigned, unsigned, unsigned bx, unsigned, unsigned,
                              unsigned shared, void*, void** args) {
  auto count = [](const char* name) { const char* v = std::getenv(name); return v ? std::atoi(v) : 0; };
  const auto* buffers = static_cast<const uint64_t*>(addr(*static_cast<CUdeviceptr*>(args[0])));
  const auto* sizes = static_cast<const int64_t*>(addr(*static_cast<CUdeviceptr*>(args[1])));
  auto* counters = static_cast<uint64_t*>(addr(*static_cast<CUdeviceptr*>(args[2])));
  const auto* ready = static_cast<const uint32_t*>(addr(*static_cast<CUdeviceptr*>(args[5])));
  auto* progress = static_cast<uint32_t*>(addr(*static_cast<CUdeviceptr*>(args[6])));
  const int64_t epoch = *static_cast<int64_t*>(args[7]);
  const int nb = count("FAKE_CUDA_BUFFERS"), ns = count("FAKE_CUDA_SYMBOLS"), nc = count("FAKE_CUDA_COUNTERS");
  const int nr = count("FAKE_CUDA_READY");
  if (const char* log = std::getenv("FAKE_CUDA_LOG")) {
    if (FILE* f = std::fopen(log, "a")) {
      std::fprintf(f, "launch epoch=%lld grid=%u block=%u shared=%u buffers=", static_cast<long long>(epoch), gx, bx,
                   shared);
      for (int i = 0; i < nb; ++i) std::fprintf(f, "%s%llu", i ? "," : "", static_cast<unsigned long long>(buffers[i]));
      std::fprintf(f, " sizes=");
      for (int i = 0; i < ns; ++i) std::fprintf(f, "%s%lld", i ? "," : "", static_cast<long long>(sizes[i]));
      uint32_t ready_sum = 0;
      for (int i = 0; i < nr; ++i) ready_sum += ready[i];
      std::fprintf(f, " ready_sum=%u counters=", ready_sum);
      for (int i = 0; i < nc; ++i) std::fprintf(f, "%s%llx", i ? "," : "", static_cast<unsigned long long>(counters[i]));
      std::fprintf(f, "\n");
      std::fclose(f);
    }
  }
  auto* ready_w = const_cast<uint32_t*>(ready);
  for (int i = 0; i < nr; ++i) ready_w[i] = 7;  // dirty: the runtime must clear it before the next step
  const uint64_t base = static_cast<uint64_t>(epoch) << 32;
  for (unsigned w = 0; w < gx; ++w) {  // 5 progress words per worker: state, task, tile, word, target
    progress[5 * w] = 3;
    progress[5 * w + 1] = 0;
    progress[5 * w + 2] = w;
  }
  if (mode() == "hang") {
    hung = true;
    const int word = std::getenv("FAKE_CUDA_WAIT_WORD") ? count("FAKE_CUDA_WAIT_WORD") : 1;
    progress[0] = 1, progress[1] = 2, progress[2] = 5, progress[3] = static_cast<uint32_t>(word), progress[4] = 4;
    if (gx > 1) progress[5] = 2, progress[6] = 1, progress[7] = 3;
    if (word < nc) counters[word] = (counters[word] > base ? counters[word] : base) + 1;
    return kSuccess;
  }
  for (int i = 0; i < nc; ++i) counters[i] = (counters[i] > base ? counters[i] : base) + 1;
  return kSuccess;
}
}  // extern "C"
