// RUN: etc-opt %s --split-input-file --verify-diagnostics
// The IRDL definitions reject ill-typed sm_task ops.

func.func @signal_needs_counters(%i: index) {
  // expected-error @+1 {{expected base type 'sm_task.counters' but got 'builtin.index'}}
  "sm_task.signal"(%i, %i) : (index, index) -> ()
  return
}

// -----

func.func @queue_entries_are_dense() {
  // expected-error @+1 {{expected base attribute 'builtin.dense_array' but got 'builtin.array'}}
  "sm_task.static_queue"() {worker = 0 : i64, entries = [0, 1]} : () -> ()
  return
}

// -----

func.func @kernel_needs_workers() {
  // expected-error @+1 {{attribute "num_workers" is expected but not provided}}
  "sm_task.kernel"() {operandSegmentSizes = array<i32: 0, 0>, sym_name = "k", block_size = 128 : i64} : () -> ()
  return
}
