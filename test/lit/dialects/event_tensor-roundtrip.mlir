// RUN: etc-opt %s | etc-opt | FileCheck %s
// The event_tensor ops parse, verify and print back to IR that parses again unchanged.

// CHECK-LABEL: func.func @step
// CHECK: %[[B:.*]] = "event_tensor.dim"() {max = 64 : i64, min = 1 : i64, name = "batch"} : () -> index
// CHECK: "event_tensor.buffer"(%[[B]]) {element_type = i64, name = "tokens", role = "input", sizes = #{{.*}}} : (index) -> !event_tensor.buf
// CHECK: "event_tensor.buffer"() {element_type = bf16, name = "embed.weight", role = "weight", sizes = #{{.*}}} : () -> !event_tensor.buf
// CHECK: "event_tensor.event_tensor"(%[[B]]) {name = "h_ready", shape = #{{.*}}, wait_count = #{{.*}}} : (index) -> !event_tensor.event
// CHECK: "event_tensor.task_grid"({{.*}}) {grid = #{{.*}}, kind = "embedding", name = "embed", notify_maps = [#{{.*}}], operandSegmentSizes = array<i32: 1, 2, 1, 0, 1>
// CHECK: "event_tensor.task_grid"({{.*}}) {grid = #{{.*}}, kind = "rmsnorm", name = "norm", notify_maps = [], operandSegmentSizes = array<i32: 1, 1, 1, 1, 0>, params = {eps = 9.99999974E-6 : f32}, wait_maps = [#{{.*}}]}
// CHECK: "event_tensor.wait"(%{{.*}}, %{{.*}}) : (!event_tensor.event, index) -> ()
// CHECK: "event_tensor.notify"(%{{.*}}, %{{.*}}) : (!event_tensor.event, index) -> ()
// CHECK: "event_tensor.trigger"(%{{.*}}, %{{.*}}, %{{.*}}) {operandSegmentSizes = array<i32: 1, 1, 1>}
func.func @step() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 64 : i64} : () -> index
  %tokens = "event_tensor.buffer"(%b) {name = "tokens", role = "input", element_type = i64, sizes = affine_map<()[s0] -> (s0)>} : (index) -> !event_tensor.buf
  %embed = "event_tensor.buffer"() {name = "embed.weight", role = "weight", element_type = bf16, sizes = affine_map<() -> (256, 64)>} : () -> !event_tensor.buf
  %h = "event_tensor.buffer"(%b) {name = "h", role = "workspace", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %out = "event_tensor.buffer"(%b) {name = "out", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>, output_index = 0 : i64} : (index) -> !event_tensor.buf
  %e = "event_tensor.event_tensor"(%b) {name = "h_ready", shape = affine_map<()[s0] -> (1)>, wait_count = affine_map<(d0)[s0] -> (4)>} : (index) -> !event_tensor.event
  "event_tensor.task_grid"(%b, %tokens, %embed, %h, %e) {operandSegmentSizes = array<i32: 1, 2, 1, 0, 1>, name = "embed", kind = "embedding", grid = affine_map<()[s0] -> (4)>, wait_maps = [], notify_maps = [affine_map<(d0)[s0] -> (0)>], params = {}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.event) -> ()
  "event_tensor.task_grid"(%b, %h, %out, %e) {operandSegmentSizes = array<i32: 1, 1, 1, 1, 0>, name = "norm", kind = "rmsnorm", grid = affine_map<()[s0] -> (1)>, wait_maps = [affine_map<(d0)[s0] -> (0)>], notify_maps = [], params = {eps = 1.0e-05 : f32}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.event) -> ()
  %c0 = arith.constant 0 : index
  "event_tensor.wait"(%e, %c0) : (!event_tensor.event, index) -> ()
  "event_tensor.notify"(%e, %c0) : (!event_tensor.event, index) -> ()
  "event_tensor.trigger"(%e, %c0, %c0) {operandSegmentSizes = array<i32: 1, 1, 1>} : (!event_tensor.event, index, index) -> ()
  return
}
