"""etc.profile: tile records from the profile buffer, the per-stage breakdown, the timeline PNG."""
import struct
import zlib

import numpy as np

from etc.profile import PALETTE, breakdown, format_breakdown, records, timeline_png

META = {"tasks": [{"id": 0, "name": "q_proj", "kind": "linear", "grid": ["4"]},
                  {"id": 1, "name": "attn", "kind": "attention_partial", "grid": ["2"]}],
        "profile": {"offsets": {"0": 0, "1": 4}}}


def words():
    # task 0: 4 tile records (the 4th never ran at these sizes), task 1: 2; [start ns, end ns, worker]
    w = [1000, 3000, 0, 1500, 2500, 1, 1000, 2000, 2, 0, 0, 0,
         4000, 9000, 0, 4500, 6000, 3]
    return w


def test_records_skip_tiles_that_did_not_run():
    recs = records(META, words())
    assert [(r.task, r.tile, r.worker) for r in recs] == [(0, 0, 0), (0, 1, 1), (0, 2, 2), (1, 0, 0), (1, 1, 3)]
    assert recs[3].name == "attn" and recs[3].kind == "attention_partial"


def test_breakdown_times_are_relative_to_the_first_start():
    rows = breakdown(records(META, words()))
    q, attn = rows
    assert (q["name"], q["tiles"], q["workers"], q["start_us"], q["end_us"]) == ("q_proj", 3, 3, 0.0, 2.0)
    assert q["busy_us"] == 2.0 + 1.0 + 1.0
    assert (attn["start_us"], attn["end_us"], attn["busy_us"]) == (3.0, 8.0, 5.0 + 1.5)
    assert q["tile_us"] == (1.0, 2.0) and attn["tile_us"] == (3.25, 5.0)  # the median tile, the slowest
    lines = format_breakdown(rows).splitlines()
    assert lines[1].endswith("4.0      1.00  2.00") and lines[2].endswith("6.5      3.25  5.00")
    assert lines[-1] == "step: 8.0 us from the first tile start to the last signal"


def read_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    width, height = header[:2]
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(height, width, 3)


def test_timeline_png_draws_one_bar_per_tile(tmp_path):
    legend = timeline_png(records(META, words()), tmp_path / "t.png", width=801, row_px=5)
    img = read_png(tmp_path / "t.png")
    assert img.shape == (4 * 5, 801, 3)  # workers 0..3
    assert legend == {"attention_partial": "#%02x%02x%02x" % PALETTE[0], "linear": "#%02x%02x%02x" % PALETTE[1]}
    # worker 3 ran attn tile 1 from 3.5 to 5 us of an 8 us step: pixels 350..500 of 800
    row = img[3 * 5 + 1]
    assert tuple(row[400]) == PALETTE[0] and tuple(row[300]) != PALETTE[0] and tuple(row[600]) != PALETTE[0]
    # worker 0 ran q_proj (0-2 us) then attn (3-8 us)
    assert tuple(img[1, 100]) == PALETTE[1] and tuple(img[1, 700]) == PALETTE[0]


def test_phase_stamps_give_mean_per_tile_phases():
    """Records of 6 words: [start, end, worker, phase 0..2]; a 0 phase is not stamped (its span is 0)."""
    meta = {"tasks": META["tasks"], "profile": {"record_words": 6, "offsets": {"0": 0, "1": 2}}}
    w = [1000, 5000, 0, 2000, 3000, 4000,   # q_proj tile 0: 1 + 1 + 1 + 1 us
         1000, 7000, 1, 4000, 0, 6000,      # tile 1: staged at 3 us, no phase 1, phase 2 at 5 us, end 6
         2000, 3000, 2, 0, 0, 0]            # attn: no phases
    recs = records(meta, w)
    assert recs[1].phases == (4000, 0, 6000)
    q, attn = breakdown(recs)
    assert q["phase_us"] == [(1 + 3) / 2, (1 + 0) / 2, (1 + 2) / 2, (1 + 1) / 2] and attn["phase_us"] is None
    text = format_breakdown([q, attn])
    assert "2.00  0.50  1.50  1.00" in text and "per-tile phases:" in text


def test_arrival_stamps_split_the_time_before_a_tile_starts():
    """Records of 8 words: [start, end, worker, phase 0..2, reached, polled]. The arrival spans are the
    worker's previous tile end -> reached (0 for its first tile), reached -> polled, polled -> start."""
    meta = {"tasks": META["tasks"], "profile": {"record_words": 8, "offsets": {"0": 0, "1": 1}}}
    w = [2000, 4000, 0, 0, 0, 0, 1000, 1500,    # q_proj on worker 0: reached 1.0, polled 1.5, start 2.0
         9000, 12000, 0, 0, 0, 0, 5000, 6000]   # attn on worker 0: 1 us after q's end, then 1 + 3 us
    recs = records(meta, w)
    assert (recs[1].reached_ns, recs[1].polled_ns) == (5000, 6000)
    q, attn = breakdown(recs)
    assert q["arrival_us"] == [0.0, 0.5, 0.5] and attn["arrival_us"] == [1.0, 1.0, 3.0]
    assert q["phase_us"] is None
    lines = format_breakdown([q, attn]).splitlines()
    assert " 1.00  1.00  3.00" in lines[2] and lines[3].startswith("arrival: mean us")


def test_records_of_bundles_without_phase_stamps_have_three_words():
    recs = records(META, words())  # META has no record_words: [start, end, worker]
    assert all(r.phases == () for r in recs)
    assert all(row["phase_us"] is None and row["arrival_us"] is None for row in breakdown(recs))
    assert "arrival" not in format_breakdown(breakdown(recs))


def test_ncu_stall_samples_are_split_at_call_targets():
    """tools/gpu/ncu_stalls.py: Nsight Compute's per-instruction stall samples summed per code region (the
    kernel body, then each CALL target: a tile function), with the executed code size."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "gpu", "ncu_stalls.py")
    spec = importlib.util.spec_from_file_location("ncu_stalls", path)
    ncu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ncu)
    header = ["Address", "Source", "Instructions Executed", "stall_barrier", "stall_no_inst",
              "stall_barrier (Not Issued)"]
    base = 0x7F0000000000
    rows = [["Kernel Name", "etc_megakernel"], header,
            [hex(base), "BAR.SYNC.DEFER_BLOCKING 0x0", "10", "5", "0", "99"],
            [hex(base + 16), f"CALL.REL.NOINC {hex(base + 48)}", "10", "0", "1", "0"],
            [hex(base + 32), "EXIT", "0", "0", "0", "0"],
            [hex(base + 48), "LDS R0, [R1]", "7", "2", "3", "0"],
            [hex(base + 64), "RET.REL.NODEC R2", "7", "0", "4", "0"]]
    out = ncu.regions(rows)
    assert sorted(out) == [0, 48]
    body, tile = out[0], out[48]
    assert (body["instructions"], body["executed_distinct"], body["executed"]) == (3, 2, 20)
    assert (body["barrier"], body["no_inst"], body["samples"]) == (5, 1, 6)  # "Not Issued" columns not summed
    assert (tile["instructions"], tile["executed"], tile["barrier"], tile["no_inst"], tile["samples"]) == \
        (2, 14, 2, 7, 9)


def test_ncu_hot_instructions_of_one_region(tmp_path, capsys):
    """tools/gpu/ncu_stalls.py FILE OFFSET: one region's instructions with >= 0.5% of its samples, in address
    order, with their top stall reasons; other regions' instructions and unsampled ones are left out."""
    import csv
    import gzip
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "gpu", "ncu_stalls.py")
    spec = importlib.util.spec_from_file_location("ncu_stalls", path)
    ncu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ncu)
    base = 0x7F0000000000
    rows = [["Kernel Name", "etc_megakernel"],
            ["Address", "Source", "Instructions Executed", "stall_long_sb", "stall_no_inst"],
            [hex(base), "BAR.SYNC.DEFER_BLOCKING 0x0", "10", "50", "0"],
            [hex(base + 16), f"CALL.REL.NOINC {hex(base + 48)}", "10", "0", "1"],
            [hex(base + 48), "LDG.E R0, [R2]", "7", "0", "3"],
            [hex(base + 64), "ISETP.NE.U32.AND P0, PT, R0, 0x1, PT", "7", "90", "2"],
            [hex(base + 80), "RET.REL.NODEC R2", "7", "0", "0"]]
    source = tmp_path / "source.csv.gz"
    with gzip.open(source, "wt", newline="") as f:
        csv.writer(f).writerows(rows)
    ncu.hot(str(source), 48)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "region 0x30: 3 instructions, 95 samples"
    assert [line.split()[0] for line in lines[1:]] == ["0x30", "0x40"]  # the unsampled RET is left out
    assert lines[2].split()[1:3] == ["92", "7"] and lines[2].rstrip().endswith("long_sb:90 no_inst:2")


def _tool(name):
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "gpu", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rec(name, kind, tile, start, end, phases=(0, 0, 0), reached=None):
    """A tile record as `etc profile` writes records.json (us -> ns)."""
    ns = [int(x * 1000) for x in (start, end)]
    return {"name": name, "kind": kind, "tile": tile, "worker": tile, "start_ns": ns[0], "end_ns": ns[1],
            "phases": [int(p * 1000) for p in phases],
            "reached_ns": int((start if reached is None else reached) * 1000), "polled_ns": ns[0]}


def test_profile_stages_spans_and_gaps_per_layer():
    """tools/gpu/profile_stages.py: a stage spans its first waits met to its last signal, its gap runs from
    the previous stage's last signal (the previous layer's down_proj for q/k/v)."""
    ps = _tool("profile_stages")
    recs = []
    for layer, t0 in ((1, 0.0), (2, 30.0)):
        p = f"model.layers.{layer}."
        attention = f"attention.partial.{layer + 1}"  # the (layer + 1)-th attention grid
        recs += [_rec(p + "self_attn.q_proj", "linear", 0, t0, t0 + 3),
                 _rec(p + "self_attn.v_proj", "linear", 0, t0 + 1, t0 + 4),
                 _rec(attention, "attention_partial", 0, t0 + 5, t0 + 9, (t0 + 6, t0 + 7, t0 + 8)),
                 _rec(p + "self_attn.o_proj", "linear", 0, t0 + 10, t0 + 12),
                 _rec(p + "mlp.gate_proj", "linear", 0, t0 + 13, t0 + 20),
                 _rec(p + "mlp.down_proj", "linear", 0, t0 + 22, t0 + 26)]
    assert [ps.layer_of(r["name"]) for r in recs[:6]] == [1] * 6
    out = ps.stages(recs, 1, 2).splitlines()
    rows = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in out[2:7]}
    assert rows["q/k/v"] == [4.0, 4.0, 3.0]  # span 0 -> 4; gap from layer 1's down (26) to layer 2's q (30)
    assert rows["attention"] == [4.0, 1.0, 4.0] and rows["gate_proj"] == [7.0, 1.0, 7.0]
    assert out[-1].startswith("layer: 30.00")


def test_profile_stages_attention_split_tails():
    """The attention splits: per split index its times, and which split of a group ended last (it merges)."""
    ps = _tool("profile_stages")
    recs = []
    for g in range(2):  # kv groups of 2 splits; split 1 of group 0 and split 0 of group 1 end last
        for s in range(2):
            last = (g, s) in ((0, 1), (1, 0))
            recs.append(_rec("attention.partial.3", "attention_partial", 2 * g + s, 10.0, 16.0 if last else 14.0,
                             (11.0, 12.0, 13.0), reached=9.0))
    out = ps.attention_splits(recs, 0, 5, 2)
    assert "last split of a group: 3.00 us" in out and "other split of a group: 1.00 us" in out
    split_rows = [line.split() for line in out.splitlines()[2:4]]
    assert [row[-1] for row in split_rows] == ["1", "1"]
    assert split_rows[0][1:4] == ["0.00", "1.00", "1.00"]  # reach, waits met (from the first reach), q staged


def test_instance_spread_moves_the_runtimes_workspace_by_group_and_packs_it():
    """tools/gpu/instance_spread.py: the buffers it re-allocates are the runtime's workspace (not outputs,
    inputs or the profile records, which live in tensors), grouped by name across layers; an arena binds
    every workspace buffer at `align`-byte offsets of one allocation, in buffer order, sized for the largest
    step or for a given step's sizes; the untouched allocations are as large as the workspace buffers and
    bound to nothing."""
    from types import SimpleNamespace

    from etc.codegen.abi import PROFILE_BUFFER

    tool = _tool("instance_spread")
    names = [("tokens", "input", 8), ("model.layers.0.mlp.down_proj.y", "workspace", 100),
             ("attention.partial_out", "workspace", 300), ("model.layers.1.mlp.down_proj.y", "workspace", 100),
             ("attention.partial_out.2", "workspace", 300), (PROFILE_BUFFER, "workspace", 64), ("logits", "output", 50)]
    buffers = [SimpleNamespace(name=n, role=r, itemsize=2) for n, r, _ in names]
    nbytes = {n: b for n, _, b in names}
    bundle = SimpleNamespace(buffers=buffers, max_sizes=lambda: {"s0": 4},
                             nbytes=lambda name, sizes: nbytes[name] * sizes["s0"] // 4)

    class Runtime:
        def __init__(self):
            self.bound, self.allocations = {}, []

        def allocate(self, index, size):
            base = 0x10000 * (len(self.allocations) + 1)
            self.allocations.append(size)
            self.bound[index] = base
            return base

        def bind(self, addresses):
            self.bound.update(addresses)

    mk = SimpleNamespace(bundle=bundle, _rt=Runtime())
    assert tool.workspace(mk) == [(1, 100), (2, 300), (3, 100), (4, 300)]
    assert tool.groups(mk) == {"model.layers.mlp.down_proj.y": [(1, 100), (3, 100)],
                               "attention.partial_out": [(2, 300), (4, 300)]}
    base, total = tool.arena(mk, 256)
    assert mk._rt.allocations == [256 + 512 + 256 + 512] == [total]
    assert mk._rt.bound == {1: base, 2: base + 256, 3: base + 768, 4: base + 1024}
    # packed at a smaller step's sizes: 25 and 75 bytes, each on its own 256-byte offset
    base, total = tool.arena(mk, 256, {"s0": 1})
    assert total == 1024 and mk._rt.allocations[-1] == 1024
    assert mk._rt.bound == {1: base, 2: base + 256, 3: base + 512, 4: base + 768}
    bound = dict(mk._rt.bound)
    held = tool.untouched(mk, device="cpu")  # as large as the workspace buffers, and bound to nothing
    assert [t.numel() for t in held] == [100, 300, 100, 300] and mk._rt.bound == bound
