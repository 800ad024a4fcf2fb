// The IRDL files that define the dialects parse, and print back to definitions that parse again.
// RUN: etc-opt %dialects/event_tensor.irdl.mlir | etc-opt | FileCheck %s --check-prefix=ET
// RUN: cat %dialects/event_tensor.irdl.mlir %dialects/sm_task.irdl.mlir | etc-opt | etc-opt | FileCheck %s --check-prefix=SM
// ET: irdl.dialect @event_tensor
// ET-DAG: irdl.type @event
// ET-DAG: irdl.operation @task_grid
// ET-DAG: irdl.operation @event_tensor
// ET-DAG: irdl.operation @notify
// ET-DAG: irdl.operation @wait
// ET-DAG: irdl.operation @trigger
// SM: irdl.dialect @sm_task
// SM-DAG: irdl.type @counters
// SM-DAG: irdl.operation @kernel
// SM-DAG: irdl.operation @task
// SM-DAG: irdl.operation @static_queue
// SM-DAG: irdl.operation @ready_queue
// SM-DAG: irdl.operation @signal
