// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p etc-fuse-linear-residual --verify-diagnostics | FileCheck %s
// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p etc-fuse-linear-residual{enable=false} | FileCheck %s --check-prefix=OFF

// Positive: h + o_proj(a): the add becomes the linear's epilogue, reading h as the residual.
// CHECK-LABEL: func.func @residual
// CHECK: %[[Y:.*]] = "etc.tile"(%arg1, %arg2, %arg0) {kind = "linear", params = {epilogue = ["residual_add"], has_bias = false, in_features = 8 : i64, operand_roles = ["x", "weight", "residual"], out_features = 8 : i64, result_roles = ["y"]}}
// CHECK-NOT: kind = "add"
// CHECK: return %[[Y]]
// OFF-LABEL: func.func @residual
// OFF: kind = "add"
func.func @residual(%h: !torch.vtensor<[?,1,8],bf16>, %a: !torch.vtensor<[?,1,8],bf16>, %wo: !torch.vtensor<[8,8],bf16>) -> !torch.vtensor<[?,1,8],bf16> {
  %o = "etc.tile"(%a, %wo) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 8 : i64, out_features = 8 : i64, has_bias = false}} : (!torch.vtensor<[?,1,8],bf16>, !torch.vtensor<[8,8],bf16>) -> !torch.vtensor<[?,1,8],bf16>
  %r = "etc.tile"(%h, %o) {kind = "add", params = {operand_roles = ["a", "b"], result_roles = ["y"], alpha = 1.0 : f64}} : (!torch.vtensor<[?,1,8],bf16>, !torch.vtensor<[?,1,8],bf16>) -> !torch.vtensor<[?,1,8],bf16>
  return %r : !torch.vtensor<[?,1,8],bf16>
}

// -----

// No match: the linear's result is read twice (returned too), so it must be stored; the add stays.
// CHECK-LABEL: func.func @linear_used_twice
// CHECK: kind = "add"
// CHECK-NOT: residual_add
func.func @linear_used_twice(%h: !torch.vtensor<[?,8],bf16>, %a: !torch.vtensor<[?,8],bf16>, %wo: !torch.vtensor<[8,8],bf16>) -> (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[?,8],bf16>) {
  %o = "etc.tile"(%a, %wo) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 8 : i64, out_features = 8 : i64, has_bias = false}} : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[8,8],bf16>) -> !torch.vtensor<[?,8],bf16>
  %r = "etc.tile"(%h, %o) {kind = "add", params = {operand_roles = ["a", "b"], result_roles = ["y"], alpha = 1.0 : f64}} : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[?,8],bf16>) -> !torch.vtensor<[?,8],bf16>
  return %r, %o : !torch.vtensor<[?,8],bf16>, !torch.vtensor<[?,8],bf16>
}

// -----

// Error: an etc.tile of a kind ETC does not know.
func.func @unknown_kind(%h: !torch.vtensor<[?,8],bf16>) -> !torch.vtensor<[?,8],bf16> {
  // expected-error @+1 {{etc.tile has unknown kind 'sparse_add'}}
  %r = "etc.tile"(%h, %h) {kind = "sparse_add", params = {operand_roles = ["a", "b"], result_roles = ["y"]}} : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[?,8],bf16>) -> !torch.vtensor<[?,8],bf16>
  %s = "etc.tile"(%r, %h) {kind = "add", params = {operand_roles = ["a", "b"], result_roles = ["y"], alpha = 1.0 : f64}} : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[?,8],bf16>) -> !torch.vtensor<[?,8],bf16>
  return %s : !torch.vtensor<[?,8],bf16>
}
