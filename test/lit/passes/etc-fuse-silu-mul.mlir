// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p etc-fuse-silu-mul --verify-diagnostics | FileCheck %s
// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p etc-fuse-silu-mul{enable=false} | FileCheck %s --check-prefix=OFF

// Positive: gate and up read the same input with the same norm prologue; one linear computes both and the
// SiLU*mul in its epilogue (the up projection's bias comes along).
// CHECK-LABEL: func.func @gated_mlp
// CHECK: %[[A:.*]] = "etc.tile"(%arg0, %arg2, %arg5, %arg1, %arg3, %arg4) {kind = "linear", params = {epilogue = ["silu_mul"], has_bias = true, in_features = 8 : i64, operand_roles = ["x", "weight", "bias", "norm_weight", "up_weight", "up_bias"], out_features = 16 : i64, prologue = "rms_norm", prologue_eps = 1.000000e-05 : f64, result_roles = ["y"]}}
// CHECK-NOT: silu_mul"
// CHECK: return %[[A]]
// OFF-LABEL: func.func @gated_mlp
// OFF: kind = "silu_mul"
func.func @gated_mlp(%x: !torch.vtensor<[?,8],bf16>, %nw: !torch.vtensor<[8],bf16>, %wg: !torch.vtensor<[16,8],bf16>, %wu: !torch.vtensor<[16,8],bf16>, %bu: !torch.vtensor<[16],bf16>, %bg: !torch.vtensor<[16],bf16>) -> !torch.vtensor<[?,16],bf16> {
  %g = "etc.tile"(%x, %wg, %bg, %nw) {kind = "linear", params = {operand_roles = ["x", "weight", "bias", "norm_weight"], result_roles = ["y"], in_features = 8 : i64, out_features = 16 : i64, has_bias = true, prologue = "rms_norm", prologue_eps = 1.0e-5 : f64}} : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[16,8],bf16>, !torch.vtensor<[16],bf16>, !torch.vtensor<[8],bf16>) -> !torch.vtensor<[?,16],bf16>
  %u = "etc.tile"(%x, %wu, %bu, %nw) {kind = "linear", params = {operand_roles = ["x", "weight", "bias", "norm_weight"], result_roles = ["y"], in_features = 8 : i64, out_features = 16 : i64, has_bias = true, prologue = "rms_norm", prologue_eps = 1.0e-5 : f64}} : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[16,8],bf16>, !torch.vtensor<[16],bf16>, !torch.vtensor<[8],bf16>) -> !torch.vtensor<[?,16],bf16>
  %a = "etc.tile"(%g, %u) {kind = "silu_mul", params = {operand_roles = ["gate", "up"], result_roles = ["y"]}} : (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[?,16],bf16>) -> !torch.vtensor<[?,16],bf16>
  return %a : !torch.vtensor<[?,16],bf16>
}

// -----

// Positive: a GELU MLP folds the activation into its up projection.
// CHECK-LABEL: func.func @gelu_mlp
// CHECK: "etc.tile"(%arg0, %arg1) {kind = "linear", params = {epilogue = ["gelu"], gelu_approximate = "tanh"
// CHECK-NOT: kind = "gelu"
func.func @gelu_mlp(%x: !torch.vtensor<[?,8],bf16>, %w: !torch.vtensor<[16,8],bf16>) -> !torch.vtensor<[?,16],bf16> {
  %u = "etc.tile"(%x, %w) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 8 : i64, out_features = 16 : i64, has_bias = false}} : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[16,8],bf16>) -> !torch.vtensor<[?,16],bf16>
  %a = "etc.tile"(%u) {kind = "gelu", params = {operand_roles = ["x"], result_roles = ["y"], approximate = "tanh"}} : (!torch.vtensor<[?,16],bf16>) -> !torch.vtensor<[?,16],bf16>
  return %a : !torch.vtensor<[?,16],bf16>
}

// -----

// No match: gate and up read different inputs, so one tile cannot compute both.
// CHECK-LABEL: func.func @different_inputs
// CHECK: kind = "silu_mul"
func.func @different_inputs(%x: !torch.vtensor<[?,8],bf16>, %y: !torch.vtensor<[?,8],bf16>, %wg: !torch.vtensor<[16,8],bf16>, %wu: !torch.vtensor<[16,8],bf16>) -> !torch.vtensor<[?,16],bf16> {
  %g = "etc.tile"(%x, %wg) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 8 : i64, out_features = 16 : i64, has_bias = false}} : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[16,8],bf16>) -> !torch.vtensor<[?,16],bf16>
  %u = "etc.tile"(%y, %wu) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 8 : i64, out_features = 16 : i64, has_bias = false}} : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[16,8],bf16>) -> !torch.vtensor<[?,16],bf16>
  %a = "etc.tile"(%g, %u) {kind = "silu_mul", params = {operand_roles = ["gate", "up"], result_roles = ["y"]}} : (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[?,16],bf16>) -> !torch.vtensor<[?,16],bf16>
  return %a : !torch.vtensor<[?,16],bf16>
}

// -----

// Error: 'kind' must be a string.
func.func @bad_kind(%x: !torch.vtensor<[?,8],bf16>) -> !torch.vtensor<[?,8],bf16> {
  // expected-error @+1 {{etc.tile 'kind' must be a string and 'params' a dictionary}}
  %a = "etc.tile"(%x) {kind = 3 : i64, params = {operand_roles = ["x"], result_roles = ["y"]}} : (!torch.vtensor<[?,8],bf16>) -> !torch.vtensor<[?,8],bf16>
  return %a : !torch.vtensor<[?,8],bf16>
}
