"""etc.compile: a tiny model to a bundle; the PTX keeps the memory ordering the counters need."""
from __future__ import annotations

import collections
import json
import pathlib
import re

import pytest

import etc
from etc.codegen import abi, ptxas
from etc.errors import EtcError
from etc.models.decoder import CONFIGS, build_model, dynamic_shapes_for, example_inputs

LIT = pathlib.Path(__file__).parents[1] / "lit"


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    c = CONFIGS["tiny-llama"]
    out = tmp_path_factory.mktemp("bundle") / "tiny-llama"
    etc.compile(build_model("tiny-llama"), example_inputs(c, batch=2, ctx=16), dynamic_shapes=dynamic_shapes_for(c),
                num_sms=8, kv_chunk=16, out=out)
    return out


def functions(ptx: str) -> dict[str, str]:
    """PTX function name -> body text."""
    parts = re.split(r"\n(?=\.(?:visible |weak )?\.(?:entry|func) )", ptx)
    named = {}
    for part in parts:
        m = re.match(r"\.(?:visible |weak )?\.(?:entry|func)\s+(?:\([^)]*\)\s*)?(\w+)", part)
        if m:
            named[m.group(1)] = part
    return named


def test_bundle_is_self_contained_and_versioned(tiny_bundle):
    meta = json.loads((tiny_bundle / "bundle.json").read_text())
    assert meta["format"] == "etc-bundle" and meta["version"] == 1
    assert meta["num_workers"] == 8 and meta["shared_bytes"] > 0
    assert {b["role"] for b in meta["buffers"]} == {"input", "weight", "kv_cache", "workspace", "output"}
    files = sorted(p.name for p in tiny_bundle.iterdir())  # no weights
    assert files == sorted(["bundle.json", "kernel.ptx"] + (["kernel.cubin"] if ptxas.ptxas_path() else []))
    loaded = etc.load(tiny_bundle)
    assert loaded.num_workers == 8
    if ptxas.ptxas_path():  # the cubin ptxas made for the target: an sm_90a ELF image
        assert loaded.cubin[:4] == b"\x7fELF" and loaded.cubin_arch == "sm_90a"
    meta["version"] = 99
    (tiny_bundle.parent / "other").mkdir()
    (tiny_bundle.parent / "other" / "bundle.json").write_text(json.dumps(meta))
    (tiny_bundle.parent / "other" / "kernel.ptx").write_text((tiny_bundle / "kernel.ptx").read_text())
    with pytest.raises(etc.EtcError, match="version"):
        etc.load(tiny_bundle.parent / "other")


def blocks(body: str) -> list[tuple[str, list[str]]]:
    """(label, instructions) per basic block of a PTX function, in text order."""
    out = [("entry", [])]
    for line in body.splitlines():
        line = line.strip()
        if re.match(r"\$L__\w+:", line):
            out.append((line[:-1], []))
        elif line and not line.startswith("//"):
            out[-1][1].append(line)
    return out


def predecessors(bs, index: int) -> list[int]:
    label = bs[index][0]
    preds = [k for k, (_, ins) in enumerate(bs) if any(re.search(rf"bra(\.uni)?\s+{re.escape(label)};", x) for x in ins)]
    prev = bs[index - 1][1] if index > 0 else []
    if prev and not re.match(r"(bra\.uni|ret)\b", prev[-1]):
        preds.append(index - 1)  # falls through
    return preds


def writes_memory(instruction: str) -> bool:
    """A global store, or a call (a tile function that was not inlined writes global memory)."""
    return instruction.startswith(("st.global", "call"))


def fenced_on_every_path(bs, index: int) -> bool:
    """Walking back from block `index`, every path meets a release fence before any global store."""
    seen, stack = set(), predecessors(bs, index)
    if not stack:
        return False
    while stack:
        k = stack.pop()
        if k in seen:
            continue
        seen.add(k)
        ins = bs[k][1]
        fences = [j for j, x in enumerate(ins) if x.startswith("fence.acq_rel.gpu")]
        stores = [j for j, x in enumerate(ins) if writes_memory(x)]
        if fences and (not stores or fences[-1] > stores[-1]):
            continue  # this path is fenced after its last store
        if stores:
            return False
        preds = predecessors(bs, k)
        if not preds:
            return False  # reached the function entry without a fence
        stack += preds
    return True


def test_signals_are_release_ordered_and_waits_acquire(tiny_bundle):
    """Each signal (atom.add on a counter) is reached only through a block whose last global write is
    followed by fence.acq_rel.gpu: LLVM 22 drops release ordering on atomicrmw, so the fence carries it."""
    ptx = (tiny_bundle / "kernel.ptx").read_text()
    runs = {name: body for name, body in functions(ptx).items() if name.startswith("etc_run_")}
    assert runs
    waited = signals = 0
    for name, body in runs.items():
        bs = blocks(body)
        for k, (_, ins) in enumerate(bs):
            for i, line in enumerate(ins):
                if line.startswith("atom.") and ".add." in line:
                    signals += 1
                    before = ins[:i]
                    fences = [j for j, x in enumerate(before) if x.startswith("fence.acq_rel.gpu")]
                    writes = [j for j, x in enumerate(before) if writes_memory(x)]
                    if fences and (not writes or fences[-1] > writes[-1]):
                        continue  # fenced in this block, after its last write
                    assert not writes, f"{name}: a global write between the release fence and a signal"
                    assert fenced_on_every_path(bs, k), f"{name}: a path to a signal has no release fence"
            waited += sum(x.startswith("ld.acquire.gpu") for x in ins)
    assert signals > 0 and waited > 0


def test_tile_functions_stay_functions(tiny_bundle):
    """Every task's run function calls its tile function; LLVM must not inline the tile there (noinline):
    inlined, a tile's code is copied once per task that runs it, one per layer."""
    ptx = (tiny_bundle / "kernel.ptx").read_text()
    tiles = sorted(name for name in functions(ptx) if re.fullmatch(r"etc_tile_\d+", name))
    kinds = {t["kind"] for t in json.loads((tiny_bundle / "bundle.json").read_text())["tasks"]}
    assert tiles and {"embedding", "attention_partial", "linear"} <= kinds
    calls = re.findall(r"call\.uni\s+(etc_tile_\d+),", ptx)
    assert sorted(set(calls)) == tiles
    assert len(calls) > len(tiles)  # the tiny model's layers share their tile functions


def _const_array(ptx: str, name: str, width: int) -> list[int]:
    """The little-endian words of `.const ... name[N] = {bytes}` in the PTX."""
    m = re.search(rf"\.const \.align \d+ \.b8 {name}\[(\d+)\] = \{{([^}}]*)\}}", ptx)
    assert m, f"no .const {name} in the PTX"
    data = [int(x) for x in m.group(2).split(",")] + [0] * int(m.group(1))  # PTX may omit trailing zeros
    data = bytes(data[:int(m.group(1))])
    return [int.from_bytes(data[i:i + width], "little") for i in range(0, len(data), width)]


def test_layers_share_run_functions_through_task_descriptors(tiny_bundle):
    """Tasks whose run functions differ only in their buffers, counters and ids (a layer after the first
    and the one before it) share one run function; the worker loop dispatches on the task's dispatch word
    and the shared function reads the task's own integers from its descriptor in constant memory. Each
    shared task's descriptor holds its id and the first word of the counter it signals (<name>.done)."""
    meta = json.loads((tiny_bundle / "bundle.json").read_text())
    ptx = (tiny_bundle / "kernel.ptx").read_text()
    runs = [name for name in functions(ptx) if name.startswith("etc_run_")]
    assert len(runs) < len(meta["tasks"]) and any(name.startswith("etc_run_shared_") for name in runs)
    desc, dispatch = _const_array(ptx, "etc_run_desc", 4), _const_array(ptx, "etc_run_dispatch", 8)
    units: dict[int, list[int]] = {}
    for t in meta["tasks"]:
        units.setdefault(dispatch[t["id"]] >> 32, []).append(t["id"])
    starts = sorted({dispatch[i] & 0xFFFFFFFF for ids in units.values() if len(ids) > 1 for i in ids}) + [len(desc)]
    offsets = {c["name"]: c["offset"] for c in meta["counters"]}
    shared = [(t, dispatch[t["id"]] & 0xFFFFFFFF) for t in meta["tasks"] if len(units[dispatch[t["id"]] >> 32]) > 1]
    assert len(shared) >= 4
    for t, start in shared:
        words = desc[start:starts[starts.index(start) + 1]]
        assert t["id"] in words and offsets[t["name"] + ".done"] in words, (t["name"], words)
    for ids in units.values():  # one unit's tasks read descriptors of one length
        if len(ids) > 1:
            lengths = {starts[starts.index(dispatch[i] & 0xFFFFFFFF) + 1] - (dispatch[i] & 0xFFFFFFFF) for i in ids}
            assert len(lengths) == 1


@pytest.mark.skipif(ptxas.ptxas_path() is None, reason="ptxas is not installed")
def test_the_cubin_keeps_each_tile_function_once(tiny_bundle):
    """ptxas leaves every tile function a function of its own (code counted once, not per call site)."""
    sizes = ptxas.function_code_bytes((tiny_bundle / "kernel.cubin").read_bytes())
    ptx = (tiny_bundle / "kernel.ptx").read_text()
    tiles = {name for name in functions(ptx) if re.fullmatch(r"etc_tile_\d+", name)}
    assert {f"${abi.KERNEL_NAME}${t}" for t in tiles} <= set(sizes)
    assert all(sizes[f"${abi.KERNEL_NAME}${t}"] > 0 for t in tiles) and sizes[abi.KERNEL_NAME] > 0
    summary = ptxas.code_summary((tiny_bundle / "kernel.cubin").read_bytes(), abi.KERNEL_NAME)
    assert summary["code_bytes"] == sizes[abi.KERNEL_NAME] and summary["functions"] == len(sizes) - 1
    with pytest.raises(EtcError, match="not a 64-bit ELF cubin"):
        ptxas.function_code_bytes(b"// PTX text")


@pytest.mark.skipif(ptxas.ptxas_path() is None, reason="ptxas is not installed")
def test_ptxas_accepts_the_kernel_without_spills(tiny_bundle):
    report = ptxas.ptxas_report((tiny_bundle / "kernel.ptx").read_text())
    assert "etc_megakernel" in report
    assert all(r["spill_stores"] == 0 and r["spill_loads"] == 0 for r in report.values())


def test_split_head_norm_gets_arrival_counters_after_the_event_counters(tmp_path):
    """tiny-qwen3 with tile_n 16 and its q/k norm left in the projections (--no-fuse head-norm-attention)
    splits its heads of 32 (q: 4 heads, k: 2 per layer) and gathers each head's norm in the head's last
    tile: the counter words grow by one arrival counter per head, past the event counters, and the tile
    functions count arrivals with atomic adds (the workers' signals add too). With the norm in the
    attention tile (the default) or whole heads, there is nothing to gather: no arrival counters."""
    from etc.cli import compile_reference

    last = ("attention-merge-last",)  # its own arrival counters: the next test
    out = compile_reference("tiny-qwen3", tmp_path / "split", tile_n=16, num_sms=8,
                            no_fuse=("head-norm-attention",) + last)
    meta = json.loads((out / "bundle.json").read_text())
    q = next(t for t in meta["tasks"] if t["name"].endswith("layers.0.self_attn.q_proj"))
    assert q["grid"] == ["8"]
    events = max(c["offset"] + max(1, _product(c["extents"])) for c in meta["counters"])
    assert meta["counter_words"] == events + 2 * (4 + 2)
    tiles = [body for name, body in functions((out / "kernel.ptx").read_text()).items() if name.startswith("etc_tile_")]
    assert any("atom.global.add.u64" in body or "atom.add.u64" in body for body in tiles)
    for name, options in (("whole", {"no_fuse": ("head-norm-attention",) + last}),
                          ("in-attention", {"tile_n": 16, "no_fuse": last})):
        other = compile_reference("tiny-qwen3", tmp_path / name, num_sms=8, **options)
        meta = json.loads((other / "bundle.json").read_text())
        assert meta["counter_words"] == max(c["offset"] + max(1, _product(c["extents"])) for c in meta["counters"])


def test_attention_merge_gets_published_words_per_row_kv_group_and_split(tmp_path):
    """With attention-merge-last each layer's attention tiles publish their partials past the event
    counters, G x (m, l, o[0 .. D)) 64-bit words per (row, kv group, split): by default at one row only
    (merge-per-batch: more rows have a merge grid), so tiny-qwen3 (2 layers, 2 kv groups of 2 heads of 32,
    one split of its 64 slots) adds 2 * 2 * 2 * 34 words; at every batch (up to 64 rows) 64 times as many,
    with no merge grid. The words carry the step's epoch, not a count: the tiles store them as relaxed
    device-scope stores (no atomics), and the merge loads them in a loop until every one carries it. At one
    row only, the publishing code is in the noinline `_one_row` companion and the tile function proper
    (more rows) has none of it. Without the fusion there are no words."""
    from etc.cli import compile_reference

    def attention_bodies(bundle):
        meta = json.loads((bundle / "bundle.json").read_text())
        attention = {t["id"] for t in meta["tasks"] if t["kind"] == "attention_partial"}
        bodies = {name: body for name, body in functions((bundle / "kernel.ptx").read_text()).items()
                  if name.startswith("etc_tile_") and int(name.split("_")[2]) in attention}
        assert not [name for name, body in bodies.items() if re.search(r"\b(atom|red)\.", body)]
        by_suffix = collections.defaultdict(list)
        for name, body in bodies.items():
            by_suffix[re.sub(r"^etc_tile_\d+", "", name)].append(body)
        return by_suffix

    publishes = re.compile(r"st\.relaxed\.gpu\.global\.[bu]64")
    spins = re.compile(r"ld\.relaxed\.gpu\.global\.[bu]64.*\n(?:.*\n)*?.*@%p\d+ bra")
    words = 2 * 2 * 2 * (2 + 32)
    every = compile_reference("tiny-qwen3", tmp_path / "every", num_sms=8, no_fuse=("attention-merge-per-batch",))
    meta = json.loads((every / "bundle.json").read_text())
    events = max(c["offset"] + max(1, _product(c["extents"])) for c in meta["counters"])
    assert meta["counter_words"] == events + 64 * words
    assert not [t for t in meta["tasks"] if t["kind"] == "attention_merge"]
    bodies = attention_bodies(every)
    assert bodies[""] and all(publishes.search(body) for body in bodies[""])
    assert "_one_row" not in bodies
    assert bodies["_merge"] and all(spins.search(body) for body in bodies["_merge"])

    out = compile_reference("tiny-qwen3", tmp_path / "last", num_sms=8)
    meta = json.loads((out / "bundle.json").read_text())
    events = max(c["offset"] + max(1, _product(c["extents"])) for c in meta["counters"])
    assert meta["counter_words"] == events + words
    assert len([t for t in meta["tasks"] if t["kind"] == "attention_merge"]) == 2
    bodies = attention_bodies(out)
    assert bodies[""] and not [body for body in bodies[""] if publishes.search(body)]
    assert all(re.search(r"call\.uni\s+etc_tile_\d+_one_row,", body) for body in bodies[""])
    assert bodies["_one_row"] and all(publishes.search(body) for body in bodies["_one_row"])
    assert bodies["_merge"] and all(spins.search(body) for body in bodies["_merge"])
    other = compile_reference("tiny-qwen3", tmp_path / "merge", num_sms=8, no_fuse=("attention-merge-last",))
    meta = json.loads((other / "bundle.json").read_text())
    assert meta["counter_words"] == max(c["offset"] + max(1, _product(c["extents"])) for c in meta["counters"])


def _product(xs) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


def test_profiling_build_stamps_every_tile(tmp_path):
    from etc.profile import breakdown, format_breakdown, records

    c = CONFIGS["tiny-llama"]
    out = tmp_path / "profiled"
    etc.compile(build_model("tiny-llama"), example_inputs(c, batch=2, ctx=16), dynamic_shapes=dynamic_shapes_for(c),
                num_sms=8, kv_chunk=16, out=out, profile=True)
    meta = json.loads((out / "bundle.json").read_text())
    ptx = (out / "kernel.ptx").read_text()
    assert "%globaltimer" in ptx
    profile = next(b for b in meta["buffers"] if b["name"] == "etc.profile")
    assert profile["role"] == "workspace" and profile["dtype"] == "i64"
    offsets = {int(k): v for k, v in meta["profile"]["offsets"].items()}
    assert sorted(offsets) == [t["id"] for t in meta["tasks"]]
    # the tiles stamp their phases into shared memory past the ring; the launch covers those slots
    n = meta["profile"]["record_words"]
    assert n == 3 + abi.PROFILE_PHASES + 2 and meta["shared_bytes"] >= abi.PROFILE_PHASE_SMEM + 8 * abi.PROFILE_PHASES
    assert int(profile["shape"][0]) % n == 0
    tile_funcs = [f for f in re.split(r"^\.visible \.func ", ptx, flags=re.M) if re.match(r"etc_tile_\d+\(", f)]
    assert any("%globaltimer" in f for f in tile_funcs)  # the tiles stamp their phases themselves
    # Synthetic records: task 0's tile 0 ran on worker 3 for 2 us; a tile that never ran stays zero;
    # task 1 (a linear tile) stamped phases 0 and 2 but not 1.
    words = [0] * int(profile["shape"][0])
    first = offsets[0]
    words[n * first: n * first + 3] = [1_000, 3_000, 3]
    words[n * offsets[1]: n * offsets[1] + n] = [2_000, 6_000, 5, 2_500, 0, 5_000, 1_000, 1_200]
    recs = records(meta, words)
    assert [(r.task, r.tile, r.worker, r.end_ns - r.start_ns) for r in recs] == [(0, 0, 3, 2000), (1, 0, 5, 4000)]
    rows = breakdown(recs)
    assert rows[0]["start_us"] == 0 and rows[1]["end_us"] == 5.0
    assert rows[0]["phase_us"] is None and rows[1]["phase_us"] == [0.5, 0.0, 2.5, 1.0]
    assert rows[1]["arrival_us"] == [0.0, 0.2, 0.8]
    # the run functions read %globaltimer when the worker reaches a tile and when it starts the waits
    run = next(f for f in re.split(r"^\.visible \.func ", ptx, flags=re.M) if f.startswith("etc_run_"))
    assert run.count("%globaltimer") >= 3
    assert "step: 5.0 us" in format_breakdown(rows)


def _layout(symbols: int, buffers: int):
    from etc.codegen.kernel import Layout

    return Layout([f"s{i}" for i in range(symbols)], [f"b{i}" for i in range(buffers)], {}, {}, 0, [0], [])


def test_shared_constants_take_what_fits_past_the_tiles():
    """The worker's copy of the sizes (then the step's epoch) and buffer addresses goes past the tiles' shared
    memory (8-aligned): both where they fit below the opt-in limit (Llama-3.2-1B: 2 symbols, 295 buffers
    past a 229440-byte ring), the sizes alone where the buffers do not (Qwen3-0.6B: 567), nothing where not
    even they do."""
    from etc.codegen.kernel import SharedConstants

    both = SharedConstants.of(_layout(2, 295), 229440)
    assert (both.offset, both.symbols, both.buffers) == (229440, 2, 295)
    assert both.buffers_offset == 229440 + 8 * 3 and both.end == 229464 + 8 * 295 <= abi.MAX_SHARED_BYTES
    sizes_only = SharedConstants.of(_layout(2, 567), 229440)
    assert (sizes_only.buffers, sizes_only.end) == (0, 229464)
    assert SharedConstants.of(_layout(1, 4), 9).offset == 16  # aligned for the i64 slots
    assert SharedConstants.of(_layout(2, 0), abi.MAX_SHARED_BYTES - 8) is None


def test_shared_constants_go_below_the_ring_when_they_do_not_fit_past_it():
    """Buffer addresses that do not fit past the ring (Qwen3-0.6B: 595 of them past 229456 bytes) go between
    the tiles' scratch and the ring, sizes first; where the scratch leaves no room, or no tile uses a ring
    (the scratch reaches the launch's end), only the sizes are kept past the tiles."""
    from etc.codegen.kernel import SharedConstants
    from etc.codegen.weight_stream import RING_OFFSET, STREAM_SHARED_BYTES

    below = SharedConstants.of(_layout(2, 595), STREAM_SHARED_BYTES, 70001, RING_OFFSET)
    assert (below.offset, below.symbols, below.buffers) == (70008, 2, 595)
    assert below.end <= RING_OFFSET and below.launch_bytes(STREAM_SHARED_BYTES) == STREAM_SHARED_BYTES
    no_room = SharedConstants.of(_layout(2, 595), STREAM_SHARED_BYTES, RING_OFFSET - 4000, RING_OFFSET)
    assert (no_room.offset, no_room.buffers) == (STREAM_SHARED_BYTES, 0)
    no_ring = SharedConstants.of(_layout(2, 595), 229456, 229456, RING_OFFSET)
    assert (no_ring.offset, no_ring.buffers) == (229456, 0)
    fits_past = SharedConstants.of(_layout(2, 295), 229440, 1000, RING_OFFSET)
    assert (fits_past.offset, fits_past.buffers) == (229440, 295)  # past the tiles first, as before


def test_buffer_addresses_that_do_not_fit_past_the_ring_go_below_it():
    """etc-lower-to-gpu on a streaming linear tile's program with 400 more buffers (past the ring only the
    sizes fit): the launch keeps the ring's shared memory, and the worker copies the sizes and all 405
    buffer addresses into shared memory between the tiles' scratch and the ring, where the run functions
    read them."""
    from etc.codegen.weight_stream import RING_OFFSET, STREAM_SHARED_BYTES

    source = (LIT / "passes" / "etc-lower-to-gpu-weight-stream.mlir").read_text().split("// -----")[0]
    lines = [line for line in source.splitlines() if not line.startswith("//")]
    at = next(k for k, line in enumerate(lines) if 'name = "y"' in line) + 1
    lines[at:at] = [f'  %u{j} = "event_tensor.buffer"(%b) {{name = "u{j}", role = "workspace", element_type = bf16, '
                    f'sizes = affine_map<()[s0] -> (s0, 64)>}} : (index) -> !event_tensor.buf' for j in range(400)]
    module = etc.run_pipeline("\n".join(lines), "etc-lower-to-sm-task,etc-static-schedule{num-sms=2},etc-lower-to-gpu")
    text = str(module)
    launch = int(re.search(r'"sm_task.kernel".*shared_bytes = (\d+) : i64', text).group(1))
    assert launch == STREAM_SHARED_BYTES
    scratch = max(int(n) for n in re.findall(r"etc.scratch_bytes = (\d+)", text))
    offset = -(-scratch // 8) * 8
    kernel_text = text[text.index("gpu.func @etc_megakernel"):]
    # the staging loops' bases: sizes at the offset, buffer addresses after them (1 symbol, then the epoch)
    assert f"[{offset}] : (!llvm.ptr<3>) -> !llvm.ptr<3>, i8" in kernel_text
    assert f"[{offset + 16}] : (!llvm.ptr<3>) -> !llvm.ptr<3>, i8" in kernel_text
    assert offset + 16 + 8 * 405 <= RING_OFFSET


def test_kernel_copies_sizes_into_shared_memory_before_its_queue(tiny_bundle):
    """The launch's shared memory covers the constants, and the megakernel stores them into shared memory
    and synchronizes the block before the first queue entry runs (tiles read sizes there, not from global
    memory, whose L1 copy every wait invalidates)."""
    meta = json.loads((tiny_bundle / "bundle.json").read_text())
    words = len(meta["symbols"]) + len(meta["buffers"])
    ptx = (tiny_bundle / "kernel.ptx").read_text()
    entry = functions(ptx)[abi.KERNEL_NAME]
    first_call = entry.index("call.uni")
    prologue = entry[:first_call]
    stores = re.findall(r"st\.shared\.b64\s+\[([^\]]+)\]", prologue)
    assert len(stores) >= 2 and "bar.sync" in prologue[prologue.rindex("st.shared.b64"):]
    assert meta["shared_bytes"] >= 8 * words and meta["shared_bytes"] % 8 == 0
