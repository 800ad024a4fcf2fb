"""Split-KV decode attention tiles: attention_partial (one KV chunk of one kv head group) and attention_merge.

attention_partial tile (r, g, s): the G = num_heads / num_kv_heads query heads of kv group g against the
visible slots t0 <= t < t1 = min(T, t0 + kv_chunk, positions[r] + 1) of chunk s, on the tensor cores
(mma.sync m16n8k16; head_dim a multiple of 16, G <= 16, q / K / V one 16-bit float type). Each warp
takes STEP = 16 slots at a time (warp w: slots t0 + 16 w, then 16 * nwarps further on) and keeps its own
online softmax, so no block barrier separates the phases of a step:
  scores  S = q K^T: the group's heads are the A rows (padded to 16, zero past G), two 8-slot tiles of K
          rows the B columns; with head_dim % 32 == 0 a lane loads 16 bytes of a row at once and feeds two
          k-steps (k permuted inside each mma, identically for q and K).
  softmax per head row: the step's max over the quad's lanes, the running max m, the weights
          e = exp(scale * S - m) (0 past t1), l = l * exp(m_old - m) + sum e; o rescaled the same way.
  o += e V: the weights' C fragments are P's A fragments (rows = heads, k = slots); V's rows, staged per
          warp with their 16-byte chunks swizzled (chunk c of row j at c ^ (j % 8) when a row holds a
          multiple of 8 chunks: ldmatrix then reads eight rows 128k bytes apart from eight banks), come
          through ldmatrix .trans as B. P goes in two 16-bit parts (hi = round(e), lo = round(e - hi)), so
          e keeps ~16 bits and P V stays close to the f32 reference.
Then every warp's (o, m, l) goes to shared memory and the warps are merged like splits: M = max m_w,
weights exp(m_w - M) (0 for a warp that saw no slot), o = sum of weighted o_w, l likewise.
Outputs partial_out[r, h, s, :] = o (unnormalized), partial_stats[r, h, s, :] = (m, l); a chunk with no
visible slot gives (-inf, 0) and o = 0. (Exact f32 arithmetic would match the reference's
max / exp / sum over the chunk; the warps' merge and P's ~16-bit weights differ from it by rounding.)

Wide chunks (param wide_rows > 0): at a step of R >= wide_rows rows the chunk is 2 * kv_chunk slots, so
the chunks E = ceildiv(T, 2 * kv_chunk) .. S - 1 are empty; the KV prefetch then sizes the ring for
2 * kv_chunk slots. The worker skips an empty chunk's tile whole (the companion `@<tile>_idle` -> i1 says
so), and the tile of chunk s - E stands in for it: it stores the empty chunk's (-inf, 0) and o = 0, its
signals count 2 (the companion `@<tile>_signal_count` -> i64). An empty chunk lies past positions[r], so
no merge in the group waits for its published partials. The grid's events must therefore not tell its
splits apart (checked).

KV prefetch (with weight streams, when the K and V rows of the longest chunk fit the stream's ring): the
slots before positions[r] were written in earlier steps, so an issue function, run by the worker before
the tile's waits, bulk-copies them (K and V rows: one copy each, under the weights' L2 evict-first policy)
into shared memory on an mbarrier. After the waits the tile copies only slot positions[r] (appended this
step) and reads K and V from shared memory; the issue function also leaves positions[r] in shared memory
(POSITION_OFFSET), so the tile does not load it after its waits. Where a chunk's K rows reach
V_AFTER_WAITS_BYTES (head_dim 128 at chunks of 128 slots) the issue function copies only K, and the tile
copies V on a barrier of its own right after its waits, waiting for it just before the first P @ V: the
worker's poll and the tile's first loads then queue behind half the bytes at the stage boundary (one SM
takes in ~32-45 GB/s while every SM streams), and V lands during the q staging and the scores. Without
the prefetch the warps read K rows and stage V rows from global memory. The q rows are loaded before
positions[r] is known, so their round trip overlaps its.

Merge in the group (out among the grid's writes): each tile also publishes its partials (m, l and o of
each head) as 64-bit words in the task's arrival words, the f32 value in the lower half and the step's
epoch in the upper; the tile whose chunk holds positions[r] (every later chunk holds no visible slot)
then loads the words of its group's splits up to its own, again until every word carries this step's
epoch, and merges them into out as attention_merge does. A 64-bit relaxed store is seen whole, so the
tag vouches for the value: the splits pay no fence, counter or round trip before they signal, and the
merging tile one round trip for the words (the last-to-arrive counter this replaced measured 2.75 ->
2.11 us from the merging tile's outputs to its signal on the H200, Qwen3-0.6B). It waits only on tiles
of lower index in its grid, which a static queue runs before it (etc-static-schedule keeps a task's
tiles in increasing order on every worker). Where only one row merges this way (merge_one_row, the rows a
runtime size), that row runs the tile's noinline companion `@<tile>_one_row`, which publishes and merges,
and more rows run the tile without that code. A publishing tile stores its partials only as the published
words: partial_out and partial_stats are read by an attention_merge grid alone, which has no tiles where
the group merges in its splits (etc.tiles.unstored_roles). Not storing them measured Qwen3-0.6B at batch 1
0.822 -> 0.801 ms on the H200 (five instances each); stored, their placement by the driver moved an
instance's time by up to 6% (tools/gpu/instance_spread.py --groups).

Per-head q/k norm and RoPE (param head_norm_eps, the Qwen3 form; etc-fuse-head-norm-attention): q and
slot positions[r] of the K cache arrive as the projections left them. Each warp normalizes a head of q
(rms over head_dim with q_norm_weight, then RoPE at positions[r] with inv_freq, rounded as the linear
epilogue rounds them) into shared memory, from which the scores' A fragments load; the tile holding
slot positions[r] does the same to that K row (k_norm_weight) and writes it back to the cache, finishing
the append for later steps (no other tile of the step reads that slot). With the KV prefetch, RoPE's cos
and sin at positions[r] (f64 math, rounded as rope_cos_sin rounds them) come from a table in shared
memory that the issue function's warps 1.. compute before the waits, not after them.
"""
from __future__ import annotations

import math

from etc import mlir_adapter as mlir
from etc.codegen import abi
from etc.codegen.abi import tile_function_name
from etc.codegen.tile_library import WARP, Tile, rope_cos_sin, rope_pair
from etc.codegen.tiles_builder import ELEM_BYTES, V
from etc.codegen.weight_stream import BARRIER_OFFSET, RING_BYTES, RING_OFFSET, STREAM_SHARED_BYTES

MERGE_UNROLL = 4  # splits a merge thread loads at once
LAST_MERGE_UNROLL = 8  # ... in a group's merge (_merge_published): context 1024 in chunks of 128 in one round trip
# Where the KV prefetch's issue function leaves positions[r] (i64) for the tile, next to the one stage
# barrier the prefetch uses: the tile then reads it from shared memory, not with a global round trip after
# its waits (positions are an input, constant during the step).
POSITION_OFFSET = BARRIER_OFFSET + 8
V_BARRIER_OFFSET = BARRIER_OFFSET + 16  # the V rows' barrier, where their copies start after the waits
# A chunk's K rows from this size on (kv_chunk x head_dim x element bytes) leave its V rows' copies until
# after the tile's waits (measured on the H200: Qwen3-0.6B's 32 KiB 1.6 / 3.7 / 4.9% faster at batch 1 / 4 /
# 16; Llama-3.2-1B's 16 KiB 2% slower at batch 1)
V_AFTER_WAITS_BYTES = 32 * 1024
STEP = 16  # slots a warp takes at once: two 8-slot tiles of scores, one k-step of P @ V
QUAD = (1, 2)  # shuffle offsets within a quad of lanes (lanes 4q .. 4q + 3: one head row's slots)


def _attention_params(t: Tile) -> tuple[int, int, int, int]:
    heads, kv_heads, d = int(t.param("num_heads")), int(t.param("num_kv_heads")), int(t.param("head_dim"))
    if heads % kv_heads:
        t.fail(f"num_heads {heads} is not a multiple of num_kv_heads {kv_heads}")
    return heads, kv_heads, heads // kv_heads, d


def emit_attention_partial(t: Tile) -> None:
    """The tile function. With merge_one_row and a runtime row count, one row runs the companion
    `@<tile>_one_row` (noinline), the tile built to publish its partials and merge its group; more rows
    run the tile without that code (a merge grid merges them), so the merge's registers and code stay out
    of it (inline, they made batch 4 and 16 1-2% slower on the H200)."""
    rows = t.shape("q")[0]
    if not t.has("out") or isinstance(rows, int) or not t.params.get("merge_one_row"):
        _emit_partial(t, publish=t.has("out") and (not t.params.get("merge_one_row") or rows == 1))
        return
    b = t.b
    b.if_(b.cmp("eq", rows, 1), [], lambda: _call_companion(t, "_one_row"),
          lambda: _emit_partial(t, publish=False))
    one = type(t)(t.task, t.program, t.buffer_index, t.symbol_index, weight_stream=t.weight_stream,
                  profile=t.profile, ring_bytes=t.ring_bytes)
    _emit_partial(one, publish=True, grid_companions=False)
    t.shared_bytes = max(t.shared_bytes, one.shared_bytes)
    t.ring_end = max(t.ring_end, one.ring_end)
    t.companions.append(one.function_text(suffix="_one_row", noinline=True))


def _call_companion(t: Tile, suffix: str) -> None:
    """Call `@<tile><suffix>` with this tile's arguments."""
    t.b.stmt(f"func.call @{tile_function_name(t.task.id)}{suffix}(%buffers, %sizes, %c0, %c1, %c2) : "
             "(!llvm.ptr, !llvm.ptr, i64, i64, i64) -> ()")


def _emit_partial(t: Tile, publish: bool, grid_companions: bool = True) -> None:
    """The tile's body. publish: the tile publishes its partials and the split holding positions[r] merges
    its group into out. grid_companions: emit the grid's `_issue` (and wide chunks' `_idle`,
    `_signal_count`) companions (not again for a `_one_row` variant)."""
    b = t.b
    H, KVH, G, D = _attention_params(t)
    C = int(t.param("kv_chunk"))
    scale = float(t.params.get("scale", 1.0 / math.sqrt(D)))
    if D % 16 or G > 16:
        t.fail(f"head_dim {D} must be a multiple of 16 and a kv group at most 16 heads (got {G})")
    r, g, s = t.coords
    qcols = t.shape("q")[1]
    W = int(t.params.get("wide_rows", 0))
    CMAX = 2 * C if W else C  # the most slots a chunk holds
    if qcols != H * D:
        t.fail(f"q has {qcols} columns, num_heads * head_dim is {H * D}")
    _, kvh, T, kd = t.shape("k_cache")
    if kvh != KVH or kd != D or t.shape("v_cache")[1] != KVH or t.shape("v_cache")[3] != D:
        t.fail(f"k/v caches must be [rows, {KVH}, slots, {D}]")
    out_h, S = t.shape("partial_out")[1], t.shape("partial_out")[2]
    if out_h != H or t.shape("partial_out")[3] != D or t.shape("partial_stats")[3] != 2:
        t.fail(f"partial_out must be [rows, {H}, splits, {D}] and partial_stats [rows, {H}, splits, 2]")
    qt, kt, vt = (t.float_etype(role) for role in ("q", "k_cache", "v_cache"))
    if not (qt == kt == vt and qt in ("bf16", "f16")):
        t.fail(f"q, k_cache and v_cache must share one 16-bit float type (got {qt}, {kt}, {vt})")
    ot, mt = t.float_etype("partial_out"), t.float_etype("partial_stats")
    eb = ELEM_BYTES[kt]
    WARPS = t.block_max // WARP
    red = t.smem(WARPS * G * (D + 2) * 4)  # per warp: o of every head, then m, then l
    fac = t.smem(WARPS * G * 4)  # per warp and head: its weight in the merge of the warps
    norm = t.params.get("head_norm_eps") is not None  # q and k's new row come unnormalized, without RoPE
    q_stage = t.smem(G * D * eb) if norm else None  # the normalized q heads, for the A fragments
    v_stage = t.smem(WARPS * STEP * D * eb)  # per warp: the V rows of its step, swizzled for ldmatrix
    prefetch = t.weight_stream and 2 * CMAX * D * eb <= RING_BYTES
    # RoPE's (cos, sin) at positions[r] for each rotate-half pair (f32), left by the issue function
    rope_table = t.smem(D * 4) if norm and prefetch else None
    vbar = None  # the V rows' barrier, where the tile copies them after its waits
    if prefetch:  # K and V rows in the stream's ring, landing on its first barrier
        base = t.smem_base()
        with b.at_entry():
            ks = b.gep(base, RING_OFFSET, "i8")
            vs = b.gep(base, RING_OFFSET + CMAX * D * eb, "i8")
            bar = b.gep(base, BARRIER_OFFSET, "i8")
            vbar = b.gep(base, V_BARRIER_OFFSET, "i8") if _v_after_waits(C, D, eb) else None
    limit = RING_OFFSET if prefetch else abi.MAX_SHARED_BYTES
    if t.shared_bytes > limit:  # the scratch grows with the warps: fewer threads a block fit
        t.fail(f"{G} heads of {D} need {t.shared_bytes} bytes of shared memory for the partial sums and V rows "
               f"of {WARPS} warps (at most {limit}; fewer threads a block need less)")

    head0 = b.mul(g, G)
    # early: its size loads then overlap the tile's (not where the group merges: nothing reads the outputs)
    partner = _empty_partner(t, C, W) if W and not publish else None
    # q's A fragments first: their loads overlap positions[r]'s, on which the rest waits
    quad, pair = b.shr(t.lane, 2), b.and_(t.lane, 3)
    zero = b.i32(0)
    lane_e = b.mul(pair, 8 if D % 32 == 0 else 2)  # this lane's first element of a row's k-words

    def row_words(ptr_at) -> list[tuple[V, V]]:
        """This lane's words of the D-element row whose element e is at ptr_at(e), per k-step of 16
        elements (the mma's lower and upper 8): with D % 32 == 0 one 16-byte load per 32 elements (at
        element 8 * (lane % 4)) feeds two k-steps, k permuted inside each identically for q and K; else
        two 4-byte loads per k-step."""
        if D % 32 == 0:
            out = []
            for j in range(D // 32):
                w = b.load(ptr_at(32 * j), "vector<4xi32>", 16)
                ws = [b.vec_extract(w, e) for e in range(4)]
                out += [(ws[0], ws[1]), (ws[2], ws[3])]
            return out
        return [(b.load(ptr_at(16 * j), "i32", 4), b.load(ptr_at(16 * j + 8), "i32", 4)) for j in range(D // 16)]

    def q_words(row: int):
        """The scores' A fragment words of head row quad + row of the group (zero past G)."""
        head = b.add(quad, row)
        ok = b.cmp("lt", head, G)
        if norm:
            at = b.add(b.mul(b.min(head, G - 1), D), lane_e)
            words = row_words(lambda e: b.gep(q_stage, b.add(at, e), qt))
        else:
            at = b.add(b.add(b.mul(r, qcols), b.mul(b.add(head0, b.min(head, G - 1)), D)), lane_e)
            words = row_words(lambda e: t.elem_ptr("q", b.add(at, e)))
        return [(b.select(ok, lo, zero), b.select(ok, hi, zero)) for lo, hi in words]

    def norm_rope_row(load, weight_role: str, pos: V, store) -> None:
        """One warp: the head row whose raw element e is load(e) (f32), rms-normalized with weight_role and
        rotated at position pos (f32), as the linear epilogue's head_rms_norm and rope round them; store(e,
        value) for every element. A lane takes the rotate-half pairs (i, i + D/2) for i = lane, lane + 32 ..;
        the rotation's cos and sin (f64 math) come first, while the row's loads are in flight."""
        half = D // 2
        items = []
        for j in range(-(-half // WARP)):
            i = b.add(t.lane, WARP * j)
            ok = b.cmp("lt", i, half) if (j + 1) * WARP > half else None
            i = b.min(i, half - 1) if ok is not None else i
            items.append((ok, i, load(i), load(b.add(i, half)), t.load(weight_role, i),
                          t.load(weight_role, b.add(i, half)), None if rope_table else t.load("inv_freq", i)))
        if rope_table:  # computed before the waits (_rope_table)
            css = [tuple(b.load(_rope_entry(b, rope_table, i, k), "f32") for k in (0, 1)) for _, i, *_ in items]
        else:
            css = [rope_cos_sin(b, pos, freq, qt) for *_, freq in items]
        ss = b.f32(0.0)
        for ok, _, x1, x2, *_ in items:
            sq = b.fma(x2, x2, b.mul(x1, x1))
            ss = b.add(ss, sq if ok is None else b.select(ok, sq, b.f32(0.0)))
        eps = float(t.param("head_norm_eps"))
        rstd = b.div(1.0, b.sqrt(b.add(b.div(b.warp_sum(ss), float(D)), eps)))
        for (ok, i, x1, x2, w1, w2, freq), cs in zip(items, css):
            y1 = b.round_to(b.mul(w1, b.round_to(b.mul(x1, rstd), qt)), qt)
            y2 = b.round_to(b.mul(w2, b.round_to(b.mul(x2, rstd), qt)), qt)
            o1, o2 = rope_pair(b, y1, y2, pos, freq, qt, cs)
            if ok is None:
                store(i, o1)
                store(b.add(i, half), o2)
            else:
                with b.when(ok):
                    store(i, o1)
                    store(b.add(i, half), o2)

    qa, qb = [], []  # with the norm, filled in visible() once q_stage holds the heads
    if not norm:  # q's loads first: their round trip overlaps positions[r]'s
        qa = q_words(0)
        qb = q_words(8) if G > 8 else [(zero, zero)] * (D // 16)
    # positions[r]: left in shared memory by the issue function (prefetch), else from global memory
    p = b.load(b.gep(t.smem_base(), POSITION_OFFSET, "i8"), "i64", 8) if prefetch else t.load("positions", r)
    pos = b.cast(p, "f32") if norm else None  # RoPE's position
    chunk = _chunk_slots(t, C, W)
    t0 = b.mul(s, chunk)
    if norm:  # each warp a head of q, normalized and rotated into q_stage (their fragments load after the
        # barrier that follows the K / V rows' arrival); q's loads do not wait for positions[r]'s. Not in a
        # chunk past the KV length (a wide step's empty chunks, whose worker skips the waits)
        with b.when(b.cmp("lt", t0, T)):
            with b.loop(t.warp, G, t.nwarps) as h:
                q_row = b.add(b.mul(r, qcols), b.mul(b.add(head0, h), D))
                norm_rope_row(lambda e: t.load("q", b.add(q_row, e)), "q_norm_weight", pos,
                              lambda e, v: b.store(b.cast(v, qt), b.gep(q_stage, b.add(b.mul(h, D), e), qt)))
    t1 = b.min(b.min(T, b.add(t0, chunk)), b.add(p, 1))

    def stats_at(h, k: int, split=s):
        return b.add(b.mul(b.add(b.mul(b.add(b.mul(r, H), b.add(head0, h)), S), split), 2), k)

    def out_at(h, d, split=s):
        return b.add(b.mul(b.add(b.mul(b.add(b.mul(r, H), b.add(head0, h)), S), split), D), d)

    def empty(split=s):
        def one(i):
            t.store("partial_out", out_at(b.div(i, D), b.rem(i, D), split), b.f32(0.0))
        t.thread_loop(G * D, one)

        def stat(h):
            t.store("partial_stats", stats_at(h, 0, split), b.round_to(b.f32(float("-inf")), mt))
            t.store("partial_stats", stats_at(h, 1, split), b.f32(0.0))
        t.thread_loop(G, stat)

    def visible():
        kv_row0 = b.mul(b.add(b.mul(r, KVH), g), T)  # slot 0 of this (row, kv head), in rows of D
        p_row = b.mul(b.add(kv_row0, p), D)  # slot p's K / V row
        if vbar is not None:  # V rows of slots t0 .. p - 1, needed only after the scores
            with b.when(b.cmp("eq", t.tid, 0)):
                _copy_rows(t, "v_cache", vs, vbar, b.sub(t1, t0), p, t0, kv_row0, D, eb)
        if norm:
            def finish_k_row(to_smem: bool) -> None:
                """The last warp normalizes and rotates slot p's K row (appended raw this step; volatile
                loads: no stale line of it stays in L1) and writes it back to the cache (and the K stage)."""
                def store(e, v):
                    t.store("k_cache", b.add(p_row, e), v)
                    if to_smem:
                        b.store(b.cast(v, kt), b.gep(ks, b.add(b.mul(b.sub(p, t0), D), e), kt))
                with b.when(b.land(b.cmp("lt", p, t1), b.cmp("eq", t.warp, b.sub(t.nwarps, 1)))):
                    def raw(e):
                        return b.cast(b.load(t.elem_ptr("k_cache", b.add(p_row, e)), kt, volatile=True), "f32")
                    norm_rope_row(raw, "k_norm_weight", pos, store)
        if prefetch:  # slot p (appended this step) from global memory, its copies in flight with q's loads
            pieces = D * eb // 16
            copied = 1 if norm else 2  # V's row (the normalized K row is written by finish_k_row), and K's

            def slot_p(i):
                which, piece = b.div(i, pieces), b.rem(i, pieces)
                which = b.add(which, 2 - copied)  # 0: K, 1: V
                elems = b.mul(piece, 16 // eb)
                at = b.add(p_row, elems)
                src = b.select(b.cmp("eq", which, 0), t.elem_ptr("k_cache", at), t.elem_ptr("v_cache", at))
                dst = b.gep(b.select(b.cmp("eq", which, 0), ks, vs), b.add(b.mul(b.sub(p, t0), D), elems), kt)
                b.copy_async_16(dst, src)
            with b.when(b.cmp("lt", p, t1)):  # t1 <= p + 1: p is in the chunk
                t.thread_loop(copied * pieces, slot_p)
        if norm:
            finish_k_row(prefetch)
        if prefetch:  # the earlier slots (the issue function's bulk copies, slots t0 .. p - 1) and slot p
            b.mbarrier_wait(bar, b.i32(0))
            b.wait_async()
        b.barrier()
        if norm:  # q's A fragments from the normalized heads
            qa[:] = q_words(0)
            qb[:] = q_words(8) if G > 8 else [(zero, zero)] * (D // 16)
        t.phase(0)  # K and V in shared memory (q's loads issued)
        ninf = b.f32(float("-inf"))
        last = b.sub(t1, 1)
        rows = 2 if G > 8 else 1  # head rows a lane keeps: quad (and quad + 8)
        tiles_n = STEP // 8
        my_stage = b.gep(v_stage, b.mul(t.warp, STEP * D * eb), "i8")
        per_row = D * eb // 16  # 16-byte chunks per K / V row
        swizzle = min(8, per_row & -per_row) - 1  # XOR within the row: a power of two dividing per_row

        def k_words(slot: V):
            if prefetch:
                at = b.add(b.mul(b.sub(slot, t0), D), lane_e)
                return row_words(lambda e: b.gep(ks, b.add(at, e), kt))
            at = b.add(b.mul(b.add(kv_row0, slot), D), lane_e)
            return row_words(lambda e: t.elem_ptr("k_cache", b.add(at, e)))

        def one_step(s0, carried):
            """The warp's STEP slots from s0: scores on the tensor cores, the running max and weights per
            head row, then the weighted V rows (P in two 16-bit parts, so P @ V keeps f32-like precision)."""
            m, l, o = carried[:rows], carried[rows:2 * rows], list(carried[2 * rows:])
            # scores of 8-slot tile n: lane holds heads quad (+ 8) at slots s0 + 8 n + 2 (l%4) + {0, 1}
            tiles = []
            for n in range(tiles_n):
                kw = k_words(b.min(b.add(s0, b.add(quad, 8 * n)), last))  # B: K row of slot quad (clamped)
                acc = [b.f32(0.0)] * 4
                for (a0, a2), (a1, a3), (b0, b1) in zip(qa, qb, kw):
                    acc = b.mma_16x8x16([a0, a1, a2, a3], [b0, b1], acc, kt)
                tiles.append(acc)
            ok = [[b.cmp("lt", b.add(s0, b.add(b.mul(pair, 2), 8 * n + c)), t1) for c in range(2)]
                  for n in range(tiles_n)]
            m_new, alpha, pv = [], [], []
            for row in range(rows):
                z = [[b.select(ok[n][c], b.mul(b.f32(scale), tiles[n][2 * row + c]), ninf) for c in range(2)]
                     for n in range(tiles_n)]
                top = ninf
                for zn in z:
                    for x in zn:
                        top = b.max(top, x)
                top = b.warp_reduce(top, b.max, QUAD)  # the quad's other lanes hold the head's other slots
                mn = b.max(m[row], top)
                seen = b.cmp("ne", mn, ninf)  # some slot of the warp visible so far
                alpha.append(b.select(seen, b.exp(b.sub(m[row], mn)), b.f32(1.0)))  # exp(-inf) = 0 at first
                m_new.append(mn)
                pv.append([[b.select(ok[n][c], b.exp(b.sub(z[n][c], mn)), b.f32(0.0)) for c in range(2)]
                           for n in range(tiles_n)])
            l = [b.fma(l[row], alpha[row], _sum_all(b, pv[row])) for row in range(rows)]
            # A fragments of P (rows quad, quad + 8; k = slots 2 (l%4) + {0, 1}, + 8), in high and low parts
            a_hi, a_lo = [], []
            for n in range(tiles_n):
                for row in range(2):
                    if row < rows:
                        x0, x1 = pv[row][n]
                        h0, h1 = b.round_to(x0, vt), b.round_to(x1, vt)
                        a_hi.append(b.pack_16(h0, h1, vt))
                        a_lo.append(b.pack_16(b.sub(x0, h0), b.sub(x1, h1), vt))
                    else:
                        a_hi.append(zero)
                        a_lo.append(zero)
            # o's C fragments: registers 0, 1 are head row quad, 2, 3 row quad + 8
            o = [b.mul(x, alpha[0]) if k % 4 < 2 else (b.mul(x, alpha[1]) if rows == 2 else x)
                 for k, x in enumerate(o)]
            # the warp stages its step's V rows (past the chunk: the last slot again, weighted 0) with their
            # 16-byte chunks swizzled (chunk c of row j at c ^ (j % 8) where rows hold 8k chunks), so
            # ldmatrix's eight rows of one matrix hit eight different banks (rows 128k bytes apart)
            if vbar is not None:
                b.mbarrier_wait(vbar, b.i32(0))
            b.warp_sync()  # the previous step's ldmatrix is done with the stage
            with b.loop(t.lane, STEP * per_row, WARP) as i:
                j, c = b.div(i, per_row), b.rem(i, per_row)
                slot = b.min(b.add(s0, j), last)
                if prefetch:
                    src = b.gep(vs, b.add(b.mul(b.sub(slot, t0), D), b.mul(c, 16 // eb)), vt)
                else:
                    src = t.elem_ptr("v_cache", b.add(b.mul(b.add(kv_row0, slot), D), b.mul(c, 16 // eb)))
                dst = b.add(b.mul(j, per_row), b.xor(c, b.and_(j, swizzle)))
                b.store(b.load(src, "vector<4xi32>", 16), b.gep(my_stage, b.mul(dst, 16), "i8"))
            b.warp_sync()
            # ldmatrix: lane 8i + j gives row j of matrix i; matrices 0, 2 hold slots 0-7, 1, 3 slots 8-15
            mat, mrow = b.shr(t.lane, 3), b.and_(t.lane, 7)
            v_row = b.add(b.mul(b.and_(mat, 1), 8), mrow)
            for d2 in range(D // 16):  # two 8-column tiles of D per ldmatrix (matrices 0, 1; then 2, 3)
                c = b.add(b.shr(mat, 1), 2 * d2)
                at = b.add(b.mul(v_row, per_row), b.xor(c, b.and_(v_row, swizzle)))
                vr = b.ldmatrix_x4_trans(b.gep(my_stage, b.mul(at, 16), "i8"))
                for half in range(2):
                    k = (2 * d2 + half) * 4
                    frag = o[k:k + 4]
                    frag = b.mma_16x8x16(a_hi, vr[2 * half:2 * half + 2], frag, vt)
                    o[k:k + 4] = b.mma_16x8x16(a_lo, vr[2 * half:2 * half + 2], frag, vt)
            return m_new + l + o

        init = [ninf] * rows + [b.f32(0.0)] * rows + [b.f32(0.0)] * (D // 8 * 4)
        out = b.for_(b.add(t0, b.mul(t.warp, STEP)), t1, b.mul(t.nwarps, STEP), init, one_step)
        m, l, o = out[:rows], out[rows:2 * rows], out[2 * rows:]
        if vbar is not None:  # landed before the tile ends, even where a warp had no step
            b.mbarrier_wait(vbar, b.i32(0))
        l = [b.warp_reduce(x, b.add, QUAD) for x in l]

        # every warp's (o, m, l) -> red; a lane holds o[quad (+ 8)][8 n + 2 (l%4) + {0, 1}]
        wbase = b.mul(t.warp, G * (D + 2))
        for row in range(rows):
            head = b.add(quad, 8 * row)
            with b.when(b.cmp("lt", head, G)):
                for n in range(D // 8):
                    at = b.add(wbase, b.add(b.mul(head, D), b.add(8 * n, b.mul(pair, 2))))
                    b.store(b.vec_from([o[4 * n + 2 * row], o[4 * n + 2 * row + 1]]), b.gep(red, at, "f32"), 8)
                with b.when(b.cmp("eq", pair, 0)):
                    b.store(m[row], b.gep(red, b.add(wbase, b.add(G * D, head)), "f32"))
                    b.store(l[row], b.gep(red, b.add(wbase, b.add(G * D + G, head)), "f32"))
        b.barrier()
        t.phase(1)  # every warp's scores, weights and weighted values

        # per head: the largest m over the warps, each warp's weight exp(m_w - M) (0 for a warp that saw no
        # slot) into fac, and the weighted l; then every output element sums the warps' weighted o
        def head_stats(h):
            for k, v in enumerate(_head_values(t, red, fac, h, mt)):
                if publish:  # published for the group's merge, in place of partial_stats (read by no task)
                    b.store(_tagged(t, v), _published_at(t, H, KVH, G, D, s, h, k), 8, relaxed=True)
                else:
                    t.store("partial_stats", stats_at(h, k), v)
        t.thread_loop(G, head_stats)
        b.barrier()

        def out_elem(i):
            v = _out_value(t, red, fac, i, ot)
            if publish:  # in place of partial_out
                b.store(_tagged(t, v), _published_at(t, H, KVH, G, D, s, b.div(i, D), b.add(b.rem(i, D), 2)), 8,
                        relaxed=True)
            else:
                t.store("partial_out", out_at(b.div(i, D), b.rem(i, D)), v)
        t.thread_loop(G * D, out_elem)
        t.phase(2)  # outputs stored

    # an empty chunk's partials: where the group merges in its splits no task reads them (the merge reads
    # the published words of the splits up to the one holding positions[r], whose chunks are not empty)
    b.if_(b.cmp("gt", t1, t0), [], visible, None if publish else empty)
    if partner is not None:  # the empty chunk this tile stands in for: its outputs (the worker skips it)
        covers, other = partner
        with b.when(covers):
            empty(other)
    if publish:  # block-uniform: the split holding positions[r] merges slots 0 .. positions[r]'s splits
        holder = b.land(b.cmp("le", t0, p), b.cmp("lt", p, b.add(t0, chunk)))
        with b.when(holder):
            _merge_published(t)
    if W and grid_companions:  # a wide step's chunks past the KV length are skipped: a tile of a chunk
        # below stands in for each
        for signal_map in t.task.signal_maps:
            if any(mlir.uses_dim(expr, 2) for expr in signal_map.results):
                t.fail("a wide-chunk attention grid must signal per (row, kv group), not per split: a tile "
                       "signals for the empty split it stands in for")
        idle = type(t)(t.task, t.program, t.buffer_index, t.symbol_index, weight_stream=t.weight_stream,
                       ring_bytes=t.ring_bytes)
        _, _, s_idle = idle.coords
        past = idle.b.cmp("ge", idle.b.mul(s_idle, _chunk_slots(idle, C, W)), idle.shape("k_cache")[2])
        t.companions.append(idle.function_text(suffix="_idle", result=past))
        count = type(t)(t.task, t.program, t.buffer_index, t.symbol_index)
        covers, _ = _empty_partner(count, C, W)
        t.companions.append(count.function_text(suffix="_signal_count", result=_tiles_counted(count.b, covers)))
    if prefetch:
        with b.when(b.cmp("eq", t.tid, 0)):
            b.mbarrier_inval(bar)  # waited on (or armed with no bytes, for an empty chunk): idle
            if vbar is not None:
                b.mbarrier_inval(vbar)  # waited on, or never armed (an empty chunk)
        t.ring_end = STREAM_SHARED_BYTES
    if prefetch and grid_companions:
        issue = type(t)(t.task, t.program, t.buffer_index, t.symbol_index, weight_stream=True, ring_bytes=t.ring_bytes)
        p_issue = _issue_kv_prefetch(issue, KVH, D, C, W)
        if rope_table is not None:
            _rope_table(issue, p_issue, D, qt, t.smem_offsets[rope_table.name])
        t.companions.append(issue.function_text(suffix="_issue"))


def _empty_partner(t: Tile, C: int, W: int) -> tuple[V, V]:
    """(whether this tile stands in for an empty chunk, that chunk's split): at a wide step the chunks
    E = ceildiv(T, 2 C) .. S - 1 hold no slot, and split s < S - E writes split s + E's empty outputs and
    signals (and arrives) for it, so its worker skips it (S <= 2 E: at most one chunk per tile)."""
    b = t.b
    s = t.coords[2]
    T, S = t.shape("k_cache")[2], t.shape("partial_out")[2]
    E = b.div(b.add(T, b.i64(2 * C - 1)), b.i64(2 * C))
    other = b.add(s, E)
    rows = t.shape("q")[0]
    wide = b.cmp("ge", b.i64(rows) if isinstance(rows, int) else rows, b.i64(W))
    return b.land(wide, b.cmp("lt", other, S)), other


def _tiles_counted(b, covers: V) -> V:
    """The tiles a tile signals or arrives for: itself, and the empty chunk it stands in for if `covers`."""
    return b.select(covers, b.i64(2), b.i64(1))


def _sum_all(b, pv: list[list[V]]) -> V:
    total = b.f32(0.0)
    for pair_ in pv:
        for x in pair_:
            total = b.add(total, x)
    return total


def _chunk_slots(t: Tile, C: int, W: int):
    """The slots a chunk holds this step: C, or 2 C when the step has W (> 0) rows or more."""
    if not W:
        return C
    rows = t.shape("q")[0]
    if isinstance(rows, int):
        return 2 * C if rows >= W else C
    b = t.b
    return b.select(b.cmp("ge", rows, W), b.i64(2 * C), b.i64(C))


def _issue_kv_prefetch(t: Tile, KVH: int, D: int, C: int, W: int) -> V:
    """The attention_partial tile's issue function (every thread calls it before the tile's waits; thread 0
    acts): leave positions[r] at POSITION_OFFSET, init the ring's first mbarrier and bulk-copy the K and V
    rows of the chunk's slots before positions[r] into the ring (K rows, then V rows 2 * C rows further
    with wide chunks). Returns positions[r]."""
    b = t.b
    r, g, s = t.coords
    _, _, T, _ = t.shape("k_cache")
    eb = ELEM_BYTES[t.etype("k_cache")]
    p = t.load("positions", r)
    chunk = _chunk_slots(t, C, W)
    cmax = 2 * C if W else C
    t0 = b.mul(s, chunk)
    old = b.max(b.sub(b.min(b.min(b.min(T, b.add(t0, chunk)), b.add(p, 1)), p), t0), 0)  # slots t0 .. p - 1
    base = t.smem_base()
    bar = b.gep(base, BARRIER_OFFSET, "i8")
    with b.when(b.cmp("eq", t.tid, 0)):
        b.store(p, b.gep(base, POSITION_OFFSET, "i8"), 8)  # for the tile (POSITION_OFFSET)
        b.mbarrier_init(bar, 1)
        v_after = _v_after_waits(C, D, eb)
        if v_after:  # armed by the tile, after its waits
            b.mbarrier_init(b.gep(base, V_BARRIER_OFFSET, "i8"), 1)
        b.fence_proxy_async()  # the bulk copies see the initialized barrier (and the ring is free)
        nbytes = b.cast(b.mul(old, D * eb), "i32")
        b.mbarrier_expect_tx(bar, nbytes if v_after else b.mul(nbytes, 2))
        with b.when(b.cmp("gt", old, 0)):
            # evict-first, as the weights: a step reads each K and V row once, and the caches (117 MB for
            # Qwen3-0.6B at batch 1, context 1024) would push the code and the reused data out of L2
            policy = b.l2_evict_first()
            at = b.mul(b.add(b.mul(b.add(b.mul(r, KVH), g), T), t0), D)
            b.copy_bulk(b.gep(base, RING_OFFSET, "i8"), t.elem_ptr("k_cache", at), nbytes, bar, policy)
            if not v_after:
                b.copy_bulk(b.gep(base, RING_OFFSET + cmax * D * eb, "i8"), t.elem_ptr("v_cache", at), nbytes, bar,
                            policy)
    return p


def _v_after_waits(C: int, D: int, eb: int) -> bool:
    """Whether a prefetching tile copies its V rows after its waits (K rows of V_AFTER_WAITS_BYTES or more)."""
    return C * D * eb >= V_AFTER_WAITS_BYTES


def _copy_rows(t: Tile, role: str, dst: V, bar: V, visible: V, p: V, t0: V, kv_row0: V, D: int, eb: int) -> None:
    """Thread 0: arm `bar` and bulk-copy the `role` rows of slots t0 .. p - 1 (those of the chunk's
    `visible` slots written in earlier steps) to `dst`, evict-first."""
    b = t.b
    old = b.max(b.min(visible, b.sub(p, t0)), 0)
    nbytes = b.cast(b.mul(old, D * eb), "i32")
    b.fence_proxy_async()  # the copy's destination is free of the earlier tiles' generic accesses
    b.mbarrier_expect_tx(bar, nbytes)
    with b.when(b.cmp("gt", old, 0)):
        b.copy_bulk(dst, t.elem_ptr(role, b.mul(b.add(kv_row0, t0), D)), nbytes, bar, b.l2_evict_first())


def _rope_table(t: Tile, p: V, D: int, qt: str, offset: int) -> None:
    """The issue function's RoPE table: (cos, sin) at position p (positions[r]) of each rotate-half pair
    i < D / 2, rounded as rope_cos_sin rounds them, as f32 pairs at `offset` in shared memory. Warp 0 skips it (in
    a block of more than one warp), so thread 0 goes on to the tile's waits; the tile reads the table
    after the barrier that follows them. The f64 cos and sin then leave the tile's path after its waits
    (Qwen3-0.6B: ~2-4% of a step)."""
    b = t.b
    table = b.gep(t.smem_base(), offset, "i8")
    first = WARP if t.block_max > WARP else 0  # the first thread that computes
    with b.when(b.cmp("ge", t.tid, first)):
        pos = b.cast(p, "f32")
        with b.loop(b.sub(t.tid, first), D // 2, b.sub(t.bd, first)) as i:
            for k, value in enumerate(rope_cos_sin(b, pos, t.load("inv_freq", i), qt)):
                b.store(value, _rope_entry(b, table, i, k), 4)


def _rope_entry(b, table: V, i: V, k: int) -> V:
    """Where the RoPE table keeps pair i's cos (k = 0) or sin (k = 1)."""
    return b.gep(table, b.add(b.mul(i, 2), k), "f32")


def emit_attention_merge(t: Tile) -> None:
    H, KVH, G, D = _attention_params(t)
    r, g = t.coords[0], t.coords[1]
    _, ph, S, pd = t.shape("partial_out")
    if ph != H or pd != D:
        t.fail(f"partial_out must be [rows, {H}, splits, {D}]")
    _merge_group(t, r, g, None, MERGE_UNROLL)


def _red_at(t: Tile, red: V, w, k) -> V:
    """Warp w's f32 k of the per-warp (o of every head, m, l) in shared memory."""
    _, _, G, D = _attention_params(t)
    return t.b.gep(red, t.b.add(w * G * (D + 2), k), "f32")


def _head_values(t: Tile, red: V, fac: V, h, mt: str) -> tuple[V, V]:
    """Head h's (m, l) merged over the warps, rounded to mt; each warp's weight exp(m_w - m) (0 for a warp
    that saw no slot) into fac."""
    b = t.b
    _, _, G, D = _attention_params(t)
    warps = t.block_max // WARP
    ninf = b.f32(float("-inf"))
    live = [b.cmp("lt", w, t.nwarps) for w in range(warps)]
    ms = [b.select(live[w], b.load(_red_at(t, red, w, b.add(G * D, h)), "f32"), ninf) for w in range(warps)]
    top = ms[0]
    for x in ms[1:]:
        top = b.max(top, x)
    lv = b.f32(0.0)
    for w in range(warps):
        f = b.select(b.cmp("ne", ms[w], ninf), b.exp(b.sub(ms[w], top)), b.f32(0.0))
        b.store(f, b.gep(fac, b.add(w * G, h), "f32"))
        lv = b.fma(f, b.load(_red_at(t, red, w, b.add(G * D + G, h)), "f32"), lv)
    return b.round_to(top, mt), b.round_to(lv, mt)


def _out_value(t: Tile, red: V, fac: V, i, ot: str) -> V:
    """Output element i (head i / D, element i % D) merged over the warps by fac, rounded to ot."""
    b = t.b
    _, _, G, D = _attention_params(t)
    h, d = b.div(i, D), b.rem(i, D)
    ov = b.f32(0.0)
    for w in range(t.block_max // WARP):  # fac is 0 for the warps past nwarps
        ov = b.fma(b.load(b.gep(fac, b.add(w * G, h), "f32"), "f32"),
                   b.load(_red_at(t, red, w, b.add(b.mul(h, D), d)), "f32"), ov)
    return b.round_to(ov, ot)


def merge_arrival_words(params: dict, grid_extents: tuple[int, ...]) -> int:
    """Words an attention_partial grid whose splits merge (it writes out) publishes its partials in: per
    (row, kv group, split) at the largest sizes (one row only, with merge_one_row), the split's (m, l) and o
    of each head of the group (_published_at)."""
    if "out" not in params.get("write_roles", ()):
        return 0
    heads, kv_heads, d = int(params["num_heads"]), int(params["num_kv_heads"]), int(params["head_dim"])
    rows = 1 if params.get("merge_one_row") else int(grid_extents[0])
    return rows * int(grid_extents[1]) * int(grid_extents[2]) * (heads // kv_heads) * (2 + d)


def _published_at(t: Tile, H: int, KVH: int, G: int, D: int, split: V, h, j) -> V:
    """Word j of head h's published partials in split `split` of this tile's (row, kv group): in the task's
    arrival words (zeroed once), per (row, group, split) G x (m, l, o[0 .. D)), 64 bits each."""
    b = t.b
    r, g = t.coords[0], t.coords[1]
    row = r if not t.params.get("merge_one_row") else 0
    S = t.shape("partial_out")[2]
    at = b.add(b.mul(b.add(b.mul(b.add(b.mul(row, KVH), g), S), split), G * (2 + D)), b.add(b.mul(h, 2 + D), j))
    return b.gep(t.arrival_counters(), at, "i64")


def _tagged(t: Tile, value: V) -> V:
    """A published word: the step's epoch tag in the upper half, the f32 value's bits in the lower."""
    b = t.b
    return b.or_(t.epoch_tag(), b.zext(b.bitcast(b.cast(value, "f32"), "i32"), "i64"))


def _merge_published(t: Tile) -> None:
    """The group's merge, in the split holding positions[r] (every split past it holds no visible slot):
    each thread loads the words its outputs need of splits 0 .. this one as published this step, loading
    them again until every word carries this step's tag (a 64-bit store is seen whole, so the tag vouches
    for its value: no fence or counter between the splits), then merges into out as attention_merge does.
    Out of line (a noinline companion), so its loads in flight do not count in the tile's registers."""
    b = t.b
    _call_companion(t, "_merge")
    merge = type(t)(t.task, t.program, t.buffer_index, t.symbol_index)
    mb = merge.b
    H, KVH, G, D = _attention_params(merge)
    tag = merge.epoch_tag()

    def fetch(hl, d, splits):
        ptrs = []
        for sp in splits:
            ptrs += [_published_at(merge, H, KVH, G, D, sp, hl, j) for j in (0, 1)]
            ptrs.append(_published_at(merge, H, KVH, G, D, sp, hl, mb.add(d, 2)))
        words = _load_tagged(mb, ptrs, tag)
        vals = [mb.bitcast(mb.cast(w, "i32"), "f32") for w in words]  # the lower half (trunci)
        return [tuple(vals[3 * i:3 * i + 3]) for i in range(len(splits))]
    _merge_group(merge, merge.coords[0], merge.coords[1], fetch, LAST_MERGE_UNROLL, count=mb.add(merge.coords[2], 1))
    t.companions.append(merge.function_text(suffix="_merge", noinline=True))


def _load_tagged(b, ptrs: list[V], tag: V) -> list[V]:
    """The i64 words at `ptrs`, loaded (relaxed, device scope: past L1) until the upper half of every one
    is `tag`'s."""
    def load_all():
        words = [b.load_relaxed(p, "i64", 8) for p in ptrs]
        high = b.i64(-(1 << 32))
        ok = b.const(1, "i1")
        for w in words:
            ok = b.land(ok, b.cmp("eq", b.and_(w, high), tag))
        return ok, words
    return b.repeat_until(load_all)


def _merge_group(t: Tile, r: V, g: V, fetch, unroll: int, count: V | None = None) -> None:
    """out[r, heads of kv group g] = the merge of their splits 0 .. count - 1 (default all S; etc.tiles
    attention_merge), one output element a thread, in one pass over the splits: `unroll` splits' (m, l, o)
    fetched at once, then the running max, numerator and denominator rescaled to the group's max.
    fetch(head in the group, d, splits) -> an f32 (m, l, o[d]) per split (None: from partial_stats and
    partial_out)."""
    b = t.b
    H, _, G, D = _attention_params(t)
    S = t.shape("partial_out")[2]
    count = S if count is None else count
    cols = t.shape("out")[1]
    if cols != H * D:
        t.fail(f"out has {cols} columns, num_heads * head_dim is {H * D}")
    yt = t.float_etype("out")
    t.float_etype("partial_out")
    t.float_etype("partial_stats")
    ninf = b.f32(float("-inf"))
    if fetch is None:
        def fetch(hl, d, splits):
            def load(role, at):
                return b.cast(t.load(role, at), "f32")
            base = b.mul(b.add(b.mul(r, H), b.add(b.mul(g, G), hl)), S)  # (r, h, split 0)
            return [(load("partial_stats", b.mul(b.add(base, sp), 2)), load("partial_stats", b.add(b.mul(b.add(base, sp), 2), 1)),
                     load("partial_out", b.add(b.mul(b.add(base, sp), D), d))) for sp in splits]

    def one(i):
        hl, d = b.div(i, D), b.rem(i, D)
        h = b.add(b.mul(g, G), hl)

        def splits(sp0, a):
            top, num, den = a
            # a split past count is clamped to the last one and weighs nothing
            oks = [b.cmp("lt", b.add(sp0, u), count) for u in range(unroll)]
            loads = fetch(hl, d, [b.min(b.add(sp0, u), b.sub(count, 1)) for u in range(unroll)])
            ms = [b.select(ok, m, ninf) for ok, (m, _, _) in zip(oks, loads)]  # empty chunks: -inf, weigh 0
            new = top
            for m in ms:
                new = b.max(new, m)
            alpha = b.select(b.cmp("eq", top, ninf), b.f32(0.0), b.exp(b.sub(top, new)))
            num, den = b.mul(num, alpha), b.mul(den, alpha)
            for m, (_, l, o) in zip(ms, loads):
                w = b.select(b.cmp("eq", m, ninf), b.f32(0.0), b.exp(b.sub(m, new)))
                num, den = b.fma(w, o, num), b.fma(w, l, den)
            return [new, num, den]
        _, num, den = b.for_(0, count, unroll, [ninf, b.f32(0.0), b.f32(0.0)], splits)
        t.store("out", b.add(b.mul(r, cols), b.add(b.mul(h, D), d)), b.round_to(b.div(num, den), yt))
    t.thread_loop(G * D, one)
