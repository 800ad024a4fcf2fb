// The event_tensor dialect: a decode step as task grids of tiles joined by event tensors.
//
// Symbolic sizes (batch, KV length) are SSA `index` values made by `event_tensor.dim`.
// Every affine map below binds its symbols s0, s1, ... to the `dims` operands of its op, in order.
// Buffers are named values of one type; the runtime binds them by name (weights, inputs, caches).
irdl.dialect @event_tensor {
  // Handle to an event tensor: a tensor of counters indexed by event coordinates.
  irdl.type @event {
  }

  // Handle to a named buffer in device memory.
  irdl.type @buf {
  }

  // A symbolic size, named, with its declared range [min, max]. Its value at run time comes from the
  // shapes of the bound buffers whose `sizes` use it.
  //   %b = "event_tensor.dim"() {name = "batch", min = 1, max = 64} : () -> index
  irdl.operation @dim {
    %name = irdl.base "#builtin.string"
    %min = irdl.base "#builtin.integer"
    %max = irdl.base "#builtin.integer"
    irdl.attributes {"name" = %name, "min" = %min, "max" = %max}
    %size = irdl.is index
    irdl.results(size: %size)
  }

  // A buffer: `role` is input, output, weight, kv_cache (read and updated in place) or workspace;
  // `sizes` = affine_map<()[symbols] -> (extents)>, row-major, of `element_type`. A buffer that a model
  // output aliases carries `output_index` (a KV cache is returned updated in place).
  irdl.operation @buffer {
    %dims = irdl.is index
    irdl.operands(dims: variadic %dims)
    %name = irdl.base "#builtin.string"
    %role = irdl.base "#builtin.string"
    %etype = irdl.base "#builtin.type"
    %sizes = irdl.base "#builtin.affine_map"
    irdl.attributes {"name" = %name, "role" = %role, "element_type" = %etype, "sizes" = %sizes}
    %buf = irdl.base @event_tensor::@buf
    irdl.results(buffer: %buf)
  }

  // An event tensor. `shape` = affine_map<()[symbols] -> (extents)>; `wait_count` =
  // affine_map<(event coords)[symbols] -> (n)>: how many notifies complete each element.
  irdl.operation @event_tensor {
    %dims = irdl.is index
    irdl.operands(dims: variadic %dims)
    %name = irdl.base "#builtin.string"
    %shape = irdl.base "#builtin.affine_map"
    %count = irdl.base "#builtin.affine_map"
    irdl.attributes {"name" = %name, "shape" = %shape, "wait_count" = %count}
    %ev = irdl.base @event_tensor::@event
    irdl.results(event: %ev)
  }

  // A tiled operator. `grid` = affine_map<()[symbols] -> (extents)>: one tile per grid point.
  // `kind` names the tile body; `params` holds its constants (tile shape, eps, ...).
  // Tile (d0, d1, ...) reads `reads`, writes `writes`, first waits on element wait_maps[i](tile)
  // of waits[i] for each i, and when done notifies element notify_maps[j](tile) of notifies[j].
  irdl.operation @task_grid {
    %dims = irdl.is index
    %reads = irdl.base @event_tensor::@buf
    %writes = irdl.base @event_tensor::@buf
    %waits = irdl.base @event_tensor::@event
    %notifies = irdl.base @event_tensor::@event
    irdl.operands(dims: variadic %dims, reads: variadic %reads, writes: variadic %writes,
                  waits: variadic %waits, notifies: variadic %notifies)
    %name = irdl.base "#builtin.string"
    %kind = irdl.base "#builtin.string"
    %grid = irdl.base "#builtin.affine_map"
    %wait_maps = irdl.base "#builtin.array"
    %notify_maps = irdl.base "#builtin.array"
    %params = irdl.base "#builtin.dictionary"
    irdl.attributes {"name" = %name, "kind" = %kind, "grid" = %grid, "wait_maps" = %wait_maps,
                     "notify_maps" = %notify_maps, "params" = %params}
  }

  // Add one to an event element (a producer tile finished its part).
  irdl.operation @notify {
    %ev = irdl.base @event_tensor::@event
    %idx = irdl.is index
    irdl.operands(event: %ev, indices: variadic %idx)
  }

  // Block until an event element reaches its wait count.
  irdl.operation @wait {
    %ev = irdl.base @event_tensor::@event
    %idx = irdl.is index
    irdl.operands(event: %ev, indices: variadic %idx)
  }

  // Data-dependent fan-in: set an element's wait count at run time to `count` (for example the number
  // of token tiles routed to one MoE expert); a count of zero releases its waiters at once.
  irdl.operation @trigger {
    %ev = irdl.base @event_tensor::@event
    %idx = irdl.is index
    %count = irdl.is index
    irdl.operands(event: %ev, indices: variadic %idx, count: %count)
  }
}
