// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p etc-raise-torch --verify-diagnostics | FileCheck %s
// Inputs are torch-mlir imports of small PyTorch modules (locations and shape bindings dropped).

// Positive: embedding, the HF RMSNorm pattern, linear with and without bias, SiLU*mul, residual add, argmax.
// CHECK-LABEL: func.func @main
// CHECK: %[[E:.*]] = "etc.tile"(%arg1, %arg0) {kind = "embedding", params = {operand_roles = ["weight", "tokens"], result_roles = ["out"]}}
// CHECK: %[[N:.*]] = "etc.tile"(%[[E]], %arg2) {kind = "rms_norm", params = {dim = 16 : i64, eps = 9.9999999999999995E-7 : f64, operand_roles = ["x", "weight"]
// CHECK: %[[G:.*]] = "etc.tile"(%[[N]], %arg3) {kind = "linear", params = {has_bias = false, in_features = 16 : i64, operand_roles = ["x", "weight"], out_features = 32 : i64
// CHECK: %[[U:.*]] = "etc.tile"(%[[N]], %arg4, %arg5) {kind = "linear", params = {has_bias = true, {{.*}}operand_roles = ["x", "weight", "bias"]
// CHECK: %[[A:.*]] = "etc.tile"(%[[G]], %[[U]]) {kind = "silu_mul"
// CHECK: %[[D:.*]] = "etc.tile"(%[[A]], %arg6) {kind = "linear"
// CHECK: %[[R:.*]] = "etc.tile"(%[[E]], %[[D]]) {kind = "add", params = {alpha = 1.000000e+00 : f64
// CHECK: %[[M:.*]] = "etc.tile"(%[[R]]) {kind = "argmax"
// CHECK-NOT: torch.aten
// CHECK: return %[[M]]
#map = affine_map<()[s0] -> (s0)>
#map1 = affine_map<()[s0] -> (s0, 16)>
#map2 = affine_map<()[s0] -> (s0, 1)>
#map3 = affine_map<()[s0] -> (s0, 32)>
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{etc.name = "tokens", etc.role = "input"}, {etc.name = "emb.weight", etc.role = "weight"}, {etc.name = "norm.weight", etc.role = "weight"}, {etc.name = "gate.weight", etc.role = "weight"}, {etc.name = "up.weight", etc.role = "weight"}, {etc.name = "up.bias", etc.role = "weight"}, {etc.name = "down.weight", etc.role = "weight"}], function_type = (!torch.vtensor<[?],si64>, !torch.vtensor<[32,16],f32>, !torch.vtensor<[16],f32>, !torch.vtensor<[32,16],f32>, !torch.vtensor<[32,16],f32>, !torch.vtensor<[32],f32>, !torch.vtensor<[16,32],f32>) -> !torch.vtensor<[?],si64>, res_attrs = [{etc.name = "output"}], sym_name = "main"}> ({
  ^bb0(%arg0: !torch.vtensor<[?],si64> loc("tokens"), %arg1: !torch.vtensor<[32,16],f32> loc("emb.weight"), %arg2: !torch.vtensor<[16],f32> loc("norm.weight"), %arg3: !torch.vtensor<[32,16],f32> loc("gate.weight"), %arg4: !torch.vtensor<[32,16],f32> loc("up.weight"), %arg5: !torch.vtensor<[32],f32> loc("up.bias"), %arg6: !torch.vtensor<[16,32],f32> loc("down.weight")):
    %0 = "torch.symbolic_int"() <{max_val = 8 : i64, min_val = 1 : i64, symbol_name = "batch"}> : () -> !torch.int
    %1 = "torch.constant.int"() <{value = -1 : i64}> : () -> !torch.int
    %2 = "torch.constant.bool"() <{value = false}> : () -> !torch.bool
    %3 = "torch.constant.bool"() <{value = false}> : () -> !torch.bool
    %4 = "torch.aten.embedding"(%arg1, %arg0, %1, %2, %3) : (!torch.vtensor<[32,16],f32>, !torch.vtensor<[?],si64>, !torch.int, !torch.bool, !torch.bool) -> !torch.vtensor<[?,16],f32>
    %5 = "torch.constant.int"() <{value = 2 : i64}> : () -> !torch.int
    %6 = "torch.aten.pow.Tensor_Scalar"(%4, %5) : (!torch.vtensor<[?,16],f32>, !torch.int) -> !torch.vtensor<[?,16],f32>
    %7 = "torch.constant.int"() <{value = -1 : i64}> : () -> !torch.int
    %8 = "torch.prim.ListConstruct"(%7) : (!torch.int) -> !torch.list<int>
    %9 = "torch.constant.bool"() <{value = true}> : () -> !torch.bool
    %10 = "torch.constant.none"() : () -> !torch.none
    %11 = "torch.aten.mean.dim"(%6, %8, %9, %10) : (!torch.vtensor<[?,16],f32>, !torch.list<int>, !torch.bool, !torch.none) -> !torch.vtensor<[?,1],f32>
    %12 = "torch.constant.float"() <{value = 9.9999999999999995E-7 : f64}> : () -> !torch.float
    %13 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %14 = "torch.aten.add.Scalar"(%11, %12, %13) : (!torch.vtensor<[?,1],f32>, !torch.float, !torch.int) -> !torch.vtensor<[?,1],f32>
    %15 = "torch.aten.rsqrt"(%14) : (!torch.vtensor<[?,1],f32>) -> !torch.vtensor<[?,1],f32>
    %16 = "torch.aten.mul.Tensor"(%4, %15) : (!torch.vtensor<[?,16],f32>, !torch.vtensor<[?,1],f32>) -> !torch.vtensor<[?,16],f32>
    %17 = "torch.aten.mul.Tensor"(%arg2, %16) : (!torch.vtensor<[16],f32>, !torch.vtensor<[?,16],f32>) -> !torch.vtensor<[?,16],f32>
    %18 = "torch.constant.none"() : () -> !torch.none
    %19 = "torch.aten.linear"(%17, %arg3, %18) : (!torch.vtensor<[?,16],f32>, !torch.vtensor<[32,16],f32>, !torch.none) -> !torch.vtensor<[?,32],f32>
    %20 = "torch.aten.silu"(%19) : (!torch.vtensor<[?,32],f32>) -> !torch.vtensor<[?,32],f32>
    %21 = "torch.aten.linear"(%17, %arg4, %arg5) : (!torch.vtensor<[?,16],f32>, !torch.vtensor<[32,16],f32>, !torch.vtensor<[32],f32>) -> !torch.vtensor<[?,32],f32>
    %22 = "torch.aten.mul.Tensor"(%20, %21) : (!torch.vtensor<[?,32],f32>, !torch.vtensor<[?,32],f32>) -> !torch.vtensor<[?,32],f32>
    %23 = "torch.constant.none"() : () -> !torch.none
    %24 = "torch.aten.linear"(%22, %arg6, %23) : (!torch.vtensor<[?,32],f32>, !torch.vtensor<[16,32],f32>, !torch.none) -> !torch.vtensor<[?,16],f32>
    %25 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %26 = "torch.aten.add.Tensor"(%4, %24, %25) : (!torch.vtensor<[?,16],f32>, !torch.vtensor<[?,16],f32>, !torch.int) -> !torch.vtensor<[?,16],f32>
    %27 = "torch.constant.int"() <{value = -1 : i64}> : () -> !torch.int
    %28 = "torch.constant.bool"() <{value = false}> : () -> !torch.bool
    %29 = "torch.aten.argmax"(%26, %27, %28) : (!torch.vtensor<[?,16],f32>, !torch.int, !torch.bool) -> !torch.vtensor<[?],si64>
    "func.return"(%29) : (!torch.vtensor<[?],si64>) -> ()
  }) {torch.assume_strict_symbolic_shapes} : () -> ()
}) : () -> ()

// -----

// Positive: LayerNorm with bias, linear with bias, tanh GELU.
// CHECK-LABEL: func.func @main
// CHECK: "etc.tile"(%arg0, %arg1, %arg2) {kind = "layer_norm", params = {dim = 16 : i64, eps = 1.000000e-05 : f64, has_bias = true
// CHECK: "etc.tile"(%{{.*}}, %arg3, %arg4) {kind = "linear"
// CHECK: "etc.tile"(%{{.*}}) {kind = "gelu", params = {approximate = "tanh"
#map = affine_map<()[s0] -> (s0, 16)>
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{etc.name = "x", etc.role = "input"}, {etc.name = "ln.weight", etc.role = "weight"}, {etc.name = "ln.bias", etc.role = "weight"}, {etc.name = "fc.weight", etc.role = "weight"}, {etc.name = "fc.bias", etc.role = "weight"}], function_type = (!torch.vtensor<[?,16],f32>, !torch.vtensor<[16],f32>, !torch.vtensor<[16],f32>, !torch.vtensor<[16,16],f32>, !torch.vtensor<[16],f32>) -> !torch.vtensor<[?,16],f32>, res_attrs = [{etc.name = "output"}], sym_name = "main"}> ({
  ^bb0(%arg0: !torch.vtensor<[?,16],f32> loc("x"), %arg1: !torch.vtensor<[16],f32> loc("ln.weight"), %arg2: !torch.vtensor<[16],f32> loc("ln.bias"), %arg3: !torch.vtensor<[16,16],f32> loc("fc.weight"), %arg4: !torch.vtensor<[16],f32> loc("fc.bias")):
    %0 = "torch.symbolic_int"() <{max_val = 8 : i64, min_val = 1 : i64, symbol_name = "batch"}> : () -> !torch.int
    %1 = "torch.constant.int"() <{value = 16 : i64}> : () -> !torch.int
    %2 = "torch.prim.ListConstruct"(%1) : (!torch.int) -> !torch.list<int>
    %3 = "torch.constant.float"() <{value = 1.000000e-05 : f64}> : () -> !torch.float
    %4 = "torch.constant.bool"() <{value = false}> : () -> !torch.bool
    %5 = "torch.aten.layer_norm"(%arg0, %2, %arg1, %arg2, %3, %4) : (!torch.vtensor<[?,16],f32>, !torch.list<int>, !torch.vtensor<[16],f32>, !torch.vtensor<[16],f32>, !torch.float, !torch.bool) -> !torch.vtensor<[?,16],f32>
    %6 = "torch.aten.linear"(%5, %arg3, %arg4) : (!torch.vtensor<[?,16],f32>, !torch.vtensor<[16,16],f32>, !torch.vtensor<[16],f32>) -> !torch.vtensor<[?,16],f32>
    %7 = "torch.constant.str"() <{value = "tanh"}> : () -> !torch.str
    %8 = "torch.aten.gelu"(%6, %7) : (!torch.vtensor<[?,16],f32>, !torch.str) -> !torch.vtensor<[?,16],f32>
    "func.return"(%8) : (!torch.vtensor<[?,16],f32>) -> ()
  }) {torch.assume_strict_symbolic_shapes} : () -> ()
}) : () -> ()

// -----

// Positive: decode attention with GQA (2 query heads on 1 KV head): q/k/v linears, RoPE from positions and
// inv_freq, KV appends written back in place, attention over the updated caches with the positions mask.
// CHECK-LABEL: func.func @main
// CHECK: %[[KC:.*]] = "torch.copy.to_vtensor"(%arg2)
// CHECK: %[[VC:.*]] = "torch.copy.to_vtensor"(%arg3)
// CHECK: %[[QR:.*]] = "etc.tile"(%{{.*}}, %arg1, %arg8) {kind = "rope", params = {head_dim = 8 : i64, operand_roles = ["x", "positions", "inv_freq"]
// CHECK: %[[KR:.*]] = "etc.tile"(%{{.*}}, %arg1, %arg8) {kind = "rope"
// CHECK: %[[K:.*]] = "etc.tile"(%[[KR]], %arg1, %[[KC]]) {kind = "kv_append", params = {head_dim = 8 : i64, operand_roles = ["x", "positions", "cache"], result_roles = ["cache"]}}
// CHECK: "torch.overwrite.tensor.contents"(%[[K]], %arg2)
// CHECK: %[[V:.*]] = "etc.tile"(%{{.*}}, %arg1, %[[VC]]) {kind = "kv_append"
// CHECK: "etc.tile"(%[[QR]], %[[K]], %[[V]], %arg1) {kind = "attention", params = {head_dim = 8 : i64, num_heads = 2 : i64, num_kv_heads = 1 : i64, operand_roles = ["q", "k_cache", "v_cache", "positions"], result_roles = ["y"], scale = 0.35355339059327373 : f64}}
// CHECK-NOT: torch.aten.cos
// CHECK-NOT: torch.aten.scaled_dot_product_attention
#map = affine_map<()[s0] -> (s0, 1, 16)>
#map1 = affine_map<()[s0] -> (s0)>
#map2 = affine_map<()[s0, s1] -> (s1, 1, s0, 8)>
#map3 = affine_map<()[s0] -> (s0, 1)>
#map4 = affine_map<()[s0] -> (s0, 4)>
#map5 = affine_map<()[s0] -> (s0, 8)>
#map6 = affine_map<()[s0] -> (s0, 1, 8)>
#map7 = affine_map<()[s0] -> (1, s0)>
#map8 = affine_map<()[s0, s1] -> (s1, s0)>
#map9 = affine_map<()[s0, s1] -> (s1, 1, s0)>
#map10 = affine_map<()[s0, s1] -> (s1, 1, 1, s0)>
#map11 = affine_map<()[s0] -> (s0, 1, 2, 8)>
#map12 = affine_map<()[s0] -> (s0, 1, 1, 8)>
#map13 = affine_map<()[s0] -> (s0, 2, 1, 8)>
#map14 = affine_map<()[s0] -> (s0, 2, 1, 4)>
#map15 = affine_map<()[s0] -> (s0, 1, 1, 4)>
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{etc.name = "x", etc.role = "input"}, {etc.name = "positions", etc.role = "input"}, {etc.name = "kc", etc.role = "input"}, {etc.name = "vc", etc.role = "input"}, {etc.name = "attn.q_proj.weight", etc.role = "weight"}, {etc.name = "attn.k_proj.weight", etc.role = "weight"}, {etc.name = "attn.v_proj.weight", etc.role = "weight"}, {etc.name = "attn.o_proj.weight", etc.role = "weight"}, {etc.name = "rot.inv_freq", etc.role = "weight"}], function_type = (!torch.vtensor<[?,1,16],f32>, !torch.vtensor<[?],si64>, !torch.tensor<[?,1,?,8],f32>, !torch.tensor<[?,1,?,8],f32>, !torch.vtensor<[16,16],f32>, !torch.vtensor<[8,16],f32>, !torch.vtensor<[8,16],f32>, !torch.vtensor<[16,16],f32>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[?,1,16],f32>, res_attrs = [{etc.name = "output"}], sym_name = "main"}> ({
  ^bb0(%arg0: !torch.vtensor<[?,1,16],f32> loc("x"), %arg1: !torch.vtensor<[?],si64> loc("positions"), %arg2: !torch.tensor<[?,1,?,8],f32> loc("kc"), %arg3: !torch.tensor<[?,1,?,8],f32> loc("vc"), %arg4: !torch.vtensor<[16,16],f32> loc("attn.q_proj.weight"), %arg5: !torch.vtensor<[8,16],f32> loc("attn.k_proj.weight"), %arg6: !torch.vtensor<[8,16],f32> loc("attn.v_proj.weight"), %arg7: !torch.vtensor<[16,16],f32> loc("attn.o_proj.weight"), %arg8: !torch.vtensor<[4],f32> loc("rot.inv_freq")):
    %0 = "torch.copy.to_vtensor"(%arg2) : (!torch.tensor<[?,1,?,8],f32>) -> !torch.vtensor<[?,1,?,8],f32>
    %1 = "torch.copy.to_vtensor"(%arg3) : (!torch.tensor<[?,1,?,8],f32>) -> !torch.vtensor<[?,1,?,8],f32>
    %2 = "torch.symbolic_int"() <{max_val = 8 : i64, min_val = 1 : i64, symbol_name = "batch"}> : () -> !torch.int
    %3 = "torch.symbolic_int"() <{max_val = 16 : i64, min_val = 2 : i64, symbol_name = "kv_len"}> : () -> !torch.int
    %4 = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
    %5 = "torch.aten.size.int"(%0, %4) : (!torch.vtensor<[?,1,?,8],f32>, !torch.int) -> !torch.int
    %6 = "torch.constant.int"() <{value = 2 : i64}> : () -> !torch.int
    %7 = "torch.aten.size.int"(%1, %6) : (!torch.vtensor<[?,1,?,8],f32>, !torch.int) -> !torch.int
    %8 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %9 = "torch.aten.unsqueeze"(%arg1, %8) : (!torch.vtensor<[?],si64>, !torch.int) -> !torch.vtensor<[?,1],si64>
    %10 = "torch.constant.int"() <{value = 6 : i64}> : () -> !torch.int
    %11 = "torch.prims.convert_element_type"(%9, %10) : (!torch.vtensor<[?,1],si64>, !torch.int) -> !torch.vtensor<[?,1],f32>
    %12 = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
    %13 = "torch.aten.unsqueeze"(%arg8, %12) : (!torch.vtensor<[4],f32>, !torch.int) -> !torch.vtensor<[1,4],f32>
    %14 = "torch.aten.mul.Tensor"(%11, %13) : (!torch.vtensor<[?,1],f32>, !torch.vtensor<[1,4],f32>) -> !torch.vtensor<[?,4],f32>
    %15 = "torch.prim.ListConstruct"(%14, %14) : (!torch.vtensor<[?,4],f32>, !torch.vtensor<[?,4],f32>) -> !torch.list<vtensor>
    %16 = "torch.constant.int"() <{value = -1 : i64}> : () -> !torch.int
    %17 = "torch.aten.cat"(%15, %16) : (!torch.list<vtensor>, !torch.int) -> !torch.vtensor<[?,8],f32>
    %18 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %19 = "torch.aten.unsqueeze"(%17, %18) : (!torch.vtensor<[?,8],f32>, !torch.int) -> !torch.vtensor<[?,1,8],f32>
    %20 = "torch.aten.cos"(%19) : (!torch.vtensor<[?,1,8],f32>) -> !torch.vtensor<[?,1,8],f32>
    %21 = "torch.aten.sin"(%19) : (!torch.vtensor<[?,1,8],f32>) -> !torch.vtensor<[?,1,8],f32>
    %22 = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
    %23 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %24 = "torch.constant.none"() : () -> !torch.none
    %25 = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
    %26 = "torch.constant.device"() <{value = "cpu"}> : () -> !torch.Device
    %27 = "torch.constant.bool"() <{value = false}> : () -> !torch.bool
    %28 = "torch.aten.arange.start_step"(%22, %7, %23, %24, %25, %26, %27) : (!torch.int, !torch.int, !torch.int, !torch.none, !torch.int, !torch.Device, !torch.bool) -> !torch.vtensor<[?],si64>
    %29 = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
    %30 = "torch.aten.unsqueeze"(%28, %29) : (!torch.vtensor<[?],si64>, !torch.int) -> !torch.vtensor<[1,?],si64>
    %31 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %32 = "torch.aten.unsqueeze"(%arg1, %31) : (!torch.vtensor<[?],si64>, !torch.int) -> !torch.vtensor<[?,1],si64>
    %33 = "torch.aten.le.Tensor"(%30, %32) : (!torch.vtensor<[1,?],si64>, !torch.vtensor<[?,1],si64>) -> !torch.vtensor<[?,?],i1>
    %34 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %35 = "torch.aten.unsqueeze"(%33, %34) : (!torch.vtensor<[?,?],i1>, !torch.int) -> !torch.vtensor<[?,1,?],i1>
    %36 = "torch.constant.int"() <{value = 2 : i64}> : () -> !torch.int
    %37 = "torch.aten.unsqueeze"(%35, %36) : (!torch.vtensor<[?,1,?],i1>, !torch.int) -> !torch.vtensor<[?,1,1,?],i1>
    %38 = "torch.constant.none"() : () -> !torch.none
    %39 = "torch.aten.linear"(%arg0, %arg4, %38) : (!torch.vtensor<[?,1,16],f32>, !torch.vtensor<[16,16],f32>, !torch.none) -> !torch.vtensor<[?,1,16],f32>
    %40 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %41 = "torch.constant.int"() <{value = -1 : i64}> : () -> !torch.int
    %42 = "torch.constant.int"() <{value = 8 : i64}> : () -> !torch.int
    %43 = "torch.prim.ListConstruct"(%5, %40, %41, %42) : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
    %44 = "torch.aten.view"(%39, %43) : (!torch.vtensor<[?,1,16],f32>, !torch.list<int>) -> !torch.vtensor<[?,1,2,8],f32>
    %45 = "torch.constant.none"() : () -> !torch.none
    %46 = "torch.aten.linear"(%arg0, %arg5, %45) : (!torch.vtensor<[?,1,16],f32>, !torch.vtensor<[8,16],f32>, !torch.none) -> !torch.vtensor<[?,1,8],f32>
    %47 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %48 = "torch.constant.int"() <{value = -1 : i64}> : () -> !torch.int
    %49 = "torch.constant.int"() <{value = 8 : i64}> : () -> !torch.int
    %50 = "torch.prim.ListConstruct"(%5, %47, %48, %49) : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
    %51 = "torch.aten.view"(%46, %50) : (!torch.vtensor<[?,1,8],f32>, !torch.list<int>) -> !torch.vtensor<[?,1,1,8],f32>
    %52 = "torch.constant.none"() : () -> !torch.none
    %53 = "torch.aten.linear"(%arg0, %arg6, %52) : (!torch.vtensor<[?,1,16],f32>, !torch.vtensor<[8,16],f32>, !torch.none) -> !torch.vtensor<[?,1,8],f32>
    %54 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %55 = "torch.constant.int"() <{value = -1 : i64}> : () -> !torch.int
    %56 = "torch.constant.int"() <{value = 8 : i64}> : () -> !torch.int
    %57 = "torch.prim.ListConstruct"(%5, %54, %55, %56) : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
    %58 = "torch.aten.view"(%53, %57) : (!torch.vtensor<[?,1,8],f32>, !torch.list<int>) -> !torch.vtensor<[?,1,1,8],f32>
    %59 = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
    %60 = "torch.constant.int"() <{value = 2 : i64}> : () -> !torch.int
    %61 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %62 = "torch.constant.int"() <{value = 3 : i64}> : () -> !torch.int
    %63 = "torch.prim.ListConstruct"(%59, %60, %61, %62) : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
    %64 = "torch.aten.permute"(%58, %63) : (!torch.vtensor<[?,1,1,8],f32>, !torch.list<int>) -> !torch.vtensor<[?,1,1,8],f32>
    %65 = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
    %66 = "torch.constant.int"() <{value = 2 : i64}> : () -> !torch.int
    %67 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %68 = "torch.constant.int"() <{value = 3 : i64}> : () -> !torch.int
    %69 = "torch.prim.ListConstruct"(%65, %66, %67, %68) : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
    %70 = "torch.aten.permute"(%44, %69) : (!torch.vtensor<[?,1,2,8],f32>, !torch.list<int>) -> !torch.vtensor<[?,2,1,8],f32>
    %71 = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
    %72 = "torch.constant.int"() <{value = 2 : i64}> : () -> !torch.int
    %73 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %74 = "torch.constant.int"() <{value = 3 : i64}> : () -> !torch.int
    %75 = "torch.prim.ListConstruct"(%71, %72, %73, %74) : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
    %76 = "torch.aten.permute"(%51, %75) : (!torch.vtensor<[?,1,1,8],f32>, !torch.list<int>) -> !torch.vtensor<[?,1,1,8],f32>
    %77 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %78 = "torch.aten.unsqueeze"(%20, %77) : (!torch.vtensor<[?,1,8],f32>, !torch.int) -> !torch.vtensor<[?,1,1,8],f32>
    %79 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %80 = "torch.aten.unsqueeze"(%21, %79) : (!torch.vtensor<[?,1,8],f32>, !torch.int) -> !torch.vtensor<[?,1,1,8],f32>
    %81 = "torch.aten.mul.Tensor"(%70, %78) : (!torch.vtensor<[?,2,1,8],f32>, !torch.vtensor<[?,1,1,8],f32>) -> !torch.vtensor<[?,2,1,8],f32>
    %82 = "torch.constant.int"() <{value = 3 : i64}> : () -> !torch.int
    %83 = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
    %84 = "torch.constant.int"() <{value = 4 : i64}> : () -> !torch.int
    %85 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %86 = "torch.aten.slice.Tensor"(%70, %82, %83, %84, %85) : (!torch.vtensor<[?,2,1,8],f32>, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.vtensor<[?,2,1,4],f32>
    %87 = "torch.constant.int"() <{value = 3 : i64}> : () -> !torch.int
    %88 = "torch.constant.int"() <{value = 4 : i64}> : () -> !torch.int
    %89 = "torch.constant.int"() <{value = 9223372036854775807 : i64}> : () -> !torch.int
    %90 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %91 = "torch.aten.slice.Tensor"(%70, %87, %88, %89, %90) : (!torch.vtensor<[?,2,1,8],f32>, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.vtensor<[?,2,1,4],f32>
    %92 = "torch.aten.neg"(%91) : (!torch.vtensor<[?,2,1,4],f32>) -> !torch.vtensor<[?,2,1,4],f32>
    %93 = "torch.prim.ListConstruct"(%92, %86) : (!torch.vtensor<[?,2,1,4],f32>, !torch.vtensor<[?,2,1,4],f32>) -> !torch.list<vtensor>
    %94 = "torch.constant.int"() <{value = -1 : i64}> : () -> !torch.int
    %95 = "torch.aten.cat"(%93, %94) : (!torch.list<vtensor>, !torch.int) -> !torch.vtensor<[?,2,1,8],f32>
    %96 = "torch.aten.mul.Tensor"(%95, %80) : (!torch.vtensor<[?,2,1,8],f32>, !torch.vtensor<[?,1,1,8],f32>) -> !torch.vtensor<[?,2,1,8],f32>
    %97 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %98 = "torch.aten.add.Tensor"(%81, %96, %97) : (!torch.vtensor<[?,2,1,8],f32>, !torch.vtensor<[?,2,1,8],f32>, !torch.int) -> !torch.vtensor<[?,2,1,8],f32>
    %99 = "torch.aten.mul.Tensor"(%76, %78) : (!torch.vtensor<[?,1,1,8],f32>, !torch.vtensor<[?,1,1,8],f32>) -> !torch.vtensor<[?,1,1,8],f32>
    %100 = "torch.constant.int"() <{value = 3 : i64}> : () -> !torch.int
    %101 = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
    %102 = "torch.constant.int"() <{value = 4 : i64}> : () -> !torch.int
    %103 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %104 = "torch.aten.slice.Tensor"(%76, %100, %101, %102, %103) : (!torch.vtensor<[?,1,1,8],f32>, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.vtensor<[?,1,1,4],f32>
    %105 = "torch.constant.int"() <{value = 3 : i64}> : () -> !torch.int
    %106 = "torch.constant.int"() <{value = 4 : i64}> : () -> !torch.int
    %107 = "torch.constant.int"() <{value = 9223372036854775807 : i64}> : () -> !torch.int
    %108 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %109 = "torch.aten.slice.Tensor"(%76, %105, %106, %107, %108) : (!torch.vtensor<[?,1,1,8],f32>, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.vtensor<[?,1,1,4],f32>
    %110 = "torch.aten.neg"(%109) : (!torch.vtensor<[?,1,1,4],f32>) -> !torch.vtensor<[?,1,1,4],f32>
    %111 = "torch.prim.ListConstruct"(%110, %104) : (!torch.vtensor<[?,1,1,4],f32>, !torch.vtensor<[?,1,1,4],f32>) -> !torch.list<vtensor>
    %112 = "torch.constant.int"() <{value = -1 : i64}> : () -> !torch.int
    %113 = "torch.aten.cat"(%111, %112) : (!torch.list<vtensor>, !torch.int) -> !torch.vtensor<[?,1,1,8],f32>
    %114 = "torch.aten.mul.Tensor"(%113, %80) : (!torch.vtensor<[?,1,1,8],f32>, !torch.vtensor<[?,1,1,8],f32>) -> !torch.vtensor<[?,1,1,8],f32>
    %115 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %116 = "torch.aten.add.Tensor"(%99, %114, %115) : (!torch.vtensor<[?,1,1,8],f32>, !torch.vtensor<[?,1,1,8],f32>, !torch.int) -> !torch.vtensor<[?,1,1,8],f32>
    %117 = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
    %118 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %119 = "torch.constant.none"() : () -> !torch.none
    %120 = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
    %121 = "torch.constant.device"() <{value = "cpu"}> : () -> !torch.Device
    %122 = "torch.constant.bool"() <{value = false}> : () -> !torch.bool
    %123 = "torch.aten.arange.start_step"(%117, %5, %118, %119, %120, %121, %122) : (!torch.int, !torch.int, !torch.int, !torch.none, !torch.int, !torch.Device, !torch.bool) -> !torch.vtensor<[?],si64>
    %124 = "torch.constant.int"() <{value = 2 : i64}> : () -> !torch.int
    %125 = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
    %126 = "torch.aten.select.int"(%116, %124, %125) : (!torch.vtensor<[?,1,1,8],f32>, !torch.int, !torch.int) -> !torch.vtensor<[?,1,8],f32>
    %127 = "torch.constant.none"() : () -> !torch.none
    %128 = "torch.prim.ListConstruct"(%123, %127, %arg1) : (!torch.vtensor<[?],si64>, !torch.none, !torch.vtensor<[?],si64>) -> !torch.list<optional<vtensor>>
    %129 = "torch.constant.bool"() <{value = false}> : () -> !torch.bool
    %130 = "torch.aten.index_put"(%0, %128, %126, %129) : (!torch.vtensor<[?,1,?,8],f32>, !torch.list<optional<vtensor>>, !torch.vtensor<[?,1,8],f32>, !torch.bool) -> !torch.vtensor<[?,1,?,8],f32>
    "torch.overwrite.tensor.contents"(%130, %arg2) : (!torch.vtensor<[?,1,?,8],f32>, !torch.tensor<[?,1,?,8],f32>) -> ()
    %131 = "torch.constant.int"() <{value = 2 : i64}> : () -> !torch.int
    %132 = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
    %133 = "torch.aten.select.int"(%64, %131, %132) : (!torch.vtensor<[?,1,1,8],f32>, !torch.int, !torch.int) -> !torch.vtensor<[?,1,8],f32>
    %134 = "torch.constant.none"() : () -> !torch.none
    %135 = "torch.prim.ListConstruct"(%123, %134, %arg1) : (!torch.vtensor<[?],si64>, !torch.none, !torch.vtensor<[?],si64>) -> !torch.list<optional<vtensor>>
    %136 = "torch.constant.bool"() <{value = false}> : () -> !torch.bool
    %137 = "torch.aten.index_put"(%1, %135, %133, %136) : (!torch.vtensor<[?,1,?,8],f32>, !torch.list<optional<vtensor>>, !torch.vtensor<[?,1,8],f32>, !torch.bool) -> !torch.vtensor<[?,1,?,8],f32>
    "torch.overwrite.tensor.contents"(%137, %arg3) : (!torch.vtensor<[?,1,?,8],f32>, !torch.tensor<[?,1,?,8],f32>) -> ()
    %138 = "torch.constant.float"() <{value = 0.000000e+00 : f64}> : () -> !torch.float
    %139 = "torch.constant.bool"() <{value = false}> : () -> !torch.bool
    %140 = "torch.constant.none"() : () -> !torch.none
    %141 = "torch.constant.bool"() <{value = true}> : () -> !torch.bool
    %142 = "torch.aten.scaled_dot_product_attention"(%98, %130, %137, %37, %138, %139, %140, %141) : (!torch.vtensor<[?,2,1,8],f32>, !torch.vtensor<[?,1,?,8],f32>, !torch.vtensor<[?,1,?,8],f32>, !torch.vtensor<[?,1,1,?],i1>, !torch.float, !torch.bool, !torch.none, !torch.bool) -> !torch.vtensor<[?,2,1,8],f32>
    %143 = "torch.constant.int"() <{value = 0 : i64}> : () -> !torch.int
    %144 = "torch.constant.int"() <{value = 2 : i64}> : () -> !torch.int
    %145 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %146 = "torch.constant.int"() <{value = 3 : i64}> : () -> !torch.int
    %147 = "torch.prim.ListConstruct"(%143, %144, %145, %146) : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
    %148 = "torch.aten.permute"(%142, %147) : (!torch.vtensor<[?,2,1,8],f32>, !torch.list<int>) -> !torch.vtensor<[?,1,2,8],f32>
    %149 = "torch.constant.int"() <{value = 1 : i64}> : () -> !torch.int
    %150 = "torch.constant.int"() <{value = -1 : i64}> : () -> !torch.int
    %151 = "torch.prim.ListConstruct"(%5, %149, %150) : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
    %152 = "torch.aten.view"(%148, %151) : (!torch.vtensor<[?,1,2,8],f32>, !torch.list<int>) -> !torch.vtensor<[?,1,16],f32>
    %153 = "torch.constant.none"() : () -> !torch.none
    %154 = "torch.aten.linear"(%152, %arg7, %153) : (!torch.vtensor<[?,1,16],f32>, !torch.vtensor<[16,16],f32>, !torch.none) -> !torch.vtensor<[?,1,16],f32>
    "func.return"(%154) : (!torch.vtensor<[?,1,16],f32>) -> ()
  }) {torch.assume_strict_symbolic_shapes} : () -> ()
}) : () -> ()

// -----

// No match: a product of two activations is neither RMSNorm nor SiLU*mul; it stays for etc-raise-elementwise.
// CHECK-LABEL: func.func @plain_mul
// CHECK: "torch.aten.mul.Tensor"
// CHECK-NOT: etc.tile
"builtin.module"() ({
  "func.func"() <{function_type = (!torch.vtensor<[4,8],f32>, !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[4,8],f32>, sym_name = "plain_mul"}> ({
  ^bb0(%a: !torch.vtensor<[4,8],f32>, %b: !torch.vtensor<[4,8],f32>):
    %0 = "torch.aten.mul.Tensor"(%a, %b) : (!torch.vtensor<[4,8],f32>, !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[4,8],f32>
    "func.return"(%0) : (!torch.vtensor<[4,8],f32>) -> ()
  }) : () -> ()
}) : () -> ()

// -----

// Error: an attention whose mask is not the decode rule cannot be raised faithfully.
"builtin.module"() ({
  "func.func"() <{function_type = (!torch.vtensor<[2,2,1,8],f32>, !torch.vtensor<[2,1,16,8],f32>, !torch.vtensor<[2,1,1,16],i1>) -> !torch.vtensor<[2,2,1,8],f32>, sym_name = "masked"}> ({
  ^bb0(%q: !torch.vtensor<[2,2,1,8],f32>, %kv: !torch.vtensor<[2,1,16,8],f32>, %mask: !torch.vtensor<[2,1,1,16],i1>):
    %f = "torch.constant.float"() <{value = 0.0 : f64}> : () -> !torch.float
    %false = "torch.constant.bool"() <{value = false}> : () -> !torch.bool
    %true = "torch.constant.bool"() <{value = true}> : () -> !torch.bool
    %none = "torch.constant.none"() : () -> !torch.none
    // expected-error @+1 {{cannot raise 'torch.aten.scaled_dot_product_attention': attention needs the decode mask arange(kv_len) <= positions[:, None]}}
    %o = "torch.aten.scaled_dot_product_attention"(%q, %kv, %kv, %mask, %f, %false, %none, %true) : (!torch.vtensor<[2,2,1,8],f32>, !torch.vtensor<[2,1,16,8],f32>, !torch.vtensor<[2,1,16,8],f32>, !torch.vtensor<[2,1,1,16],i1>, !torch.float, !torch.bool, !torch.none, !torch.bool) -> !torch.vtensor<[2,2,1,8],f32>
    "func.return"(%o) : (!torch.vtensor<[2,2,1,8],f32>) -> ()
  }) : () -> ()
}) : () -> ()
