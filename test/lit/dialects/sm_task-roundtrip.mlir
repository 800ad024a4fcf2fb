// RUN: etc-opt %s | etc-opt | FileCheck %s
// The sm_task ops parse, verify and print back to IR that parses again unchanged.

// CHECK-LABEL: func.func @step
// CHECK: "sm_task.kernel"(%{{.*}}, %{{.*}}, %{{.*}}) {block_size = 256 : i64, num_workers = 132 : i64, operandSegmentSizes = array<i32: 1, 2>, sym_name = "step_kernel"}
// CHECK: "sm_task.counter"(%{{.*}}) {name = "h_ready", shape = #{{.*}}, target = #{{.*}}} : (index) -> !sm_task.counters
// CHECK: "sm_task.task"({{.*}}) {grid = #{{.*}}, id = 0 : i64, kind = "embedding", name = "embed", operandSegmentSizes = array<i32: 1, 1, 1, 0, 1>, params = {}, signal_maps = [#{{.*}}], wait_maps = []}
// CHECK: "sm_task.static_queue"() {entries = array<i64: 0, 0, 0, 1>, worker = 0 : i64}
// CHECK: "sm_task.ready_queue"() {capacity = 1024 : i64, tasks = array<i64: 0>}
// CHECK: "sm_task.wait"(%{{.*}}, %{{.*}}, %{{.*}}) {operandSegmentSizes = array<i32: 1, 1, 1>}
// CHECK: "sm_task.signal"(%{{.*}}, %{{.*}}) : (!sm_task.counters, index) -> ()
func.func @step() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 64 : i64} : () -> index
  %tokens = "event_tensor.buffer"(%b) {name = "tokens", role = "input", element_type = i64, sizes = affine_map<()[s0] -> (s0)>} : (index) -> !event_tensor.buf
  %h = "event_tensor.buffer"(%b) {name = "h", role = "workspace", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  "sm_task.kernel"(%b, %tokens, %h) {operandSegmentSizes = array<i32: 1, 2>, sym_name = "step_kernel", num_workers = 132 : i64, block_size = 256 : i64} : (index, !event_tensor.buf, !event_tensor.buf) -> ()
  %c = "sm_task.counter"(%b) {name = "h_ready", shape = affine_map<()[s0] -> (1)>, target = affine_map<(d0)[s0] -> (2)>} : (index) -> !sm_task.counters
  "sm_task.task"(%b, %tokens, %h, %c) {operandSegmentSizes = array<i32: 1, 1, 1, 0, 1>, id = 0 : i64, name = "embed", kind = "embedding", grid = affine_map<()[s0] -> (2)>, wait_maps = [], signal_maps = [affine_map<(d0)[s0] -> (0)>], params = {}} : (index, !event_tensor.buf, !event_tensor.buf, !sm_task.counters) -> ()
  "sm_task.static_queue"() {worker = 0 : i64, entries = array<i64: 0, 0, 0, 1>} : () -> ()
  "sm_task.ready_queue"() {capacity = 1024 : i64, tasks = array<i64: 0>} : () -> ()
  %c0 = arith.constant 0 : index
  %two = arith.constant 2 : index
  "sm_task.wait"(%c, %c0, %two) {operandSegmentSizes = array<i32: 1, 1, 1>} : (!sm_task.counters, index, index) -> ()
  "sm_task.signal"(%c, %c0) : (!sm_task.counters, index) -> ()
  return
}
