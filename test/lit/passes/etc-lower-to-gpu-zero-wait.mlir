// RUN: etc-opt %s -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu" | FileCheck %s

// Positive: `merge` has no tiles at one row (grid (s0, (s0 + 6) floordiv 8), batch max 8), so the event
// `m.done` that `proj` waits on can have a target of 0 in a step: that wait's target is then 0, which
// the poll passes at once (a word nobody signalled this step still holds an earlier epoch). The wait on
// `a.done` (2 tiles of `act`, never 0) keeps its plain (epoch << 32) + count target. `proj`'s two waits
// are polled together: both words loaded (relaxed) before either is compared, then one acquire fence.
// CHECK-LABEL: func.func @etc_run_2(
// CHECK: arith.floordivsi
// CHECK-NEXT: %[[N:.*]] = arith.muli
// CHECK: %[[T:.*]] = arith.addi %{{.*}}, %[[N]] : i64
// CHECK: %[[NONE:.*]] = arith.cmpi eq, %[[N]], %c0_i64
// CHECK: %[[TARGET:.*]] = arith.select %[[NONE]], %c0_i64{{.*}}, %[[T]] : i64
// CHECK-NOT: arith.select
// CHECK: scf.while
// CHECK-NEXT: %[[M:.*]] = llvm.load {{.*}} atomic syncscope("device") monotonic
// CHECK-NEXT: %[[A:.*]] = llvm.load {{.*}} atomic syncscope("device") monotonic
// CHECK-NEXT: arith.cmpi ult, %[[M]], %[[TARGET]] : i64
// CHECK: arith.cmpi ult, %[[A]], %{{.*}} : i64
// CHECK: scf.condition
// CHECK: llvm.fence syncscope("device") acquire
// CHECK-NOT: scf.while
// CHECK: call @etc_tile_0(
func.func @step() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 8 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %h = "event_tensor.buffer"(%b) {name = "h", role = "workspace", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %g = "event_tensor.buffer"(%b) {name = "g", role = "workspace", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %y = "event_tensor.buffer"(%b) {name = "y", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>, output_index = 0 : i64} : (index) -> !event_tensor.buf
  %em = "event_tensor.event_tensor"(%b) {name = "m.done", shape = affine_map<()[s0] -> (1)>, wait_count = affine_map<(d0)[s0] -> (s0 * ((s0 + 6) floordiv 8))>} : (index) -> !event_tensor.event
  %ea = "event_tensor.event_tensor"(%b) {name = "a.done", shape = affine_map<()[s0] -> (1)>, wait_count = affine_map<(d0)[s0] -> (2)>} : (index) -> !event_tensor.event
  "event_tensor.task_grid"(%b, %x, %h, %em) {operandSegmentSizes = array<i32: 1, 1, 1, 0, 1>, name = "merge", kind = "gelu", schedule = "static", grid = affine_map<()[s0] -> (s0, (s0 + 6) floordiv 8)>, wait_maps = [], notify_maps = [affine_map<(d0, d1)[s0] -> (0)>], params = {tile_c = 64 : i64, approximate = "tanh", read_roles = ["x"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.event) -> ()
  "event_tensor.task_grid"(%b, %x, %g, %ea) {operandSegmentSizes = array<i32: 1, 1, 1, 0, 1>, name = "act", kind = "gelu", schedule = "static", grid = affine_map<()[s0] -> (2, 1)>, wait_maps = [], notify_maps = [affine_map<(d0, d1)[s0] -> (0)>], params = {tile_c = 64 : i64, approximate = "tanh", read_roles = ["x"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.event) -> ()
  "event_tensor.task_grid"(%b, %h, %y, %em, %ea) {operandSegmentSizes = array<i32: 1, 1, 1, 2, 0>, name = "proj", kind = "gelu", schedule = "static", grid = affine_map<()[s0] -> (s0, 1)>, wait_maps = [affine_map<(d0, d1)[s0] -> (0)>, affine_map<(d0, d1)[s0] -> (0)>], notify_maps = [], params = {tile_c = 64 : i64, approximate = "tanh", read_roles = ["x"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.event, !event_tensor.event) -> ()
  return
}
