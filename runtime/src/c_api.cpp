// The C ABI (etc/etc_runtime.h) over etc::Runtime: exceptions become status codes and a per-thread message.
#include "etc/etc_runtime.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "etc/runtime.h"

struct etc_rt {
  std::unique_ptr<etc::Runtime> runtime;
};

namespace {

thread_local std::string last_error;

template <typename Body>
int guard(Body body) {
  try {
    body();
    return ETC_RT_OK;
  } catch (const etc::StepTimeout& e) {
    last_error = e.what();
    return ETC_RT_TIMEOUT;
  } catch (const etc::GpuFault& e) {
    last_error = e.what();
    return ETC_RT_FAULT;
  } catch (const etc::CudaError& e) {
    last_error = e.what();
    return last_error.rfind("no CUDA driver", 0) == 0 ? ETC_RT_NO_DRIVER : ETC_RT_ERROR;
  } catch (const std::exception& e) {
    last_error = e.what();
    return ETC_RT_ERROR;
  } catch (...) {
    last_error = "unknown C++ exception in libetc_runtime";
    return ETC_RT_ERROR;
  }
}

etc::Runtime& runtime(etc_rt* rt) {
  if (rt == nullptr || !rt->runtime) throw etc::CudaError("null etc_rt handle");
  return *rt->runtime;
}

}  // namespace

extern "C" {

int etc_rt_abi_version(void) { return ETC_RT_ABI_VERSION; }

const char* etc_rt_last_error(void) { return last_error.c_str(); }

int etc_rt_driver_info(int* version, int* devices) {
  return guard([&] {
    etc::Driver& driver = etc::Driver::get();
    if (version) *version = driver.driver_version();
    if (devices) *devices = driver.device_count();
  });
}

int etc_rt_create(const char* ptx, const void* cubin, uint64_t cubin_bytes, const char* kernel_name, int device, int num_workers, int block_size,
                  int shared_bytes, int num_buffers, int num_symbols, uint64_t counter_words,
                  const int32_t* queue_offsets, const int32_t* queue_entries, int64_t num_queue_entries,
                  uint64_t ready_words, etc_rt** out) {
  return guard([&] {
    if (out == nullptr || ptx == nullptr || kernel_name == nullptr || (num_workers > 0 && queue_offsets == nullptr) ||
        (num_queue_entries > 0 && queue_entries == nullptr) || num_queue_entries < 0 ||
        (cubin_bytes > 0 && cubin == nullptr))
      throw etc::CudaError("etc_rt_create: null argument");
    *out = nullptr;
    etc::KernelSpec spec;
    spec.ptx = ptx;
    if (cubin_bytes > 0) spec.cubin.assign(static_cast<const char*>(cubin), cubin_bytes);
    spec.kernel_name = kernel_name;
    spec.device = device;
    spec.num_workers = num_workers;
    spec.block_size = block_size;
    spec.shared_bytes = shared_bytes;
    spec.num_buffers = num_buffers;
    spec.num_symbols = num_symbols;
    spec.counter_words = counter_words;
    if (num_workers > 0) spec.queue_offsets.assign(queue_offsets, queue_offsets + num_workers + 1);
    if (num_queue_entries > 0) spec.queue_entries.assign(queue_entries, queue_entries + num_queue_entries);
    spec.ready_words = ready_words;
    auto handle = std::make_unique<etc_rt>();
    handle->runtime = std::make_unique<etc::Runtime>(spec);
    *out = handle.release();
  });
}

void etc_rt_destroy(etc_rt* rt) { delete rt; }

int etc_rt_describe_buffer(etc_rt* rt, int index, const char* name) {
  return guard([&] { runtime(rt).describe_buffer(index, name ? name : ""); });
}

int etc_rt_describe_task(etc_rt* rt, int id, const char* name) {
  return guard([&] { runtime(rt).describe_task(id, name ? name : ""); });
}

int etc_rt_describe_counter(etc_rt* rt, const char* name, uint64_t offset, uint64_t words, int rank,
                            const int64_t* extents) {
  return guard([&] {
    std::vector<int64_t> ext;
    if (rank > 0 && extents != nullptr) ext.assign(extents, extents + rank);
    runtime(rt).describe_counter(name ? name : "", offset, words, std::move(ext));
  });
}

int etc_rt_bind(etc_rt* rt, int n, const int32_t* indices, const uint64_t* addresses) {
  return guard([&] {
    etc::Runtime& r = runtime(rt);
    for (int i = 0; i < n; ++i) r.bind(indices[i], addresses[i]);
  });
}

int etc_rt_allocate(etc_rt* rt, int index, uint64_t bytes, uint64_t* address_out) {
  return guard([&] {
    const etc::CUdeviceptr p = runtime(rt).allocate(index, bytes);
    if (address_out) *address_out = p;
  });
}

int etc_rt_launch(etc_rt* rt, const int64_t* sizes, uint64_t stream, double timeout_s) {
  return guard([&] { runtime(rt).launch(sizes, reinterpret_cast<etc::CUstream>(stream), timeout_s); });
}

int etc_rt_wait(etc_rt* rt, double timeout_s) {
  return guard([&] { runtime(rt).wait(timeout_s); });
}

int etc_rt_step(etc_rt* rt, const int64_t* sizes, uint64_t stream, double timeout_s) {
  return guard([&] {
    etc::Runtime& r = runtime(rt);
    r.launch(sizes, reinterpret_cast<etc::CUstream>(stream), timeout_s);
    r.wait(timeout_s);
  });
}

uint64_t etc_rt_epoch(etc_rt* rt) { return rt && rt->runtime ? rt->runtime->epoch() : 0; }

const char* etc_rt_image(etc_rt* rt) { return rt && rt->runtime ? rt->runtime->image() : ""; }

int etc_rt_read_progress(etc_rt* rt, uint32_t* out, uint64_t n) {
  return guard([&] {
    const std::vector<uint32_t> words = runtime(rt).progress();
    std::copy_n(words.begin(), std::min<uint64_t>(n, words.size()), out);
  });
}

int etc_rt_read_counters(etc_rt* rt, uint64_t* out, uint64_t n, double timeout_s) {
  return guard([&] {
    const std::vector<uint64_t> values = runtime(rt).counters(timeout_s);
    std::copy_n(values.begin(), std::min<uint64_t>(n, values.size()), out);
  });
}

}  // extern "C"
