// --verify-diagnostics passes when every expected diagnostic appears, and fails, naming the line,
// when one is missing or an unexpected one appears.
// RUN: etc-opt %s --split-input-file --verify-diagnostics | FileCheck %s
// RUN: sed -e 's/expected-error/expected-warning/' %s | not etc-opt --split-input-file --verify-diagnostics 2>&1 | FileCheck %s --check-prefix=MISMATCH

// The valid chunk is printed; the failing one is not.
// CHECK: func.func @fine
// CHECK-NOT: func.func @bad
func.func @fine() {
  return
}

// -----

func.func @bad(%i: index) {
  // expected-error @+1 {{expected base type 'event_tensor.event'}}
  "event_tensor.wait"(%i) : (index) -> ()
  return
}

// MISMATCH: <stdin>:17:3: error: unexpected error: expected base type 'event_tensor.event' but got 'builtin.index'
// MISMATCH: <stdin>:17: error: expected warning "expected base type 'event_tensor.event'" was not produced
