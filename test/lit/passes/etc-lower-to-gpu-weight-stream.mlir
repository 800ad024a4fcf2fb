// RUN: etc-opt %s --split-input-file -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu" --verify-diagnostics | FileCheck %s
// RUN: etc-opt %s --split-input-file -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu{weight-stream=false}" | FileCheck %s --check-prefix=OFF

// Positive: the linear tile (in_features 256) streams its weights: an issue function inits the ring's
// mbarriers (thread 0, then a block barrier) and bulk-copies the first blocks, block w from warp w (a loop
// over blocks w, w + warps, ...), under an L2 evict-first policy (weights are read once); the
// worker calls it before thread 0 waits; the tile waits on the barriers. The launch gets the ring's shared
// memory (96 KiB + 128 KiB + barriers), then the run-time constants (1 symbol, the step's epoch, 4 buffers: 48 bytes); the
// tile declares its own scratch below the ring separately (etc.scratch_bytes). The gelu tile reads no weights.
// CHECK: "sm_task.kernel"({{.*}}shared_bytes = 229488 : i64
// CHECK-LABEL: func.func @etc_tile_0(
// CHECK-SAME: etc.scratch_bytes = 12288 : i64, etc.shared_bytes = 229440 : i64
// CHECK: nvvm.mbarrier.try_wait
// CHECK: nvvm.cp.async.bulk.shared.cluster.global
// CHECK: nvvm.mbarrier.inval
// CHECK-LABEL: func.func @etc_tile_0_issue(
// CHECK: %[[POLICY:.*]] = llvm.inline_asm has_side_effects "createpolicy.fractional.L2::evict_first.b64 $0, 1.0;"
// CHECK: nvvm.mbarrier.init
// CHECK: gpu.barrier
// CHECK: scf.for
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


// -----

// Positive: an attention chunk (kv_chunk 64) prefetches the K and V rows of its slots before
// positions[r] from an issue function (one bulk copy each, on the ring's first barrier); the tile loads
// q and copies slot positions[r] (appended this step) with cp.async, waits on that barrier and on its
// copies, scores and weighs the slots on the tensor cores (V through ldmatrix .trans), and invalidates
// the barrier at its end.
// CHECK-LABEL: func.func @etc_tile_0(
// CHECK: nvvm.cp.async.shared.global
// CHECK: nvvm.mbarrier.try_wait
// CHECK: nvvm.cp.async.wait.group 0
// CHECK: nvvm.mma.sync
// CHECK: nvvm.ldmatrix {{.*}}layout = #nvvm.mma_layout<col>
// CHECK: nvvm.mma.sync
// CHECK: nvvm.mbarrier.inval
// CHECK-LABEL: func.func @etc_tile_0_issue(
// CHECK: nvvm.mbarrier.init
// CHECK: nvvm.mbarrier.arrive.expect_tx
// CHECK-COUNT-2: nvvm.cp.async.bulk.shared.cluster.global
// CHECK-LABEL: func.func @etc_run_0(
// CHECK: call @etc_tile_0_issue
// CHECK: call @etc_tile_0(
func.func @attention_prefetch() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 4 : i64} : () -> index
  %t = "event_tensor.dim"() {name = "kv_len", min = 2 : i64, max = 256 : i64} : () -> index
  %q = "event_tensor.buffer"(%b, %t) {name = "q", role = "input", element_type = bf16, sizes = affine_map<()[s0, s1] -> (s0, 256)>} : (index, index) -> !event_tensor.buf
  %k = "event_tensor.buffer"(%b, %t) {name = "k", role = "kv_cache", element_type = bf16, sizes = affine_map<()[s0, s1] -> (s0, 2, s1, 64)>} : (index, index) -> !event_tensor.buf
  %v = "event_tensor.buffer"(%b, %t) {name = "v", role = "kv_cache", element_type = bf16, sizes = affine_map<()[s0, s1] -> (s0, 2, s1, 64)>} : (index, index) -> !event_tensor.buf
  %p = "event_tensor.buffer"(%b, %t) {name = "pos", role = "input", element_type = i64, sizes = affine_map<()[s0, s1] -> (s0)>} : (index, index) -> !event_tensor.buf
  %o = "event_tensor.buffer"(%b, %t) {name = "po", role = "output", element_type = f32, sizes = affine_map<()[s0, s1] -> (s0, 4, s1 ceildiv 64, 64)>, output_index = 0 : i64} : (index, index) -> !event_tensor.buf
  %s = "event_tensor.buffer"(%b, %t) {name = "ps", role = "output", element_type = f32, sizes = affine_map<()[s0, s1] -> (s0, 4, s1 ceildiv 64, 2)>, output_index = 1 : i64} : (index, index) -> !event_tensor.buf
  "event_tensor.task_grid"(%b, %t, %q, %k, %v, %p, %o, %s) {operandSegmentSizes = array<i32: 2, 4, 2, 0, 0>, name = "attn", kind = "attention_partial", grid = affine_map<()[s0, s1] -> (s0, 2, s1 ceildiv 64)>, wait_maps = [], notify_maps = [], params = {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 64 : i64, kv_chunk = 64 : i64, scale = 0.125 : f64, read_roles = ["q", "k_cache", "v_cache", "positions"], write_roles = ["partial_out", "partial_stats"]}} : (index, index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf) -> ()
  return
}

// -----

// Positive: wide chunks (wide_rows 2): the tile's `_idle` companion answers whether its chunk (kv_chunk or,
// from 2 rows on, twice that) starts past the KV length, and `_signal_count` whether the tile stands in for
// such an empty chunk (2) or not (1). Every thread asks both first; an idle tile is skipped whole (no
// copies, waits, run or signal), and the others' signals add the count.
// CHECK-LABEL: func.func @etc_tile_1_idle(
// CHECK-SAME: -> i1
// CHECK: arith.select
// CHECK: %[[PAST:.*]] = arith.cmpi sge
// CHECK: return %[[PAST]] : i1
// CHECK-LABEL: func.func @etc_tile_1_signal_count(
// CHECK-SAME: -> i64
// CHECK: %[[TWO:.*]] = arith.select %{{.*}}, %c2_i64, %c1_i64 : i64
// CHECK: return %[[TWO]] : i64
// CHECK-LABEL: func.func @etc_run_1(
// CHECK: %[[IDLE:.*]] = func.call @etc_tile_1_idle(
// CHECK-NEXT: scf.if %[[IDLE]] {
// CHECK-NEXT: } else {
// CHECK-NEXT: %[[COUNT:.*]] = func.call @etc_tile_1_signal_count(
// CHECK-NEXT: call @etc_tile_1_issue
// CHECK: scf.while
// CHECK: call @etc_tile_1(
// CHECK: llvm.fence syncscope("device") release
// CHECK: llvm.atomicrmw add %{{.*}}, %[[COUNT]] monotonic
func.func @attention_wide() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 4 : i64} : () -> index
  %t = "event_tensor.dim"() {name = "kv_len", min = 2 : i64, max = 256 : i64} : () -> index
  %x = "event_tensor.buffer"(%b, %t) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0, s1] -> (s0, 256)>} : (index, index) -> !event_tensor.buf
  %q = "event_tensor.buffer"(%b, %t) {name = "q", role = "workspace", element_type = bf16, sizes = affine_map<()[s0, s1] -> (s0, 256)>} : (index, index) -> !event_tensor.buf
  %k = "event_tensor.buffer"(%b, %t) {name = "k", role = "kv_cache", element_type = bf16, sizes = affine_map<()[s0, s1] -> (s0, 2, s1, 64)>} : (index, index) -> !event_tensor.buf
  %v = "event_tensor.buffer"(%b, %t) {name = "v", role = "kv_cache", element_type = bf16, sizes = affine_map<()[s0, s1] -> (s0, 2, s1, 64)>} : (index, index) -> !event_tensor.buf
  %p = "event_tensor.buffer"(%b, %t) {name = "pos", role = "input", element_type = i64, sizes = affine_map<()[s0, s1] -> (s0)>} : (index, index) -> !event_tensor.buf
  %o = "event_tensor.buffer"(%b, %t) {name = "po", role = "output", element_type = f32, sizes = affine_map<()[s0, s1] -> (s0, 4, s1 ceildiv 64, 64)>, output_index = 0 : i64} : (index, index) -> !event_tensor.buf
  %s = "event_tensor.buffer"(%b, %t) {name = "ps", role = "output", element_type = f32, sizes = affine_map<()[s0, s1] -> (s0, 4, s1 ceildiv 64, 2)>, output_index = 1 : i64} : (index, index) -> !event_tensor.buf
  %e = "event_tensor.event_tensor"(%b, %t) {name = "q.done", shape = affine_map<()[s0, s1] -> (1)>, wait_count = affine_map<(d0)[s0, s1] -> (s0)>} : (index, index) -> !event_tensor.event
  "event_tensor.task_grid"(%b, %t, %x, %q, %e) {operandSegmentSizes = array<i32: 2, 1, 1, 0, 1>, name = "act", kind = "gelu", schedule = "static", grid = affine_map<()[s0, s1] -> (s0, 1)>, wait_maps = [], notify_maps = [affine_map<(d0, d1)[s0, s1] -> (0)>], params = {tile_c = 256 : i64, approximate = "tanh", read_roles = ["x"], write_roles = ["y"]}} : (index, index, !event_tensor.buf, !event_tensor.buf, !event_tensor.event) -> ()
  %f = "event_tensor.event_tensor"(%b, %t) {name = "attn.done", shape = affine_map<()[s0, s1] -> (s0, 2)>, wait_count = affine_map<(d0, d1)[s0, s1] -> (s1 ceildiv 64)>} : (index, index) -> !event_tensor.event
  "event_tensor.task_grid"(%b, %t, %q, %k, %v, %p, %o, %s, %e, %f) {operandSegmentSizes = array<i32: 2, 4, 2, 1, 1>, name = "attn", kind = "attention_partial", grid = affine_map<()[s0, s1] -> (s0, 2, s1 ceildiv 64)>, wait_maps = [affine_map<(d0, d1, d2)[s0, s1] -> (0)>], notify_maps = [affine_map<(d0, d1, d2)[s0, s1] -> (d0, d1)>], params = {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 64 : i64, kv_chunk = 64 : i64, wide_rows = 2 : i64, scale = 0.125 : f64, read_roles = ["q", "k_cache", "v_cache", "positions"], write_roles = ["partial_out", "partial_stats"]}} : (index, index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.event, !event_tensor.event) -> ()
  return
}

// -----

// Positive: a split head (tile_n 16 of heads of 32) with a head_rms_norm: the worker passes the task's
// arrival counters (after the event counters: here at word 0 of %counters, the run function's third
// argument, through a volatile load so that the address is not hoisted out of the worker loop) in the
// operand table's slot after its buffers; the tile
// stores its values, releases them and counts itself in its head's counter; the last arrival acquires
// the others' values and normalizes the head.
// CHECK-LABEL: func.func @etc_tile_0(
// CHECK: llvm.fence syncscope("device") release
// CHECK: llvm.atomicrmw add
// CHECK: llvm.fence syncscope("device") acquire
// CHECK: llvm.nvvm.sqrt.rn.f
// CHECK-LABEL: func.func @etc_run_0(
// CHECK: %[[TABLE:.*]] = llvm.alloca %{{.*}} x i64
// CHECK: %[[BASE:.*]] = llvm.alloca %{{.*}} x i64
// CHECK: %[[COUNTERS:.*]] = llvm.ptrtoint %arg2
// CHECK: llvm.store %[[COUNTERS]], %[[BASE]]
// CHECK: %[[LOADED:.*]] = llvm.load volatile %[[BASE]]
// CHECK: %[[ADDR:.*]] = arith.addi %[[LOADED]], %{{.*}}
// CHECK: %[[SLOT:.*]] = llvm.getelementptr %[[TABLE]][4]
// CHECK: llvm.store %[[ADDR]], %[[SLOT]]
func.func @split_head_norm() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 4 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 256)>} : (index) -> !event_tensor.buf
  %w = "event_tensor.buffer"(%b) {name = "w", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (64, 256)>} : (index) -> !event_tensor.buf
  %hw = "event_tensor.buffer"(%b) {name = "hw", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (32)>} : (index) -> !event_tensor.buf
  %y = "event_tensor.buffer"(%b) {name = "y", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>, output_index = 0 : i64} : (index) -> !event_tensor.buf
  "event_tensor.task_grid"(%b, %x, %w, %hw, %y) {operandSegmentSizes = array<i32: 1, 3, 1, 0, 0>, name = "proj", kind = "linear", grid = affine_map<()[s0] -> (4)>, wait_maps = [], notify_maps = [], params = {in_features = 256 : i64, out_features = 64 : i64, tile_n = 16 : i64, has_bias = false, head_dim = 32 : i64, head_norm_eps = 1.0e-06 : f64, epilogue = ["head_rms_norm"], read_roles = ["x", "weight", "head_norm_weight"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf) -> ()
  return
}
