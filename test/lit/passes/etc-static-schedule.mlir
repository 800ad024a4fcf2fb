// RUN: etc-opt %s --split-input-file -p etc-static-schedule{num-sms=4} --verify-diagnostics | FileCheck %s

// Positive: the 6 projection tiles go to 3 workers (2 tiles each; a 4th worker would not finish
// sooner), the independent 2-tile task fills the idle worker 3, and the batch x 8 consumer, ready when
// the projection is, spreads over all 4 workers. Every queue lists task ids in increasing order.
// CHECK-LABEL: func.func @step
// CHECK: "sm_task.kernel"({{.*}}) {block_size = 256 : i64, num_workers = 4 : i64,
// CHECK: "sm_task.static_queue"() {entries = array<i64: 0, 0, 3, 2, 0, 4>, worker = 0 : i64} : () -> ()
// CHECK-NEXT: "sm_task.static_queue"() {entries = array<i64: 0, 1, 3, 2, 1, 4>, worker = 1 : i64} : () -> ()
// CHECK-NEXT: "sm_task.static_queue"() {entries = array<i64: 0, 2, 3, 2, 2, 4>, worker = 2 : i64} : () -> ()
// CHECK-NEXT: "sm_task.static_queue"() {entries = array<i64: 1, 0, 1, 2, 3, 4>, worker = 3 : i64} : () -> ()
// CHECK-NEXT: return
func.func @step() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 64 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 512)>} : (index) -> !event_tensor.buf
  %w = "event_tensor.buffer"() {name = "w", role = "weight", element_type = bf16, sizes = affine_map<() -> (512, 512)>} : () -> !event_tensor.buf
  %h = "event_tensor.buffer"(%b) {name = "h", role = "workspace", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 512)>} : (index) -> !event_tensor.buf
  %y = "event_tensor.buffer"(%b) {name = "y", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 512)>} : (index) -> !event_tensor.buf
  "sm_task.kernel"(%b, %x, %w, %h, %y) {operandSegmentSizes = array<i32: 1, 4>, sym_name = "step", num_workers = 0 : i64, block_size = 256 : i64} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf) -> ()
  %c = "sm_task.counter"(%b) {name = "h_ready", shape = affine_map<()[s0] -> (8)>, target = affine_map<(d0)[s0] -> (1)>} : (index) -> !sm_task.counters
  "sm_task.task"(%b, %x, %w, %h, %c) {operandSegmentSizes = array<i32: 1, 2, 1, 0, 1>, id = 0 : i64, name = "proj", kind = "linear", schedule = "static", grid = affine_map<()[s0] -> (6)>, wait_maps = [], signal_maps = [affine_map<(d0)[s0] -> (d0)>], params = {tile_n = 64 : i64, read_roles = ["x", "weight"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !sm_task.counters) -> ()
  "sm_task.task"(%b, %x, %y) {operandSegmentSizes = array<i32: 1, 1, 1, 0, 0>, id = 1 : i64, name = "side", kind = "gelu", schedule = "static", grid = affine_map<()[s0] -> (2)>, wait_maps = [], signal_maps = [], params = {tile_c = 256 : i64, read_roles = ["x"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf) -> ()
  "sm_task.task"(%b, %h, %y, %c) {operandSegmentSizes = array<i32: 1, 1, 1, 1, 0>, id = 2 : i64, name = "act", kind = "gelu", schedule = "static", grid = affine_map<()[s0] -> (s0, 8)>, wait_maps = [affine_map<(d0, d1)[s0] -> (d1)>], signal_maps = [], params = {tile_c = 64 : i64, read_roles = ["x"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !sm_task.counters) -> ()
  return
}

// -----

// Positive (hybrid): the dynamic task gets no queue entries; the static tasks around it do.
// CHECK-LABEL: func.func @hybrid
// CHECK: num_workers = 4 : i64
// CHECK: "sm_task.static_queue"() {entries = array<i64: 0, 0, 2, 2, 0, 2>, worker = 0 : i64}
// CHECK-NEXT: "sm_task.static_queue"() {entries = array<i64: 0, 1, 2, 2, 1, 2>, worker = 1 : i64}
// CHECK-NEXT: return
func.func @hybrid() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 64 : i64} : () -> index
  %c0 = "sm_task.counter"() {name = "a", shape = affine_map<() -> (1)>, target = affine_map<(d0) -> (2)>} : () -> !sm_task.counters
  %c1 = "sm_task.counter"(%b) {name = "b", shape = affine_map<()[s0] -> (1)>, target = affine_map<(d0)[s0] -> (s0)>} : (index) -> !sm_task.counters
  "sm_task.kernel"(%b) {operandSegmentSizes = array<i32: 1, 0>, sym_name = "hybrid", num_workers = 0 : i64, block_size = 128 : i64} : (index) -> ()
  "sm_task.task"(%c0) {operandSegmentSizes = array<i32: 0, 0, 0, 0, 1>, id = 0 : i64, name = "first", kind = "gelu", schedule = "static", grid = affine_map<() -> (2)>, wait_maps = [], signal_maps = [affine_map<(d0) -> (0)>], params = {}} : (!sm_task.counters) -> ()
  "sm_task.task"(%b, %c0, %c1) {operandSegmentSizes = array<i32: 1, 0, 0, 1, 1>, id = 1 : i64, name = "rows", kind = "gelu", schedule = "dynamic", grid = affine_map<()[s0] -> (s0)>, wait_maps = [affine_map<(d0)[s0] -> (0)>], signal_maps = [affine_map<(d0)[s0] -> (0)>], params = {}} : (index, !sm_task.counters, !sm_task.counters) -> ()
  "sm_task.task"(%b, %c1) {operandSegmentSizes = array<i32: 1, 0, 0, 1, 0>, id = 2 : i64, name = "last", kind = "gelu", schedule = "static", grid = affine_map<()[s0] -> (2)>, wait_maps = [affine_map<(d0)[s0] -> (0)>], signal_maps = [], params = {}} : (index, !sm_task.counters) -> ()
  return
}

// -----

// Positive (a grid that grows with the batch): at the representative batch 1 the `rows` task has one
// tile, which goes to worker 1 (worker 0 runs `first`); workers 2, 3 and 0 follow with stride 4, so a
// larger batch spreads over every worker.
// CHECK-LABEL: func.func @growing
// CHECK: "sm_task.static_queue"() {entries = array<i64: 0, 0, 1, 1, 3, 4>, worker = 0 : i64}
// CHECK-NEXT: "sm_task.static_queue"() {entries = array<i64: 1, 0, 4>, worker = 1 : i64}
// CHECK-NEXT: "sm_task.static_queue"() {entries = array<i64: 1, 1, 4>, worker = 2 : i64}
// CHECK-NEXT: "sm_task.static_queue"() {entries = array<i64: 1, 2, 4>, worker = 3 : i64}
// CHECK-NEXT: return
func.func @growing() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 64 : i64} : () -> index
  "sm_task.kernel"(%b) {operandSegmentSizes = array<i32: 1, 0>, sym_name = "growing", num_workers = 0 : i64, block_size = 128 : i64} : (index) -> ()
  "sm_task.task"() {operandSegmentSizes = array<i32: 0, 0, 0, 0, 0>, id = 0 : i64, name = "first", kind = "gelu", schedule = "static", grid = affine_map<() -> (1)>, wait_maps = [], signal_maps = [], params = {}} : () -> ()
  "sm_task.task"(%b) {operandSegmentSizes = array<i32: 1, 0, 0, 0, 0>, id = 1 : i64, name = "rows", kind = "gelu", schedule = "static", grid = affine_map<()[s0] -> (s0)>, wait_maps = [], signal_maps = [], params = {}} : (index) -> ()
  return
}

// -----

// No match: event_tensor IR without an sm_task.kernel is left alone.
// CHECK-LABEL: func.func @not_lowered
// CHECK-NOT: sm_task
// CHECK: return
func.func @not_lowered() {
  "event_tensor.task_grid"() {operandSegmentSizes = array<i32: 0, 0, 0, 0, 0>, name = "p", kind = "gelu", grid = affine_map<() -> (4)>, wait_maps = [], notify_maps = [], params = {}} : () -> ()
  return
}

// -----

// Error: a task that waits on a counter a later task signals (ids are not topological).
func.func @not_topological() {
  %c = "sm_task.counter"() {name = "h", shape = affine_map<() -> (1)>, target = affine_map<(d0) -> (1)>} : () -> !sm_task.counters
  "sm_task.kernel"() {operandSegmentSizes = array<i32: 0, 0>, sym_name = "not_topological", num_workers = 0 : i64, block_size = 128 : i64} : () -> ()
  // expected-error @+1 {{task 'c' (id 0) waits on counter 'h', which task 'p' (id 1) signals; task ids must be a topological order}}
  "sm_task.task"(%c) {operandSegmentSizes = array<i32: 0, 0, 0, 1, 0>, id = 0 : i64, name = "c", kind = "gelu", schedule = "static", grid = affine_map<() -> (1)>, wait_maps = [affine_map<(d0) -> (0)>], signal_maps = [], params = {}} : (!sm_task.counters) -> ()
  "sm_task.task"(%c) {operandSegmentSizes = array<i32: 0, 0, 0, 0, 1>, id = 1 : i64, name = "p", kind = "gelu", schedule = "static", grid = affine_map<() -> (1)>, wait_maps = [], signal_maps = [affine_map<(d0) -> (0)>], params = {}} : (!sm_task.counters) -> ()
  return
}

// -----

// Error: a task that etc-lower-to-sm-task did not mark static or dynamic.
func.func @unmarked() {
  "sm_task.kernel"() {operandSegmentSizes = array<i32: 0, 0>, sym_name = "unmarked", num_workers = 0 : i64, block_size = 128 : i64} : () -> ()
  // expected-error @+1 {{task 'p' (id 0) has no schedule attribute (etc-lower-to-sm-task sets it)}}
  "sm_task.task"() {operandSegmentSizes = array<i32: 0, 0, 0, 0, 0>, id = 0 : i64, name = "p", kind = "gelu", grid = affine_map<() -> (1)>, wait_maps = [], signal_maps = [], params = {}} : () -> ()
  return
}

// -----

// Error: scheduling twice.
func.func @twice() {
  // expected-error @+1 {{kernel 'twice' already has static queues}}
  "sm_task.kernel"() {operandSegmentSizes = array<i32: 0, 0>, sym_name = "twice", num_workers = 4 : i64, block_size = 128 : i64} : () -> ()
  "sm_task.task"() {operandSegmentSizes = array<i32: 0, 0, 0, 0, 0>, id = 0 : i64, name = "p", kind = "gelu", schedule = "static", grid = affine_map<() -> (1)>, wait_maps = [], signal_maps = [], params = {}} : () -> ()
  "sm_task.static_queue"() {worker = 0 : i64, entries = array<i64: 0, 0, 1>} : () -> ()
  return
}
