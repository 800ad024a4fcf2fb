// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p etc-raise-elementwise --verify-diagnostics | FileCheck %s
// RUN: not etc-opt %s --allow-unregistered-dialect --split-input-file -p etc-raise-elementwise 2>&1 | FileCheck %s --check-prefix=SRC

// Positive: bf16 ops compute in f32 and round once (as PyTorch does); a [rows, 1] operand broadcasts per row,
// a [cols] operand per column; scalar constants fold into the body.
// CHECK-LABEL: func.func @scale
// CHECK: %[[M:.*]] = "etc.tile"(%arg0, %arg1) {kind = "elementwise", params = {body = @etc_elementwise_0, broadcast = ["full", "row"], operand_roles = ["operand0", "operand1"], result_roles = ["y"]}}
// CHECK: %[[A:.*]] = "etc.tile"(%[[M]], %arg2) {kind = "elementwise", params = {body = @etc_elementwise_1, broadcast = ["full", "col"]
// CHECK: %[[S:.*]] = "etc.tile"(%[[A]]) {kind = "elementwise", params = {body = @etc_elementwise_2, broadcast = ["full"]
// CHECK: return %[[S]]
// CHECK-LABEL: func.func private @etc_elementwise_0(%arg0: bf16, %arg1: bf16) -> bf16
// CHECK-NEXT: arith.extf %arg0 : bf16 to f32
// CHECK-NEXT: arith.extf %arg1 : bf16 to f32
// CHECK-NEXT: arith.mulf
// CHECK-NEXT: arith.truncf %{{.*}} : f32 to bf16
// CHECK-LABEL: func.func private @etc_elementwise_2(%arg0: bf16) -> f32
// CHECK-NEXT: %[[X:.*]] = arith.extf %arg0 : bf16 to f32
// CHECK-NEXT: %[[C:.*]] = arith.constant 5.000000e-01 : f32
// CHECK-NEXT: %[[R:.*]] = arith.mulf %[[X]], %[[C]] : f32
// CHECK-NEXT: return %[[R]] : f32
func.func @scale(%x: !torch.vtensor<[?,8],bf16>, %s: !torch.vtensor<[?,1],bf16>, %b: !torch.vtensor<[8],bf16>) -> !torch.vtensor<[?,8],f32> {
  %one = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
  %half = "torch.constant.float"() <{value = 0.5 : f64}> : () -> !torch.float
  %0 = "torch.aten.mul.Tensor"(%x, %s) : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[?,1],bf16>) -> !torch.vtensor<[?,8],bf16>
  %1 = "torch.aten.add.Tensor"(%0, %b, %one) : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[8],bf16>, !torch.int) -> !torch.vtensor<[?,8],bf16>
  %2 = "torch.aten.mul.Scalar"(%1, %half) : (!torch.vtensor<[?,8],bf16>, !torch.float) -> !torch.vtensor<[?,8],f32>
  return %2 : !torch.vtensor<[?,8],f32>
}

// -----

// No match: tiles, views that keep row-major order, and bookkeeping are left alone.
// CHECK-LABEL: func.func @already_raised
// CHECK-NEXT: "torch.constant.int"
// CHECK-NEXT: "torch.constant.int"
// CHECK-NEXT: "etc.tile"
// CHECK-NEXT: "torch.aten.unsqueeze"
// CHECK-NEXT: return
// CHECK-NOT: func.func private
func.func @already_raised(%x: !torch.vtensor<[?,8],f32>, %w: !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[?,1,8],f32> {
  %one = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
  %zero = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
  %0 = "etc.tile"(%x, %w) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 8, out_features = 8, has_bias = false}} : (!torch.vtensor<[?,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[?,8],f32>
  %1 = "torch.aten.unsqueeze"(%0, %one) : (!torch.vtensor<[?,8],f32>, !torch.int) -> !torch.vtensor<[?,1,8],f32>
  return %1 : !torch.vtensor<[?,1,8],f32>
}

// -----

// Error: an op with no tile kind names itself and the PyTorch source line it came from (here: this file).
// SRC: error: unsupported op 'torch.aten.sort' (from {{.*}}etc-raise-elementwise.mlir:[[#@LINE+5]]: `%0:2 = "torch.aten.sort"(%x, %dim, %false)
func.func @unsupported(%x: !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[4,8],f32> {
  %dim = "torch.constant.int"() <{value = -1 : i64}> : () -> !torch.int
  %false = "torch.constant.bool"() <{value = false}> : () -> !torch.bool
  // expected-error @+1 {{unsupported op 'torch.aten.sort' (from }}
  %0:2 = "torch.aten.sort"(%x, %dim, %false) : (!torch.vtensor<[4,8],f32>, !torch.int, !torch.bool) -> (!torch.vtensor<[4,8],f32>, !torch.vtensor<[4,8],si64>)
  return %0#0 : !torch.vtensor<[4,8],f32>
}

// -----

// Error: a transpose moves data, so it is not a view a buffer can alias.
func.func @transpose(%x: !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[8,4],f32> {
  %a = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
  %b = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
  // expected-error @+1 {{unsupported op 'torch.aten.transpose.int': a transpose that moves data}}
  %0 = "torch.aten.transpose.int"(%x, %a, %b) : (!torch.vtensor<[4,8],f32>, !torch.int, !torch.int) -> !torch.vtensor<[8,4],f32>
  return %0 : !torch.vtensor<[8,4],f32>
}

// -----

// Error: a broadcast that is neither per row nor per column has no tile.
func.func @broadcast(%x: !torch.vtensor<[4,2,8],f32>, %y: !torch.vtensor<[1,2,1],f32>) -> !torch.vtensor<[4,2,8],f32> {
  // expected-error @+1 {{no tile covers 'torch.aten.mul.Tensor' with operand shape [1, 2, 1] and result shape [4, 2, 8]}}
  %0 = "torch.aten.mul.Tensor"(%x, %y) : (!torch.vtensor<[4,2,8],f32>, !torch.vtensor<[1,2,1],f32>) -> !torch.vtensor<[4,2,8],f32>
  return %0 : !torch.vtensor<[4,2,8],f32>
}
