// Each bad input gives one line (file:line:col where there is a location), a non-zero exit, no traceback.
// RUN: not etc-opt %S/Inputs/valid.mlir -p etc-no-such-pass 2>&1 | FileCheck %s --check-prefix=UNKNOWN --implicit-check-not=Traceback
// UNKNOWN: etc-opt: error: unknown pass 'etc-no-such-pass'; ETC passes: etc-raise-torch, {{.*}}, etc-verify-event-tensor, etc-derive-wait-counts, {{.*}}
// UNKNOWN-EMPTY:
// RUN: not etc-opt %S/Inputs/valid.mlir -p no-such-upstream-pass 2>&1 | FileCheck %s --check-prefix=UPSTREAM --implicit-check-not=Traceback
// UPSTREAM: etc-opt: error: unknown pass 'no-such-upstream-pass'; ETC passes: {{.*}} (upstream MLIR passes are accepted too)

// RUN: not etc-opt %S/Inputs/valid.mlir -p 'etc-verify-event-tensor{oops}' 2>&1 | FileCheck %s --check-prefix=OPTION --implicit-check-not=Traceback
// OPTION: etc-opt: error: malformed option 'oops' of pass 'etc-verify-event-tensor': write etc-verify-event-tensor{key=value}
// RUN: not etc-opt %S/Inputs/valid.mlir -p 'etc-derive-wait-counts{depth=3}' 2>&1 | FileCheck %s --check-prefix=NOOPT --implicit-check-not=Traceback
// NOOPT: etc-opt: error: pass 'etc-derive-wait-counts' has no option 'depth' (it takes no options)
// RUN: not etc-opt %S/Inputs/valid.mlir -p 'canonicalize{max-iterations=many}' 2>&1 | FileCheck %s --check-prefix=UPOPT --implicit-check-not=Traceback
// UPOPT: etc-opt: error: malformed upstream pass 'canonicalize{max-iterations=many}': for the --max-iterations option: 'many' value invalid
// RUN: not etc-opt %S/Inputs/valid.mlir -p 'etc-verify-event-tensor,func.func(cse' 2>&1 | FileCheck %s --check-prefix=BRACKET --implicit-check-not=Traceback
// BRACKET: etc-opt: error: unbalanced brackets or quotes in pass pipeline
// RUN: not etc-opt %S/Inputs/valid.mlir -p 'func.func(etc-verify-event-tensor)' 2>&1 | FileCheck %s --check-prefix=NEST --implicit-check-not=Traceback
// NEST: etc-opt: error: ETC passes cannot be nested under an anchor: 'func.func(etc-verify-event-tensor)'

// RUN: not etc-opt %S/Inputs/malformed.mlir 2>&1 | FileCheck %s --check-prefix=SYNTAX --implicit-check-not=Traceback
// SYNTAX: {{.*}}Inputs/malformed.mlir:2:22: error: expected SSA operand
// SYNTAX-EMPTY:
// RUN: not etc-opt %S/Inputs/unverified.mlir 2>&1 | FileCheck %s --check-prefix=VERIFY --implicit-check-not=Traceback
// VERIFY: {{.*}}Inputs/unverified.mlir:2:8: error: 'event_tensor.event_tensor' op attribute "wait_count" is expected but not provided
// RUN: not etc-opt %S/Inputs/missing.mlir 2>&1 | FileCheck %s --check-prefix=MISSING --implicit-check-not=Traceback
// MISSING: etc-opt: error: cannot read input file '{{.*}}Inputs/missing.mlir': No such file or directory

// A pipeline with good passes runs, and stdin works.
// RUN: etc-opt -p 'etc-verify-event-tensor,canonicalize' < %S/Inputs/valid.mlir | FileCheck %s --check-prefix=OK
// OK: arith.addi

// More bad input: not text, an unknown flag, an unwritable output, two anchors, broken expectations.
// RUN: not etc-opt %S/Inputs/binary.mlir 2>&1 | FileCheck %s --check-prefix=BINARY --implicit-check-not=Traceback
// BINARY: etc-opt: error: input '{{.*}}Inputs/binary.mlir' is not UTF-8 text
// BINARY-EMPTY:
// RUN: not etc-opt %S/Inputs/valid.mlir --no-such-flag 2>&1 | FileCheck %s --check-prefix=FLAG --implicit-check-not=usage
// FLAG: etc-opt: error: unrecognized arguments: --no-such-flag (see etc-opt --help)
// RUN: not etc-opt %S/Inputs/valid.mlir -o %S/Inputs/no-such-dir/out.mlir 2>&1 | FileCheck %s --check-prefix=OUT --implicit-check-not=Traceback
// OUT: etc-opt: error: cannot write output file '{{.*}}no-such-dir/out.mlir': No such file or directory
// RUN: not etc-opt %S/Inputs/valid.mlir -p 'builtin.module(cse),func.func(cse)' 2>&1 | FileCheck %s --check-prefix=ANCHORS
// ANCHORS: etc-opt: error: a pipeline anchored on builtin.module must be one 'builtin.module(...)'
// RUN: not etc-opt %S/Inputs/malformed-expectation.mlir --verify-diagnostics 2>&1 | FileCheck %s --check-prefix=EXPECT
// EXPECT: {{.*}}Inputs/malformed-expectation.mlir:2: error: malformed expectation
// RUN: not etc-opt %S/Inputs/far-expectation.mlir --verify-diagnostics 2>&1 | FileCheck %s --check-prefix=FAR
// FAR: {{.*}}Inputs/far-expectation.mlir:1: error: expected-error points at line -4, outside this input (lines 1-4)
