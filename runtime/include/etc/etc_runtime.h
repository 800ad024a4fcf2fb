/* The C ABI of libetc_runtime (what python/etc/runtime.py binds with ctypes).
 *
 * Every function returning int returns an ETC_RT_* status; on anything but ETC_RT_OK,
 * etc_rt_last_error() holds the message (per thread, valid until the thread's next call).
 * Handles are opaque. Device addresses and streams are passed as uint64_t (CUdeviceptr, CUstream).
 */
#ifndef ETC_RUNTIME_H
#define ETC_RUNTIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ETC_RT_ABI_VERSION 3

enum {
  ETC_RT_OK = 0,
  ETC_RT_ERROR = 1,     /* any failure; the message names the CUDA call and error where there is one */
  ETC_RT_NO_DRIVER = 2, /* libcuda.so.1 could not be loaded: "no CUDA driver: ..." */
  ETC_RT_TIMEOUT = 3,   /* a step did not finish in time: the message lists the stuck workers */
  ETC_RT_FAULT = 4,     /* a step faulted on the GPU: the CUDA context is lost for this process */
};

typedef struct etc_rt etc_rt;

int etc_rt_abi_version(void);
const char* etc_rt_last_error(void);

/* The driver's version and device count (loads the driver). */
int etc_rt_driver_info(int* version, int* devices);

/* Loads the kernel on `device`: the cubin (cubin_bytes > 0) when the device runs it, else `ptx` through the
 * JIT; and sets up the kernel's state: counters (zeroed once), static queue tables (queue_offsets has
 * num_workers + 1 entries, in i32 units of queue_entries), ready queue (ready_words u32 words, cleared per
 * step), host-mapped progress words. */
int etc_rt_create(const char* ptx, const void* cubin, uint64_t cubin_bytes, const char* kernel_name, int device, int num_workers, int block_size,
                  int shared_bytes, int num_buffers, int num_symbols, uint64_t counter_words,
                  const int32_t* queue_offsets, const int32_t* queue_entries, int64_t num_queue_entries,
                  uint64_t ready_words, etc_rt** out);
/* Waits (10 s at most) for a pending step, then frees everything, unless a step timed out: then its
 * memory is left allocated, as freeing it would block on the running kernel. */
void etc_rt_destroy(etc_rt* rt);

/* Names for error messages; extents: the counter's extents at max sizes (rank values). */
int etc_rt_describe_buffer(etc_rt* rt, int index, const char* name);
int etc_rt_describe_task(etc_rt* rt, int id, const char* name);
int etc_rt_describe_counter(etc_rt* rt, const char* name, uint64_t offset, uint64_t words, int rank,
                            const int64_t* extents);

/* Buffer table: n (index, device address) pairs owned by the caller ... */
int etc_rt_bind(etc_rt* rt, int n, const int32_t* indices, const uint64_t* addresses);
/* ... or a zeroed allocation of `bytes` owned by the runtime, bound to `index`. */
int etc_rt_allocate(etc_rt* rt, int index, uint64_t bytes, uint64_t* address_out);

/* One decode step on `stream` with sizes[num_symbols]: waits (timeout_s) for a previous step still
 * pending, uploads the buffer table and sizes (when they changed since the last upload), clears the
 * ready queue, launches cooperatively with the next epoch. etc_rt_wait waits for it; etc_rt_step does
 * both. */
int etc_rt_launch(etc_rt* rt, const int64_t* sizes, uint64_t stream, double timeout_s);
int etc_rt_wait(etc_rt* rt, double timeout_s);
int etc_rt_step(etc_rt* rt, const int64_t* sizes, uint64_t stream, double timeout_s);

/* What etc_rt_create loaded: "cubin" or "ptx" (JIT). */
const char* etc_rt_image(etc_rt* rt);

/* The last launched step's epoch (0 before the first). */
uint64_t etc_rt_epoch(etc_rt* rt);
/* Copies min(n, num_workers * 5) progress words / min(n, counter_words) counters into out. */
int etc_rt_read_progress(etc_rt* rt, uint32_t* out, uint64_t n);
int etc_rt_read_counters(etc_rt* rt, uint64_t* out, uint64_t n, double timeout_s);

#ifdef __cplusplus
}
#endif

#endif /* ETC_RUNTIME_H */
