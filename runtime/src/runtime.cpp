#include "etc/runtime.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

namespace etc {
namespace {

using Clock = std::chrono::steady_clock;

// Makes the runtime's context current for the scope and restores the caller's (PyTorch's) after.
class ContextScope {
 public:
  ContextScope(Driver& cu, CUcontext ctx) : cu_(cu) { cu_.check(cu_.cuCtxPushCurrent(ctx), "cuCtxPushCurrent"); }
  ~ContextScope() {
    CUcontext ignored = nullptr;
    cu_.cuCtxPopCurrent(&ignored);
  }

 private:
  Driver& cu_;
};

// Polls `ready` (a cuEventQuery/cuStreamQuery) until it is not CUDA_ERROR_NOT_READY or the deadline
// passes: spins briefly (steps are short), then sleeps with a growing interval. Returns the last status.
template <typename Query>
CUresult poll(Query ready, double timeout_s) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  auto nap = std::chrono::microseconds(10);
  for (;;) {
    CUresult status = ready();
    if (status != CUDA_ERROR_NOT_READY) return status;
    const auto now = Clock::now();
    if (now >= deadline) return status;
    if (now - start < std::chrono::microseconds(200)) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(nap);
      if (nap < std::chrono::milliseconds(1)) nap *= 2;
    }
  }
}

// No iostreams anywhere in the library: where the toolchain links libstdc++ statically (the GPU
// machine's /opt/gcc does), their locale code crashed inside a process with its own libstdc++ (PyTorch's).
std::string seconds(double s) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g s", s);
  return text;
}

}  // namespace

Runtime::Runtime(const KernelSpec& spec) : cu_(Driver::get()), spec_(spec) {
  const KernelSpec& s = spec_;
  if (s.num_workers <= 0 || s.block_size <= 0 || s.shared_bytes < 0 || s.num_buffers < 0 || s.num_symbols < 0)
    throw CudaError("bad kernel spec: num_workers " + std::to_string(s.num_workers) + ", block_size " +
                    std::to_string(s.block_size) + ", shared_bytes " + std::to_string(s.shared_bytes));
  if (s.queue_offsets.size() != static_cast<size_t>(s.num_workers) + 1)
    throw CudaError("bad kernel spec: " + std::to_string(s.queue_offsets.size()) + " queue offsets for " +
                    std::to_string(s.num_workers) + " workers (expected num_workers + 1)");
  if (s.queue_entries.size() % 3 != 0 || s.queue_offsets.front() != 0 ||
      s.queue_offsets.back() != static_cast<int32_t>(s.queue_entries.size()))
    throw CudaError("bad kernel spec: queue offsets must run from 0 to the number of queue entries (" +
                    std::to_string(s.queue_entries.size()) + ", a multiple of 3)");
  for (size_t w = 0; w + 1 < s.queue_offsets.size(); ++w)
    if (s.queue_offsets[w] > s.queue_offsets[w + 1])
      throw CudaError("bad kernel spec: queue offsets decrease at worker " + std::to_string(w));
  buffers_.assign(s.num_buffers, 0);

  const int count = cu_.device_count();
  if (s.device < 0 || s.device >= count)
    throw CudaError("no CUDA device " + std::to_string(s.device) + " (" + std::to_string(count) + " present)");
  cu_.check(cu_.cuDeviceGet(&device_, s.device), "cuDeviceGet");
  cu_.check(cu_.cuDevicePrimaryCtxRetain(&ctx_, device_), "cuDevicePrimaryCtxRetain");
  try {
    init();
  } catch (...) {
    release();
    throw;
  }
}

void Runtime::init() {
  const KernelSpec& s = spec_;
  ContextScope scope(cu_, ctx_);
  const std::string where = "device " + std::to_string(s.device) + " (" + cu_.device_name(s.device) + ")";
  if (!cu_.attribute(CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH, device_))
    throw CudaError(where + " does not support cooperative launches, which the megakernel needs");
  if (!cu_.attribute(CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY, device_))
    throw CudaError(where + " cannot map host memory, which the watchdog's progress words need");

  // The module: the cubin where the device runs it (no JIT wait), else the PTX with the JIT's logs.
  std::string cubin_error;  // why the cubin did not load, for the message if the PTX does not either
  if (!s.cubin.empty()) {
    const CUresult status = cu_.cuModuleLoadDataEx(&module_, s.cubin.data(), 0, nullptr, nullptr);
    if (status == CUDA_SUCCESS) {
      image_ = "cubin";
    } else {
      module_ = nullptr;
      cubin_error = "; the cubin did not load either: " + cu_.describe(status);
    }
  }
  if (module_ == nullptr) {
    std::vector<char> info_log(1 << 14, '\0'), error_log(1 << 14, '\0');
    int options[] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER,
                     CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_LOG_VERBOSE};
    void* values[] = {info_log.data(), reinterpret_cast<void*>(info_log.size() - 1), error_log.data(),
                      reinterpret_cast<void*>(error_log.size() - 1), reinterpret_cast<void*>(1)};
    CUresult status = cu_.cuModuleLoadDataEx(&module_, s.ptx.c_str(), 5, options, values);
    if (status != CUDA_SUCCESS) {
      module_ = nullptr;
      std::string log = error_log.data();
      if (log.empty()) log = info_log.data();
      throw CudaError("cuModuleLoadDataEx (JIT of the kernel's PTX for " + where + ") failed: " +
                      cu_.describe(status) + cubin_error + (log.empty() ? std::string() : "\nJIT log:\n" + log));
    }
    image_ = "ptx";
  }
  cu_.check(cu_.cuModuleGetFunction(&kernel_, module_, s.kernel_name.c_str()),
            "cuModuleGetFunction(\"" + s.kernel_name + "\")");

  if (s.shared_bytes > 48 * 1024) {
    const int optin = cu_.attribute(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device_);
    if (s.shared_bytes > optin)
      throw CudaError("the kernel needs " + std::to_string(s.shared_bytes) + " bytes of dynamic shared memory; " +
                      where + " allows at most " + std::to_string(optin));
    cu_.check(cu_.cuFuncSetAttribute(kernel_, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, s.shared_bytes),
              "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES, " + std::to_string(s.shared_bytes) + ")");
  }
  // All workers must be co-resident (they wait on each other).
  int per_sm = 0, regs = 0;
  cu_.check(cu_.cuOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel_, s.block_size, s.shared_bytes),
            "cuOccupancyMaxActiveBlocksPerMultiprocessor");
  cu_.check(cu_.cuFuncGetAttribute(&regs, CU_FUNC_ATTRIBUTE_NUM_REGS, kernel_), "cuFuncGetAttribute(NUM_REGS)");
  const int sms = cu_.attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device_);
  if (static_cast<long>(per_sm) * sms < s.num_workers)
    throw CudaError("the kernel has " + std::to_string(s.num_workers) + " workers but " + where + " holds only " +
                    std::to_string(per_sm * sms) + " co-resident blocks (" + std::to_string(per_sm) + " per SM x " +
                    std::to_string(sms) + " SMs at " + std::to_string(s.block_size) + " threads, " +
                    std::to_string(regs) + " registers per thread, " + std::to_string(s.shared_bytes) +
                    " bytes of shared memory); recompile for at most " + std::to_string(per_sm * sms) + " workers");

  cu_.check(cu_.cuStreamCreate(&watch_stream_, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  cu_.check(cu_.cuEventCreate(&done_, CU_EVENT_DISABLE_TIMING), "cuEventCreate");

  const size_t params_bytes = 8 * (static_cast<size_t>(s.num_buffers) + s.num_symbols);
  params_ = device_alloc(params_bytes, "the buffer table and sizes");
  cu_.check(cu_.cuMemHostAlloc(&staging_, params_bytes > 0 ? params_bytes : 8, 0), "cuMemHostAlloc(staging)");
  // Counters: zeroed once, here, and never again (each step's epoch makes earlier values stale).
  counters_ = device_alloc(8 * s.counter_words, "the counters");
  if (s.counter_words > 0) {
    cu_.check(cu_.cuMemsetD32Async(counters_, 0, 2 * s.counter_words, watch_stream_), "cuMemsetD32Async(counters)");
    cu_.check(cu_.cuMemHostAlloc(reinterpret_cast<void**>(&counters_host_), 8 * s.counter_words, 0),
              "cuMemHostAlloc(counter read-back, " + std::to_string(8 * s.counter_words) + " bytes)");
  }
  queue_offsets_ = device_alloc(4 * s.queue_offsets.size(), "the static queue offsets");
  cu_.check(cu_.cuMemcpyHtoDAsync(queue_offsets_, s.queue_offsets.data(), 4 * s.queue_offsets.size(), watch_stream_),
            "cuMemcpyHtoDAsync(queue offsets)");
  if (!s.queue_entries.empty()) {
    queue_entries_ = device_alloc(4 * s.queue_entries.size(), "the static queue entries");
    cu_.check(cu_.cuMemcpyHtoDAsync(queue_entries_, s.queue_entries.data(), 4 * s.queue_entries.size(), watch_stream_),
              "cuMemcpyHtoDAsync(queue entries)");
  }
  ready_ = device_alloc(4 * s.ready_words, "the ready queue");
  // Progress words: pinned host memory mapped into the device, so the host reads them during a step.
  const size_t progress_bytes = 4 * kProgressWords * static_cast<size_t>(s.num_workers);
  cu_.check(cu_.cuMemHostAlloc(reinterpret_cast<void**>(&progress_host_), progress_bytes,
                               CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP),
            "cuMemHostAlloc(progress words, DEVICEMAP)");
  std::memset(progress_host_, 0, progress_bytes);
  cu_.check(cu_.cuMemHostGetDevicePointer(&progress_dev_, progress_host_, 0), "cuMemHostGetDevicePointer(progress)");
  cu_.check(poll([&] { return cu_.cuStreamQuery(watch_stream_); }, 60.0), "cuStreamQuery (runtime set-up copies)");
}

Runtime::~Runtime() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (pending_ && !stuck_) {
    try {
      wait_locked(10.0);
    } catch (const CudaError&) {
      stuck_ = true;
    }
  }
  release();
}

void Runtime::release() {
  // A kernel that may still run keeps its memory: freeing it would block until the kernel ends (never).
  if (stuck_ || ctx_ == nullptr) return;
  try {
    ContextScope scope(cu_, ctx_);
    for (CUdeviceptr p : owned_) cu_.cuMemFree(p);
    for (CUdeviceptr p : {params_, counters_, queue_offsets_, queue_entries_, ready_})
      if (p) cu_.cuMemFree(p);
    for (void* p : {staging_, static_cast<void*>(progress_host_), static_cast<void*>(counters_host_)})
      if (p) cu_.cuMemFreeHost(p);
    if (done_) cu_.cuEventDestroy(done_);
    if (watch_stream_) cu_.cuStreamDestroy(watch_stream_);
    if (module_) cu_.cuModuleUnload(module_);
  } catch (const CudaError&) {
  }
  cu_.cuDevicePrimaryCtxRelease(device_);
  ctx_ = nullptr;
}

CUdeviceptr Runtime::device_alloc(uint64_t bytes, const char* what) {
  if (bytes == 0) return 0;
  CUdeviceptr p = 0;
  cu_.check(cu_.cuMemAlloc(&p, bytes), std::string("cuMemAlloc(") + what + ", " + std::to_string(bytes) + " bytes)");
  return p;
}

void Runtime::describe_buffer(int index, const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  buffer_names_[index] = name;
}

void Runtime::describe_task(int id, const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  task_names_[id] = name;
}

void Runtime::describe_counter(const std::string& name, uint64_t offset, uint64_t words, std::vector<int64_t> extents) {
  std::lock_guard<std::mutex> lock(mutex_);
  counter_info_.push_back({name, offset, words, std::move(extents)});
}

void Runtime::bind(int index, CUdeviceptr ptr) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (index < 0 || index >= spec_.num_buffers)
    throw CudaError("buffer index " + std::to_string(index) + " out of range (the kernel has " +
                    std::to_string(spec_.num_buffers) + " buffers)");
  buffers_[index] = ptr;
}

CUdeviceptr Runtime::allocate(int index, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (index < 0 || index >= spec_.num_buffers)
    throw CudaError("buffer index " + std::to_string(index) + " out of range (the kernel has " +
                    std::to_string(spec_.num_buffers) + " buffers)");
  ContextScope scope(cu_, ctx_);
  const uint64_t rounded = (bytes + 255) / 256 * 256;
  auto it = buffer_names_.find(index);
  const std::string what = "buffer '" + (it != buffer_names_.end() ? it->second : std::to_string(index)) + "'";
  CUdeviceptr p = device_alloc(rounded > 0 ? rounded : 256, what.c_str());
  owned_.push_back(p);
  cu_.check(cu_.cuMemsetD32Async(p, 0, (rounded > 0 ? rounded : 256) / 4, watch_stream_), "cuMemsetD32Async(" + what + ")");
  cu_.check(poll([&] { return cu_.cuStreamQuery(watch_stream_); }, 60.0), "cuStreamQuery (zeroing " + what + ")");
  buffers_[index] = p;
  return p;
}

void Runtime::launch(const int64_t* sizes, CUstream stream, double timeout_s) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stuck_)
    throw CudaError("step " + std::to_string(epoch_) +
                    " timed out and its kernel may still be running; this runtime launches nothing more "
                    "(restart the process)");
  wait_locked(timeout_s);
  for (int i = 0; i < spec_.num_buffers; ++i) {
    if (buffers_[i] == 0) {
      auto it = buffer_names_.find(i);
      throw CudaError("buffer " + (it != buffer_names_.end() ? "'" + it->second + "' " : std::string()) + "(index " +
                      std::to_string(i) + ") is not bound");
    }
  }
  ContextScope scope(cu_, ctx_);
  // The previous step is complete, so its staging copy and progress words are free to overwrite.
  std::vector<uint64_t> params(buffers_);
  params.insert(params.end(), sizes, sizes + spec_.num_symbols);
  std::memset(progress_host_, 0, 4 * kProgressWords * static_cast<size_t>(spec_.num_workers));
  if (!params.empty() && params != uploaded_) {  // the device copy is ours alone: re-upload only on change
    std::memcpy(staging_, params.data(), 8 * params.size());
    cu_.check(cu_.cuMemcpyHtoDAsync(params_, staging_, 8 * params.size(), stream),
              "cuMemcpyHtoDAsync(buffer table, sizes)");
    uploaded_ = std::move(params);
  }
  if (spec_.ready_words > 0)
    cu_.check(cu_.cuMemsetD32Async(ready_, 0, spec_.ready_words, stream), "cuMemsetD32Async(ready queue)");

  CUdeviceptr buffers = params_, sizes_dev = params_ ? params_ + 8 * buffers_.size() : 0;
  int64_t epoch = static_cast<int64_t>(epoch_ + 1);
  void* args[] = {&buffers, &sizes_dev, &counters_, &queue_offsets_, &queue_entries_, &ready_, &progress_dev_, &epoch};
  const CUresult status = cu_.cuLaunchCooperativeKernel(kernel_, spec_.num_workers, 1, 1, spec_.block_size, 1, 1,
                                                        spec_.shared_bytes, stream, args);
  // Recorded even when the launch failed: the staging copy above is still queued on the stream.
  const CUresult recorded = cu_.cuEventRecord(done_, stream);
  pending_ = recorded == CUDA_SUCCESS;
  cu_.check(status, "cuLaunchCooperativeKernel(" + spec_.kernel_name + ", " + std::to_string(spec_.num_workers) +
                        " blocks x " + std::to_string(spec_.block_size) + " threads, " +
                        std::to_string(spec_.shared_bytes) + " bytes shared, step " + std::to_string(epoch) + ")");
  cu_.check(recorded, "cuEventRecord");
  epoch_ = static_cast<uint64_t>(epoch);
}

void Runtime::wait(double timeout_s) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stuck_) throw CudaError("step " + std::to_string(epoch_) + " timed out earlier; its kernel may still be running");
  wait_locked(timeout_s);
}

void Runtime::wait_locked(double timeout_s) {
  if (!pending_) return;
  ContextScope scope(cu_, ctx_);
  const CUresult status = poll([&] { return cu_.cuEventQuery(done_); }, timeout_s);
  if (status == CUDA_ERROR_NOT_READY) {
    stuck_ = true;
    throw StepTimeout(timeout_report(timeout_s));
  }
  pending_ = false;
  if (status != CUDA_SUCCESS)
    throw GpuFault("step " + std::to_string(epoch_) + " failed on the GPU (cuEventQuery after the kernel): " +
                   cu_.describe(status) + "; the CUDA context is unusable from now on");
}

std::vector<uint32_t> Runtime::progress() {
  const size_t n = kProgressWords * static_cast<size_t>(spec_.num_workers);
  std::vector<uint32_t> out(n);
  const volatile uint32_t* words = progress_host_;
  for (size_t i = 0; i < n; ++i) out[i] = words[i];
  return out;
}

std::vector<uint64_t> Runtime::counters(double timeout_s) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string why;
  std::vector<uint64_t> values = counters_locked(timeout_s, &why);
  if (!why.empty()) throw CudaError(why);
  return values;
}

std::vector<uint64_t> Runtime::counters_locked(double timeout_s, std::string* why) {
  if (spec_.counter_words == 0) return {};
  try {
    ContextScope scope(cu_, ctx_);
    // On the non-blocking watch stream: this copy runs beside a kernel that is still spinning.
    cu_.check(cu_.cuMemcpyDtoHAsync(counters_host_, counters_, 8 * spec_.counter_words, watch_stream_),
              "cuMemcpyDtoHAsync(counters)");
    const CUresult status = poll([&] { return cu_.cuStreamQuery(watch_stream_); }, timeout_s);
    if (status == CUDA_ERROR_NOT_READY) {
      *why = "the counters could not be read back within " + seconds(timeout_s);
      return {};
    }
    cu_.check(status, "cuStreamQuery (counter read-back)");
  } catch (const CudaError& e) {
    *why = e.what();
    return {};
  }
  return std::vector<uint64_t>(counters_host_, counters_host_ + spec_.counter_words);
}

std::string Runtime::task_label(uint32_t id) const {
  auto it = task_names_.find(static_cast<int>(id));
  return "task " + std::to_string(id) + (it != task_names_.end() ? " '" + it->second + "'" : std::string());
}

std::string Runtime::describe_word(uint64_t word) const {
  for (const Counter& c : counter_info_) {
    if (word < c.offset || word >= c.offset + c.words) continue;
    uint64_t element = word - c.offset;
    if (c.extents.empty()) return "'" + c.name + "' element " + std::to_string(element);
    std::vector<int64_t> coords(c.extents.size());
    for (size_t i = c.extents.size(); i-- > 0;) {
      const int64_t extent = c.extents[i] > 0 ? c.extents[i] : 1;
      coords[i] = static_cast<int64_t>(element % extent);
      element /= extent;
    }
    std::string s = "'" + c.name + "'[";
    for (size_t i = 0; i < coords.size(); ++i) s += (i ? ", " : "") + std::to_string(coords[i]);
    return s + "]";
  }
  return "(no counter holds this word)";
}

std::string Runtime::timeout_report(double timeout_s) {
  const std::vector<uint32_t> words = progress();
  std::string counter_problem;
  const std::vector<uint64_t> values = counters_locked(2.0, &counter_problem);
  int idle = 0, done = 0;
  std::vector<std::string> lines;
  for (int w = 0; w < spec_.num_workers; ++w) {
    const uint32_t* p = &words[static_cast<size_t>(w) * kProgressWords];
    const uint32_t state = p[0], task = p[1], tile = p[2], word = p[3], target = p[4];
    if (state == kIdle) {
      ++idle;
      continue;
    }
    if (state == kDone) {
      ++done;
      continue;
    }
    std::string line = "  worker " + std::to_string(w) + ": ";
    if (state == kRunning) {
      line += "running " + task_label(task) + " tile " + std::to_string(tile) + " (inside its tile function)";
    } else if (state == kWaiting) {
      line += "waiting in " + task_label(task) + " tile " + std::to_string(tile) + " on counter word " +
              std::to_string(word) + " = " + describe_word(word);
      if (word < values.size()) {
        const uint64_t v = values[word];
        line += ": value epoch " + std::to_string(v >> 32) + " count " + std::to_string(v & 0xffffffffu);
      } else if (!counter_problem.empty()) {
        line += ": value unknown";
      } else {
        line += ": value unknown (word out of range, the kernel has " + std::to_string(spec_.counter_words) + ")";
      }
      line += ", needs epoch " + std::to_string(epoch_) + " count >= " + std::to_string(target);
    } else {
      line += "unknown progress state " + std::to_string(state) + " (task " + std::to_string(task) + ", tile " +
              std::to_string(tile) + ")";
    }
    lines.push_back(line);
  }
  std::string out = "step " + std::to_string(epoch_) + " did not finish within " + seconds(timeout_s) +
                    "; its kernel may still be running, so this runtime launches nothing more (restart the process). ";
  if (lines.empty()) {
    out += "No worker is waiting or running (" + std::to_string(done) + " done, " + std::to_string(idle) +
           " idle): the kernel may not have started (is earlier work on its stream blocked?)";
  } else {
    out += std::to_string(lines.size()) + " of " + std::to_string(spec_.num_workers) + " workers are stuck (" +
           std::to_string(done) + " done, " + std::to_string(idle) + " idle):";
    const size_t shown = lines.size() < 32 ? lines.size() : 32;
    for (size_t i = 0; i < shown; ++i) out += "\n" + lines[i];
    if (shown < lines.size()) out += "\n  ... and " + std::to_string(lines.size() - shown) + " more";
  }
  if (!counter_problem.empty()) out += "\n  (counters unreadable: " + counter_problem + ")";
  return out;
}

}  // namespace etc
