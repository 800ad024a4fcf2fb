"""ETC's dialects, written in IRDL: event_tensor (task grids joined by event tensors) and sm_task
(the persistent kernel's tasks, queues and counters). `etc.mlir_adapter.new_context` loads them."""
