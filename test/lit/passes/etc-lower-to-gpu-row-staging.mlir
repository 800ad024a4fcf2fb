// RUN: etc-opt %s --split-input-file -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu" | FileCheck %s

// Positive: two rms_norm linears over rows of 4096 (16 warp chunks, more than the 8 warps) that differ
// only in their weights share one tile function. Batch 1 runs its one-row variant @etc_tile_0_one_row,
// whose row is staged by the companion @etc_tile_0_row (called with the row as its second coordinate);
// the general tile function never calls the companion. The deduplication keeps all of them together.
// CHECK-LABEL: gpu.module @etc
// CHECK: func.func @etc_tile_0(
// CHECK-NOT: call @etc_tile_0_row(
// CHECK: func.call @etc_tile_0_one_row(%arg0, %arg1, %arg2, %arg3, %arg4)
// CHECK-NOT: call @etc_tile_0_row(
// CHECK: func.func @etc_tile_0_one_row(
// CHECK: func.call @etc_tile_0_row(%arg0, %arg1, %arg2, %{{.*}}, %arg4)
// CHECK: func.func @etc_tile_0_row({{.*}}etc.shared_bytes = 229440
// CHECK: func.func @etc_tile_0_issue(
// CHECK-NOT: func.func @etc_tile_1
// The two tasks also share one run function, which reads their buffers from each task's descriptor.
// CHECK-LABEL: func.func @etc_run_shared_0(
// CHECK: call @etc_tile_0(
// CHECK-NOT: func.func @etc_run_1(
func.func @long_rows() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 8 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 4096)>} : (index) -> !event_tensor.buf
  %nw = "event_tensor.buffer"(%b) {name = "nw", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (4096)>} : (index) -> !event_tensor.buf
  %w1 = "event_tensor.buffer"(%b) {name = "w1", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (64, 4096)>} : (index) -> !event_tensor.buf
  %w2 = "event_tensor.buffer"(%b) {name = "w2", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (64, 4096)>} : (index) -> !event_tensor.buf
  %y1 = "event_tensor.buffer"(%b) {name = "y1", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>, output_index = 0 : i64} : (index) -> !event_tensor.buf
  %y2 = "event_tensor.buffer"(%b) {name = "y2", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>, output_index = 1 : i64} : (index) -> !event_tensor.buf
  "event_tensor.task_grid"(%b, %x, %w1, %nw, %y1) {operandSegmentSizes = array<i32: 1, 3, 1, 0, 0>, name = "p1", kind = "linear", grid = affine_map<()[s0] -> (2)>, wait_maps = [], notify_maps = [], params = {in_features = 4096 : i64, out_features = 64 : i64, tile_n = 32 : i64, has_bias = false, prologue = "rms_norm", prologue_eps = 1.0e-05 : f64, read_roles = ["x", "weight", "norm_weight"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf) -> ()
  "event_tensor.task_grid"(%b, %x, %w2, %nw, %y2) {operandSegmentSizes = array<i32: 1, 3, 1, 0, 0>, name = "p2", kind = "linear", grid = affine_map<()[s0] -> (2)>, wait_maps = [], notify_maps = [], params = {in_features = 4096 : i64, out_features = 64 : i64, tile_n = 32 : i64, has_bias = false, prologue = "rms_norm", prologue_eps = 1.0e-05 : f64, read_roles = ["x", "weight", "norm_weight"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf) -> ()
  return
}

// -----

// No match: rows of 1024 (4 warp chunks) are spread over the warps inline, in the one-row variant too;
// no staging companion.
// CHECK-LABEL: gpu.module @etc
// CHECK-NOT: {{@etc_tile_[0-9]+_row}}
// CHECK: func.func @etc_tile_0_one_row(
// CHECK-NOT: {{@etc_tile_[0-9]+_row}}
// CHECK: gpu.func @etc_megakernel
func.func @short_rows() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 8 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 1024)>} : (index) -> !event_tensor.buf
  %nw = "event_tensor.buffer"(%b) {name = "nw", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (1024)>} : (index) -> !event_tensor.buf
  %w1 = "event_tensor.buffer"(%b) {name = "w1", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (64, 1024)>} : (index) -> !event_tensor.buf
  %y1 = "event_tensor.buffer"(%b) {name = "y1", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>, output_index = 0 : i64} : (index) -> !event_tensor.buf
  "event_tensor.task_grid"(%b, %x, %w1, %nw, %y1) {operandSegmentSizes = array<i32: 1, 3, 1, 0, 0>, name = "p1", kind = "linear", grid = affine_map<()[s0] -> (2)>, wait_maps = [], notify_maps = [], params = {in_features = 1024 : i64, out_features = 64 : i64, tile_n = 32 : i64, has_bias = false, prologue = "rms_norm", prologue_eps = 1.0e-05 : f64, read_roles = ["x", "weight", "norm_weight"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf) -> ()
  return
}

// -----

// No match: x of a static row count (4 rows) needs no one-row variant.
// CHECK-LABEL: gpu.module @etc
// CHECK-NOT: _one_row
// CHECK: gpu.func @etc_megakernel
func.func @static_rows() {
  %x = "event_tensor.buffer"() {name = "x", role = "input", element_type = bf16, sizes = affine_map<() -> (4, 4096)>} : () -> !event_tensor.buf
  %nw = "event_tensor.buffer"() {name = "nw", role = "weight", element_type = bf16, sizes = affine_map<() -> (4096)>} : () -> !event_tensor.buf
  %w1 = "event_tensor.buffer"() {name = "w1", role = "weight", element_type = bf16, sizes = affine_map<() -> (64, 4096)>} : () -> !event_tensor.buf
  %y1 = "event_tensor.buffer"() {name = "y1", role = "output", element_type = bf16, sizes = affine_map<() -> (4, 64)>, output_index = 0 : i64} : () -> !event_tensor.buf
  "event_tensor.task_grid"(%x, %w1, %nw, %y1) {operandSegmentSizes = array<i32: 0, 3, 1, 0, 0>, name = "p1", kind = "linear", grid = affine_map<() -> (2)>, wait_maps = [], notify_maps = [], params = {in_features = 4096 : i64, out_features = 64 : i64, tile_n = 32 : i64, has_bias = false, prologue = "rms_norm", prologue_eps = 1.0e-05 : f64, read_roles = ["x", "weight", "norm_weight"], write_roles = ["y"]}} : (!event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf) -> ()
  return
}
