// RUN: etc-opt %s --split-input-file -p "etc-lower-to-sm-task{policy=hybrid},etc-static-schedule{num-sms=2},etc-dynamic-schedule,etc-lower-to-gpu" --verify-diagnostics | FileCheck %s

// Positive: a linear (2 tiles) feeding a per-row GELU through counter "h.done". The gpu.module holds the
// tile functions, a run function per task (thread 0's acquire-load spin before the tile, skipped for a
// counter word it saw met; after the tile and a barrier, thread 0's release fence before the signal:
// LLVM 22 would drop the release ordering of the atomicrmw), and the worker-loop kernel.
// CHECK-LABEL: func.func @step
// CHECK: "sm_task.kernel"({{.*}}) {block_size = 256 : i64, num_workers = 2 : i64, {{.*}}shared_bytes = {{[0-9]+}} : i64
// CHECK: gpu.module @etc
// CHECK: func.func @etc_tile_0(%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: i64)
// CHECK: func.func @etc_tile_1(
// CHECK-LABEL: func.func @etc_run_0(
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} : i64
// CHECK: gpu.barrier
// CHECK-NEXT: call @etc_tile_0
// CHECK-NEXT: gpu.barrier
// CHECK: llvm.fence syncscope("device") release
// CHECK: llvm.atomicrmw umax
// CHECK-NEXT: llvm.atomicrmw add
// `act` (a tile per row, so a worker may run several) remembers the counter word it last saw met and
// does not poll it again for the next tile.
// CHECK-LABEL: func.func @etc_run_1(
// CHECK: %[[MET:.*]] = llvm.alloca %c1_i64 x i64
// CHECK-NEXT: %[[NONE:.*]] = arith.constant -1 : i64
// CHECK-NEXT: llvm.store %[[NONE]], %[[MET]]
// CHECK: scf.for
// CHECK: %[[SEEN:.*]] = llvm.load %[[MET]]
// CHECK-NEXT: arith.cmpi eq, %[[WORD:.*]], %[[SEEN]] : i64
// CHECK: scf.if
// CHECK: scf.while
// CHECK-NEXT: llvm.load {{.*}} atomic syncscope("device") acquire
// CHECK: llvm.store %[[WORD]], %[[MET]]
// CHECK: call @etc_tile_1
// The kernel first copies the run-time constants (1 symbol, then 4 buffer addresses) into shared memory
// past the tiles' own and hands the run functions their addresses there; it loads each queue entry one
// iteration ahead (the entry past the queue's end is not read).
// CHECK: gpu.func @etc_megakernel(%[[BUFFERS:[^:]*]]: !llvm.ptr, %[[SIZES:[^:]*]]: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: i64) kernel
// CHECK: %[[SMEM:.*]] = llvm.mlir.addressof @etc_dynamic_smem
// CHECK: %[[SIZES_AT:.*]] = llvm.getelementptr %[[SMEM]][[[OFFSET:[0-9]+]]]
// CHECK: llvm.getelementptr %[[SIZES]][
// CHECK: llvm.store {{.*}} : i64, !llvm.ptr<3>
// CHECK: %[[BUFFERS_AT:.*]] = llvm.getelementptr %[[SMEM]][
// CHECK: llvm.getelementptr %[[BUFFERS]][
// CHECK: llvm.store {{.*}} : i64, !llvm.ptr<3>
// CHECK: gpu.barrier
// CHECK: %[[SIZES_S:.*]] = llvm.addrspacecast %[[SIZES_AT]]
// CHECK: %[[BUFFERS_S:.*]] = llvm.addrspacecast %[[BUFFERS_AT]]
// CHECK: %[[FIRST:.*]]:3 = scf.if
// CHECK: scf.for {{.*}} iter_args({{.*}} = %[[FIRST]]#0, {{.*}} = %[[FIRST]]#1, {{.*}} = %[[FIRST]]#2)
// CHECK: %[[NEXT:.*]]:3 = scf.if
// CHECK: scf.index_switch
// CHECK: func.call @etc_run_0(%[[BUFFERS_S]], %[[SIZES_S]],
// CHECK: scf.yield %[[NEXT]]#0, %[[NEXT]]#1, %[[NEXT]]#2
func.func @step() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 8 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %w = "event_tensor.buffer"(%b) {name = "w", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (64, 64)>} : (index) -> !event_tensor.buf
  %h = "event_tensor.buffer"(%b) {name = "h", role = "workspace", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %y = "event_tensor.buffer"(%b) {name = "y", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>, output_index = 0 : i64} : (index) -> !event_tensor.buf
  %e = "event_tensor.event_tensor"(%b) {name = "h.done", shape = affine_map<()[s0] -> (1)>, wait_count = affine_map<(d0)[s0] -> (2)>} : (index) -> !event_tensor.event
  "event_tensor.task_grid"(%b, %x, %w, %h, %e) {operandSegmentSizes = array<i32: 1, 2, 1, 0, 1>, name = "proj", kind = "linear", grid = affine_map<()[s0] -> (2)>, wait_maps = [], notify_maps = [affine_map<(d0)[s0] -> (0)>], params = {in_features = 64 : i64, out_features = 64 : i64, tile_n = 32 : i64, has_bias = false, read_roles = ["x", "weight"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.event) -> ()
  "event_tensor.task_grid"(%b, %h, %y, %e) {operandSegmentSizes = array<i32: 1, 1, 1, 1, 0>, name = "act", kind = "gelu", schedule = "static", grid = affine_map<()[s0] -> (s0, 1)>, wait_maps = [affine_map<(d0, d1)[s0] -> (0)>], notify_maps = [], params = {tile_c = 64 : i64, approximate = "tanh", read_roles = ["x"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.event) -> ()
  return
}

// -----

// No match: a module without an sm_task kernel gets no gpu.module.
// CHECK-LABEL: func.func @nothing
// CHECK-NOT: gpu.module
func.func @nothing() {
  return
}

// -----

// Error: a hybrid schedule (one static, one dynamic task) does not run on the GPU yet.
func.func @hybrid() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 8 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %y = "event_tensor.buffer"(%b) {name = "y", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>, output_index = 0 : i64} : (index) -> !event_tensor.buf
  %z = "event_tensor.buffer"(%b) {name = "z", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>, output_index = 1 : i64} : (index) -> !event_tensor.buf
  "event_tensor.task_grid"(%b, %x, %y) {operandSegmentSizes = array<i32: 1, 1, 1, 0, 0>, name = "first", kind = "gelu", schedule = "static", grid = affine_map<()[s0] -> (s0, 1)>, wait_maps = [], notify_maps = [], params = {tile_c = 64 : i64, approximate = "tanh", read_roles = ["x"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf) -> ()
  // expected-error @+1 {{task 'act' is dynamic in a hybrid schedule; the GPU kernel runs all-static or all-dynamic schedules so far}}
  "event_tensor.task_grid"(%b, %x, %z) {operandSegmentSizes = array<i32: 1, 1, 1, 0, 0>, name = "act", kind = "gelu", schedule = "dynamic", grid = affine_map<()[s0] -> (s0, 1)>, wait_maps = [], notify_maps = [], params = {tile_c = 64 : i64, approximate = "tanh", read_roles = ["x"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf) -> ()
  return
}
