// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p etc-fuse-norm-linear --verify-diagnostics | FileCheck %s
// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p etc-fuse-norm-linear{enable=false} | FileCheck %s --check-prefix=OFF

// Positive: the norm feeds two linears (one through a view); both take the norm as a prologue and read its input.
// CHECK-LABEL: func.func @norm_to_two_linears
// CHECK-NOT: kind = "rms_norm"
// CHECK: "etc.tile"(%arg0, %arg2, %arg1) {kind = "linear", params = {has_bias = false, in_features = 8 : i64, operand_roles = ["x", "weight", "norm_weight"], out_features = 8 : i64, prologue = "rms_norm", prologue_eps = 1.000000e-05 : f64, result_roles = ["y"]}}
// CHECK: "etc.tile"(%arg0, %arg3, %arg1) {kind = "linear", params = {{.*}}prologue = "rms_norm"
// CHECK-NOT: kind = "rms_norm"
// OFF-LABEL: func.func @norm_to_two_linears
// OFF: kind = "rms_norm"
// OFF-NOT: prologue
func.func @norm_to_two_linears(%h: !torch.vtensor<[?,1,8],bf16>, %nw: !torch.vtensor<[8],bf16>, %wq: !torch.vtensor<[8,8],bf16>, %wk: !torch.vtensor<[8,8],bf16>) -> (!torch.vtensor<[?,1,8],bf16>, !torch.vtensor<[?,8],bf16>) {
  %one = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
  %zero = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
  %n = "etc.tile"(%h, %nw) {kind = "rms_norm", params = {operand_roles = ["x", "weight"], result_roles = ["y"], eps = 1.0e-5 : f64, dim = 8 : i64}} : (!torch.vtensor<[?,1,8],bf16>, !torch.vtensor<[8],bf16>) -> !torch.vtensor<[?,1,8],bf16>
  %q = "etc.tile"(%n, %wq) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 8 : i64, out_features = 8 : i64, has_bias = false}} : (!torch.vtensor<[?,1,8],bf16>, !torch.vtensor<[8,8],bf16>) -> !torch.vtensor<[?,1,8],bf16>
  %s = "torch.aten.select.int"(%n, %one, %zero) : (!torch.vtensor<[?,1,8],bf16>, !torch.int, !torch.int) -> !torch.vtensor<[?,8],bf16>
  %k = "etc.tile"(%s, %wk) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 8 : i64, out_features = 8 : i64, has_bias = false}} : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[8,8],bf16>) -> !torch.vtensor<[?,8],bf16>
  return %q, %k : !torch.vtensor<[?,1,8],bf16>, !torch.vtensor<[?,8],bf16>
}

// -----

// No match: the normalized row is also returned, so the norm must stay.
// CHECK-LABEL: func.func @norm_also_returned
// CHECK: kind = "rms_norm"
// CHECK-NOT: prologue
func.func @norm_also_returned(%h: !torch.vtensor<[?,8],bf16>, %nw: !torch.vtensor<[8],bf16>, %wq: !torch.vtensor<[8,8],bf16>) -> (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[?,8],bf16>) {
  %n = "etc.tile"(%h, %nw) {kind = "rms_norm", params = {operand_roles = ["x", "weight"], result_roles = ["y"], eps = 1.0e-5 : f64, dim = 8 : i64}} : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[8],bf16>) -> !torch.vtensor<[?,8],bf16>
  %q = "etc.tile"(%n, %wq) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 8 : i64, out_features = 8 : i64, has_bias = false}} : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[8,8],bf16>) -> !torch.vtensor<[?,8],bf16>
  return %n, %q : !torch.vtensor<[?,8],bf16>, !torch.vtensor<[?,8],bf16>
}

// -----

// Error: a tile whose params do not name its operands cannot be fused.
func.func @malformed(%h: !torch.vtensor<[?,8],bf16>, %nw: !torch.vtensor<[8],bf16>) -> !torch.vtensor<[?,8],bf16> {
  // expected-error @+1 {{etc.tile params.operand_roles must list one role per operand (2)}}
  %n = "etc.tile"(%h, %nw) {kind = "rms_norm", params = {operand_roles = ["x"], result_roles = ["y"], eps = 1.0e-5 : f64, dim = 8 : i64}} : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[8],bf16>) -> !torch.vtensor<[?,8],bf16>
  return %n : !torch.vtensor<[?,8],bf16>
}
