// RUN: etc-opt %s -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu{profile=true}" | FileCheck %s
// RUN: etc-opt %s -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu" | FileCheck %s --check-prefix=PLAIN
// RUN: etc-opt %s -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu{profile=true spin-sleep=-1}" --verify-diagnostics

// Positive: the profiling build. A record buffer of 8 i64 words per tile at the max sizes (2 linear tiles
// + 8 gelu rows = 80 words); the launch covers the phase slots past 229440 (and after them the worker's
// run-time constants: 1 symbol, the step's epoch, 5 buffers); the linear tile stamps its
// phases into them; the worker reads the time when it reaches the tile and when it starts the waits
// (stored into the record with the start), zeroes the slots before the tile and copies them into the
// record after it.
// CHECK: #[[REC:.*]] = affine_map<() -> (80)>
// CHECK: "event_tensor.buffer"() {element_type = i64, name = "etc.profile", role = "workspace", sizes = #[[REC]]}
// CHECK: "sm_task.kernel"({{.*}}shared_bytes = 229520 : i64
// CHECK-LABEL: func.func @etc_tile_0(
// CHECK: nvvm.read.ptx.sreg.globaltimer
// CHECK-NEXT: llvm.getelementptr %{{.*}}[229440] : (!llvm.ptr<3>) -> !llvm.ptr<3>, i8
// CHECK-LABEL: func.func @etc_run_0(
// CHECK: scf.for
// CHECK: %[[REACHED:.*]] = nvvm.read.ptx.sreg.globaltimer
// CHECK-NEXT: %[[POLLED:.*]] = nvvm.read.ptx.sreg.globaltimer
// CHECK: %[[START:.*]] = nvvm.read.ptx.sreg.globaltimer
// CHECK: llvm.store %[[START]]
// CHECK: llvm.store %[[REACHED]]
// CHECK: llvm.store %[[POLLED]]
// CHECK: arith.constant 229440 : i64
// CHECK-NEXT: llvm.getelementptr
// CHECK-NEXT: llvm.store %{{.*}}, %{{.*}} : i64, !llvm.ptr<3>
// CHECK: gpu.barrier
// CHECK-NEXT: func.call @etc_tile_0
// CHECK-NEXT: gpu.barrier
// CHECK: nvvm.read.ptx.sreg.globaltimer
// CHECK: arith.constant 229440 : i64
// CHECK-NEXT: llvm.getelementptr
// CHECK-NEXT: llvm.load %{{.*}} : !llvm.ptr<3> -> i64
// No match: without profile=true nothing is stamped and the launch needs no phase slots.
// PLAIN-NOT: globaltimer
// PLAIN-NOT: etc.profile
// Error (third RUN): options are still checked in the profiling build.
// expected-error @+1 {{spin-sleep must be in [0, 1000000] ns, got -1}}
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
