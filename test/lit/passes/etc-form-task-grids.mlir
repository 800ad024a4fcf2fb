// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p etc-form-task-grids --verify-diagnostics --mlir-print-local-scope | FileCheck %s
// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p "etc-form-task-grids{fuse-attention-merge=false}" --verify-diagnostics --mlir-print-local-scope | FileCheck %s --check-prefix=NOFOLD
// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p "etc-form-task-grids{merge-per-batch=true}" --verify-diagnostics --mlir-print-local-scope | FileCheck %s --check-prefix=PERBATCH
// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p "etc-form-task-grids{merge-last-split=true}" --verify-diagnostics --mlir-print-local-scope | FileCheck %s --check-prefix=LAST
// RUN: etc-opt %s --allow-unregistered-dialect --split-input-file -p "etc-form-task-grids{merge-per-batch=true merge-last-split=true}" --verify-diagnostics --mlir-print-local-scope | FileCheck %s --check-prefix=LASTPB

// Positive: embedding -> linear (tile_n 8: 2 tiles, one head each) -> rope (a tile per row and head).
// The linear reads whole rows, so it waits for every embedding tile (the event collapses to one element);
// a rope tile waits only for the linear tile of its head: event "q_proj.done" has one element per head.
// CHECK-LABEL: func.func @chain()
// CHECK: %[[B:.*]] = "event_tensor.dim"() {max = 8 : i64, min = 1 : i64, name = "batch"} : () -> index
// CHECK-DAG: %[[EMBW:.*]] = "event_tensor.buffer"(%[[B]]) {element_type = bf16, name = "emb.weight", role = "weight", sizes = affine_map<()[s0] -> (32, 16)>}
// CHECK-DAG: %[[TOK:.*]] = "event_tensor.buffer"(%[[B]]) {element_type = i64, name = "tokens", role = "input", sizes = affine_map<()[s0] -> (s0)>}
// CHECK-DAG: %[[H:.*]] = "event_tensor.buffer"(%[[B]]) {element_type = bf16, name = "emb.out", role = "workspace", sizes = affine_map<()[s0] -> (s0, 16)>}
// CHECK-DAG: %[[Q:.*]] = "event_tensor.buffer"(%[[B]]) {element_type = bf16, name = "q_proj.y", role = "workspace", sizes = affine_map<()[s0] -> (s0, 16)>}
// CHECK-DAG: %[[R:.*]] = "event_tensor.buffer"(%[[B]]) {element_type = bf16, name = "rope.y", output_index = 0 : i64, role = "output", sizes = affine_map<()[s0] -> (s0, 16)>}
// CHECK: %[[E1:.*]] = "event_tensor.event_tensor"(%[[B]]) {name = "emb.done", shape = affine_map<()[s0] -> (1)>, wait_count = affine_map<(d0)[s0] -> (0)>}
// CHECK: %[[E2:.*]] = "event_tensor.event_tensor"(%[[B]]) {name = "q_proj.done", shape = affine_map<()[s0] -> (2)>, wait_count = affine_map<(d0)[s0] -> (0)>}
// CHECK: "event_tensor.task_grid"(%[[B]], %[[EMBW]], %[[TOK]], %[[H]], %[[E1]]) {grid = affine_map<()[s0] -> (s0)>, kind = "embedding", name = "emb", notify_maps = [affine_map<(d0)[s0] -> (0)>], operandSegmentSizes = array<i32: 1, 2, 1, 0, 1>, params = {read_roles = ["weight", "tokens"], write_roles = ["out"]}, wait_maps = []}
// CHECK: "event_tensor.task_grid"(%[[B]], %[[H]], {{.*}}, %[[Q]], %[[E1]], %[[E2]]) {grid = affine_map<()[s0] -> (2)>, kind = "linear", name = "q_proj", notify_maps = [affine_map<(d0)[s0] -> (d0)>], {{.*}}wait_maps = [affine_map<(d0)[s0] -> (0)>]}
// CHECK: "event_tensor.task_grid"(%[[B]], %[[Q]], {{.*}}, %[[R]], %[[E2]]) {grid = affine_map<()[s0] -> (s0, 2)>, kind = "rope", name = "rope", notify_maps = [], {{.*}}wait_maps = [affine_map<(d0, d1)[s0] -> (d1)>]}
// CHECK-NEXT: return
func.func @chain(%tokens: !torch.vtensor<[?],si64> {etc.name = "tokens", etc.role = "input"}, %emb: !torch.vtensor<[32,16],bf16> {etc.name = "emb.weight", etc.role = "weight"}, %nw: !torch.vtensor<[16],bf16> {etc.name = "norm.weight", etc.role = "weight"}, %wq: !torch.vtensor<[16,16],bf16> {etc.name = "q_proj.weight", etc.role = "weight"}, %pos: !torch.vtensor<[?],si64> {etc.name = "positions", etc.role = "input"}, %inv: !torch.vtensor<[4],f32> {etc.name = "inv_freq", etc.role = "weight"}) -> !torch.vtensor<[?,16],bf16> {
  %b = "torch.symbolic_int"() <{max_val = 8 : i64, min_val = 1 : i64, symbol_name = "batch"}> : () -> !torch.int
  "torch.bind_symbolic_shape"(%tokens, %b) <{shape_expressions = affine_map<()[s0] -> (s0)>}> : (!torch.vtensor<[?],si64>, !torch.int) -> ()
  "torch.bind_symbolic_shape"(%pos, %b) <{shape_expressions = affine_map<()[s0] -> (s0)>}> : (!torch.vtensor<[?],si64>, !torch.int) -> ()
  %h = "etc.tile"(%emb, %tokens) {kind = "embedding", params = {operand_roles = ["weight", "tokens"], result_roles = ["out"]}} : (!torch.vtensor<[32,16],bf16>, !torch.vtensor<[?],si64>) -> !torch.vtensor<[?,16],bf16>
  "torch.bind_symbolic_shape"(%h, %b) <{shape_expressions = affine_map<()[s0] -> (s0, 16)>}> : (!torch.vtensor<[?,16],bf16>, !torch.int) -> ()
  %q = "etc.tile"(%h, %wq, %nw) {kind = "linear", params = {operand_roles = ["x", "weight", "norm_weight"], result_roles = ["y"], in_features = 16 : i64, out_features = 16 : i64, has_bias = false, prologue = "rms_norm", prologue_eps = 1.0e-5 : f64, tile_n = 8 : i64}} : (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[16,16],bf16>, !torch.vtensor<[16],bf16>) -> !torch.vtensor<[?,16],bf16>
  "torch.bind_symbolic_shape"(%q, %b) <{shape_expressions = affine_map<()[s0] -> (s0, 16)>}> : (!torch.vtensor<[?,16],bf16>, !torch.int) -> ()
  %r = "etc.tile"(%q, %pos, %inv) {kind = "rope", params = {operand_roles = ["x", "positions", "inv_freq"], result_roles = ["y"], head_dim = 8 : i64}} : (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[?,16],bf16>
  "torch.bind_symbolic_shape"(%r, %b) <{shape_expressions = affine_map<()[s0] -> (s0, 16)>}> : (!torch.vtensor<[?,16],bf16>, !torch.int) -> ()
  return %r : !torch.vtensor<[?,16],bf16>
}

// -----

// Positive: a KV append updates the caller's cache in place (the returned cache is that buffer, output 1),
// and attention splits into partial tiles over KV chunks of 4 and a merge per (row, KV head); the split count
// stays symbolic (kv_len ceildiv 4), and each partial tile waits only for the append of its own row.
// CHECK-LABEL: func.func @append_attend()
// CHECK-DAG: %[[B:.*]] = "event_tensor.dim"() {max = 8 : i64, min = 1 : i64, name = "batch"}
// CHECK-DAG: %[[T:.*]] = "event_tensor.dim"() {max = 16 : i64, min = 2 : i64, name = "kv_len"}
// CHECK-DAG: %[[C:.*]] = "event_tensor.buffer"(%[[B]], %[[T]]) {element_type = bf16, name = "cache", output_index = 1 : i64, role = "kv_cache", sizes = affine_map<()[s0, s1] -> (s0, 1, s1, 8)>}
// CHECK-DAG: "event_tensor.buffer"(%[[B]], %[[T]]) {element_type = f32, name = "attention.partial_out", role = "workspace", sizes = affine_map<()[s0, s1] -> (s0, 2, s1 ceildiv 4, 8)>}
// CHECK-DAG: %[[O:.*]] = "event_tensor.buffer"(%[[B]], %[[T]]) {element_type = bf16, name = "attention.y", output_index = 0 : i64, role = "output", sizes = affine_map<()[s0, s1] -> (s0, 16)>}
// CHECK: %[[EA:.*]] = "event_tensor.event_tensor"(%[[B]], %[[T]]) {name = "kv_append.done", shape = affine_map<()[s0, s1] -> (s0, 1)>
// CHECK: %[[EP:.*]] = "event_tensor.event_tensor"(%[[B]], %[[T]]) {name = "attention.partial.done", shape = affine_map<()[s0, s1] -> (s0, 1)>
// CHECK: "event_tensor.task_grid"({{.*}}, %[[C]], %[[EA]]) {grid = affine_map<()[s0, s1] -> (s0, 1)>, kind = "kv_append", {{.*}}notify_maps = [affine_map<(d0, d1)[s0, s1] -> (d0, d1)>], {{.*}}write_roles = ["cache"]}
// CHECK: "event_tensor.task_grid"({{.*}}) {grid = affine_map<()[s0, s1] -> (s0, 1, s1 ceildiv 4)>, kind = "attention_partial", name = "attention.partial", notify_maps = [affine_map<(d0, d1, d2)[s0, s1] -> (d0, d1)>], {{.*}}wait_maps = [affine_map<(d0, d1, d2)[s0, s1] -> (d0, d1)>]}
// CHECK: "event_tensor.task_grid"({{.*}}, %[[O]], %[[EP]]) {grid = affine_map<()[s0, s1] -> (s0, 1)>, kind = "attention_merge", name = "attention.merge", notify_maps = [], {{.*}}wait_maps = [affine_map<(d0, d1)[s0, s1] -> (d0, d1)>]}
// With merge-last-split there is no merge grid: the partial grid writes the returned output too (its
// group's last split merges), after the partials.
// LAST-LABEL: func.func @append_attend()
// LAST: %[[O:.*]] = "event_tensor.buffer"({{.*}}) {element_type = bf16, name = "attention.y", output_index = 0 : i64, role = "output"
// LAST-NOT: kind = "attention_merge"
// LAST: "event_tensor.task_grid"({{.*}}, %[[O]], %{{.*}}) {grid = affine_map<()[s0, s1] -> (s0, 1, s1 ceildiv 4)>, kind = "attention_partial", {{.*}}write_roles = ["partial_out", "partial_stats", "out"]}
// LAST-NOT: kind = "attention_merge"
// LAST-LABEL: func.func @attend_project()
func.func @append_attend(%k: !torch.vtensor<[?,8],bf16> {etc.name = "k", etc.role = "input"}, %pos: !torch.vtensor<[?],si64> {etc.name = "positions", etc.role = "input"}, %q: !torch.vtensor<[?,2,1,8],bf16> {etc.name = "q", etc.role = "input"}, %cache: !torch.tensor<[?,1,?,8],bf16> {etc.name = "cache", etc.role = "input"}) -> (!torch.vtensor<[?,2,1,8],bf16>, !torch.vtensor<[?,1,?,8],bf16>) {
  %b = "torch.symbolic_int"() <{max_val = 8 : i64, min_val = 1 : i64, symbol_name = "batch"}> : () -> !torch.int
  %t = "torch.symbolic_int"() <{max_val = 16 : i64, min_val = 2 : i64, symbol_name = "kv_len"}> : () -> !torch.int
  "torch.bind_symbolic_shape"(%k, %b) <{shape_expressions = affine_map<()[s0] -> (s0, 8)>}> : (!torch.vtensor<[?,8],bf16>, !torch.int) -> ()
  "torch.bind_symbolic_shape"(%pos, %b) <{shape_expressions = affine_map<()[s0] -> (s0)>}> : (!torch.vtensor<[?],si64>, !torch.int) -> ()
  "torch.bind_symbolic_shape"(%q, %b) <{shape_expressions = affine_map<()[s0] -> (s0, 2, 1, 8)>}> : (!torch.vtensor<[?,2,1,8],bf16>, !torch.int) -> ()
  %old = "torch.copy.to_vtensor"(%cache) : (!torch.tensor<[?,1,?,8],bf16>) -> !torch.vtensor<[?,1,?,8],bf16>
  "torch.bind_symbolic_shape"(%old, %b, %t) <{shape_expressions = affine_map<()[s0, s1] -> (s0, 1, s1, 8)>}> : (!torch.vtensor<[?,1,?,8],bf16>, !torch.int, !torch.int) -> ()
  %new = "etc.tile"(%k, %pos, %old) {kind = "kv_append", params = {operand_roles = ["x", "positions", "cache"], result_roles = ["cache"], head_dim = 8 : i64}} : (!torch.vtensor<[?,8],bf16>, !torch.vtensor<[?],si64>, !torch.vtensor<[?,1,?,8],bf16>) -> !torch.vtensor<[?,1,?,8],bf16>
  "torch.overwrite.tensor.contents"(%new, %cache) : (!torch.vtensor<[?,1,?,8],bf16>, !torch.tensor<[?,1,?,8],bf16>) -> ()
  %o = "etc.tile"(%q, %new, %new, %pos) {kind = "attention", params = {operand_roles = ["q", "k_cache", "v_cache", "positions"], result_roles = ["y"], num_heads = 2 : i64, num_kv_heads = 1 : i64, head_dim = 8 : i64, scale = 0.35 : f64, kv_chunk = 4 : i64}} : (!torch.vtensor<[?,2,1,8],bf16>, !torch.vtensor<[?,1,?,8],bf16>, !torch.vtensor<[?,1,?,8],bf16>, !torch.vtensor<[?],si64>) -> !torch.vtensor<[?,2,1,8],bf16>
  "torch.bind_symbolic_shape"(%o, %b) <{shape_expressions = affine_map<()[s0] -> (s0, 2, 1, 8)>}> : (!torch.vtensor<[?,2,1,8],bf16>, !torch.int) -> ()
  return %o, %new : !torch.vtensor<[?,2,1,8],bf16>, !torch.vtensor<[?,1,?,8],bf16>
}

// Positive: attention whose output only o_proj reads (through a view, as x): the merge folds into o_proj,
// which reads the partials (prologue attention_merge) and waits for every partial tile: one element counting
// rows x KV heads x splits. With fuse-attention-merge=false the merge grid stays.
// CHECK-LABEL: func.func @attend_project()
// CHECK-NOT: name = "attention.y"
// CHECK-NOT: kind = "attention_merge"
// CHECK: %[[EP:.*]] = "event_tensor.event_tensor"({{.*}}) {name = "attention.partial.done", shape = affine_map<()[s0, s1] -> (1)>
// CHECK: "event_tensor.task_grid"({{.*}}%[[EP]]) {grid = affine_map<()[s0, s1] -> (2)>, kind = "linear", name = "o_proj", {{.*}}prologue = "attention_merge", read_roles = ["partial_out", "partial_stats", "weight"], {{.*}}wait_maps = [affine_map<(d0)[s0, s1] -> (0)>]
// NOFOLD-LABEL: func.func @attend_project()
// NOFOLD: kind = "attention_merge"
// NOFOLD: kind = "linear", name = "o_proj"
// With merge-per-batch the merge grid stays with no tiles at one row (batch max 8: (s0 + 6) floordiv 8 is 0
// at one row, 1 up to 8), and o_proj reads both the partials and the merged x (prologue
// attention_merge_one_row), waiting on the partial tiles and on the merge tiles.
// PERBATCH-LABEL: func.func @attend_project()
// PERBATCH: %[[P:.*]] = "event_tensor.event_tensor"({{.*}}) {name = "attention.partial.done.2", shape = affine_map<()[s0, s1] -> (1)>
// PERBATCH: %[[M:.*]] = "event_tensor.event_tensor"({{.*}}) {name = "attention.merge.done", shape = affine_map<()[s0, s1] -> (1)>
// PERBATCH: "event_tensor.task_grid"({{.*}}) {grid = affine_map<()[s0, s1] -> (s0, (s0 + 6) floordiv 8)>, kind = "attention_merge"
// PERBATCH: "event_tensor.task_grid"({{.*}}, %[[P]], %[[M]]) {grid = affine_map<()[s0, s1] -> (2)>, kind = "linear", name = "o_proj", {{.*}}prologue = "attention_merge_one_row", read_roles = ["partial_out", "partial_stats", "x", "weight"], {{.*}}wait_maps = [affine_map<(d0)[s0, s1] -> (0)>, affine_map<(d0)[s0, s1] -> (0)>]
// With merge-last-split o_proj reads the merged output as plain x (no prologue) and waits for every
// split: the partial grid's event, one element counting rows x KV heads x splits.
// LAST-NOT: kind = "attention_merge"
// LAST: %[[Y:.*]] = "event_tensor.buffer"({{.*}}) {element_type = bf16, name = "attention.y", role = "workspace"
// LAST: %[[EP:.*]] = "event_tensor.event_tensor"({{.*}}) {name = "attention.partial.done", shape = affine_map<()[s0, s1] -> (1)>
// LAST: "event_tensor.task_grid"({{.*}}, %[[Y]], %[[EP]]) {{{.*}}kind = "attention_partial", name = "attention.partial", notify_maps = [affine_map<(d0, d1, d2)[s0, s1] -> (0)>], {{.*}}write_roles = ["partial_out", "partial_stats", "out"]}
// LAST: "event_tensor.task_grid"({{.*}}, %[[Y]], {{.*}}, %[[EP]]) {grid = affine_map<()[s0, s1] -> (2)>, kind = "linear", name = "o_proj", {{.*}}read_roles = ["x", "weight"], {{.*}}wait_maps = [affine_map<(d0)[s0, s1] -> (0)>]
// LAST-NOT: prologue
// With merge-per-batch too, only one row merges in the last split, into a one-row copy of the output that
// o_proj reads at one row (prologue x_one_row); more rows keep the merge grid, o_proj waiting on both.
// LASTPB-LABEL: func.func @attend_project()
// LASTPB: %[[Y:.*]] = "event_tensor.buffer"({{.*}}) {element_type = bf16, name = "attention.y", role = "workspace"
// LASTPB: %[[Y1:.*]] = "event_tensor.buffer"({{.*}}) {element_type = bf16, name = "attention.y_one_row", role = "workspace"
// LASTPB: {{.*}}kind = "attention_partial", {{.*}}merge_one_row = true, {{.*}}write_roles = ["partial_out", "partial_stats", "out"]}
// LASTPB: {grid = affine_map<()[s0, s1] -> (s0, (s0 + 6) floordiv 8)>, kind = "attention_merge"
// LASTPB: "event_tensor.task_grid"({{.*}}, %[[Y1]], {{.*}}) {grid = affine_map<()[s0, s1] -> (2)>, kind = "linear", name = "o_proj", {{.*}}prologue = "x_one_row", read_roles = ["x_one_row", "x", "weight"], {{.*}}wait_maps = [affine_map<(d0)[s0, s1] -> (0)>, affine_map<(d0)[s0, s1] -> (0)>]
func.func @attend_project(%q: !torch.vtensor<[?,2,1,8],bf16> {etc.name = "q", etc.role = "input"}, %pos: !torch.vtensor<[?],si64> {etc.name = "positions", etc.role = "input"}, %cache: !torch.vtensor<[?,1,?,8],bf16> {etc.name = "cache", etc.role = "input"}, %wo: !torch.vtensor<[16,16],bf16> {etc.name = "o_proj.weight", etc.role = "weight"}) -> !torch.vtensor<[?,16],bf16> {
  %b = "torch.symbolic_int"() <{max_val = 8 : i64, min_val = 1 : i64, symbol_name = "batch"}> : () -> !torch.int
  %t = "torch.symbolic_int"() <{max_val = 16 : i64, min_val = 2 : i64, symbol_name = "kv_len"}> : () -> !torch.int
  "torch.bind_symbolic_shape"(%q, %b) <{shape_expressions = affine_map<()[s0] -> (s0, 2, 1, 8)>}> : (!torch.vtensor<[?,2,1,8],bf16>, !torch.int) -> ()
  "torch.bind_symbolic_shape"(%pos, %b) <{shape_expressions = affine_map<()[s0] -> (s0)>}> : (!torch.vtensor<[?],si64>, !torch.int) -> ()
  "torch.bind_symbolic_shape"(%cache, %b, %t) <{shape_expressions = affine_map<()[s0, s1] -> (s0, 1, s1, 8)>}> : (!torch.vtensor<[?,1,?,8],bf16>, !torch.int, !torch.int) -> ()
  %o = "etc.tile"(%q, %cache, %cache, %pos) {kind = "attention", params = {operand_roles = ["q", "k_cache", "v_cache", "positions"], result_roles = ["y"], num_heads = 2 : i64, num_kv_heads = 1 : i64, head_dim = 8 : i64, scale = 0.35 : f64, kv_chunk = 4 : i64}} : (!torch.vtensor<[?,2,1,8],bf16>, !torch.vtensor<[?,1,?,8],bf16>, !torch.vtensor<[?,1,?,8],bf16>, !torch.vtensor<[?],si64>) -> !torch.vtensor<[?,2,1,8],bf16>
  "torch.bind_symbolic_shape"(%o, %b) <{shape_expressions = affine_map<()[s0] -> (s0, 2, 1, 8)>}> : (!torch.vtensor<[?,2,1,8],bf16>, !torch.int) -> ()
  %m1 = "torch.constant.int"() <{value = -1 : i64}> : () -> !torch.int
  %c16 = "torch.constant.int"() <{value = 16 : i64}> : () -> !torch.int
  %shape = "torch.prim.ListConstruct"(%m1, %c16) : (!torch.int, !torch.int) -> !torch.list<int>
  %x = "torch.aten.view"(%o, %shape) : (!torch.vtensor<[?,2,1,8],bf16>, !torch.list<int>) -> !torch.vtensor<[?,16],bf16>
  "torch.bind_symbolic_shape"(%x, %b) <{shape_expressions = affine_map<()[s0] -> (s0, 16)>}> : (!torch.vtensor<[?,16],bf16>, !torch.int) -> ()
  %y = "etc.tile"(%x, %wo) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 16 : i64, out_features = 16 : i64, has_bias = false, tile_n = 8 : i64}} : (!torch.vtensor<[?,16],bf16>, !torch.vtensor<[16,16],bf16>) -> !torch.vtensor<[?,16],bf16>
  "torch.bind_symbolic_shape"(%y, %b) <{shape_expressions = affine_map<()[s0] -> (s0, 16)>}> : (!torch.vtensor<[?,16],bf16>, !torch.int) -> ()
  return %y : !torch.vtensor<[?,16],bf16>
}

// -----

// Positive: a fixed batch. With merge-per-batch one row folds the merge into o_proj as the default does,
// two rows keep the merge grid (its own stage) and o_proj reads plain x.
// PERBATCH-LABEL: func.func @attend_project_one_row()
// PERBATCH-NOT: kind = "attention_merge"
// PERBATCH: kind = "linear", name = "o_proj", {{.*}}prologue = "attention_merge", read_roles = ["partial_out", "partial_stats", "weight"]
// PERBATCH-LABEL: func.func @attend_project_two_rows()
// PERBATCH: {grid = affine_map<() -> (2, 1)>, kind = "attention_merge"
// PERBATCH: kind = "linear", name = "o_proj", {{.*}}read_roles = ["x", "weight"]
// PERBATCH-NOT: attention_merge_one_row
// With merge-last-split too, one row merges in the last split (no merge grid) and two rows keep the merge
// grid, the partial grid writing no output.
// LASTPB-LABEL: func.func @attend_project_one_row()
// LASTPB-NOT: kind = "attention_merge"
// LASTPB: kind = "attention_partial", {{.*}}write_roles = ["partial_out", "partial_stats", "out"]}
// LASTPB: kind = "linear", name = "o_proj", {{.*}}read_roles = ["x", "weight"]
// LASTPB-LABEL: func.func @attend_project_two_rows()
// LASTPB: kind = "attention_partial", {{.*}}write_roles = ["partial_out", "partial_stats"]}
// LASTPB: {grid = affine_map<() -> (2, 1)>, kind = "attention_merge"
// LASTPB: kind = "linear", name = "o_proj", {{.*}}read_roles = ["x", "weight"]
func.func @attend_project_one_row(%q: !torch.vtensor<[1,2,1,8],bf16> {etc.name = "q", etc.role = "input"}, %pos: !torch.vtensor<[1],si64> {etc.name = "positions", etc.role = "input"}, %cache: !torch.vtensor<[1,1,16,8],bf16> {etc.name = "cache", etc.role = "input"}, %wo: !torch.vtensor<[16,16],bf16> {etc.name = "o_proj.weight", etc.role = "weight"}) -> !torch.vtensor<[1,16],bf16> {
  %o = "etc.tile"(%q, %cache, %cache, %pos) {kind = "attention", params = {operand_roles = ["q", "k_cache", "v_cache", "positions"], result_roles = ["y"], num_heads = 2 : i64, num_kv_heads = 1 : i64, head_dim = 8 : i64, scale = 0.35 : f64, kv_chunk = 4 : i64}} : (!torch.vtensor<[1,2,1,8],bf16>, !torch.vtensor<[1,1,16,8],bf16>, !torch.vtensor<[1,1,16,8],bf16>, !torch.vtensor<[1],si64>) -> !torch.vtensor<[1,2,1,8],bf16>
  %m1 = "torch.constant.int"() <{value = -1 : i64}> : () -> !torch.int
  %c16 = "torch.constant.int"() <{value = 16 : i64}> : () -> !torch.int
  %shape = "torch.prim.ListConstruct"(%m1, %c16) : (!torch.int, !torch.int) -> !torch.list<int>
  %x = "torch.aten.view"(%o, %shape) : (!torch.vtensor<[1,2,1,8],bf16>, !torch.list<int>) -> !torch.vtensor<[1,16],bf16>
  %y = "etc.tile"(%x, %wo) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 16 : i64, out_features = 16 : i64, has_bias = false, tile_n = 8 : i64}} : (!torch.vtensor<[1,16],bf16>, !torch.vtensor<[16,16],bf16>) -> !torch.vtensor<[1,16],bf16>
  return %y : !torch.vtensor<[1,16],bf16>
}

func.func @attend_project_two_rows(%q: !torch.vtensor<[2,2,1,8],bf16> {etc.name = "q", etc.role = "input"}, %pos: !torch.vtensor<[2],si64> {etc.name = "positions", etc.role = "input"}, %cache: !torch.vtensor<[2,1,16,8],bf16> {etc.name = "cache", etc.role = "input"}, %wo: !torch.vtensor<[16,16],bf16> {etc.name = "o_proj.weight", etc.role = "weight"}) -> !torch.vtensor<[2,16],bf16> {
  %o = "etc.tile"(%q, %cache, %cache, %pos) {kind = "attention", params = {operand_roles = ["q", "k_cache", "v_cache", "positions"], result_roles = ["y"], num_heads = 2 : i64, num_kv_heads = 1 : i64, head_dim = 8 : i64, scale = 0.35 : f64, kv_chunk = 4 : i64}} : (!torch.vtensor<[2,2,1,8],bf16>, !torch.vtensor<[2,1,16,8],bf16>, !torch.vtensor<[2,1,16,8],bf16>, !torch.vtensor<[2],si64>) -> !torch.vtensor<[2,2,1,8],bf16>
  %m1 = "torch.constant.int"() <{value = -1 : i64}> : () -> !torch.int
  %c16 = "torch.constant.int"() <{value = 16 : i64}> : () -> !torch.int
  %shape = "torch.prim.ListConstruct"(%m1, %c16) : (!torch.int, !torch.int) -> !torch.list<int>
  %x = "torch.aten.view"(%o, %shape) : (!torch.vtensor<[2,2,1,8],bf16>, !torch.list<int>) -> !torch.vtensor<[2,16],bf16>
  %y = "etc.tile"(%x, %wo) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 16 : i64, out_features = 16 : i64, has_bias = false, tile_n = 8 : i64}} : (!torch.vtensor<[2,16],bf16>, !torch.vtensor<[16,16],bf16>) -> !torch.vtensor<[2,16],bf16>
  return %y : !torch.vtensor<[2,16],bf16>
}

// -----


// No match: a function without tiles is left alone.
// CHECK-LABEL: func.func @no_tiles
// CHECK-NEXT: return
func.func @no_tiles() {
  return
}

// -----

// Error: an op that was never raised.
func.func @not_raised(%x: !torch.vtensor<[4,8],f32> {etc.name = "x"}, %w: !torch.vtensor<[8,8],f32> {etc.name = "w"}) -> !torch.vtensor<[4,8],f32> {
  %0 = "etc.tile"(%x, %w) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 8 : i64, out_features = 8 : i64, has_bias = false, tile_n = 8 : i64}} : (!torch.vtensor<[4,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[4,8],f32>
  // expected-error @+1 {{op 'torch.aten.exp' was not raised to a tile (run etc-raise-torch and etc-raise-elementwise first)}}
  %1 = "torch.aten.exp"(%0) : (!torch.vtensor<[4,8],f32>) -> !torch.vtensor<[4,8],f32>
  return %1 : !torch.vtensor<[4,8],f32>
}

// -----

// Error: a dynamic size with no torch.symbolic_int name cannot become an event_tensor.dim.
func.func @unnamed_size(%x: !torch.vtensor<[?,8],f32> {etc.name = "x"}, %w: !torch.vtensor<[8,8],f32> {etc.name = "w"}) -> !torch.vtensor<[?,8],f32> {
  // expected-error @+1 {{size '?' is not a named symbolic size (batch, kv_len) the tiles can use}}
  %0 = "etc.tile"(%x, %w) {kind = "linear", params = {operand_roles = ["x", "weight"], result_roles = ["y"], in_features = 8 : i64, out_features = 8 : i64, has_bias = false, tile_n = 8 : i64}} : (!torch.vtensor<[?,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[?,8],f32>
  return %0 : !torch.vtensor<[?,8],f32>
}
