"""The contract between the generated megakernel, its tile functions, the bundle and the C++ runtime.

Kernel. One `gpu.func @etc_megakernel` in `gpu.module @etc`, launched with `num_workers` blocks of
`block_size` threads (all co-resident: one block per SM at most), with these parameters, in order:
  buffers         !llvm.ptr  u64[num_buffers]: device address of each bundle buffer, in bundle order
  sizes           !llvm.ptr  i64[num_symbols]: runtime value of each symbol (batch, kv_len), bundle order
  counters        !llvm.ptr  u64[counter_words]: all event counters, never reset (see below)
  queue_offsets   !llvm.ptr  i32[num_workers + 1]: worker w's static queue is entries[offsets[w]:offsets[w+1]]
  queue_entries   !llvm.ptr  i32[3 * n]: (task id, first tile, stride) triples
  ready           !llvm.ptr  u32 ready-queue state (READY_* layout below), zeroed by the runtime per step
  progress        !llvm.ptr  u32[num_workers * PROGRESS_WORDS]: what each worker is doing, for the watchdog
  epoch           i64        the decode step number, from 1

Counters. Counter c, element e (row-major over the counter's MAX extents) is u64 word
`counter_offset[c] + e`. In step `epoch` a signal is atomicMax(word, epoch << 32) then atomicAdd(word, 1),
after a release fence; a wait spins on an acquire load until word >= (epoch << 32) + target. After the event
counters come tile-private arrival words (etc.codegen.tiles_linear.arrival_words: a split head's
head_rms_norm counts its tiles' arrivals; etc.codegen.tiles_attention.merge_arrival_words: the partials
an attention split publishes for its group's merge, tagged with the epoch); no worker waits on them.

Shared memory. The launch's dynamic shared memory is the largest tile's, then (8-aligned) the worker's copy of
`sizes` with the epoch after it, and `buffers` (etc.codegen.kernel.SharedConstants): run and tile functions
read them there, since every wait invalidates the SM's L1 (a tile reads the epoch as sizes[num_symbols]). Where the buffer addresses do not fit below MAX_SHARED_BYTES, both go
between the tiles' scratch (their `etc.scratch_bytes`) and the weight stream's ring, if they fit there;
else only `sizes` is copied, past the tiles.

Tile functions. Each task gets `func.func @etc_tile_<id>(%buffers: !llvm.ptr, %sizes: !llvm.ptr,
%c0: i64, %c1: i64, %c2: i64)`, run by every thread of the block for tile (c0, c1, c2) of the task's grid
(unused coordinates are 0). It reads and writes global memory only through addresses loaded from
`buffers` (the task's operand table; for a task with arrival counters, the slot after its buffers'
holds their address); buffer extents come from `sizes` through the buffer's sizes map. The worker synchronizes the
block before and after the call; a tile function may use gpu.barrier only in block-uniform control flow.

Progress words per worker (u32): [state, task id, tile index, counter word index being waited on,
the count that word must reach in this step (the low 32 bits)]; state 0 idle, 1 waiting, 2 running, 3 done.
"""

KERNEL_NAME = "etc_megakernel"
GPU_MODULE = "etc"
KERNEL_PARAMS = ("buffers", "sizes", "counters", "queue_offsets", "queue_entries", "ready", "progress", "epoch")
PROGRESS_WORDS = 5
PROGRESS_IDLE, PROGRESS_WAITING, PROGRESS_RUNNING, PROGRESS_DONE = range(4)
# Ready queue (dynamic tasks): u32 words [head, tail, pushed, slots[capacity] (task id << 20 | tile) ...],
# then per dynamic task its tiles' pending-wait counts (u32).
READY_HEADER_WORDS = 3
# The profiling build's workspace buffer: per tile an i64 record [start ns, end ns, worker, phase stamps...,
# reached ns, polled ns] (%globaltimer). reached: the worker has come to the tile; polled: it has issued
# the tile's first weight copies and starts its waits; start: the waits are met; end: it has signalled.
# A tile kind may stamp up to PROFILE_PHASES points inside the tile (thread 0, into i64 slots of dynamic
# shared memory at PROFILE_PHASE_SMEM, which the worker zeroes before the call and copies into the record
# after it); 0 = not stamped. The linear tile stamps [x staged, dot products done, per-head steps done], attention_partial
# [q staged, chunk done, outputs stored].
PROFILE_BUFFER = "etc.profile"
PROFILE_PHASES = 3
PROFILE_RECORD_WORDS = 3 + PROFILE_PHASES + 2
MAX_SHARED_BYTES = 232448  # the H100/H200 opt-in dynamic shared memory per block
PROFILE_PHASE_SMEM = 229440  # past the weight stream's ring and barriers (weight_stream.STREAM_SHARED_BYTES)
BUNDLE_FORMAT = "etc-bundle"
BUNDLE_VERSION = 1
MAX_GRID_RANK = 3


def tile_function_name(task_id: int) -> str:
    return f"etc_tile_{task_id}"
