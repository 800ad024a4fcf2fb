#include "etc/driver.h"

#include <dlfcn.h>

namespace etc {
namespace {

template <typename Fn>
void resolve(void* lib, const char* name, Fn& fn) {
  fn = reinterpret_cast<Fn>(dlsym(lib, name));
  if (fn == nullptr) throw CudaError(std::string("CUDA driver lacks ") + name);
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
  resolve(lib_, "cuInit", cuInit_);
  resolve(lib_, "cuDriverGetVersion", cuDriverGetVersion_);
  resolve(lib_, "cuDeviceGetCount", cuDeviceGetCount_);
  resolve(lib_, "cuDeviceGet", cuDeviceGet_);
  resolve(lib_, "cuDeviceGetName", cuDeviceGetName_);
  resolve(lib_, "cuGetErrorName", cuGetErrorName_);
  resolve(lib_, "cuGetErrorString", cuGetErrorString_);
  check(cuInit_(0), "cuInit");
}

void Driver::check(int status, const char* call) {
  if (status == 0) return;
  const char* name = "CUDA_ERROR_UNKNOWN";
  const char* text = "unknown error";
  cuGetErrorName_(status, &name);
  cuGetErrorString_(status, &text);
  throw CudaError(std::string(call) + " failed: " + name + " (" + std::to_string(status) + "): " + text);
}

int Driver::device_count() {
  int n = 0;
  check(cuDeviceGetCount_(&n), "cuDeviceGetCount");
  return n;
}

std::string Driver::device_name(int ordinal) {
  int device = 0;
  check(cuDeviceGet_(&device, ordinal), "cuDeviceGet");
  char name[256] = {0};
  check(cuDeviceGetName_(name, sizeof(name) - 1, device), "cuDeviceGetName");
  return name;
}

int Driver::driver_version() {
  int version = 0;
  check(cuDriverGetVersion_(&version), "cuDriverGetVersion");
  return version;
}

}  // namespace etc
