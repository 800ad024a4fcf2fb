// One compiled megakernel on one GPU: its module, its run-time state (counters, queues, ready queue,
// progress words) and its buffer table, launched one decode step at a time under a watchdog.
// The kernel ABI is python/etc/codegen/abi.py; this is its host side.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "etc/driver.h"

namespace etc {

// A step that did not finish within its timeout. The message lists what every stuck worker is doing.
class StepTimeout : public CudaError {
 public:
  explicit StepTimeout(const std::string& what) : CudaError(what) {}
};

// A step that faulted on the GPU (e.g. a misaligned address): the CUDA context is unusable from then on.
class GpuFault : public CudaError {
 public:
  explicit GpuFault(const std::string& what) : CudaError(what) {}
};

struct KernelSpec {
  std::string ptx;
  std::string cubin;  // optional ELF image for this device's architecture; preferred over the PTX
  std::string kernel_name;
  int device = 0;
  int num_workers = 0;
  int block_size = 0;
  int shared_bytes = 0;  // dynamic shared memory per block
  int num_buffers = 0;
  int num_symbols = 0;
  uint64_t counter_words = 0;
  std::vector<int32_t> queue_offsets;  // num_workers + 1, in i32 units of queue_entries
  std::vector<int32_t> queue_entries;  // (task id, first tile, stride) triples
  uint64_t ready_words = 0;            // u32 words of ready-queue state; 0: no ready queue
};

// Progress words per worker (abi.PROGRESS_*): state, task id, tile, counter word waited on, the count
// that word must reach in this step.
constexpr int kProgressWords = 5;
enum ProgressState : uint32_t { kIdle = 0, kWaiting = 1, kRunning = 2, kDone = 3 };

class Runtime {
 public:
  explicit Runtime(const KernelSpec& spec);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Names for messages (optional): buffers by index, tasks by id, counters by word range and the
  // counter's extents at max sizes (row-major, so a word maps back to coordinates).
  void describe_buffer(int index, const std::string& name);
  void describe_task(int id, const std::string& name);
  void describe_counter(const std::string& name, uint64_t offset, uint64_t words, std::vector<int64_t> extents);

  // Buffer table: device addresses owned by the caller, or allocated here (zeroed, freed with the runtime).
  void bind(int index, CUdeviceptr ptr);
  CUdeviceptr allocate(int index, uint64_t bytes);

  // Enqueue one step on `stream` (waiting first, under `timeout_s`, for a previous step still pending):
  // upload the buffer table and sizes, clear the ready queue, launch with the next epoch.
  void launch(const int64_t* sizes, CUstream stream, double timeout_s);
  // Wait for the pending step; StepTimeout with the stuck workers after timeout_s seconds.
  void wait(double timeout_s);

  uint64_t epoch() const { return epoch_; }
  const char* image() const { return image_; }
  std::vector<uint32_t> progress();
  std::vector<uint64_t> counters(double timeout_s);

 private:
  struct Counter {
    std::string name;
    uint64_t offset, words;
    std::vector<int64_t> extents;
  };
  void init();
  void release();
  void wait_locked(double timeout_s);
  std::vector<uint64_t> counters_locked(double timeout_s, std::string* why);
  std::string timeout_report(double timeout_s);
  std::string describe_word(uint64_t word) const;
  std::string task_label(uint32_t id) const;
  CUdeviceptr device_alloc(uint64_t bytes, const char* what);

  Driver& cu_;
  KernelSpec spec_;
  std::mutex mutex_;
  CUdevice device_ = 0;
  CUcontext ctx_ = nullptr;
  CUmodule module_ = nullptr;
  CUfunction kernel_ = nullptr;
  CUstream watch_stream_ = nullptr;  // non-blocking: reads counters while a step is stuck
  CUevent done_ = nullptr;
  CUdeviceptr params_ = 0;  // u64 buffers[num_buffers], then i64 sizes[num_symbols]
  CUdeviceptr counters_ = 0, queue_offsets_ = 0, queue_entries_ = 0, ready_ = 0, progress_dev_ = 0;
  void* staging_ = nullptr;            // pinned copy of params_ (the async upload's source)
  uint32_t* progress_host_ = nullptr;  // host-mapped: readable while the kernel runs
  uint64_t* counters_host_ = nullptr;  // pinned: counters read back on timeout
  std::vector<uint64_t> buffers_;
  std::vector<uint64_t> uploaded_;  // the buffer table and sizes the device holds
  std::vector<CUdeviceptr> owned_;
  uint64_t epoch_ = 0;
  const char* image_ = "";  // "cubin" or "ptx": what init() loaded
  bool pending_ = false;
  bool stuck_ = false;  // a step timed out: the kernel may still run, nothing more can be launched or freed
  std::map<int, std::string> buffer_names_, task_names_;
  std::vector<Counter> counter_info_;
};

}  // namespace etc
