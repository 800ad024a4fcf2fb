// RUN: etc-opt %s -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu{ring-kib=128}" | FileCheck %s --check-prefix=FULL
// RUN: etc-opt %s -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu{ring-kib=64}" | FileCheck %s --check-prefix=HALF
// RUN: etc-opt %s -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu" | FileCheck %s --check-prefix=HALF
// RUN: etc-opt %s -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu{ring-kib=40}" --verify-diagnostics

// Positive: a tile of 32 columns of 2048 bf16 streams 4 blocks of 32 KiB (8 whole rows each). With
// ring-kib=128 its stream has 4 stages (the issue function inits 4 mbarriers and issues all 4 blocks
// before the waits), with 64 it has 2. ring-kib=0 (the default) picks 64: 256 KiB of weights over 2
// workers is a small model (weight_stream.auto_ring_bytes). The ring's space and the launch's shared
// memory stay the same (229440, then 8 bytes for each of the 1 symbol, the step's epoch and 3 buffers the worker keeps there).
// FULL: "sm_task.kernel"({{.*}}shared_bytes = 229480 : i64
// FULL-LABEL: func.func @etc_tile_0_issue(
// FULL-COUNT-4: nvvm.mbarrier.init
// FULL-NOT: nvvm.mbarrier.init
// HALF: "sm_task.kernel"({{.*}}shared_bytes = 229480 : i64
// HALF-LABEL: func.func @etc_tile_0_issue(
// HALF-COUNT-2: nvvm.mbarrier.init
// HALF-NOT: nvvm.mbarrier.init
// Error (fourth RUN): a ring size that is not a multiple of 16 KiB.
// expected-error @+1 {{ring-kib must be 0 or a multiple of 16 from 32 to 128, got 40}}
func.func @step() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 8 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 2048)>} : (index) -> !event_tensor.buf
  %w = "event_tensor.buffer"(%b) {name = "w", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (64, 2048)>} : (index) -> !event_tensor.buf
  %y = "event_tensor.buffer"(%b) {name = "y", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>, output_index = 0 : i64} : (index) -> !event_tensor.buf
  "event_tensor.task_grid"(%b, %x, %w, %y) {operandSegmentSizes = array<i32: 1, 2, 1, 0, 0>, name = "proj", kind = "linear", grid = affine_map<()[s0] -> (2)>, wait_maps = [], notify_maps = [], params = {in_features = 2048 : i64, out_features = 64 : i64, tile_n = 32 : i64, has_bias = false, read_roles = ["x", "weight"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf) -> ()
  return
}
