// RUN: etc-opt %s -p "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu" --verify-diagnostics
// A wide-chunk attention grid (wide_rows) skips its empty chunks at a wide step: each is written and
// signalled by the chunk that stands in for it (etc-lower-to-gpu-weight-stream.mlir has the positive case).
// Error: at a wide step a tile signals for the empty chunk it stands in for, so the grid's events must not
// tell its splits apart.
func.func @attention_wide_per_split() {
  %b = "event_tensor.dim"() {name = "batch", min = 1 : i64, max = 4 : i64} : () -> index
  %t = "event_tensor.dim"() {name = "kv_len", min = 2 : i64, max = 256 : i64} : () -> index
  %x = "event_tensor.buffer"(%b, %t) {name = "x", role = "input", element_type = bf16, sizes = affine_map<()[s0, s1] -> (s0, 256)>} : (index, index) -> !event_tensor.buf
  %q = "event_tensor.buffer"(%b, %t) {name = "q", role = "workspace", element_type = bf16, sizes = affine_map<()[s0, s1] -> (s0, 256)>} : (index, index) -> !event_tensor.buf
  %k = "event_tensor.buffer"(%b, %t) {name = "k", role = "kv_cache", element_type = bf16, sizes = affine_map<()[s0, s1] -> (s0, 2, s1, 64)>} : (index, index) -> !event_tensor.buf
  %v = "event_tensor.buffer"(%b, %t) {name = "v", role = "kv_cache", element_type = bf16, sizes = affine_map<()[s0, s1] -> (s0, 2, s1, 64)>} : (index, index) -> !event_tensor.buf
  %p = "event_tensor.buffer"(%b, %t) {name = "pos", role = "input", element_type = i64, sizes = affine_map<()[s0, s1] -> (s0)>} : (index, index) -> !event_tensor.buf
  %o = "event_tensor.buffer"(%b, %t) {name = "po", role = "output", element_type = f32, sizes = affine_map<()[s0, s1] -> (s0, 4, s1 ceildiv 64, 64)>, output_index = 0 : i64} : (index, index) -> !event_tensor.buf
  %s = "event_tensor.buffer"(%b, %t) {name = "ps", role = "output", element_type = f32, sizes = affine_map<()[s0, s1] -> (s0, 4, s1 ceildiv 64, 2)>, output_index = 1 : i64} : (index, index) -> !event_tensor.buf
  %e = "event_tensor.event_tensor"(%b, %t) {name = "q.done", shape = affine_map<()[s0, s1] -> (1)>, wait_count = affine_map<(d0)[s0, s1] -> (s0)>} : (index, index) -> !event_tensor.event
  "event_tensor.task_grid"(%b, %t, %x, %q, %e) {operandSegmentSizes = array<i32: 2, 1, 1, 0, 1>, name = "act", kind = "gelu", schedule = "static", grid = affine_map<()[s0, s1] -> (s0, 1)>, wait_maps = [], notify_maps = [affine_map<(d0, d1)[s0, s1] -> (0)>], params = {tile_c = 256 : i64, approximate = "tanh", read_roles = ["x"], write_roles = ["y"]}} : (index, index, !event_tensor.buf, !event_tensor.buf, !event_tensor.event) -> ()
  %f = "event_tensor.event_tensor"(%b, %t) {name = "attn.done", shape = affine_map<()[s0, s1] -> (s0, 2, s1 ceildiv 64)>, wait_count = affine_map<(d0, d1, d2)[s0, s1] -> (1)>} : (index, index) -> !event_tensor.event
  // expected-error @+1 {{a wide-chunk attention grid must signal per (row, kv group), not per split: a tile signals for the empty split it stands in for}}
  "event_tensor.task_grid"(%b, %t, %q, %k, %v, %p, %o, %s, %e, %f) {operandSegmentSizes = array<i32: 2, 4, 2, 1, 1>, name = "attn", kind = "attention_partial", grid = affine_map<()[s0, s1] -> (s0, 2, s1 ceildiv 64)>, wait_maps = [affine_map<(d0, d1, d2)[s0, s1] -> (0)>], notify_maps = [affine_map<(d0, d1, d2)[s0, s1] -> (d0, d1, d2)>], params = {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 64 : i64, kv_chunk = 64 : i64, wide_rows = 2 : i64, scale = 0.125 : f64, read_roles = ["q", "k_cache", "v_cache", "positions"], write_roles = ["partial_out", "partial_stats"]}} : (index, index, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.buf, !event_tensor.event, !event_tensor.event) -> ()
  return
}
