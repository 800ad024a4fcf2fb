// The sm_task dialect: the persistent kernel's view of a decode step. Workers (one per SM) take
// tasks from static per-worker queues or a dynamic ready queue; counters carry the dependencies.
// Buffers and symbolic sizes are event_tensor's. Affine maps bind their symbols s0, s1, ... to the `dims` operands of their op, in order.
irdl.dialect @sm_task {
  // Handle to an array of counters (one event tensor, lowered).
  irdl.type @counters {
  }

  // The persistent kernel of the enclosing function: `num_workers` resident blocks of `block_size`
  // threads. The counters, tasks and queues of that function make up one decode step; `buffers` are
  // what the step reads and writes.
  irdl.operation @kernel {
    %dims = irdl.is index
    %buffers = irdl.base @event_tensor::@buf
    irdl.operands(dims: variadic %dims, buffers: variadic %buffers)
    %name = irdl.base "#builtin.string"
    %workers = irdl.base "#builtin.integer"
    %block = irdl.base "#builtin.integer"
    irdl.attributes {"sym_name" = %name, "num_workers" = %workers, "block_size" = %block}
  }

  // Counters for one event tensor. `shape` = affine_map<()[symbols] -> (extents)>; `target` =
  // affine_map<(coords)[symbols] -> (n)>: signals per step, n < 2^32. Counters are 64-bit and never
  // reset between decode steps. In step e (counting from 1) a signal does atomicMax(c, e << 32), then
  // atomicAdd(c, 1); a waiter waits for c >= (e << 32) + target(coords, sizes). The first signal of a
  // step so drops the previous step's count without a reset, and the count of each step may differ
  // (batch and kv_len change between steps). A target of 0 is met at once: nothing is waited for.
  irdl.operation @counter {
    %dims = irdl.is index
    irdl.operands(dims: variadic %dims)
    %name = irdl.base "#builtin.string"
    %shape = irdl.base "#builtin.affine_map"
    %target = irdl.base "#builtin.affine_map"
    irdl.attributes {"name" = %name, "shape" = %shape, "target" = %target}
    %c = irdl.base @sm_task::@counters
    irdl.results(counter: %c)
  }

  // Task descriptors: the tiles of one task grid. Task `id` tile (d0, ...) waits on counter element
  // wait_maps[i](tile) of waits[i], runs tile body `kind`, then signals signal_maps[j](tile) of signals[j].
  irdl.operation @task {
    %dims = irdl.is index
    %reads = irdl.base @event_tensor::@buf
    %writes = irdl.base @event_tensor::@buf
    %waits = irdl.base @sm_task::@counters
    %signals = irdl.base @sm_task::@counters
    irdl.operands(dims: variadic %dims, reads: variadic %reads, writes: variadic %writes,
                  waits: variadic %waits, signals: variadic %signals)
    %id = irdl.base "#builtin.integer"
    %name = irdl.base "#builtin.string"
    %kind = irdl.base "#builtin.string"
    %grid = irdl.base "#builtin.affine_map"
    %wait_maps = irdl.base "#builtin.array"
    %signal_maps = irdl.base "#builtin.array"
    %params = irdl.base "#builtin.dictionary"
    irdl.attributes {"id" = %id, "name" = %name, "kind" = %kind, "grid" = %grid, "wait_maps" = %wait_maps,
                     "signal_maps" = %signal_maps, "params" = %params}
  }

  // One worker's static queue, fixed at compile time and parametric in the sizes: `entries` = [task id,
  // first, stride, ...]. Worker `worker` runs, entry by entry, tiles first, first + stride, ... below the
  // task's tile count at run-time sizes (tiles numbered row-major over the grid), each tile after its
  // waits are met. Entries list tasks in increasing id (topological) order, so the queues cannot
  // deadlock. A worker without a static_queue op has an empty queue.
  irdl.operation @static_queue {
    %worker = irdl.base "#builtin.integer"
    %entries = irdl.base "#builtin.dense_array"
    irdl.attributes {"worker" = %worker, "entries" = %entries}
  }

  // The device-side ready queue for the tiles of the listed (dynamic) tasks. A tile is pushed when every
  // counter element it waits on reached its target, and idle workers pop and run it. With the optional
  // attribute `early_push = true` (absent: false; IRDL has no optional attributes, so it is not declared
  // below) a tile is pushed once every producer tile signalling the elements it waits on has been
  // dispatched, and spins on its counters after the pop. Workers with a static queue run it in order and,
  // whenever their next static tile is not ready or their queue is done, pop ready tiles instead.
  // `capacity` bounds the tiles pushed and not yet popped.
  irdl.operation @ready_queue {
    %capacity = irdl.base "#builtin.integer"
    %tasks = irdl.base "#builtin.dense_array"
    irdl.attributes {"capacity" = %capacity, "tasks" = %tasks}
  }

  // Spin (acquire) until the counter element reaches `target`.
  irdl.operation @wait {
    %c = irdl.base @sm_task::@counters
    %idx = irdl.is index
    %target = irdl.is index
    irdl.operands(counter: %c, indices: variadic %idx, target: %target)
  }

  // Release-fence, then add one to the counter element.
  irdl.operation @signal {
    %c = irdl.base @sm_task::@counters
    %idx = irdl.is index
    irdl.operands(counter: %c, indices: variadic %idx)
  }
}
