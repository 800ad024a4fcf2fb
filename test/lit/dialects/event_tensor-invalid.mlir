// RUN: etc-opt %s --split-input-file --verify-diagnostics
// The IRDL definitions reject ill-typed event_tensor ops.

func.func @notify_needs_event(%i: index) {
  // expected-error @+1 {{expected base type 'event_tensor.event' but got 'builtin.index'}}
  "event_tensor.notify"(%i, %i) : (index, index) -> ()
  return
}

// -----

func.func @grid_needs_attributes() {
  // expected-error @+1 {{attribute "grid" is expected but not provided}}
  "event_tensor.task_grid"() {operandSegmentSizes = array<i32: 0, 0, 0, 0, 0>, name = "g", kind = "gemv", wait_maps = [], notify_maps = [], params = {}} : () -> ()
  return
}

// -----

func.func @event_shape_is_a_map() {
  // expected-error @+1 {{expected base attribute 'builtin.affine_map' but got 'builtin.integer'}}
  %e = "event_tensor.event_tensor"() {name = "e", shape = 4 : i64, wait_count = affine_map<(d0) -> (1)>} : () -> !event_tensor.event
  return
}

// -----

func.func @dim_is_index() {
  // expected-error @+1 {{expected 'index' but got 'i32'}}
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 8 : i64} : () -> i32
  return
}
