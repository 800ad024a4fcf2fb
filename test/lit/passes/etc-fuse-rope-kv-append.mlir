// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p etc-fuse-rope-kv-append --verify-diagnostics | FileCheck %s
// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p etc-fuse-rope-kv-append{enable=false} | FileCheck %s --check-prefix=OFF

// Positive: k = k_proj(x) -> view -> per-head norm -> permute -> rope -> select -> KV append (Qwen3's k path):
// one linear computes k, normalizes and rotates each head and stores it into the cache in place.
// CHECK-LABEL: func.func @k_path
// CHECK: %[[C:.*]] = "etc.tile"(%arg0, %arg1, %arg2, %arg3, %arg4, %[[OLD:.*]]) {kind = "linear", params = {epilogue = ["head_rms_norm", "rope", "kv_append"], has_bias = false, head_dim = 8 : i64, head_norm_eps = 9.9999999999999995E-7 : f64, in_features = 16 : i64, operand_roles = ["x", "weight", "head_norm_weight", "positions", "inv_freq", "cache"], out_features = 16 : i64, result_roles = ["cache"]}}
// CHECK-NOT: kind = "rope"
// CHECK-NOT: kind = "kv_append"
// CHECK-NOT: kind = "rms_norm"
// CHECK: "torch.overwrite.tensor.contents"(%[[C]], %arg5)
// OFF-LABEL: func.func @k_path
// OFF: kind = "rope"
// OFF: kind = "kv_append"
func.func @k_path(%x: !torch.vtensor<[?,1,16],bf16>, %wk: !torch.vtensor<[16,16],bf16>, %kn: !torch.vtensor<[8],bf16>, %pos: !torch.vtensor<[?],si64>, %inv: !torch.vtensor<[4],f32>, %cache: !torch.tensor<[?,2,?,8],bf16>) {
  %b = "torch.constant.int"() <{value = -1 : i64}> : () -> !torch.int
  %one = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
  %two = "torch.constant.int"() <{value = 2 : i64}> : () -> !torch.int
  %eight = "torch.constant.int"() <{value = 8 : i64}> : () -> !torch.int
  %zero = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
  %three = "torch.constant.int"() <{value = 3 : i64}> : () -> !torch.int
  %old = "torch.copy.to_vtensor"(%cache) : (!torch.tensor<[?,2,?,8],bf16>) -> !torch.vtensor<[?,2,?,8],bf16>
  %k = "etc.tile"(%x, %wk) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 16 : i64, out_features = 16 : i64, has_bias = false}} : (!torch.vtensor<[?,1,16],bf16>, !torch.vtensor<[16,16],bf16>) -> !torch.vtensor<[?,1,16],bf16>
  %shape = "torch.prim.ListConstruct"(%b, %one, %two, %eight) : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %kv = "torch.aten.view"(%k, %shape) : (!torch.vtensor<[?,1,16],bf16>, !torch.list<int>) -> !torch.vtensor<[?,1,2,8],bf16>
  %kn2 = "etc.tile"(%kv, %kn) {kind = "rms_norm", params = {operand_roles = ["x", "weight"], result_roles = ["y"], eps = 1.0e-6 : f64, dim = 8 : i64}} : (!torch.vtensor<[?,1,2,8],bf16>, !torch.vtensor<[8],bf16>) -> !torch.vtensor<[?,1,2,8],bf16>
  %perm = "torch.prim.ListConstruct"(%zero, %two, %one, %three) : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %kt = "torch.aten.permute"(%kn2, %perm) : (!torch.vtensor<[?,1,2,8],bf16>, !torch.list<int>) -> !torch.vtensor<[?,2,1,8],bf16>
  %kr = "etc.tile"(%kt, %pos, %inv) {kind = "rope", params = {operand_roles = ["x", "positions", "inv_freq"], result_roles = ["y"], head_dim = 8 : i64}} : (!torch.vtensor<[?,2,1,8],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[?,2,1,8],bf16>
  %ks = "torch.aten.select.int"(%kr, %two, %zero) : (!torch.vtensor<[?,2,1,8],bf16>, !torch.int, !torch.int) -> !torch.vtensor<[?,2,8],bf16>
  %new = "etc.tile"(%ks, %pos, %old) {kind = "kv_append", params = {operand_roles = ["x", "positions", "cache"], result_roles = ["cache"], head_dim = 8 : i64}} : (!torch.vtensor<[?,2,8],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[?,2,?,8],bf16>) -> !torch.vtensor<[?,2,?,8],bf16>
  "torch.overwrite.tensor.contents"(%new, %cache) : (!torch.vtensor<[?,2,?,8],bf16>, !torch.tensor<[?,2,?,8],bf16>) -> ()
  return
}

// -----

// No match: the rotated q is also returned, so the linear cannot keep it in registers only.
// CHECK-LABEL: func.func @rope_result_returned
// CHECK: kind = "rope"
// CHECK-NOT: epilogue
func.func @rope_result_returned(%x: !torch.vtensor<[?,16],bf16>, %wq: !torch.vtensor<[16,16],bf16>, %pos: !torch.vtensor<[?],si64>, %inv: !torch.vtensor<[4],f32>) -> (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[?,16],bf16>) {
  %q = "etc.tile"(%x, %wq) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 16 : i64, out_features = 16 : i64, has_bias = false}} : (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[16,16],bf16>) -> !torch.vtensor<[?,16],bf16>
  %r = "etc.tile"(%q, %pos, %inv) {kind = "rope", params = {operand_roles = ["x", "positions", "inv_freq"], result_roles = ["y"], head_dim = 8 : i64}} : (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[?,16],bf16>
  return %r, %q : !torch.vtensor<[?,16],bf16>, !torch.vtensor<[?,16],bf16>
}

// -----

// Error: 'params' must be a dictionary.
func.func @bad_params(%x: !torch.vtensor<[?,8],bf16>) -> !torch.vtensor<[?,8],bf16> {
  // expected-error @+1 {{etc.tile 'kind' must be a string and 'params' a dictionary}}
  %a = "etc.tile"(%x) {kind = "rope", params = ["x"]} : (!torch.vtensor<[?,8],bf16>) -> !torch.vtensor<[?,8],bf16>
  return %a : !torch.vtensor<[?,8],bf16>
}
