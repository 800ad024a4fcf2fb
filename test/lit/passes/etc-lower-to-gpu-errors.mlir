// RUN: etc-opt %s -p "etc-lower-to-sm-task{policy=dynamic},etc-static-schedule{num-sms=2},etc-dynamic-schedule,etc-lower-to-gpu" --verify-diagnostics

// Error: the GPU kernel runs static schedules only so far.
func.func @step() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 8 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %y = "event_tensor.buffer"(%b) {name = "y", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>, output_index = 0 : i64} : (index) -> !event_tensor.buf
  // expected-error @+1 {{task 'act' is scheduled 'dynamic'; the GPU kernel runs static schedules only so far}}
  "event_tensor.task_grid"(%b, %x, %y) {operandSegmentSizes = array<i32: 1, 1, 1, 0, 0>, name = "act", kind = "gelu", grid = affine_map<()[s0] -> (s0, 1)>, wait_maps = [], notify_maps = [], params = {tile_c = 64 : i64, approximate = "tanh", read_roles = ["x"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf) -> ()
  return
}
