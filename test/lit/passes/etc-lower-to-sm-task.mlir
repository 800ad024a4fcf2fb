// RUN: etc-opt %s --split-input-file -p etc-lower-to-sm-task{policy=hybrid} --verify-diagnostics | FileCheck %s

// Positive (hybrid): a constant grid is static, a batch-sized grid dynamic, and a grid's own `schedule`
// wins. Counters keep the event tensors' dims, names and shapes, with target = wait_count; tasks get
// ids in program order and the counters as waits/signals; dims and buffers stay, event ops go.
// CHECK-DAG: #[[SHAPE:map[0-9]*]] = affine_map<()[s0] -> (4)>
// CHECK-DAG: #[[COUNT:map[0-9]*]] = affine_map<(d0)[s0] -> (s0)>
// CHECK-DAG: #[[ROWS:map[0-9]*]] = affine_map<()[s0] -> (s0, 4)>
// CHECK-DAG: #[[NOTIFY:map[0-9]*]] = affine_map<(d0, d1)[s0] -> (d1)>
// CHECK-LABEL: func.func @step
// CHECK: %[[B:.*]] = "event_tensor.dim"
// CHECK: %[[X:.*]] = "event_tensor.buffer"(%[[B]]) {{.*}}name = "x"
// CHECK: %[[W:.*]] = "event_tensor.buffer"() {{.*}}name = "w"
// CHECK: %[[H:.*]] = "event_tensor.buffer"(%[[B]]) {{.*}}name = "h"
// CHECK: %[[Y:.*]] = "event_tensor.buffer"(%[[B]]) {{.*}}name = "y"
// CHECK-NOT: event_tensor.event_tensor
// CHECK: "sm_task.kernel"(%[[B]], %[[X]], %[[W]], %[[H]], %[[Y]]) {block_size = 256 : i64, num_workers = 0 : i64, operandSegmentSizes = array<i32: 1, 4>, sym_name = "step"}
// CHECK: %[[C:.*]] = "sm_task.counter"(%[[B]]) {name = "h_ready", shape = #[[SHAPE]], target = #[[COUNT]]} : (index) -> !sm_task.counters
// CHECK: "sm_task.task"(%[[B]], %[[X]], %[[W]], %[[H]], %[[C]]) {grid = #[[ROWS]], id = 0 : i64, kind = "rms_norm", name = "norm", operandSegmentSizes = array<i32: 1, 2, 1, 0, 1>, params = {dim = 64 : i64, eps = 1.000000e-05 : f64}, schedule = "dynamic", signal_maps = [#[[NOTIFY]]], wait_maps = []}
// CHECK: "sm_task.task"(%[[B]], %[[H]], %[[W]], %[[Y]], %[[C]]) {{{.*}}id = 1 : i64, kind = "linear", name = "proj", operandSegmentSizes = array<i32: 1, 2, 1, 1, 0>, params = {tile_n = 64 : i64}, schedule = "static", signal_maps = [], wait_maps = [#{{.*}}]}
// CHECK: "sm_task.task"({{.*}}) {{{.*}}id = 2 : i64, {{.*}}name = "pinned", {{.*}}schedule = "static"
// CHECK-NOT: event_tensor.task_grid
// CHECK: return
func.func @step() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 64 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 256)>} : (index) -> !event_tensor.buf
  %w = "event_tensor.buffer"() {name = "w", role = "weight", element_type = bf16, sizes = affine_map<() -> (256, 256)>} : () -> !event_tensor.buf
  %h = "event_tensor.buffer"(%b) {name = "h", role = "workspace", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 256)>} : (index) -> !event_tensor.buf
  %y = "event_tensor.buffer"(%b) {name = "y", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 256)>} : (index) -> !event_tensor.buf
  %e = "event_tensor.event_tensor"(%b) {name = "h_ready", shape = affine_map<()[s0] -> (4)>, wait_count = affine_map<(d0)[s0] -> (s0)>} : (index) -> !event_tensor.event
  "event_tensor.task_grid"(%b, %x, %w, %h, %e) {operandSegmentSizes = array<i32: 1, 2, 1, 0, 1>, name = "norm", kind = "rms_norm", grid = affine_map<()[s0] -> (s0, 4)>, wait_maps = [], notify_maps = [affine_map<(d0, d1)[s0] -> (d1)>], params = {eps = 1.0e-05 : f64, dim = 64 : i64}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.event) -> ()
  "event_tensor.task_grid"(%b, %h, %w, %y, %e) {operandSegmentSizes = array<i32: 1, 2, 1, 1, 0>, name = "proj", kind = "linear", grid = affine_map<()[s0] -> (4)>, wait_maps = [affine_map<(d0)[s0] -> (d0)>], notify_maps = [], params = {tile_n = 64 : i64}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.event) -> ()
  "event_tensor.task_grid"(%b, %y, %y, %e) {operandSegmentSizes = array<i32: 1, 1, 1, 1, 0>, name = "pinned", kind = "gelu", schedule = "static", grid = affine_map<()[s0] -> (s0, 4)>, wait_maps = [affine_map<(d0, d1)[s0] -> (d1)>], notify_maps = [], params = {tile_c = 64 : i64}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.event) -> ()
  return
}

// -----

// No match: a function without task grids is left alone (no kernel).
// CHECK-LABEL: func.func @no_grids
// CHECK-NOT: sm_task
// CHECK: return
func.func @no_grids() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 64 : i64} : () -> index
  %e = "event_tensor.event_tensor"(%b) {name = "h", shape = affine_map<()[s0] -> (4)>, wait_count = affine_map<(d0)[s0] -> (1)>} : (index) -> !event_tensor.event
  return
}

// -----

// Error: a task grid that waits on an event tensor which only a later task grid notifies.
func.func @not_topological() {
  %e = "event_tensor.event_tensor"() {name = "h", shape = affine_map<() -> (4)>, wait_count = affine_map<(d0) -> (1)>} : () -> !event_tensor.event
  // expected-error @+1 {{task grid 'c' waits on event tensor 'h', which task grid 'p' notifies at or after it; task grids must be in topological order}}
  "event_tensor.task_grid"(%e) {operandSegmentSizes = array<i32: 0, 0, 0, 1, 0>, name = "c", kind = "gelu", grid = affine_map<() -> (4)>, wait_maps = [affine_map<(d0) -> (d0)>], notify_maps = [], params = {}} : (!event_tensor.event) -> ()
  "event_tensor.task_grid"(%e) {operandSegmentSizes = array<i32: 0, 0, 0, 0, 1>, name = "p", kind = "gelu", grid = affine_map<() -> (4)>, wait_maps = [], notify_maps = [affine_map<(d0) -> (d0)>], params = {}} : (!event_tensor.event) -> ()
  return
}

// -----

// Error: a task grid that waits on an event tensor nobody notifies.
func.func @never_notified() {
  %e = "event_tensor.event_tensor"() {name = "h", shape = affine_map<() -> (4)>, wait_count = affine_map<(d0) -> (1)>} : () -> !event_tensor.event
  // expected-error @+1 {{task grid 'c' waits on event tensor 'h', which no earlier task grid notifies}}
  "event_tensor.task_grid"(%e) {operandSegmentSizes = array<i32: 0, 0, 0, 1, 0>, name = "c", kind = "gelu", grid = affine_map<() -> (4)>, wait_maps = [affine_map<(d0) -> (d0)>], notify_maps = [], params = {}} : (!event_tensor.event) -> ()
  return
}

// -----

// Error: run-time driven triggers are not lowered yet.
func.func @runtime_trigger(%n: index) {
  %e = "event_tensor.event_tensor"() {name = "expert", shape = affine_map<() -> (8)>, wait_count = affine_map<(d0) -> (1)>} : () -> !event_tensor.event
  "event_tensor.task_grid"(%e) {operandSegmentSizes = array<i32: 0, 0, 0, 0, 1>, name = "route", kind = "router", grid = affine_map<() -> (8)>, wait_maps = [], notify_maps = [affine_map<(d0) -> (d0)>], params = {}} : (!event_tensor.event) -> ()
  // expected-error @+1 {{event_tensor.trigger is run-time driven; etc-lower-to-sm-task does not lower it yet}}
  "event_tensor.trigger"(%e, %n, %n) {operandSegmentSizes = array<i32: 1, 1, 1>} : (!event_tensor.event, index, index) -> ()
  return
}

// -----

// Error: an unknown schedule request on a task grid.
func.func @bad_schedule() {
  // expected-error @+1 {{task grid 'p' has schedule 'sometimes'; expected "static" or "dynamic"}}
  "event_tensor.task_grid"() {operandSegmentSizes = array<i32: 0, 0, 0, 0, 0>, name = "p", kind = "gelu", schedule = "sometimes", grid = affine_map<() -> (4)>, wait_maps = [], notify_maps = [], params = {}} : () -> ()
  return
}
