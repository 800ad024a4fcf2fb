// RUN: etc-opt %s --split-input-file -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu" | FileCheck %s
// RUN: etc-opt %s --split-input-file -p "etc-lower-to-sm-task{policy=dynamic},etc-static-schedule{num-sms=2},etc-dynamic-schedule{early-push=false},etc-lower-to-gpu" | FileCheck %s --check-prefix=DYN

// Positive: three linears of one shape in a chain (l0 -> h0.done -> l1 -> h1.done -> l2 -> y.done). l1 and
// l2 wait and signal alike, so they share one run function, which loads each task's integers from its
// descriptor in constant memory: its operands' buffer indices (l1: h0 4, w1 2, h1 5), its task id, the
// first words of the counters it waits on and signals (h0.done 0, h1.done 1). l0 waits on nothing and keeps
// its own. The worker loop picks the run function (unit << 32 | descriptor) from the task id's dispatch word,
// loaded an entry ahead.
// CHECK: gpu.module @etc
// CHECK-LABEL: func.func @etc_run_0(
// CHECK-SAME: %{{[^:]*}}: i64) {
// CHECK-NOT: etc_run_desc
// CHECK-LABEL: func.func @etc_run_shared_1(
// CHECK-SAME: %{{[^:]*}}: i64, %[[DESC:[^:]*]]: i64) {
// CHECK-NEXT: %[[TABLE:.*]] = llvm.mlir.addressof @etc_run_desc : !llvm.ptr<4>
// CHECK-NEXT: %[[MINE:.*]] = llvm.getelementptr %[[TABLE]][%[[DESC]]] : (!llvm.ptr<4>, i64) -> !llvm.ptr<4>, i32
// CHECK: %[[AT:.*]] = llvm.getelementptr %[[MINE]][0]
// CHECK-NEXT: %[[SLOT0:.*]] = llvm.load %[[AT]] : !llvm.ptr<4> -> i32
// CHECK-NEXT: %[[SLOT0_64:.*]] = arith.extui %[[SLOT0]] : i32 to i64
// CHECK: llvm.getelementptr %{{.*}}[%[[SLOT0_64]]] : (!llvm.ptr, i64) -> !llvm.ptr, i64
// CHECK: call @etc_tile_0(
// CHECK: llvm.fence syncscope("device") release
// CHECK-NOT: func.func @etc_run_2(
// CHECK: llvm.mlir.global internal constant @etc_run_desc(dense<[4, 2, 5, 1, 0, 1, 5, 3, 6, 2, 1, 2]> : tensor<12xi32>) {addr_space = 4 : i32}
// CHECK: llvm.mlir.global internal constant @etc_run_dispatch(dense<[0, 4294967296, 4294967302]> : tensor<3xi64>) {addr_space = 4 : i32}
// CHECK: gpu.func @etc_megakernel(
// CHECK: llvm.mlir.addressof @etc_run_dispatch
// CHECK: scf.for
// CHECK: llvm.mlir.addressof @etc_run_dispatch
// CHECK: scf.index_switch
// CHECK: case 0 {
// CHECK-NEXT: func.call @etc_run_0(
// CHECK: case 1 {
// CHECK-NEXT: func.call @etc_run_shared_1({{.*}}, %{{[^,]*}}) : (!llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, i64, i64, i64, i64) -> ()
// No match: under the dynamic schedule (a push names its consumer tasks) every task keeps its own run
// function, and there are no descriptors.
// DYN: gpu.module @etc
// DYN: func.func @etc_run_0(
// DYN: func.func @etc_run_1(
// DYN: func.func @etc_run_2(
// DYN-NOT: etc_run_desc
// DYN-NOT: etc_run_shared
func.func @layers() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 8 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %w0 = "event_tensor.buffer"(%b) {name = "w0", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (64, 64)>} : (index) -> !event_tensor.buf
  %w1 = "event_tensor.buffer"(%b) {name = "w1", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (64, 64)>} : (index) -> !event_tensor.buf
  %w2 = "event_tensor.buffer"(%b) {name = "w2", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (64, 64)>} : (index) -> !event_tensor.buf
  %h0 = "event_tensor.buffer"(%b) {name = "h0", role = "workspace", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %h1 = "event_tensor.buffer"(%b) {name = "h1", role = "workspace", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %y = "event_tensor.buffer"(%b) {name = "y", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>, output_index = 0 : i64} : (index) -> !event_tensor.buf
  %e0 = "event_tensor.event_tensor"(%b) {name = "h0.done", shape = affine_map<()[s0] -> (1)>, wait_count = affine_map<(d0)[s0] -> (2)>} : (index) -> !event_tensor.event
  %e1 = "event_tensor.event_tensor"(%b) {name = "h1.done", shape = affine_map<()[s0] -> (1)>, wait_count = affine_map<(d0)[s0] -> (2)>} : (index) -> !event_tensor.event
  %e2 = "event_tensor.event_tensor"(%b) {name = "y.done", shape = affine_map<()[s0] -> (1)>, wait_count = affine_map<(d0)[s0] -> (2)>} : (index) -> !event_tensor.event
  "event_tensor.task_grid"(%b, %x, %w0, %h0, %e0) {operandSegmentSizes = array<i32: 1, 2, 1, 0, 1>, name = "l0", kind = "linear", grid = affine_map<()[s0] -> (2)>, wait_maps = [], notify_maps = [affine_map<(d0)[s0] -> (0)>], params = {in_features = 64 : i64, out_features = 64 : i64, tile_n = 32 : i64, has_bias = false, read_roles = ["x", "weight"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.event) -> ()
  "event_tensor.task_grid"(%b, %h0, %w1, %h1, %e0, %e1) {operandSegmentSizes = array<i32: 1, 2, 1, 1, 1>, name = "l1", kind = "linear", grid = affine_map<()[s0] -> (2)>, wait_maps = [affine_map<(d0)[s0] -> (0)>], notify_maps = [affine_map<(d0)[s0] -> (0)>], params = {in_features = 64 : i64, out_features = 64 : i64, tile_n = 32 : i64, has_bias = false, read_roles = ["x", "weight"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.event, !event_tensor.event) -> ()
  "event_tensor.task_grid"(%b, %h1, %w2, %y, %e1, %e2) {operandSegmentSizes = array<i32: 1, 2, 1, 1, 1>, name = "l2", kind = "linear", grid = affine_map<()[s0] -> (2)>, wait_maps = [affine_map<(d0)[s0] -> (0)>], notify_maps = [affine_map<(d0)[s0] -> (0)>], params = {in_features = 64 : i64, out_features = 64 : i64, tile_n = 32 : i64, has_bias = false, read_roles = ["x", "weight"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.event, !event_tensor.event) -> ()
  return
}

// -----

// No match: two linears of different widths (their tiles differ) keep their own run functions and no
// descriptor table is made.
// CHECK-LABEL: func.func @widths
// CHECK: gpu.module @etc
// CHECK: func.func @etc_run_0(
// CHECK: func.func @etc_run_1(
// CHECK-NOT: etc_run_desc
// CHECK-NOT: etc_run_shared
// CHECK: gpu.func @etc_megakernel(
// CHECK: scf.index_switch
// CHECK: case 0 {
// CHECK-NEXT: func.call @etc_run_0(
func.func @widths() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 8 : i64} : () -> index
  %x = "event_tensor.buffer"(%b) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>} : (index) -> !event_tensor.buf
  %w0 = "event_tensor.buffer"(%b) {name = "w0", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (64, 64)>} : (index) -> !event_tensor.buf
  %w1 = "event_tensor.buffer"(%b) {name = "w1", role = "weight", element_type = bf16, sizes = affine_map<()[s0] -> (32, 64)>} : (index) -> !event_tensor.buf
  %y0 = "event_tensor.buffer"(%b) {name = "y0", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 64)>, output_index = 0 : i64} : (index) -> !event_tensor.buf
  %y1 = "event_tensor.buffer"(%b) {name = "y1", role = "output", element_type = bf16, sizes = affine_map<()[s0] -> (s0, 32)>, output_index = 1 : i64} : (index) -> !event_tensor.buf
  "event_tensor.task_grid"(%b, %x, %w0, %y0) {operandSegmentSizes = array<i32: 1, 2, 1, 0, 0>, name = "a", kind = "linear", grid = affine_map<()[s0] -> (2)>, wait_maps = [], notify_maps = [], params = {in_features = 64 : i64, out_features = 64 : i64, tile_n = 32 : i64, has_bias = false, read_roles = ["x", "weight"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf) -> ()
  "event_tensor.task_grid"(%b, %x, %w1, %y1) {operandSegmentSizes = array<i32: 1, 2, 1, 0, 0>, name = "b", kind = "linear", grid = affine_map<()[s0] -> (2)>, wait_maps = [], notify_maps = [], params = {in_features = 64 : i64, out_features = 32 : i64, tile_n = 16 : i64, has_bias = false, read_roles = ["x", "weight"], write_roles = ["y"]}} : (index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf) -> ()
  return
}
