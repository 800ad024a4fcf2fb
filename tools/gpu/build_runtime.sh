#!/usr/bin/env bash
# Build libetc_runtime (Release) with CMake into runtime/build, where etc.runtime finds it first;
# prints the library's path on stdout (the build's own output goes to stderr).
# Needs CMake and a C++17 compiler only: the CUDA driver is loaded at run time, no toolkit is used.
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake -S runtime -B runtime/build -DCMAKE_BUILD_TYPE=Release >&2
cmake --build runtime/build -j "$(nproc 2>/dev/null || echo 4)" >&2
echo "$PWD/runtime/build/libetc_runtime.so"
