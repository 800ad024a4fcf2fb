// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p etc-fuse-head-norm-attention --verify-diagnostics | FileCheck %s
// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p etc-fuse-head-norm-attention{enable=false} | FileCheck %s --check-prefix=OFF
// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p etc-fuse-head-norm-attention,etc-fuse-head-norm-attention --verify-diagnostics | FileCheck %s --check-prefix=TWICE

// Positive (Qwen3's attention after etc-fuse-rope-kv-append): the q projection loses its head norm and
// RoPE (and their operands), the k projection appends the raw row, and the attention takes both norm
// weights, inv_freq and the eps; the k cache written back is still the k projection's in-place result.
// CHECK-LABEL: func.func @qwen3_attention
// CHECK: %[[Q:.*]] = "etc.tile"(%arg0, %arg1) {kind = "linear", params = {has_bias = false, in_features = 16 : i64, operand_roles = ["x", "weight"], out_features = 16 : i64, result_roles = ["y"]}}
// CHECK: %[[K:.*]] = "etc.tile"(%arg0, %arg2, %arg6, %arg8) {kind = "linear", params = {epilogue = ["kv_append"], has_bias = false, head_dim = 8 : i64, in_features = 16 : i64, operand_roles = ["x", "weight", "positions", "cache"], out_features = 8 : i64, result_roles = ["cache"]}}
// CHECK: "torch.overwrite.tensor.contents"(%[[K]], %arg3)
// CHECK: "etc.tile"(%[[Q]], %[[K]], %arg9, %arg6, %arg4, %arg5, %arg7) {kind = "attention", params = {head_dim = 8 : i64, head_norm_eps = 9.9999999999999995E-7 : f64, num_heads = 2 : i64, num_kv_heads = 1 : i64, operand_roles = ["q", "k_cache", "v_cache", "positions", "q_norm_weight", "k_norm_weight", "inv_freq"], result_roles = ["y"]}}
// CHECK-NOT: head_rms_norm
// OFF-LABEL: func.func @qwen3_attention
// OFF: epilogue = ["head_rms_norm", "rope"]
// OFF: epilogue = ["head_rms_norm", "rope", "kv_append"]
// OFF-NOT: head_norm_eps = {{.*}} num_heads
// A second run finds nothing left to move.
// TWICE-LABEL: func.func @qwen3_attention
// TWICE-COUNT-1: head_norm_eps
// TWICE-NOT: head_norm_eps
// TWICE-LABEL: func.func @llama_attention
func.func @qwen3_attention(%x: !torch.vtensor<[?,16],bf16>, %wq: !torch.vtensor<[16,16],bf16>, %wk: !torch.vtensor<[8,16],bf16>, %cache: !torch.tensor<[?,1,?,8],bf16>, %qn: !torch.vtensor<[8],bf16>, %kn: !torch.vtensor<[8],bf16>, %pos: !torch.vtensor<[?],si64>, %inv: !torch.vtensor<[4],f32>, %kc: !torch.vtensor<[?,1,?,8],bf16>, %vc: !torch.vtensor<[?,1,?,8],bf16>) -> !torch.vtensor<[?,16],bf16> {
  %q = "etc.tile"(%x, %wq, %qn, %pos, %inv) {kind = "linear", params = {epilogue = ["head_rms_norm", "rope"], has_bias = false, head_dim = 8 : i64, head_norm_eps = 1.0e-6 : f64, in_features = 16 : i64, operand_roles = ["x", "weight", "head_norm_weight", "positions", "inv_freq"], out_features = 16 : i64, result_roles = ["y"]}} : (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[16,16],bf16>, !torch.vtensor<[8],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[?,16],bf16>
  %k = "etc.tile"(%x, %wk, %kn, %pos, %inv, %kc) {kind = "linear", params = {epilogue = ["head_rms_norm", "rope", "kv_append"], has_bias = false, head_dim = 8 : i64, head_norm_eps = 1.0e-6 : f64, in_features = 16 : i64, operand_roles = ["x", "weight", "head_norm_weight", "positions", "inv_freq", "cache"], out_features = 8 : i64, result_roles = ["cache"]}} : (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[8,16],bf16>, !torch.vtensor<[8],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[4],f32>, !torch.vtensor<[?,1,?,8],bf16>) -> !torch.vtensor<[?,1,?,8],bf16>
  "torch.overwrite.tensor.contents"(%k, %cache) : (!torch.vtensor<[?,1,?,8],bf16>, !torch.tensor<[?,1,?,8],bf16>) -> ()
  %y = "etc.tile"(%q, %k, %vc, %pos) {kind = "attention", params = {head_dim = 8 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, operand_roles = ["q", "k_cache", "v_cache", "positions"], result_roles = ["y"]}} : (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[?,1,?,8],bf16>, !torch.vtensor<[?,1,?,8],bf16>, !torch.vtensor<[?],si64>) -> !torch.vtensor<[?,16],bf16>
  return %y : !torch.vtensor<[?,16],bf16>
}

// -----

// No match: Llama's q and k carry RoPE without a head norm; the projections keep it.
// CHECK-LABEL: func.func @llama_attention
// CHECK: epilogue = ["rope"]
// CHECK: epilogue = ["rope", "kv_append"]
// CHECK-NOT: head_norm_eps
func.func @llama_attention(%x: !torch.vtensor<[?,16],bf16>, %wq: !torch.vtensor<[16,16],bf16>, %wk: !torch.vtensor<[8,16],bf16>, %pos: !torch.vtensor<[?],si64>, %inv: !torch.vtensor<[4],f32>, %kc: !torch.vtensor<[?,1,?,8],bf16>, %vc: !torch.vtensor<[?,1,?,8],bf16>) -> !torch.vtensor<[?,16],bf16> {
  %q = "etc.tile"(%x, %wq, %pos, %inv) {kind = "linear", params = {epilogue = ["rope"], has_bias = false, head_dim = 8 : i64, in_features = 16 : i64, operand_roles = ["x", "weight", "positions", "inv_freq"], out_features = 16 : i64, result_roles = ["y"]}} : (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[16,16],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[?,16],bf16>
  %k = "etc.tile"(%x, %wk, %pos, %inv, %kc) {kind = "linear", params = {epilogue = ["rope", "kv_append"], has_bias = false, head_dim = 8 : i64, in_features = 16 : i64, operand_roles = ["x", "weight", "positions", "inv_freq", "cache"], out_features = 8 : i64, result_roles = ["cache"]}} : (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[8,16],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[4],f32>, !torch.vtensor<[?,1,?,8],bf16>) -> !torch.vtensor<[?,1,?,8],bf16>
  %y = "etc.tile"(%q, %k, %vc, %pos) {kind = "attention", params = {head_dim = 8 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, operand_roles = ["q", "k_cache", "v_cache", "positions"], result_roles = ["y"]}} : (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[?,1,?,8],bf16>, !torch.vtensor<[?,1,?,8],bf16>, !torch.vtensor<[?],si64>) -> !torch.vtensor<[?,16],bf16>
  return %y : !torch.vtensor<[?,16],bf16>
}

// -----

// No match: the normalized q is also returned, so its projection must still produce it.
// CHECK-LABEL: func.func @q_returned
// CHECK: epilogue = ["head_rms_norm", "rope"]
// CHECK-NOT: head_norm_eps = {{.*}} num_heads
func.func @q_returned(%x: !torch.vtensor<[?,16],bf16>, %wq: !torch.vtensor<[16,16],bf16>, %wk: !torch.vtensor<[8,16],bf16>, %qn: !torch.vtensor<[8],bf16>, %kn: !torch.vtensor<[8],bf16>, %pos: !torch.vtensor<[?],si64>, %inv: !torch.vtensor<[4],f32>, %kc: !torch.vtensor<[?,1,?,8],bf16>, %vc: !torch.vtensor<[?,1,?,8],bf16>) -> (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[?,16],bf16>) {
  %q = "etc.tile"(%x, %wq, %qn, %pos, %inv) {kind = "linear", params = {epilogue = ["head_rms_norm", "rope"], has_bias = false, head_dim = 8 : i64, head_norm_eps = 1.0e-6 : f64, in_features = 16 : i64, operand_roles = ["x", "weight", "head_norm_weight", "positions", "inv_freq"], out_features = 16 : i64, result_roles = ["y"]}} : (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[16,16],bf16>, !torch.vtensor<[8],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[?,16],bf16>
  %k = "etc.tile"(%x, %wk, %kn, %pos, %inv, %kc) {kind = "linear", params = {epilogue = ["head_rms_norm", "rope", "kv_append"], has_bias = false, head_dim = 8 : i64, head_norm_eps = 1.0e-6 : f64, in_features = 16 : i64, operand_roles = ["x", "weight", "head_norm_weight", "positions", "inv_freq", "cache"], out_features = 8 : i64, result_roles = ["cache"]}} : (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[8,16],bf16>, !torch.vtensor<[8],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[4],f32>, !torch.vtensor<[?,1,?,8],bf16>) -> !torch.vtensor<[?,1,?,8],bf16>
  %y = "etc.tile"(%q, %k, %vc, %pos) {kind = "attention", params = {head_dim = 8 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, operand_roles = ["q", "k_cache", "v_cache", "positions"], result_roles = ["y"]}} : (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[?,1,?,8],bf16>, !torch.vtensor<[?,1,?,8],bf16>, !torch.vtensor<[?],si64>) -> !torch.vtensor<[?,16],bf16>
  return %y, %q : !torch.vtensor<[?,16],bf16>, !torch.vtensor<[?,16],bf16>
}

// -----

// Error: 'params' must be a dictionary.
func.func @bad_params(%x: !torch.vtensor<[?,8],bf16>) -> !torch.vtensor<[?,8],bf16> {
  // expected-error @+1 {{etc.tile 'kind' must be a string and 'params' a dictionary}}
  %a = "etc.tile"(%x) {kind = "attention", params = ["x"]} : (!torch.vtensor<[?,8],bf16>) -> !torch.vtensor<[?,8],bf16>
  return %a : !torch.vtensor<[?,8],bf16>
}
