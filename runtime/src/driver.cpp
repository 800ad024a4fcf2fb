#include "etc/driver.h"

#include <dlfcn.h>

namespace etc {
namespace {

template <typename Fn>
void resolve(void* lib, const char* name, Fn& fn) {
  fn = reinterpret_cast<Fn>(dlsym(lib, name));
  if (fn == nullptr) throw CudaError(std::string("CUDA driver lacks ") + name + " (the driver is too old)");
}

}  // namespace

Driver& Driver::get() {
  static Driver driver;  // loaded once; a failed load throws again on the next call
  return driver;
}

Driver::Driver() {
  lib_ = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib_ == nullptr) {
    const char* why = dlerror();
    throw CudaError(std::string("no CUDA driver: ") + (why ? why : "libcuda.so.1 not found"));
  }
  resolve(lib_, "cuInit", cuInit);
  resolve(lib_, "cuDriverGetVersion", cuDriverGetVersion);
  resolve(lib_, "cuDeviceGetCount", cuDeviceGetCount);
  resolve(lib_, "cuDeviceGet", cuDeviceGet);
  resolve(lib_, "cuDeviceGetName", cuDeviceGetName);
  resolve(lib_, "cuDeviceGetAttribute", cuDeviceGetAttribute);
  resolve(lib_, "cuGetErrorName", cuGetErrorName);
  resolve(lib_, "cuGetErrorString", cuGetErrorString);
  resolve(lib_, "cuDevicePrimaryCtxRetain", cuDevicePrimaryCtxRetain);
  resolve(lib_, "cuDevicePrimaryCtxRelease_v2", cuDevicePrimaryCtxRelease);
  resolve(lib_, "cuCtxPushCurrent_v2", cuCtxPushCurrent);
  resolve(lib_, "cuCtxPopCurrent_v2", cuCtxPopCurrent);
  resolve(lib_, "cuModuleLoadDataEx", cuModuleLoadDataEx);
  resolve(lib_, "cuModuleUnload", cuModuleUnload);
  resolve(lib_, "cuModuleGetFunction", cuModuleGetFunction);
  resolve(lib_, "cuFuncGetAttribute", cuFuncGetAttribute);
  resolve(lib_, "cuFuncSetAttribute", cuFuncSetAttribute);
  resolve(lib_, "cuOccupancyMaxActiveBlocksPerMultiprocessor", cuOccupancyMaxActiveBlocksPerMultiprocessor);
  resolve(lib_, "cuMemAlloc_v2", cuMemAlloc);
  resolve(lib_, "cuMemFree_v2", cuMemFree);
  resolve(lib_, "cuMemHostAlloc", cuMemHostAlloc);
  resolve(lib_, "cuMemFreeHost", cuMemFreeHost);
  resolve(lib_, "cuMemHostGetDevicePointer_v2", cuMemHostGetDevicePointer);
  resolve(lib_, "cuMemcpyHtoDAsync_v2", cuMemcpyHtoDAsync);
  resolve(lib_, "cuMemcpyDtoHAsync_v2", cuMemcpyDtoHAsync);
  resolve(lib_, "cuMemsetD32Async", cuMemsetD32Async);
  resolve(lib_, "cuStreamCreate", cuStreamCreate);
  resolve(lib_, "cuStreamDestroy_v2", cuStreamDestroy);
  resolve(lib_, "cuStreamQuery", cuStreamQuery);
  resolve(lib_, "cuEventCreate", cuEventCreate);
  resolve(lib_, "cuEventDestroy_v2", cuEventDestroy);
  resolve(lib_, "cuEventRecord", cuEventRecord);
  resolve(lib_, "cuEventQuery", cuEventQuery);
  resolve(lib_, "cuLaunchCooperativeKernel", cuLaunchCooperativeKernel);
  check(cuInit(0), "cuInit");
}

std::string Driver::describe(CUresult status) {
  const char* name = "CUDA_ERROR_UNKNOWN";
  const char* text = "unknown error";
  if (cuGetErrorName(status, &name) != CUDA_SUCCESS || name == nullptr) name = "CUDA_ERROR_UNKNOWN";
  if (cuGetErrorString(status, &text) != CUDA_SUCCESS || text == nullptr) text = "unknown error";
  return std::string(name) + " (" + std::to_string(status) + "): " + text;
}

void Driver::check(CUresult status, const std::string& call) {
  if (status == CUDA_SUCCESS) return;
  throw CudaError(call + " failed: " + describe(status));
}

int Driver::device_count() {
  int n = 0;
  check(cuDeviceGetCount(&n), "cuDeviceGetCount");
  return n;
}

std::string Driver::device_name(int ordinal) {
  CUdevice device = 0;
  check(cuDeviceGet(&device, ordinal), "cuDeviceGet");
  char name[256] = {0};
  check(cuDeviceGetName(name, sizeof(name) - 1, device), "cuDeviceGetName");
  return name;
}

int Driver::driver_version() {
  int version = 0;
  check(cuDriverGetVersion(&version), "cuDriverGetVersion");
  return version;
}

int Driver::attribute(int attribute, CUdevice device) {
  int value = 0;
  check(cuDeviceGetAttribute(&value, attribute, device), "cuDeviceGetAttribute(" + std::to_string(attribute) + ")");
  return value;
}

}  // namespace etc
