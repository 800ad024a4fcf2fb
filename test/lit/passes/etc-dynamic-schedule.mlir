// RUN: etc-opt %s --split-input-file -p etc-dynamic-schedule --verify-diagnostics | FileCheck %s

// Positive (hybrid): the ready queue lists the dynamic tasks; its derived capacity is their tiles per
// step at the max sizes: 64 * 2 (batch <= 64) + 3 = 131. The static queue is kept.
// CHECK-LABEL: func.func @hybrid
// CHECK: "sm_task.static_queue"() {entries = array<i64: 0, 0, 1>, worker = 0 : i64}
// CHECK-NEXT: "sm_task.ready_queue"() {capacity = 131 : i64, early_push = false, tasks = array<i64: 1, 2>} : () -> ()
// CHECK-NEXT: return
func.func @hybrid() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 64 : i64} : () -> index
  %c = "sm_task.counter"() {name = "a", shape = affine_map<() -> (1)>, target = affine_map<(d0) -> (1)>} : () -> !sm_task.counters
  "sm_task.kernel"(%b) {operandSegmentSizes = array<i32: 1, 0>, sym_name = "hybrid", num_workers = 4 : i64, block_size = 128 : i64} : (index) -> ()
  "sm_task.task"(%c) {operandSegmentSizes = array<i32: 0, 0, 0, 0, 1>, id = 0 : i64, name = "first", kind = "gelu", schedule = "static", grid = affine_map<() -> (1)>, wait_maps = [], signal_maps = [affine_map<(d0) -> (0)>], params = {}} : (!sm_task.counters) -> ()
  "sm_task.task"(%b, %c) {operandSegmentSizes = array<i32: 1, 0, 0, 1, 0>, id = 1 : i64, name = "rows", kind = "gelu", schedule = "dynamic", grid = affine_map<()[s0] -> (s0, 2)>, wait_maps = [affine_map<(d0, d1)[s0] -> (0)>], signal_maps = [], params = {}} : (index, !sm_task.counters) -> ()
  "sm_task.task"() {operandSegmentSizes = array<i32: 0, 0, 0, 0, 0>, id = 2 : i64, name = "small", kind = "gelu", schedule = "dynamic", grid = affine_map<() -> (3)>, wait_maps = [], signal_maps = [], params = {}} : () -> ()
  "sm_task.static_queue"() {worker = 0 : i64, entries = array<i64: 0, 0, 1>} : () -> ()
  return
}

// -----

// No match: a kernel without dynamic tasks gets no ready queue.
// CHECK-LABEL: func.func @all_static
// CHECK-NOT: sm_task.ready_queue
// CHECK: return
func.func @all_static() {
  "sm_task.kernel"() {operandSegmentSizes = array<i32: 0, 0>, sym_name = "all_static", num_workers = 4 : i64, block_size = 128 : i64} : () -> ()
  "sm_task.task"() {operandSegmentSizes = array<i32: 0, 0, 0, 0, 0>, id = 0 : i64, name = "p", kind = "gelu", schedule = "static", grid = affine_map<() -> (4)>, wait_maps = [], signal_maps = [], params = {}} : () -> ()
  "sm_task.static_queue"() {worker = 0 : i64, entries = array<i64: 0, 0, 1>} : () -> ()
  return
}

// -----

// Error: the worker count is not set yet (etc-static-schedule sets it).
func.func @no_workers() {
  // expected-error @+1 {{kernel 'no_workers' has no workers yet; run etc-static-schedule (it sets num_workers) before etc-dynamic-schedule}}
  "sm_task.kernel"() {operandSegmentSizes = array<i32: 0, 0>, sym_name = "no_workers", num_workers = 0 : i64, block_size = 128 : i64} : () -> ()
  "sm_task.task"() {operandSegmentSizes = array<i32: 0, 0, 0, 0, 0>, id = 0 : i64, name = "p", kind = "gelu", schedule = "dynamic", grid = affine_map<() -> (4)>, wait_maps = [], signal_maps = [], params = {}} : () -> ()
  return
}

// -----

// Error: two tasks with one id cannot be told apart on the queue.
func.func @duplicate_ids() {
  "sm_task.kernel"() {operandSegmentSizes = array<i32: 0, 0>, sym_name = "duplicate_ids", num_workers = 4 : i64, block_size = 128 : i64} : () -> ()
  "sm_task.task"() {operandSegmentSizes = array<i32: 0, 0, 0, 0, 0>, id = 0 : i64, name = "p", kind = "gelu", schedule = "dynamic", grid = affine_map<() -> (4)>, wait_maps = [], signal_maps = [], params = {}} : () -> ()
  // expected-error @+1 {{task 'q' (id 0) has the same id as task 'p'}}
  "sm_task.task"() {operandSegmentSizes = array<i32: 0, 0, 0, 0, 0>, id = 0 : i64, name = "q", kind = "gelu", schedule = "dynamic", grid = affine_map<() -> (4)>, wait_maps = [], signal_maps = [], params = {}} : () -> ()
  return
}

// -----

// Error: a second ready queue.
func.func @twice() {
  // expected-error @+1 {{kernel 'twice' already has a ready queue}}
  "sm_task.kernel"() {operandSegmentSizes = array<i32: 0, 0>, sym_name = "twice", num_workers = 4 : i64, block_size = 128 : i64} : () -> ()
  "sm_task.task"() {operandSegmentSizes = array<i32: 0, 0, 0, 0, 0>, id = 0 : i64, name = "p", kind = "gelu", schedule = "dynamic", grid = affine_map<() -> (4)>, wait_maps = [], signal_maps = [], params = {}} : () -> ()
  "sm_task.ready_queue"() {capacity = 4 : i64, tasks = array<i64: 0>, early_push = false} : () -> ()
  return
}

// -----

// Error: at one row `merge` has no tiles, so counter `m` gets no signal and `proj` would never be pushed.
func.func @never_pushed() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 8 : i64} : () -> index
  %c = "sm_task.counter"(%b) {name = "m", shape = affine_map<()[s0] -> (1)>, target = affine_map<(d0)[s0] -> (s0 * ((s0 + 6) floordiv 8))>} : (index) -> !sm_task.counters
  "sm_task.kernel"(%b) {operandSegmentSizes = array<i32: 1, 0>, sym_name = "never_pushed", num_workers = 4 : i64, block_size = 128 : i64} : (index) -> ()
  "sm_task.task"(%b, %c) {operandSegmentSizes = array<i32: 1, 0, 0, 0, 1>, id = 0 : i64, name = "merge", kind = "gelu", schedule = "static", grid = affine_map<()[s0] -> (s0, (s0 + 6) floordiv 8)>, wait_maps = [], signal_maps = [affine_map<(d0, d1)[s0] -> (0)>], params = {}} : (index, !sm_task.counters) -> ()
  // expected-error @+1 {{task 'proj' (id 1) waits on counter 'm', which no tile signals at the smallest sizes: the ready queue would never push it (schedule it statically)}}
  "sm_task.task"(%b, %c) {operandSegmentSizes = array<i32: 1, 0, 0, 1, 0>, id = 1 : i64, name = "proj", kind = "gelu", schedule = "dynamic", grid = affine_map<()[s0] -> (s0, 1)>, wait_maps = [affine_map<(d0, d1)[s0] -> (0)>], signal_maps = [], params = {}} : (index, !sm_task.counters) -> ()
  "sm_task.static_queue"() {worker = 0 : i64, entries = array<i64: 0, 0, 1>} : () -> ()
  return
}
