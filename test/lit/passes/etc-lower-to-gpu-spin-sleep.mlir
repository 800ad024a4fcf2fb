// RUN: etc-opt %s -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu" | FileCheck %s
// RUN: etc-opt %s -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu{spin-sleep=0}" | FileCheck %s --check-prefix=SPIN
// RUN: etc-opt %s -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu{spin-sleep=-5}" --verify-diagnostics
// RUN: etc-opt %s -p "etc-lower-to-sm-task{policy=dynamic},etc-static-schedule{num-sms=2},etc-dynamic-schedule{early-push=false},etc-lower-to-gpu{spin-sleep=77}" | FileCheck %s --check-prefix=DYN

// Positive: a waiting worker sleeps 32 ns between polls of its counter (measured best on the H200 against
// 0 and 256: bench/results/2026-11-29-h200-stream/call7).
// CHECK-LABEL: func.func @etc_run_1(
// CHECK: scf.while
// CHECK: arith.constant 32 : i32
// CHECK-NEXT: nvvm.nanosleep
// The dynamic schedule's ready-queue poll sleeps the same.
// DYN: gpu.func @etc_megakernel
// DYN: arith.constant 77 : i32
// DYN-NEXT: nvvm.nanosleep
// No match: spin-sleep=0 polls without sleeping.
// SPIN-NOT: nvvm.nanosleep
// Error (third RUN): a negative sleep.
// expected-error @+1 {{spin-sleep must be in [0, 1000000] ns, got -5}}
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
