#!/usr/bin/env python3
"""Check the tile library's tile functions on a GPU against the numpy reference.

  python tools/gpu/check_tiles.py --prepare OUTDIR    # here (needs MLIR): PTX, inputs, reference outputs
  python tools/gpu/check_tiles.py --simulate OUTDIR   # here: the same bundle on the CPU SIMT simulator
  python3 tools/gpu/check_tiles.py --run OUTDIR       # on the GPU machine (torch + CUDA driver, no MLIR)

A case is one task at fixed runtime sizes: its kernel `etc_check_<id>` (in the PTX of its program's
gpu.module) runs every tile of the task, one block per tile (grid = tile count). Buffers are laid out
as the kernel ABI says: a device table of u64 buffer addresses (etc.codegen.abi) and one of i64 sizes.
The bundle: OUTDIR/manifest.json, OUTDIR/ptx/*.ptx.gz (and the .mlir.gz they come from, for --simulate),
OUTDIR/data/*.npy (bf16 as uint16 bit patterns; written-only buffers start as NaN / -1).
Per case and written buffer --run prints the max relative error vs the reference (|gpu - ref| over
max(|ref|, 1% of the buffer's max |ref|)), the fraction of exactly equal elements and PASS/FAIL;
it exits 1 if any case fails.
"""
from __future__ import annotations

import argparse
import ctypes
import gzip
import hashlib
import json
import os
import sys
import time

import numpy as np

TOLERANCE = {"bf16": 2 ** -5, "f16": 2 ** -8, "f32": 1e-3, "f64": 1e-6}  # integers: exact
STORAGE = {"bf16": np.uint16, "f16": np.float16, "f32": np.float32, "f64": np.float64, "i64": np.int64,
           "i32": np.int32, "i8": np.int8, "i1": np.bool_}


# ---------------------------------------------------------------- comparing (shared by --run and --simulate)


def decode(raw: np.ndarray, etype: str) -> np.ndarray:
    """Storage -> float64 (floats) or int64 values."""
    if etype == "bf16":
        return (raw.astype(np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)
    if etype in ("f16", "f32", "f64"):
        return raw.astype(np.float64)
    return raw.astype(np.int64)


def compare(got_raw: np.ndarray, want_raw: np.ndarray, etype: str) -> tuple[float, float, bool]:
    """(max relative error, fraction exactly equal, pass)."""
    got, want = decode(got_raw, etype), decode(want_raw, etype)
    if etype not in TOLERANCE:
        equal = got == want
        return (0.0 if equal.all() else float("inf")), float(equal.mean()) if equal.size else 1.0, bool(equal.all())
    with np.errstate(invalid="ignore", over="ignore"):
        same = (got == want) | (np.isnan(got) & np.isnan(want))
        finite = np.isfinite(want)
        scale = float(np.max(np.abs(want[finite]))) if finite.any() else 1.0
        err = np.where(same, 0.0, np.abs(got - want))
        err = np.where(np.isnan(err), np.inf, err)  # NaN or inf where the reference has something else
        rel = err / np.maximum(np.abs(np.where(finite, want, 0.0)), 1e-2 * scale + 1e-30)
    worst = float(rel.max()) if rel.size else 0.0
    return worst, float(same.mean()) if same.size else 1.0, worst <= TOLERANCE[etype]


COUNTS = {"pass": 0, "fail": 0}


def report(name: str, results: list[tuple[str, float, float, bool]]) -> bool:
    ok = all(r[3] for r in results)
    COUNTS["pass" if ok else "fail"] += 1
    detail = "  ".join(f"{buf}: max_rel={rel:.3g} equal={eq:.3f}" for buf, rel, eq, _ in results)
    print(f"{'PASS' if ok else 'FAIL'}  {name:44s} {detail}", flush=True)
    return ok


def load_manifest(outdir: str) -> dict:
    with open(os.path.join(outdir, "manifest.json")) as f:
        return json.load(f)


def load_npy(outdir: str, rel: str) -> np.ndarray:
    return np.load(os.path.join(outdir, rel))


def initial(outdir: str, buf: dict) -> np.ndarray:
    """A buffer's initial contents in storage form: its .npy, or the fill of a written-only buffer."""
    if buf["init"] is not None:
        return load_npy(outdir, buf["init"])
    dtype = STORAGE[buf["etype"]]
    if buf["fill"] == "nan":
        return np.full(buf["shape"], 0x7FC0 if buf["etype"] == "bf16" else np.nan, dtype)
    return np.full(buf["shape"], buf["fill"], dtype)


def read_text(outdir: str, rel: str) -> str:
    with gzip.open(os.path.join(outdir, rel), "rt") as f:
        return f.read()


# ---------------------------------------------------------------- --prepare (this machine, with MLIR)


def prepare(outdir: str, cases=None) -> None:
    """Write the bundle for `cases` (default: etc.codegen.tiles_cases.all_cases())."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    from etc.codegen import ptxas
    from etc.codegen.tile_library import tile_shared_bytes
    from etc.codegen.tiles_cases import all_cases
    from etc.codegen.tiles_harness import ARRIVAL_WORDS, HARNESS_EPOCH, check_kernel_name, default_indices, harness_module_text
    from etc.codegen.tiles_simt import to_storage

    os.makedirs(os.path.join(outdir, "ptx"), exist_ok=True)
    os.makedirs(os.path.join(outdir, "data"), exist_ok=True)
    t0 = time.time()
    cases = all_cases() if cases is None else cases
    groups: dict[int, list] = {}
    for case in cases:
        groups.setdefault(id(case.program), []).append(case)
    manifest = {"format": "etc-tile-check", "version": 1, "cases": []}
    saved: dict[str, str] = {}

    def save(arr: np.ndarray) -> str:
        """One .npy per distinct array (cases at other sizes share their weights)."""
        key = hashlib.sha1(arr.tobytes() + str((arr.dtype, arr.shape)).encode()).hexdigest()
        if key not in saved:
            saved[key] = f"data/a{len(saved)}.npy"
            np.save(os.path.join(outdir, saved[key]), arr)
        return saved[key]
    for g, (_, group) in enumerate(groups.items()):
        program = group[0].program
        buffer_index, symbol_index = default_indices(program)
        tasks = list({c.task.id: c.task for c in group}.values())
        text = harness_module_text(program, tasks, buffer_index, symbol_index, weight_stream=True)
        ptx_name = f"ptx/group{g}.ptx.gz"
        with gzip.open(os.path.join(outdir, ptx_name), "wt") as f:
            f.write(ptxas.compile_ptx_text(text))
        with gzip.open(os.path.join(outdir, f"ptx/group{g}.mlir.gz"), "wt") as f:
            f.write(text)
        for case in group:
            buffers = []
            for name in sorted(set(case.task.reads + case.task.writes), key=lambda n: buffer_index[n]):
                etype = program.buffer(name).element_type
                entry = {"name": name, "index": buffer_index[name], "etype": etype,
                         "shape": list(case.arrays[name].shape), "init": None, "fill": None, "expected": None}
                if name in case.task.reads:
                    entry["init"] = save(to_storage(case.arrays[name], etype))
                else:  # written only: starts as NaN (floats) / -1, so that a missing write shows
                    entry["fill"] = "nan" if etype.startswith(("f", "bf")) else -1
                if name in case.expected:
                    entry["expected"] = save(to_storage(case.expected[name], etype))
                buffers.append(entry)
            # the table slot after the buffers: zeroed arrival counters (tiles_harness)
            buffers.append({"name": "arrivals", "index": len(buffer_index), "etype": "i64", "shape": [ARRIVAL_WORDS],
                            "init": save(np.zeros(ARRIVAL_WORDS, np.int64)), "fill": None, "expected": None})
            sizes = [0] * len(symbol_index) + [HARNESS_EPOCH]  # the sizes, then the step's epoch
            for sym, k in symbol_index.items():
                sizes[k] = int(case.sizes.get(sym, 1))
            manifest["cases"].append({
                "name": case.name, "ptx": ptx_name, "mlir": f"ptx/group{g}.mlir.gz",
                "kernel": check_kernel_name(case.task.id), "grid": case.tiles, "block": case.block,
                "shared_bytes": tile_shared_bytes(case.task, program, buffer_index, symbol_index, weight_stream=True),
                "num_buffers": len(buffer_index) + 1, "sizes": sizes, "buffers": buffers})
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(outdir) for fn in fns)
    print(f"prepared {len(manifest['cases'])} cases in {len(groups)} PTX modules, {total / 2 ** 20:.1f} MiB, "
          f"{time.time() - t0:.0f} s -> {outdir}")


# ---------------------------------------------------------------- --simulate (this machine, CPU)


def simulate(outdir: str) -> bool:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    from etc.codegen.tiles_simt import REGION_SHIFT, Simulator

    manifest = load_manifest(outdir)
    sims: dict[str, Simulator] = {}
    ok = True
    for case in manifest["cases"]:
        if case["mlir"] not in sims:
            sims[case["mlir"]] = Simulator(read_text(outdir, case["mlir"]))
        sim = sims[case["mlir"]]
        addrs = [0] * case["num_buffers"]
        for buf in case["buffers"]:
            addrs[buf["index"]] = sim.memory.add(initial(outdir, buf))
        table = sim.memory.add(np.array(addrs, np.int64))
        sizes = sim.memory.add(np.array(case["sizes"], np.int64))
        sim.run(case["kernel"], case["grid"], case["block"], case["shared_bytes"], [table, sizes])
        results = []
        for buf in case["buffers"]:
            if buf["expected"] is None:
                continue
            want = load_npy(outdir, buf["expected"])
            got = sim.memory.regions[addrs[buf["index"]] >> REGION_SHIFT].view(want.dtype).reshape(want.shape)
            results.append((buf["name"],) + compare(got, want, buf["etype"]))
        ok &= report(case["name"], results)
    return ok


# ---------------------------------------------------------------- --run (GPU machine: torch + libcuda)


class Cuda:
    """The few CUDA driver calls needed, through ctypes (torch owns the context and the memory)."""

    def __init__(self):
        self.lib = ctypes.CDLL("libcuda.so.1")

    def check(self, result: int, what: str) -> None:
        if result:
            msg = ctypes.c_char_p()
            self.lib.cuGetErrorString(result, ctypes.byref(msg))
            raise RuntimeError(f"{what}: CUDA error {result} ({(msg.value or b'?').decode()})")

    def load_module(self, ptx: str) -> ctypes.c_void_p:
        module = ctypes.c_void_p()
        log = ctypes.create_string_buffer(1 << 16)
        opts = (ctypes.c_int * 2)(5, 6)  # CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES
        vals = (ctypes.c_void_p * 2)(ctypes.cast(log, ctypes.c_void_p), ctypes.c_void_p(len(log)))
        result = self.lib.cuModuleLoadDataEx(ctypes.byref(module), ctypes.c_char_p(ptx.encode() + b"\0"), 2, opts, vals)
        if result:
            print(log.value.decode(errors="replace"), file=sys.stderr)
        self.check(result, "cuModuleLoadDataEx")
        return module

    def function(self, module, name: str) -> ctypes.c_void_p:
        fn = ctypes.c_void_p()
        self.check(self.lib.cuModuleGetFunction(ctypes.byref(fn), module, name.encode()), f"cuModuleGetFunction {name}")
        return fn

    def launch(self, fn, grid: int, block: int, shared: int, args: list[int]) -> None:
        if shared > 48 * 1024:  # CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
            self.check(self.lib.cuFuncSetAttribute(fn, 8, ctypes.c_int(shared)), "cuFuncSetAttribute")
        values = [ctypes.c_uint64(a) for a in args]
        params = (ctypes.c_void_p * len(values))(*[ctypes.cast(ctypes.byref(v), ctypes.c_void_p) for v in values])
        self.check(self.lib.cuLaunchKernel(fn, grid, 1, 1, block, 1, 1, shared, None, params, None), "cuLaunchKernel")
        self.check(self.lib.cuCtxSynchronize(), "kernel execution (cuCtxSynchronize)")


def to_torch(arr: np.ndarray, torch):
    if arr.dtype == np.uint16:
        arr = arr.view(np.int16)
    return torch.from_numpy(np.ascontiguousarray(arr)).cuda()


def run(outdir: str) -> bool:
    import torch

    torch.cuda.init()
    torch.zeros(1, device="cuda")  # the primary context is current from here on
    cuda = Cuda()
    manifest = load_manifest(outdir)
    modules: dict[str, ctypes.c_void_p] = {}
    ok = True
    for case in manifest["cases"]:
        try:
            if case["ptx"] not in modules:
                modules[case["ptx"]] = cuda.load_module(read_text(outdir, case["ptx"]))
            fn = cuda.function(modules[case["ptx"]], case["kernel"])
            tensors, addrs = {}, [0] * case["num_buffers"]
            for buf in case["buffers"]:
                t = to_torch(initial(outdir, buf), torch)
                tensors[buf["name"]] = t
                addrs[buf["index"]] = t.data_ptr()
            table = torch.tensor(addrs, dtype=torch.int64, device="cuda")
            sizes = torch.tensor(case["sizes"] or [0], dtype=torch.int64, device="cuda")
            torch.cuda.synchronize()
            cuda.launch(fn, case["grid"], case["block"], case["shared_bytes"], [table.data_ptr(), sizes.data_ptr()])
            results = []
            for buf in case["buffers"]:
                if buf["expected"] is None:
                    continue
                want = load_npy(outdir, buf["expected"])
                got = tensors[buf["name"]].cpu().numpy().view(want.dtype).reshape(want.shape)
                results.append((buf["name"],) + compare(got, want, buf["etype"]))
            ok &= report(case["name"], results)
        except RuntimeError as e:
            print(f"FAIL  {case['name']:44s} {e}", flush=True)
            COUNTS["fail"] += 1
            ok = False
            if "execution" in str(e):  # the context is unusable after a kernel fault
                break
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--prepare", metavar="OUTDIR")
    mode.add_argument("--simulate", metavar="OUTDIR")
    mode.add_argument("--run", metavar="OUTDIR")
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare)
        return 0
    ok = simulate(args.simulate) if args.simulate else run(args.run)
    print(f"{'ALL PASS' if ok else 'SOME FAILED'}: {COUNTS['pass']} passed, {COUNTS['fail']} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
