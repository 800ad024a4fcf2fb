// RUN: etc-opt %s --split-input-file -p etc-derive-wait-counts --verify-diagnostics | FileCheck %s

// Positive: 16 x ceil(batch/8) producer tiles, 4 rows of them per element: 4 * ceil(batch/8) notifies each.
// CHECK: #[[COUNT:map[0-9]*]] = affine_map<(d0)[s0] -> ((s0 ceildiv 8) * 4)>
// CHECK-LABEL: func.func @floordiv_and_projection
// CHECK: "event_tensor.event_tensor"(%{{.*}}) {name = "h", shape = #{{.*}}, wait_count = #[[COUNT]]}
func.func @floordiv_and_projection() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 64 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "workspace", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %e = "event_tensor.event_tensor"(%b) {name = "h", shape = affine_map<()[s0] -> (4)>, wait_count = affine_map<(d0)[s0] -> (1)>} : (index) -> !event_tensor.event
  "event_tensor.task_grid"(%b, %x, %e) {operandSegmentSizes = array<i32: 1, 0, 1, 0, 1>, name = "p", kind = "gemv", grid = affine_map<()[s0] -> (16, s0 ceildiv 8)>, wait_maps = [], notify_maps = [affine_map<(d0, d1)[s0] -> (d0 floordiv 4)>], params = {}} : (index, !event_tensor.buf, !event_tensor.event) -> ()
  "event_tensor.task_grid"(%b, %x, %e) {operandSegmentSizes = array<i32: 1, 1, 0, 1, 0>, name = "c", kind = "rmsnorm", grid = affine_map<()[s0] -> (4)>, wait_maps = [affine_map<(d0)[s0] -> (d0)>], notify_maps = [], params = {}} : (index, !event_tensor.buf, !event_tensor.event) -> ()
  return
}

// -----

// Positive: two producers (the grid uses symbols in another order than the event tensor) add up.
// CHECK: #[[C2:map[0-9]*]] = affine_map<(d0)[s0, s1] -> (s1 ceildiv 256 + 1)>
// CHECK-LABEL: func.func @two_producers_symbol_order
// CHECK: wait_count = #[[C2]]
func.func @two_producers_symbol_order() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 64 : i64} : () -> index
  %t = "event_tensor.dim"() {name = "kv_len", min = 1 : i64, max = 4096 : i64} : () -> index
  %e = "event_tensor.event_tensor"(%b, %t) {name = "o", shape = affine_map<()[s0, s1] -> (1)>, wait_count = affine_map<(d0)[s0, s1] -> (0)>} : (index, index) -> !event_tensor.event
  "event_tensor.task_grid"(%t, %b, %e) {operandSegmentSizes = array<i32: 2, 0, 0, 0, 1>, name = "split", kind = "attention", grid = affine_map<()[s0, s1] -> (s0 ceildiv 256)>, wait_maps = [], notify_maps = [affine_map<(d0)[s0, s1] -> (0)>], params = {}} : (index, index, !event_tensor.event) -> ()
  "event_tensor.task_grid"(%e) {operandSegmentSizes = array<i32: 0, 0, 0, 0, 1>, name = "extra", kind = "elementwise", grid = affine_map<() -> (1)>, wait_maps = [], notify_maps = [affine_map<(d0) -> (0)>], params = {}} : (!event_tensor.event) -> ()
  return
}

// -----

// No match: an event tensor that a run-time trigger also reaches keeps its count.
// CHECK: #[[KEEP:map[0-9]*]] = affine_map<(d0) -> (7)>
// CHECK-LABEL: func.func @runtime_driven
// CHECK: wait_count = #[[KEEP]]
func.func @runtime_driven(%n: index) {
  %e = "event_tensor.event_tensor"() {name = "expert", shape = affine_map<() -> (8)>, wait_count = affine_map<(d0) -> (7)>} : () -> !event_tensor.event
  "event_tensor.task_grid"(%e) {operandSegmentSizes = array<i32: 0, 0, 0, 0, 1>, name = "route", kind = "router", grid = affine_map<() -> (8)>, wait_maps = [], notify_maps = [affine_map<(d0) -> (d0)>], params = {}} : (!event_tensor.event) -> ()
  "event_tensor.trigger"(%e, %n, %n) {operandSegmentSizes = array<i32: 1, 1, 1>} : (!event_tensor.event, index, index) -> ()
  return
}

// -----

// Error: 10 producer rows grouped by 4 leave a short last group, so the count is not uniform.
func.func @uneven_floordiv() {
  %e = "event_tensor.event_tensor"() {name = "h", shape = affine_map<() -> (3)>, wait_count = affine_map<(d0) -> (1)>} : () -> !event_tensor.event
  // expected-error @+1 {{cannot derive the wait count of event tensor 'h' from task grid 'p': grid extent 10 of d0 is not a known multiple of 4}}
  "event_tensor.task_grid"(%e) {operandSegmentSizes = array<i32: 0, 0, 0, 0, 1>, name = "p", kind = "gemv", grid = affine_map<() -> (10)>, wait_maps = [], notify_maps = [affine_map<(d0) -> (d0 floordiv 4)>], params = {}} : (!event_tensor.event) -> ()
  return
}

// -----

// Error: a notify map that skews coordinates has no uniform count.
func.func @skewed_map() {
  %e = "event_tensor.event_tensor"() {name = "h", shape = affine_map<() -> (8)>, wait_count = affine_map<(d0) -> (1)>} : () -> !event_tensor.event
  // expected-error @+1 {{notify coordinate d0 + d1 is not d_k, d_k floordiv c or 0}}
  "event_tensor.task_grid"(%e) {operandSegmentSizes = array<i32: 0, 0, 0, 0, 1>, name = "p", kind = "gemv", grid = affine_map<() -> (4, 4)>, wait_maps = [], notify_maps = [affine_map<(d0, d1) -> (d0 + d1)>], params = {}} : (!event_tensor.event) -> ()
  return
}

// -----

// Error: a notify map of the wrong arity is reported at the grid, not a crash.
func.func @wrong_arity() {
  %e = "event_tensor.event_tensor"() {name = "h", shape = affine_map<() -> (4)>, wait_count = affine_map<(d0) -> (1)>} : () -> !event_tensor.event
  // expected-error @+1 {{'notify_maps' map (d0, d1, d2) -> (d2) takes 3 coordinates, expected 1}}
  "event_tensor.task_grid"(%e) {operandSegmentSizes = array<i32: 0, 0, 0, 0, 1>, name = "p", kind = "gemv", grid = affine_map<() -> (4)>, wait_maps = [], notify_maps = [affine_map<(d0, d1, d2) -> (d2)>], params = {}} : (!event_tensor.event) -> ()
  return
}
