// RUN: etc-opt %s -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu{prefetch-bytes=2048}" | FileCheck %s
// RUN: etc-opt %s -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu" | FileCheck %s --check-prefix=OFF
// RUN: etc-opt %s -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu{prefetch-bytes=-16}" --verify-diagnostics --split-input-file

// Positive: 2048 bytes hold 16 of the linear tile's 32 weight rows (128 bytes each). Every thread of its
// worker copies them into shared memory at 96 KiB (cp.async) before thread 0 waits; the tile function
// waits for the copies, then reads those rows from shared memory. The gelu tile reads no weights.
// CHECK: "sm_task.kernel"({{.*}}shared_bytes = 100352 : i64
// CHECK-LABEL: func.func @etc_tile_0(
// CHECK: nvvm.cp.async.wait.group 0
// CHECK-LABEL: func.func @etc_run_0(
// CHECK: arith.constant 16 : i64
// CHECK: scf.for
// CHECK: nvvm.cp.async.shared.global %{{.*}}, %{{.*}}, 16, cache = {{ *}}cg
// CHECK: nvvm.cp.async.commit.group
// CHECK: scf.if
// CHECK: call @etc_tile_0
// CHECK-LABEL: func.func @etc_run_1(
// CHECK-NOT: nvvm.cp.async
// CHECK: call @etc_tile_1
// No match: prefetch-bytes=0 (the default) copies nothing.
// OFF-NOT: nvvm.cp.async
// Error (third RUN): a negative size.
// expected-error @below {{prefetch-bytes must be >= 0, got -16}}
func.func @step() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 8 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %w = "event_tensor.buffer"(%b) {name = "w", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (64, 64)>} : (index) -> !event_tensor.buf
  %h = "event_tensor.buffer"(%b) {name = "h", role = "workspace", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %y = "event_tensor.buffer"(%b) {name = "y", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>, output_index = 0 : i64} : (index) -> !event_tensor.buf
  %e = "event_tensor.event_tensor"(%b) {name = "h.done", shape = affine_map<()[s0] -> (1)>, wait_count = affine_map<(d0)[s0] -> (2)>} : (index) -> !event_tensor.event
  "event_tensor.task_grid"(%b, %x, %w, %h, %e) {operandSegmentSizes = array<i32: 1, 2, 1, 0, 1>, name = "proj", kind = "linear", grid = affine_map<()[s0] -> (2)>, wait_maps = [], notify_maps = [affine_map<(d0)[s0] -> (0)>], params = {in_features = 64 : i64, out_features = 64 : i64, tile_n = 32 : i64, has_bias = false, read_roles = ["x", "weight"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.event) -> ()
  "event_tensor.task_grid"(%b, %h, %y, %e) {operandSegmentSizes = array<i32: 1, 1, 1, 1, 0>, name = "act", kind = "gelu", schedule = "static", grid = affine_map<()[s0] -> (s0, 1)>, wait_maps = [affine_map<(d0, d1)[s0] -> (0)>], notify_maps = [], params = {tile_c = 64 : i64, approximate = "tanh", read_roles = ["x"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.event) -> ()
  return
}
