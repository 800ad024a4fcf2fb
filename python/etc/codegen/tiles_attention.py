"""Split-KV decode attention tiles: attention_partial (one KV chunk of one kv head group) and attention_merge.

attention_partial tile (r, g, s): the G = num_heads / num_kv_heads query heads of kv group g against the
visible slots t0 <= t < t1 = min(T, t0 + kv_chunk, positions[r] + 1) of chunk s. The chunk is walked in
sub-chunks of at most SUB_CHUNK slots with an online softmax (one sub-chunk when kv_chunk <= SUB_CHUNK,
which is then exactly the reference's max / exp / sum):
  A. scores: P threads per slot (2 when the block has two threads per slot of the sub-chunk, else 1),
     each dotting its part of the K row (16-byte loads) with the staged q heads; each part's
     scale * q_h . k_t goes to shared memory z[part].
  B. one warp per head: sums the parts into z, running max m, e = exp(z - m) written back,
     l = l * exp(m_old - m) + sum e.
  C. warps split the slots, lanes split head_dim: o_h = o_h * exp(m_old - m) + sum_t e[h][t] v_t
     (f32 registers), reduced across warps in shared memory at the end. The sub-chunk's V rows are
     copied to shared memory with cp.async before phase A, so their loads overlap A and B and phase C
     reads shared memory instead of paying one global latency per slot.
Outputs partial_out[r, h, s, :] = o (unnormalized), partial_stats[r, h, s, :] = (m, l); a chunk with no
visible slot gives (-inf, 0) and o = 0.

Wide chunks (param wide_rows > 0): at a step of R >= wide_rows rows the chunk is 2 * kv_chunk slots (so
the chunks past ceildiv(T, 2 * kv_chunk) are empty: they store (-inf, 0) and o = 0 at once), walked in
sub-chunks of at most kv_chunk; the KV prefetch then sizes the ring for 2 * kv_chunk slots. The companion
`@<tile>_idle` (-> i1) tells the worker that a chunk starts past the KV length, so it skips the waits.

KV prefetch (with weight streams, kv_chunk <= SUB_CHUNK and the K and V rows of the longest chunk fitting
the stream's ring; a wide chunk's sub-chunks read the ring from their first slot on): the
slots before positions[r] were written in earlier steps, so an issue function, run by the worker before
the tile's waits, bulk-copies them (K and V rows: one copy each) into shared memory on an mbarrier. After
the waits the tile copies only slot positions[r] (appended this step) and reads K and V from shared
memory, each thread starting its row at a different 16-byte chunk (no bank conflicts). The staged q is
laid out as two planes (elements 0-3 and 4-7 of each 8-element chunk), so the threads of a quarter warp,
reading 8 different chunks, hit distinct banks there too.
"""
from __future__ import annotations

import math

from etc.codegen.tile_library import WARP, Tile
from etc.codegen.tiles_builder import ELEM_BYTES, V
from etc.codegen.weight_stream import BARRIER_OFFSET, RING_BYTES, RING_OFFSET, STREAM_SHARED_BYTES

MERGE_UNROLL = 4  # splits a merge thread loads at once
SUB_CHUNK = 256  # slots scored at a time (shared memory: G * SUB_CHUNK f32)
REDUCE_BYTES = 16 * 1024  # shared memory for the cross-warp sum of o


def _attention_params(t: Tile) -> tuple[int, int, int, int]:
    heads, kv_heads, d = int(t.param("num_heads")), int(t.param("num_kv_heads")), int(t.param("head_dim"))
    if heads % kv_heads:
        t.fail(f"num_heads {heads} is not a multiple of num_kv_heads {kv_heads}")
    return heads, kv_heads, heads // kv_heads, d


def emit_attention_partial(t: Tile) -> None:
    b = t.b
    H, KVH, G, D = _attention_params(t)
    C = int(t.param("kv_chunk"))
    scale = float(t.params.get("scale", 1.0 / math.sqrt(D)))
    if D % 8 or (D > 64 and D % 32):
        t.fail(f"head_dim {D} must be a multiple of 8 (and of 32 above 64)")
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
    for role in ("q", "k_cache", "v_cache"):
        t.float_etype(role)
    ot, mt = t.float_etype("partial_out"), t.float_etype("partial_stats")
    SC = min(C, SUB_CHUNK)
    E = max(2, D // WARP)  # head_dim elements per lane in phase C
    lanes = D // E
    NG_MAX = max(1, min(t.block_max // WARP, REDUCE_BYTES // (G * D * 4)))
    P = 2 if t.block_max >= 2 * SC and (D // 8) % 2 == 0 else 1  # threads per slot in phase A
    qs = t.smem(G * D * 4)
    z = t.smem(P * G * SC * 4)
    state = t.smem(3 * G * 4)  # m, l, alpha per head
    red = t.smem(NG_MAX * G * D * 4)
    vt, kt = t.etype("v_cache"), t.etype("k_cache")
    prefetch = t.weight_stream and C <= SUB_CHUNK and ELEM_BYTES[kt] == ELEM_BYTES[vt] \
        and 2 * CMAX * D * ELEM_BYTES[kt] <= RING_BYTES and t.shared_bytes + SC * D * ELEM_BYTES[vt] <= RING_OFFSET
    if prefetch:  # K and V rows in the stream's ring, landing on its first barrier
        base = t.smem_base()
        with b.at_entry():
            ks = b.gep(base, RING_OFFSET, "i8")
            vs = b.gep(base, RING_OFFSET + CMAX * D * ELEM_BYTES[kt], "i8")
            bar = b.gep(base, BARRIER_OFFSET, "i8")
    else:
        vs = t.smem(SC * D * ELEM_BYTES[vt])  # the sub-chunk's V rows

    def q_at(i):
        """Where q element i (head i // D) lives in qs: per head, the planes of elements 0-3 and 4-7 of
        each 8-element chunk, each plane D / 2 floats."""
        h, d = b.div(i, D), b.rem(i, D)
        w = b.rem(d, 8)
        return b.add(b.add(b.mul(h, D), b.mul(b.div(w, 4), D // 2)), b.add(b.mul(b.div(d, 8), 4), b.rem(w, 4)))

    def st(kind: int, h) -> V:
        return b.gep(state, b.add(b.mul(kind, G), h) if isinstance(h, V) else kind * G + h, "f32")

    p = t.load("positions", r)
    chunk = _chunk_slots(t, C, W)
    t0 = b.mul(s, chunk)
    t1 = b.min(b.min(T, b.add(t0, chunk)), b.add(p, 1))
    head0 = b.mul(g, G)

    def stats_at(h, k: int):
        return b.add(b.mul(b.add(b.mul(b.add(b.mul(r, H), b.add(head0, h)), S), s), 2), k)

    def out_at(h, d):
        return b.add(b.mul(b.add(b.mul(b.add(b.mul(r, H), b.add(head0, h)), S), s), D), d)

    def empty():
        def one(i):
            t.store("partial_out", out_at(b.div(i, D), b.rem(i, D)), b.f32(0.0))
        t.thread_loop(G * D, one)

        def stat(h):
            t.store("partial_stats", stats_at(h, 0), b.round_to(b.f32(float("-inf")), mt))
            t.store("partial_stats", stats_at(h, 1), b.f32(0.0))
        t.thread_loop(G, stat)

    def visible():
        kv_row0 = b.mul(b.add(b.mul(r, KVH), g), T)  # slot 0 of this (row, kv head), in rows of D
        if prefetch:  # slot p (appended this step) from global memory, its copies in flight with q's loads
            pieces = D * ELEM_BYTES[kt] // 16

            def slot_p(i):
                which, piece = b.div(i, pieces), b.rem(i, pieces)
                elems = b.mul(piece, 16 // ELEM_BYTES[kt])
                at = b.add(b.mul(b.add(kv_row0, p), D), elems)
                src = b.select(b.cmp("eq", which, 0), t.elem_ptr("k_cache", at), t.elem_ptr("v_cache", at))
                dst = b.gep(b.select(b.cmp("eq", which, 0), ks, vs), b.add(b.mul(b.sub(p, t0), D), elems), kt)
                b.copy_async_16(dst, src)
            with b.when(b.cmp("lt", p, t1)):  # t1 <= p + 1: p is in the chunk
                t.thread_loop(2 * pieces, slot_p)
        # q heads of the group -> shared memory (f32), running state m = -inf, l = 0
        qrow = b.add(b.mul(r, qcols), b.mul(head0, D))
        t.thread_loop(G * D, lambda i: b.store(t.load("q", b.add(qrow, i)), b.gep(qs, q_at(i), "f32")))

        def init(h):
            b.store(b.f32(float("-inf")), st(0, h))
            b.store(b.f32(0.0), st(1, h))
        t.thread_loop(G, init)
        if prefetch:  # the earlier slots (the issue function's bulk copies, slots t0 .. p - 1) and slot p
            b.mbarrier_wait(bar, b.i32(0))
            b.wait_async()
        b.barrier()
        t.phase(0)  # q staged
        ngroups = b.min(t.nwarps, NG_MAX)
        active = b.land(b.cmp("lt", t.warp, ngroups), b.cmp("lt", t.lane, lanes))
        with b.at_entry():
            lane_e = b.mul(t.lane, E)

        def sub_chunk(u0, acc):
            n = b.min(b.sub(t1, u0), SC)
            per_row = D * ELEM_BYTES[vt] // 16  # 16-byte pieces per V row

            def stage_v(i):
                slot, piece = b.div(i, per_row), b.rem(i, per_row)
                elems = b.mul(piece, 16 // ELEM_BYTES[vt])
                src = t.elem_ptr("v_cache", b.add(b.mul(b.add(kv_row0, b.add(u0, slot)), D), elems))
                b.copy_async_16(b.gep(vs, b.add(b.mul(slot, D), elems), vt), src)
            if not prefetch:
                t.thread_loop(b.mul(n, per_row), stage_v)

            # A. scores: P threads per slot (adjacent lanes), each its part of the row's 16-byte chunks
            cpp = D // 8 // P  # chunks per part

            def score(j):
                i, part = b.div(j, P), b.rem(j, P)
                krow = b.mul(b.add(kv_row0, b.add(u0, i)), D)
                dots = [b.f32(0.0)] * G
                if prefetch:
                    # from chunk i (part 1: i + 4) on: a quarter warp's 8 lanes read 8 distinct chunks mod 8
                    rot = b.add(i, b.mul(part, 8 // P))
                    first = b.mul(part, cpp)
                    chunks = [b.add(first, b.rem(b.add(rot, c), cpp)) for c in range(cpp)]
                    row = b.mul(b.add(b.sub(u0, t0), i), D)  # the ring holds the chunk's slots from t0
                    k_vecs = [b.load(b.gep(ks, b.add(row, b.mul(k, 8)), kt), f"vector<8x{kt}>", 16)
                              for k in chunks]
                else:
                    chunks = [b.add(b.mul(part, cpp), c) for c in range(cpp)]
                    k_vecs = [t.load_vec("k_cache", b.add(krow, b.mul(k, 8))) for k in chunks]  # all in flight
                for c, k in enumerate(chunks):
                    kv = b.unpack_f32(k_vecs[c])
                    for h in range(G):
                        qv = []
                        for plane in range(2):  # volatile: not hoisted out of the slot loop into registers
                            at = b.add(b.mul(k, 4), h * D + plane * D // 2)
                            q4 = b.load(b.gep(qs, at, "f32"), "vector<4xf32>", 16, volatile=True)
                            qv += [b.vec_extract(q4, e) for e in range(4)]
                        for e in range(8):
                            dots[h] = b.fma(qv[e], kv[e], dots[h])
                for h in range(G):
                    at = b.add(b.add(b.mul(part, G * SC), i), h * SC)
                    b.store(b.mul(b.f32(scale), dots[h]), b.gep(z, at, "f32"))
            t.thread_loop(b.mul(n, P), score)
            b.barrier()

            # B. online softmax statistics, one warp per head (first summing the parts' scores)
            with b.loop(t.warp, G, t.nwarps) as h:
                zh = b.gep(z, b.mul(h, SC), "f32")

                def top(i, a):
                    zi = b.load(b.gep(zh, i, "f32"), "f32")
                    for part in range(1, P):
                        zi = b.add(zi, b.load(b.gep(zh, b.add(i, part * G * SC), "f32"), "f32"))
                    if P > 1:
                        b.store(zi, b.gep(zh, i, "f32"))
                    return [b.max(a[0], zi)]
                (mx,) = b.for_(t.lane, n, WARP, [b.f32(float("-inf"))], top)
                m_old, l_old = b.load(st(0, h), "f32"), b.load(st(1, h), "f32")
                m_new = b.max(m_old, b.warp_max(mx))

                def ex(i, a):
                    e = b.exp(b.sub(b.load(b.gep(zh, i, "f32"), "f32"), m_new))
                    b.store(e, b.gep(zh, i, "f32"))
                    return [b.add(a[0], e)]
                (sm,) = b.for_(t.lane, n, WARP, [b.f32(0.0)], ex)
                alpha = b.exp(b.sub(m_old, m_new))  # exp(-inf) = 0 on the first sub-chunk
                l_new = b.add(b.mul(l_old, alpha), b.warp_sum(sm))
                b.warp_sync()  # every lane has read the old state
                with b.when(b.cmp("eq", t.lane, 0)):
                    b.store(m_new, st(0, h))
                    b.store(l_new, st(1, h))
                    b.store(alpha, st(2, h))
            b.barrier()

            # C. o = o * alpha + e @ v: warps split the slots, lanes split head_dim
            b.wait_async()
            b.barrier()
            alphas = [b.load(st(2, h), "f32") for h in range(G)]
            acc = [b.mul(a, alphas[k // E]) for k, a in enumerate(acc)]

            v_first = b.sub(u0, t0) if prefetch else 0  # the ring holds the chunk's V rows from t0

            def accumulate():
                def slot(i, a):
                    vv = b.unpack_f32(b.load(b.gep(vs, b.add(b.mul(b.add(v_first, i), D), lane_e), vt),
                                             f"vector<{E}x{vt}>", min(16, E * ELEM_BYTES[vt])))
                    a = list(a)
                    for h in range(G):
                        e = b.load(b.gep(z, b.add(i, h * SC), "f32"), "f32")
                        for k in range(E):
                            a[h * E + k] = b.fma(e, vv[k], a[h * E + k])
                    return a
                return b.for_(t.warp, n, ngroups, acc, slot)
            acc = b.if_(active, [a.type for a in acc], accumulate, lambda: acc)
            b.barrier()  # z and alpha are reused by the next sub-chunk
            return acc

        acc = b.for_(t0, t1, SC, [b.f32(0.0)] * (G * E), sub_chunk)
        t.phase(1)  # the chunk's scores, softmax and weighted values

        # cross-warp sum of o, then the outputs
        with b.when(active):
            for h in range(G):
                for k in range(E):
                    at = b.add(b.add(b.mul(t.warp, G * D), h * D + k), lane_e)
                    b.store(acc[h * E + k], b.gep(red, at, "f32"))
        b.barrier()

        def out(i):
            # every warp's slot loaded at once (red has NG_MAX of them; those past ngroups weigh nothing)
            parts = [b.load(b.gep(red, b.add(i, w * G * D), "f32"), "f32") for w in range(NG_MAX)]
            o = parts[0]
            for w in range(1, NG_MAX):
                o = b.add(o, b.select(b.cmp("lt", w, ngroups), parts[w], b.f32(0.0)))
            t.store("partial_out", out_at(b.div(i, D), b.rem(i, D)), b.round_to(o, ot))
        t.thread_loop(G * D, out)

        def stat(h):
            t.store("partial_stats", stats_at(h, 0), b.round_to(b.load(st(0, h), "f32"), mt))
            t.store("partial_stats", stats_at(h, 1), b.round_to(b.load(st(1, h), "f32"), mt))
        t.thread_loop(G, stat)
        t.phase(2)  # outputs stored

    b.if_(b.cmp("gt", t1, t0), [], visible, empty)
    if W:  # a wide step's chunks past the KV length read nothing: the worker need not wait for q, k, v
        idle = type(t)(t.task, t.program, t.buffer_index, t.symbol_index, weight_stream=t.weight_stream,
                       ring_bytes=t.ring_bytes)
        _, _, s_idle = idle.coords
        past = idle.b.cmp("ge", idle.b.mul(s_idle, _chunk_slots(idle, C, W)), idle.shape("k_cache")[2])
        t.companions.append(idle.function_text(suffix="_idle", result=past))
    if prefetch:
        with b.when(b.cmp("eq", t.tid, 0)):
            b.mbarrier_inval(bar)  # waited on (or armed with no bytes, for an empty chunk): idle
        t.shared_bytes = max(t.shared_bytes, STREAM_SHARED_BYTES)
        issue = type(t)(t.task, t.program, t.buffer_index, t.symbol_index, weight_stream=True, ring_bytes=t.ring_bytes)
        _issue_kv_prefetch(issue, KVH, D, C, W)
        t.companions.append(issue.function_text(suffix="_issue"))


def _chunk_slots(t: Tile, C: int, W: int):
    """The slots a chunk holds this step: C, or 2 C when the step has W (> 0) rows or more."""
    if not W:
        return C
    rows = t.shape("q")[0]
    if isinstance(rows, int):
        return 2 * C if rows >= W else C
    b = t.b
    return b.select(b.cmp("ge", rows, W), b.i64(2 * C), b.i64(C))


def _issue_kv_prefetch(t: Tile, KVH: int, D: int, C: int, W: int) -> None:
    """The attention_partial tile's issue function (every thread calls it before the tile's waits; thread 0
    acts): init the ring's first mbarrier and bulk-copy the K and V rows of the chunk's slots before
    positions[r] into the ring (K rows, then V rows 2 * C rows further with wide chunks)."""
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
        b.mbarrier_init(bar, 1)
        b.fence_proxy_async()  # the bulk copies see the initialized barrier (and the ring is free)
        nbytes = b.cast(b.mul(old, D * eb), "i32")
        b.mbarrier_expect_tx(bar, b.mul(nbytes, 2))
        with b.when(b.cmp("gt", old, 0)):
            at = b.mul(b.add(b.mul(b.add(b.mul(r, KVH), g), T), t0), D)
            b.copy_bulk(b.gep(base, RING_OFFSET, "i8"), t.elem_ptr("k_cache", at), nbytes, bar)
            b.copy_bulk(b.gep(base, RING_OFFSET + cmax * D * eb, "i8"), t.elem_ptr("v_cache", at), nbytes, bar)


def emit_attention_merge(t: Tile) -> None:
    b = t.b
    H, KVH, G, D = _attention_params(t)
    r, g = t.coords[0], t.coords[1]
    _, ph, S, pd = t.shape("partial_out")
    if ph != H or pd != D:
        t.fail(f"partial_out must be [rows, {H}, splits, {D}]")
    cols = t.shape("out")[1]
    if cols != H * D:
        t.fail(f"out has {cols} columns, num_heads * head_dim is {H * D}")
    yt = t.float_etype("out")
    t.float_etype("partial_out")
    t.float_etype("partial_stats")

    def one(i):
        h = b.add(b.mul(g, G), b.div(i, D))
        d = b.rem(i, D)
        base = b.mul(b.add(b.mul(r, H), h), S)  # (r, h, split 0)

        def m_of(sp):
            return t.load("partial_stats", b.mul(b.add(base, sp), 2))

        # MERGE_UNROLL splits per iteration, their loads issued together (a split past S is clamped to
        # the last one and weighs nothing)
        def group(sp0):
            return [(b.cmp("lt", b.add(sp0, u), S), b.min(b.add(sp0, u), b.sub(S, 1))) for u in range(MERGE_UNROLL)]

        def top_of(sp0, a):
            ms = [(ok, m_of(sp)) for ok, sp in group(sp0)]
            top = a[0]
            for ok, m in ms:
                top = b.select(ok, b.max(top, m), top)
            return [top]
        (top,) = b.for_(0, S, MERGE_UNROLL, [b.f32(float("-inf"))], top_of)

        def acc(sp0, a):
            loads = [(ok, m_of(sp), t.load("partial_stats", b.add(b.mul(b.add(base, sp), 2), 1)),
                      t.load("partial_out", b.add(b.mul(b.add(base, sp), D), d))) for ok, sp in group(sp0)]
            num, den = a
            for ok, m, l, o in loads:
                empty = b.cmp("eq", m, float("-inf"))
                w = b.select(ok, b.select(empty, 0.0, b.exp(b.sub(m, top))), 0.0)  # empty chunks weigh 0
                num, den = b.add(num, b.mul(w, o)), b.add(den, b.mul(w, l))
            return [num, den]
        num, den = b.for_(0, S, MERGE_UNROLL, [b.f32(0.0), b.f32(0.0)], acc)
        t.store("out", b.add(b.mul(r, cols), b.add(b.mul(h, D), d)), b.round_to(b.div(num, den), yt))
    t.thread_loop(G * D, one)
