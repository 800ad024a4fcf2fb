// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p etc-tile --verify-diagnostics | FileCheck %s
// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p "etc-tile{num-sms=8 kv-chunk=64 row-tile=256}" --verify-diagnostics | FileCheck %s --check-prefix=SMALL
// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p "etc-tile{split-heads=false wide-kv=false}" --verify-diagnostics | FileCheck %s --check-prefix=WHOLE

// Positive: about one linear tile per SM (132 on the H200), whole heads when the epilogue works per head
// -- except that a rope projection with fewer heads than SMs splits its heads of 64 into tiles of 32
// (rotate-half pairs; split-heads=false keeps 64) -- and a short last tile when sizes do not divide
// (128256 = 131 * 976 + 400). Attention splits cover twice kv_chunk from ceildiv(132, 2 * 8) = 9 rows
// on (8 SMs: from 2 rows; wide-kv=false: never, wide_rows 0).
// CHECK-LABEL: func.func @shapes
// CHECK: kind = "linear", params = {{{.*}}out_features = 8192 : i64, {{.*}}tile_n = 64 : i64}
// CHECK: kind = "linear", params = {{{.*}}out_features = 512 : i64, {{.*}}tile_n = 32 : i64}
// WHOLE-LABEL: func.func @shapes
// WHOLE: out_features = 8192 : i64, {{.*}}tile_n = 64 : i64}
// WHOLE: out_features = 512 : i64, {{.*}}tile_n = 64 : i64}
// WHOLE: kv_chunk = 128 : i64, {{.*}}wide_rows = 0 : i64
// CHECK: kind = "linear", params = {{{.*}}out_features = 128256 : i64, {{.*}}tile_n = 976 : i64}
// CHECK: kind = "attention", params = {{{.*}}kv_chunk = 128 : i64, {{.*}}wide_rows = 9 : i64
// CHECK: kind = "silu_mul", params = {{{.*}}tile_c = 1024 : i64}
// SMALL-LABEL: func.func @shapes
// SMALL: out_features = 8192 : i64, {{.*}}tile_n = 1024 : i64}
// SMALL: out_features = 512 : i64, {{.*}}tile_n = 64 : i64}
// SMALL: out_features = 128256 : i64, {{.*}}tile_n = 16032 : i64}
// SMALL: kv_chunk = 64 : i64, {{.*}}wide_rows = 2 : i64
// SMALL: tile_c = 256 : i64
func.func @shapes(%x: !torch.vtensor<[?,2048],bf16>, %x2: !torch.vtensor<[?,2048],bf16>, %x3: !torch.vtensor<[?,2048],bf16>, %w1: !torch.vtensor<[8192,2048],bf16>, %w2: !torch.vtensor<[512,2048],bf16>, %w3: !torch.vtensor<[128256,2048],bf16>, %pos: !torch.vtensor<[?],si64>, %inv: !torch.vtensor<[32],f32>, %q: !torch.vtensor<[?,32,1,64],bf16>, %k: !torch.vtensor<[?,8,?,64],bf16>, %g: !torch.vtensor<[?,8192],bf16>) {
  %0 = "etc.tile"(%x, %w1) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 2048 : i64, out_features = 8192 : i64, has_bias = false}} : (!torch.vtensor<[?,2048],bf16>, !torch.vtensor<[8192,2048],bf16>) -> !torch.vtensor<[?,8192],bf16>
  %1 = "etc.tile"(%x2, %w2, %pos, %inv) {kind = "linear", params = {operand_roles = ["x", "weight", "positions", "inv_freq"], result_roles = ["y"], in_features = 2048 : i64, out_features = 512 : i64, has_bias = false, epilogue = ["rope"], head_dim = 64 : i64}} : (!torch.vtensor<[?,2048],bf16>, !torch.vtensor<[512,2048],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[32],f32>) -> !torch.vtensor<[?,512],bf16>
  %2 = "etc.tile"(%x3, %w3) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 2048 : i64, out_features = 128256 : i64, has_bias = false}} : (!torch.vtensor<[?,2048],bf16>, !torch.vtensor<[128256,2048],bf16>) -> !torch.vtensor<[?,128256],bf16>
  %3 = "etc.tile"(%q, %k, %k, %pos) {kind = "attention", params = {operand_roles = ["q", "k_cache", "v_cache", "positions"], result_roles = ["y"], num_heads = 32 : i64, num_kv_heads = 8 : i64, head_dim = 64 : i64, scale = 0.125 : f64}} : (!torch.vtensor<[?,32,1,64],bf16>, !torch.vtensor<[?,8,?,64],bf16>, !torch.vtensor<[?,8,?,64],bf16>, !torch.vtensor<[?],si64>) -> !torch.vtensor<[?,32,1,64],bf16>
  %4 = "etc.tile"(%g, %g) {kind = "silu_mul", params = {operand_roles = ["gate", "up"], result_roles = ["y"]}} : (!torch.vtensor<[?,8192],bf16>, !torch.vtensor<[?,8192],bf16>) -> !torch.vtensor<[?,8192],bf16>
  return
}

// -----

// Positive: a wide linear over rows of 4096 (Qwen3-8B's LM head) whose 16 rows of x do not fit shared
// memory whole: 1152 columns a tile (one round of the 132 SMs) would leave no room for its column sums
// beside a segment of x, so it gets 288, four rounds, and streams its weights once per 16 rows. No match:
// the same columns over rows of 2048 (16 rows fit whole) keep one round; an f32 x never segments.
// CHECK-LABEL: func.func @wide
// CHECK: in_features = 4096 : i64, {{.*}}tile_n = 288 : i64}
// CHECK: in_features = 2048 : i64, {{.*}}tile_n = 1152 : i64}
// CHECK: in_features = 4096 : i64, {{.*}}tile_n = 1152 : i64}
func.func @wide(%x: !torch.vtensor<[?,4096],bf16>, %w: !torch.vtensor<[151936,4096],bf16>, %x2: !torch.vtensor<[?,2048],bf16>, %w2: !torch.vtensor<[151936,2048],bf16>, %x3: !torch.vtensor<[?,4096],f32>, %w3: !torch.vtensor<[151936,4096],f32>) {
  %0 = "etc.tile"(%x, %w) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 4096 : i64, out_features = 151936 : i64, has_bias = false}} : (!torch.vtensor<[?,4096],bf16>, !torch.vtensor<[151936,4096],bf16>) -> !torch.vtensor<[?,151936],bf16>
  %1 = "etc.tile"(%x2, %w2) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 2048 : i64, out_features = 151936 : i64, has_bias = false}} : (!torch.vtensor<[?,2048],bf16>, !torch.vtensor<[151936,2048],bf16>) -> !torch.vtensor<[?,151936],bf16>
  %2 = "etc.tile"(%x3, %w3) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 4096 : i64, out_features = 151936 : i64, has_bias = false}} : (!torch.vtensor<[?,4096],f32>, !torch.vtensor<[151936,4096],f32>) -> !torch.vtensor<[?,151936],f32>
  return
}

// -----

// Positive: a projection with a per-head rms norm first (Qwen3's q_proj, heads of 128) splits its heads
// too: the norm then gathers each head in its last tile (etc.tiles). A norm after rope keeps whole heads.
// CHECK-LABEL: func.func @head_norm
// CHECK: epilogue = ["head_rms_norm", "rope"], {{.*}}tile_n = 32 : i64}
// CHECK: epilogue = ["rope", "head_rms_norm"], {{.*}}tile_n = 128 : i64}
// WHOLE-LABEL: func.func @head_norm
// WHOLE: epilogue = ["head_rms_norm", "rope"], {{.*}}tile_n = 128 : i64}
func.func @head_norm(%x: !torch.vtensor<[?,1024],bf16>, %w: !torch.vtensor<[2048,1024],bf16>, %hw: !torch.vtensor<[128],bf16>, %pos: !torch.vtensor<[?],si64>, %inv: !torch.vtensor<[64],f32>) {
  %0 = "etc.tile"(%x, %w, %hw, %pos, %inv) {kind = "linear", params = {operand_roles = ["x", "weight", "head_norm_weight", "positions", "inv_freq"], result_roles = ["y"], in_features = 1024 : i64, out_features = 2048 : i64, has_bias = false, epilogue = ["head_rms_norm", "rope"], head_dim = 128 : i64, head_norm_eps = 1.0e-06 : f64}} : (!torch.vtensor<[?,1024],bf16>, !torch.vtensor<[2048,1024],bf16>, !torch.vtensor<[128],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[64],f32>) -> !torch.vtensor<[?,2048],bf16>
  %1 = "etc.tile"(%x, %w, %hw, %pos, %inv) {kind = "linear", params = {operand_roles = ["x", "weight", "head_norm_weight", "positions", "inv_freq"], result_roles = ["y"], in_features = 1024 : i64, out_features = 2048 : i64, has_bias = false, epilogue = ["rope", "head_rms_norm"], head_dim = 128 : i64, head_norm_eps = 1.0e-06 : f64}} : (!torch.vtensor<[?,1024],bf16>, !torch.vtensor<[2048,1024],bf16>, !torch.vtensor<[128],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[64],f32>) -> !torch.vtensor<[?,2048],bf16>
  return
}

// -----

// Positive: linears reading the same x run side by side and share the SMs: Qwen3-8B's q (4096), k and v
// (1024 each) get one tile per 6144 / 132 -> 47 columns together, so heads of 128 split in two
// (q 64 + k 16 + v 16 tiles); alone, q would split in four (128 tiles) and k and v would add 64 more.
// CHECK-LABEL: func.func @siblings
// CHECK: out_features = 4096 : i64, {{.*}}tile_n = 64 : i64}
// CHECK: out_features = 1024 : i64, {{.*}}tile_n = 64 : i64}
// CHECK: out_features = 1024 : i64, {{.*}}tile_n = 64 : i64}
// CHECK: out_features = 4096 : i64, {{.*}}tile_n = 32 : i64}
func.func @siblings(%x: !torch.vtensor<[?,4096],bf16>, %x2: !torch.vtensor<[?,4096],bf16>, %wq: !torch.vtensor<[4096,4096],bf16>, %wk: !torch.vtensor<[1024,4096],bf16>, %hw: !torch.vtensor<[128],bf16>, %pos: !torch.vtensor<[?],si64>, %inv: !torch.vtensor<[64],f32>, %cache: !torch.vtensor<[?,8,?,128],bf16>) {
  %0 = "etc.tile"(%x, %wq, %hw, %pos, %inv) {kind = "linear", params = {operand_roles = ["x", "weight", "head_norm_weight", "positions", "inv_freq"], result_roles = ["y"], in_features = 4096 : i64, out_features = 4096 : i64, has_bias = false, epilogue = ["head_rms_norm", "rope"], head_dim = 128 : i64, head_norm_eps = 1.0e-06 : f64}} : (!torch.vtensor<[?,4096],bf16>, !torch.vtensor<[4096,4096],bf16>, !torch.vtensor<[128],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[64],f32>) -> !torch.vtensor<[?,4096],bf16>
  %1 = "etc.tile"(%x, %wk, %hw, %pos, %inv, %cache) {kind = "linear", params = {operand_roles = ["x", "weight", "head_norm_weight", "positions", "inv_freq", "cache"], result_roles = ["cache"], in_features = 4096 : i64, out_features = 1024 : i64, has_bias = false, epilogue = ["head_rms_norm", "rope", "kv_append"], head_dim = 128 : i64, head_norm_eps = 1.0e-06 : f64}} : (!torch.vtensor<[?,4096],bf16>, !torch.vtensor<[1024,4096],bf16>, !torch.vtensor<[128],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[64],f32>, !torch.vtensor<[?,8,?,128],bf16>) -> !torch.vtensor<[?,8,?,128],bf16>
  %2 = "etc.tile"(%x, %wk, %pos, %cache) {kind = "linear", params = {operand_roles = ["x", "weight", "positions", "cache"], result_roles = ["cache"], in_features = 4096 : i64, out_features = 1024 : i64, has_bias = false, epilogue = ["kv_append"], head_dim = 128 : i64}} : (!torch.vtensor<[?,4096],bf16>, !torch.vtensor<[1024,4096],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[?,8,?,128],bf16>) -> !torch.vtensor<[?,8,?,128],bf16>
  %3 = "etc.tile"(%x2, %wq, %hw, %pos, %inv) {kind = "linear", params = {operand_roles = ["x", "weight", "head_norm_weight", "positions", "inv_freq"], result_roles = ["y"], in_features = 4096 : i64, out_features = 4096 : i64, has_bias = false, epilogue = ["head_rms_norm", "rope"], head_dim = 128 : i64, head_norm_eps = 1.0e-06 : f64}} : (!torch.vtensor<[?,4096],bf16>, !torch.vtensor<[4096,4096],bf16>, !torch.vtensor<[128],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[64],f32>) -> !torch.vtensor<[?,4096],bf16>
  return
}

// -----

// No match: nothing to tile.
// CHECK-LABEL: func.func @empty
// CHECK-NEXT: return
func.func @empty() {
  return
}

// -----

// Error: no tile covers shapes that break a kind's rules.
func.func @uncoverable(%x: !torch.vtensor<[?,100],bf16>, %w: !torch.vtensor<[64,100],bf16>, %y: !torch.vtensor<[?,96],bf16>, %w2: !torch.vtensor<[96,96],bf16>, %pos: !torch.vtensor<[?],si64>, %inv: !torch.vtensor<[32],f32>) {
  // expected-error @+1 {{no tile covers this linear: in_features 100 is not a multiple of 8 (16-byte bf16 loads)}}
  %0 = "etc.tile"(%x, %w) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 100 : i64, out_features = 64 : i64, has_bias = false}} : (!torch.vtensor<[?,100],bf16>, !torch.vtensor<[64,100],bf16>) -> !torch.vtensor<[?,64],bf16>
  // expected-error @+1 {{no tile covers this linear: out_features 96 is not a whole number of heads of 64}}
  %1 = "etc.tile"(%y, %w2, %pos, %inv) {kind = "linear", params = {operand_roles = ["x", "weight", "positions", "inv_freq"], result_roles = ["y"], in_features = 96 : i64, out_features = 96 : i64, has_bias = false, epilogue = ["rope"], head_dim = 64 : i64}} : (!torch.vtensor<[?,96],bf16>, !torch.vtensor<[96,96],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[32],f32>) -> !torch.vtensor<[?,96],bf16>
  return
}
