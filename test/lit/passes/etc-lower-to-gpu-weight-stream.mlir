// RUN: etc-opt %s --split-input-file -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu" --verify-diagnostics | FileCheck %s
// RUN: etc-opt %s --split-input-file -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu{weight-stream=false}" | FileCheck %s --check-prefix=OFF

// Positive: the linear tile (in_features 256) streams its weights: an issue function inits the ring's
// mbarriers and bulk-copies the first blocks (under an L2 evict-first policy: weights are read once); the
// worker calls it before thread 0 waits; the tile waits on the barriers. The launch gets the ring's shared
// memory (96 KiB + 128 KiB + barriers). The gelu tile reads no weights.
// CHECK: "sm_task.kernel"({{.*}}shared_bytes = 229440 : i64
// CHECK-LABEL: func.func @etc_tile_0(
// CHECK: nvvm.mbarrier.try_wait
// CHECK: nvvm.cp.async.bulk.shared.cluster.global
// CHECK: nvvm.mbarrier.inval
// CHECK-LABEL: func.func @etc_tile_0_issue(
// CHECK: %[[POLICY:.*]] = llvm.inline_asm has_side_effects "createpolicy.fractional.L2::evict_first.b64 $0, 1.0;"
// CHECK: nvvm.mbarrier.init
// CHECK: nvvm.mbarrier.arrive.expect_tx
// CHECK: nvvm.cp.async.bulk.shared.cluster.global {{.*}} l2_cache_hint = %[[POLICY]]
// CHECK-LABEL: func.func @etc_run_0(
// CHECK: call @etc_tile_0_issue
// CHECK: scf.if
// CHECK: call @etc_tile_0(
// CHECK-LABEL: func.func @etc_run_1(
// CHECK-NOT: _issue
// CHECK: call @etc_tile_1(
// No match: weight-stream=false loads weights in every lane; nothing is bulk-copied.
// OFF-NOT: nvvm.cp.async.bulk
// OFF-NOT: _issue
func.func @step() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 8 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 256)>} : (index) -> !event_tensor.buf
  %w = "event_tensor.buffer"(%b) {name = "w", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (64, 256)>} : (index) -> !event_tensor.buf
  %h = "event_tensor.buffer"(%b) {name = "h", role = "workspace", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %y = "event_tensor.buffer"(%b) {name = "y", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>, output_index = 0 : i64} : (index) -> !event_tensor.buf
  %e = "event_tensor.event_tensor"(%b) {name = "h.done", shape = affine_map<()[s0] -> (1)>, wait_count = affine_map<(d0)[s0] -> (2)>} : (index) -> !event_tensor.event
  "event_tensor.task_grid"(%b, %x, %w, %h, %e) {operandSegmentSizes = array<i32: 1, 2, 1, 0, 1>, name = "proj", kind = "linear", grid = affine_map<()[s0] -> (2)>, wait_maps = [], notify_maps = [affine_map<(d0)[s0] -> (0)>], params = {in_features = 256 : i64, out_features = 64 : i64, tile_n = 32 : i64, has_bias = false, read_roles = ["x", "weight"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.event) -> ()
  "event_tensor.task_grid"(%b, %h, %y, %e) {operandSegmentSizes = array<i32: 1, 1, 1, 1, 0>, name = "act", kind = "gelu", schedule = "static", grid = affine_map<()[s0] -> (s0, 1)>, wait_maps = [affine_map<(d0, d1)[s0] -> (0)>], notify_maps = [], params = {tile_c = 64 : i64, approximate = "tanh", read_roles = ["x"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.event) -> ()
  return
}

// -----

// No match: a tile whose own scratch (16 staged rows of 2048 and a per-head staging of 16 x 1024 f32)
// would reach the ring at 96 KiB loads its weights without a stream.
// CHECK-LABEL: func.func @big_scratch
// CHECK-NOT: nvvm.cp.async.bulk
// CHECK-NOT: _issue
func.func @big_scratch() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 16 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 2048)>} : (index) -> !event_tensor.buf
  %w = "event_tensor.buffer"(%b) {name = "w", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (1024, 2048)>} : (index) -> !event_tensor.buf
  %p = "event_tensor.buffer"(%b) {name = "pos", role = "input", element_type = i64, sizes = affine_map<()[s0] -> (s0)>} : (index) -> !event_tensor.buf
  %f = "event_tensor.buffer"(%b) {name = "inv", role = "weight", element_type = f32, sizes = affine_map<()[s0] -> (32)>} : (index) -> !event_tensor.buf
  %y = "event_tensor.buffer"(%b) {name = "y", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 1024)>, output_index = 0 : i64} : (index) -> !event_tensor.buf
  "event_tensor.task_grid"(%b, %x, %w, %p, %f, %y) {operandSegmentSizes = array<i32: 1, 4, 1, 0, 0>, name = "proj", kind = "linear", grid = affine_map<()[s0] -> (1)>, wait_maps = [], notify_maps = [], params = {in_features = 2048 : i64, out_features = 1024 : i64, tile_n = 1024 : i64, has_bias = false, head_dim = 64 : i64, epilogue = ["rope"], read_roles = ["x", "weight", "positions", "inv_freq"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf) -> ()
  return
}

