// The CUDA driver API, loaded at run time. Every failing call becomes an etc::CudaError whose
// message carries the call, the CUDA error name and its description.
#pragma once

#include <stdexcept>
#include <string>

namespace etc {

class CudaError : public std::runtime_error {
 public:
  explicit CudaError(const std::string& what) : std::runtime_error(what) {}
};

// The subset of the driver API the runtime uses; entry points are resolved from libcuda.so.1.
class Driver {
 public:
  // Loads the driver; throws CudaError("no CUDA driver: ...") when it is absent.
  static Driver& get();

  int device_count();
  std::string device_name(int ordinal);
  int driver_version();

  // Throws CudaError naming `call` unless `status` is CUDA_SUCCESS (0).
  void check(int status, const char* call);

 private:
  Driver();
  void* lib_ = nullptr;
  int (*cuInit_)(unsigned) = nullptr;
  int (*cuDriverGetVersion_)(int*) = nullptr;
  int (*cuDeviceGetCount_)(int*) = nullptr;
  int (*cuDeviceGet_)(int*, int) = nullptr;
  int (*cuDeviceGetName_)(char*, int, int) = nullptr;
  int (*cuGetErrorName_)(int, const char**) = nullptr;
  int (*cuGetErrorString_)(int, const char**) = nullptr;
};

}  // namespace etc
