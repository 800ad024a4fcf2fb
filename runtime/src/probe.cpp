// etc-runtime-probe: prints the CUDA driver version and devices; exit 3 with the reason when there
// is no usable driver, 1 on any other CUDA error.
#include <cstdio>
#include <string>

#include "etc/driver.h"

int main() {
  try {
    etc::Driver& driver = etc::Driver::get();
    std::printf("driver %d, %d device(s)\n", driver.driver_version(), driver.device_count());
    for (int i = 0; i < driver.device_count(); ++i) std::printf("  %d: %s\n", i, driver.device_name(i).c_str());
    return 0;
  } catch (const etc::CudaError& e) {
    std::fprintf(stderr, "etc-runtime-probe: %s\n", e.what());
    return std::string(e.what()).rfind("no CUDA driver", 0) == 0 ? 3 : 1;
  }
}
