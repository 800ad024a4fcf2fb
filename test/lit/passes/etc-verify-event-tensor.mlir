// RUN: etc-opt %s --split-input-file -p etc-verify-event-tensor --verify-diagnostics | FileCheck %s

// Positive: well-formed IR passes through unchanged.
// CHECK-LABEL: func.func @well_formed
// CHECK: "event_tensor.task_grid"{{.*}}name = "p"
// CHECK: "event_tensor.task_grid"{{.*}}name = "c"
func.func @well_formed() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 64 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "workspace", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %e = "event_tensor.event_tensor"(%b) {name = "h", shape = affine_map<()[s0] -> (4)>, wait_count = affine_map<(d0)[s0] -> (1)>} : (index) -> !event_tensor.event
  "event_tensor.task_grid"(%b, %x, %e) {operandSegmentSizes = array<i32: 1, 0, 1, 0, 1>, name = "p", kind = "gemv", grid = affine_map<()[s0] -> (4)>, wait_maps = [], notify_maps = [affine_map<(d0)[s0] -> (d0)>], params = {}} : (index, !event_tensor.buf, !event_tensor.event) -> ()
  "event_tensor.task_grid"(%b, %x, %e) {operandSegmentSizes = array<i32: 1, 1, 0, 1, 0>, name = "c", kind = "rmsnorm", grid = affine_map<()[s0] -> (4)>, wait_maps = [affine_map<(d0)[s0] -> (d0)>], notify_maps = [], params = {}} : (index, !event_tensor.buf, !event_tensor.event) -> ()
  return
}

// -----

// No match: IR without event_tensor ops is left alone.
// CHECK-LABEL: func.func @plain
// CHECK: arith.addi
func.func @plain(%a: index) -> index {
  %0 = arith.addi %a, %a : index
  return %0 : index
}

// -----

func.func @waited_never_notified() {
  // expected-error @+1 {{event tensor 'h' is waited on but never notified: its waiters would deadlock}}
  %e = "event_tensor.event_tensor"() {name = "h", shape = affine_map<() -> (4)>, wait_count = affine_map<(d0) -> (1)>} : () -> !event_tensor.event
  "event_tensor.task_grid"(%e) {operandSegmentSizes = array<i32: 0, 0, 0, 1, 0>, name = "c", kind = "rmsnorm", grid = affine_map<() -> (4)>, wait_maps = [affine_map<(d0) -> (d0)>], notify_maps = [], params = {}} : (!event_tensor.event) -> ()
  return
}

// -----

func.func @wait_map_rank() {
  %e = "event_tensor.event_tensor"() {name = "h", shape = affine_map<() -> (4)>, wait_count = affine_map<(d0) -> (1)>} : () -> !event_tensor.event
  "event_tensor.task_grid"(%e) {operandSegmentSizes = array<i32: 0, 0, 0, 0, 1>, name = "p", kind = "gemv", grid = affine_map<() -> (4)>, wait_maps = [], notify_maps = [affine_map<(d0) -> (d0)>], params = {}} : (!event_tensor.event) -> ()
  // expected-error @+1 {{'wait_maps' map (d0, d1) -> (d0) takes 2 coordinates, expected 1}}
  "event_tensor.task_grid"(%e) {operandSegmentSizes = array<i32: 0, 0, 0, 1, 0>, name = "c", kind = "rmsnorm", grid = affine_map<() -> (4)>, wait_maps = [affine_map<(d0, d1) -> (d0)>], notify_maps = [], params = {}} : (!event_tensor.event) -> ()
  return
}

// -----

func.func @symbols_match_dims() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 64 : i64} : () -> index
  // expected-error @+1 {{'grid' map ()[s0, s1] -> (s0) has 2 symbols but the op has 1 dims operands}}
  "event_tensor.task_grid"(%b) {operandSegmentSizes = array<i32: 1, 0, 0, 0, 0>, name = "g", kind = "gemv", grid = affine_map<()[s0, s1] -> (s0)>, wait_maps = [], notify_maps = [], params = {}} : (index) -> ()
  return
}

// -----

func.func @names_and_roles() {
  // expected-error @+1 {{range [9, 2] of symbolic size 'batch' is empty or negative}}
  %b = "event_tensor.dim"() {name = "batch", min = 9 : i64, max = 2 : i64} : () -> index
  // expected-error @+1 {{buffer role 'scratch' is not one of input, output, weight, kv_cache, workspace}}
  %s = "event_tensor.buffer"() {name = "s", role = "scratch", element_type = f32, sizes = affine_map<() -> (4)>} : () -> !event_tensor.buf
  %w = "event_tensor.buffer"() {name = "w", role = "weight", element_type = bf16, sizes = affine_map<() -> (4)>} : () -> !event_tensor.buf
  // expected-error @+1 {{task grid 'g' writes read-only buffer 'w'}}
  "event_tensor.task_grid"(%w) {operandSegmentSizes = array<i32: 0, 0, 1, 0, 0>, name = "g", kind = "gemv", grid = affine_map<() -> (1)>, wait_maps = [], notify_maps = [], params = {}} : (!event_tensor.buf) -> ()
  // expected-error @+1 {{task grid name 'g' is used twice}}
  "event_tensor.task_grid"() {operandSegmentSizes = array<i32: 0, 0, 0, 0, 0>, name = "g", kind = "gemv", grid = affine_map<() -> (1)>, wait_maps = [], notify_maps = [], params = {}} : () -> ()
  return
}

// -----

func.func @event_from_block_argument(%ev: !event_tensor.event) {
  // expected-error @+1 {{event operand %arg0 is not made by event_tensor.event_tensor}}
  "event_tensor.task_grid"(%ev) {operandSegmentSizes = array<i32: 0, 0, 0, 1, 0>, name = "c", kind = "gemv", grid = affine_map<() -> (1)>, wait_maps = [affine_map<(d0) -> (0)>], notify_maps = [], params = {}} : (!event_tensor.event) -> ()
  return
}

// -----

func.func @bad_extents_and_division() {
  // expected-error @+1 {{'shape' map () -> (-4) has a non-positive extent}}
  %e = "event_tensor.event_tensor"() {name = "h", shape = affine_map<() -> (-4)>, wait_count = affine_map<(d0) -> (1)>} : () -> !event_tensor.event
  // expected-error @+1 {{'wait_count' map (d0) -> (d0 floordiv 0) divides by a non-positive constant}}
  %f = "event_tensor.event_tensor"() {name = "f", shape = affine_map<() -> (4)>, wait_count = affine_map<(d0) -> (d0 floordiv 0)>} : () -> !event_tensor.event
  return
}

// -----

// A consumer tile waits on its own element of an event whose producer grid has no tiles at one row (its
// shape is 4 * ((s0 + 62) floordiv 64): 0 at batch 1): no counter holds that element, so on the GPU the
// tile would wait forever.
func.func @wait_outside_shape() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 64 : i64} : () -> index
  %e = "event_tensor.event_tensor"(%b) {name = "h", shape = affine_map<()[s0] -> (((s0 + 62) floordiv 64) * 4)>, wait_count = affine_map<(d0)[s0] -> (1)>} : (index) -> !event_tensor.event
  "event_tensor.task_grid"(%b, %e) {operandSegmentSizes = array<i32: 1, 0, 0, 0, 1>, name = "p", kind = "gemv", grid = affine_map<()[s0] -> (((s0 + 62) floordiv 64) * 4)>, wait_maps = [], notify_maps = [affine_map<(d0)[s0] -> (d0)>], params = {}} : (index, !event_tensor.event) -> ()
  // expected-error @+1 {{task grid 'c' tile (0,) waits on element (0,) of event tensor 'h', outside its shape (0,) at batch=1: no counter holds it, and the tile would wait forever}}
  "event_tensor.task_grid"(%b, %e) {operandSegmentSizes = array<i32: 1, 0, 0, 1, 0>, name = "c", kind = "rmsnorm", grid = affine_map<()[s0] -> (4)>, wait_maps = [affine_map<(d0)[s0] -> (d0)>], notify_maps = [], params = {}} : (index, !event_tensor.event) -> ()
  return
}

// -----

// Positive: the same wait from a consumer grid that has no tiles at one row either.
// CHECK-LABEL: func.func @wait_inside_shape_per_batch
// CHECK: "event_tensor.task_grid"{{.*}}name = "c"
func.func @wait_inside_shape_per_batch() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 64 : i64} : () -> index
  %e = "event_tensor.event_tensor"(%b) {name = "h", shape = affine_map<()[s0] -> (((s0 + 62) floordiv 64) * 4)>, wait_count = affine_map<(d0)[s0] -> (1)>} : (index) -> !event_tensor.event
  "event_tensor.task_grid"(%b, %e) {operandSegmentSizes = array<i32: 1, 0, 0, 0, 1>, name = "p", kind = "gemv", grid = affine_map<()[s0] -> (((s0 + 62) floordiv 64) * 4)>, wait_maps = [], notify_maps = [affine_map<(d0)[s0] -> (d0)>], params = {}} : (index, !event_tensor.event) -> ()
  "event_tensor.task_grid"(%b, %e) {operandSegmentSizes = array<i32: 1, 0, 0, 1, 0>, name = "c", kind = "rmsnorm", grid = affine_map<()[s0] -> (((s0 + 62) floordiv 64) * 4)>, wait_maps = [affine_map<(d0)[s0] -> (d0)>], notify_maps = [], params = {}} : (index, !event_tensor.event) -> ()
  return
}
