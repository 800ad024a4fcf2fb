"""GPU smoke test of the runtime with a hand-written ABI kernel (toy_kernel.cu), no compiler or MLIR needed.

    python3 runtime/test/gpu_smoke.py            # needs nvcc, a GPU, torch with CUDA; prints OK lines
It builds the runtime (tools/gpu/build_runtime.sh) if $ETC_RUNTIME_LIB is unset, compiles the kernel to PTX,
writes bundles, and checks: one step (outputs, in-place caches, varying sizes), generate, epochs and
counters, > 48 KiB dynamic shared memory, the co-residency and JIT errors, and (in a child process) the
watchdog's report on a kernel that never finishes, and that the process still exits.
"""
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if "etc" not in sys.modules:  # etc/__init__ may import MLIR, which GPU machines lack: skip it
    pkg = types.ModuleType("etc")
    pkg.__path__ = [str(ROOT / "python" / "etc")]
    sys.modules["etc"] = pkg

import torch  # noqa: E402

from etc import bundle as B  # noqa: E402
from etc import runtime as R  # noqa: E402
from etc.errors import EtcError  # noqa: E402

V = 64


def ptx(tmp: Path, hang=False) -> str:
    out = tmp / ("hang.ptx" if hang else "toy.ptx")
    cmd = ["nvcc", "-ptx", "-arch=sm_90", "-o", str(out), str(ROOT / "runtime/test/toy_kernel.cu")]
    subprocess.run(cmd + (["-DHANG"] if hang else []), check=True)
    return out.read_text()


def meta(num_workers=8, shared_bytes=0, target="1"):
    queues, offsets = [], [0]
    for w in range(num_workers):
        queues += [0, w, num_workers, 1, (w + 1) % num_workers, num_workers]
        offsets.append(len(queues))
    return {
        "num_workers": num_workers, "block_size": 128, "shared_bytes": shared_bytes,
        "symbols": [{"name": "batch", "min": 1, "max": 8}, {"name": "kv_len", "min": 2, "max": 64}],
        "buffers": [
            {"name": "tokens", "role": "input", "dtype": "i64", "shape": ["batch"], "output_index": None},
            {"name": "positions", "role": "input", "dtype": "i64", "shape": ["batch"], "output_index": None},
            {"name": "k_caches.0", "role": "kv_cache", "dtype": "f32", "shape": ["batch", "kv_len"], "output_index": 1},
            {"name": "v_caches.0", "role": "kv_cache", "dtype": "f32", "shape": ["batch", "kv_len"], "output_index": 2},
            {"name": "weight", "role": "weight", "dtype": "f32", "shape": [str(V), str(V)], "output_index": None},
            {"name": "logits", "role": "output", "dtype": "f32", "shape": ["batch", str(V)], "output_index": 0},
            {"name": "ws", "role": "workspace", "dtype": "i64", "shape": ["batch"], "output_index": None}],
        "counter_words": 8, "counters": [{"name": "embedded", "offset": 0, "words": 8, "extents": [8], "target": target}],
        "static_queues": {"offsets": offsets, "entries": queues}, "ready_queue": {"words": 16},
        "tasks": [{"id": 0, "name": "embed", "kind": "gather", "schedule": "static", "grid": ["batch"]},
                  {"id": 1, "name": "lm_head", "kind": "matmul", "schedule": "static", "grid": ["batch"]}],
        "model": {"config": "toy", "vocab_size": V}}


def weights():
    w = torch.zeros(V, V, device="cuda")
    w[torch.arange(V), (torch.arange(V) + 1) % V] = 1.0  # argmax(w[t]) = t + 1
    w += torch.arange(V * V, device="cuda").view(V, V) * 1e-6  # distinct rows
    return {"weight": w}


def ok(what):
    print(f"OK {what}", flush=True)


def main(tmp: Path):
    toy = ptx(tmp)
    B.write(tmp / "toy", meta(), toy)
    mk = R.Megakernel(tmp / "toy", weights(), timeout_s=10.0)
    w = mk._weights["weight"]
    for batch, kv_len in ((3, 10), (5, 33), (1, 2), (8, 64)):
        tokens = torch.randint(0, V, (batch,))
        positions = torch.randint(0, kv_len, (batch,))
        k = [torch.zeros(batch, kv_len, device="cuda")]
        v = [torch.zeros(batch, kv_len, device="cuda")]
        logits, k2, v2 = mk(tokens, positions, k, v)
        assert k2 is k and v2 is v
        torch.testing.assert_close(logits, w[tokens.cuda()])
        rows = torch.arange(batch)
        assert torch.equal(k[0][rows, positions].cpu(), tokens.float()), (k[0], tokens, positions)
        assert torch.equal(v[0][rows, positions].cpu(), 2 * tokens.float())
        assert k[0].count_nonzero() <= batch
    ok(f"steps with varying sizes; epoch {mk._rt.epoch}")
    counters = mk._rt.counters()
    assert counters[:8] == [(4 << 32) + 1] * 8, [hex(c) for c in counters]  # last step had batch 8, epoch 4
    ok("counters carry the epoch, never reset")
    ids = mk.generate([[1, 2, 3], [10, 11, 12]], max_new_tokens=5)
    assert ids.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8], [10, 11, 12, 13, 14, 15, 16, 17]], ids
    ok("generate")
    try:
        mk(torch.tensor([1, 2]), torch.tensor([0, 1]), [torch.zeros(2, 100, device="cuda")],
           [torch.zeros(2, 100, device="cuda")])
        raise AssertionError("kv_len 100 accepted")
    except EtcError as e:
        print("  expected:", e)
    # Launch latency of a small step.
    tokens, positions = torch.zeros(8, dtype=torch.int64, device="cuda"), torch.zeros(8, dtype=torch.int64, device="cuda")
    k, v = [torch.zeros(8, 64, device="cuda")], [torch.zeros(8, 64, device="cuda")]
    inputs = {"tokens": tokens, "positions": positions, "k_caches.0": k[0], "v_caches.0": v[0]}
    for _ in range(10):
        mk.step(inputs)
    t0 = time.perf_counter()
    n = 1000
    for _ in range(n):
        mk.step(inputs)
    ok(f"{n} steps: {(time.perf_counter() - t0) / n * 1e6:.1f} us per step (launch + watchdog wait + Python)")
    mk.close()

    big = R.Megakernel(B.write(tmp / "shared", meta(num_workers=132, shared_bytes=100_000), toy), weights())
    logits, _, _ = big(torch.tensor([3]), torch.tensor([0]), [torch.zeros(1, 2, device="cuda")],
                       [torch.zeros(1, 2, device="cuda")])
    torch.testing.assert_close(logits, big._weights["weight"][[3]])
    ok("132 workers with 100000 bytes of dynamic shared memory")
    for label, m, text in (("too many workers", meta(num_workers=2000, shared_bytes=100_000), toy),
                           ("bad PTX", meta(), toy.replace(".entry", ".entry_typo", 1)),
                           ("wrong kernel name", dict(meta(), kernel="nope"), toy)):
        try:
            R.Megakernel(B.write(tmp / "bad", m, text), weights())
            raise AssertionError(f"{label}: accepted")
        except EtcError as e:
            print(f"  {label}: {e}")
    ok("errors")

    child = subprocess.run([sys.executable, __file__, "--hang", str(tmp)], capture_output=True, text=True, timeout=120)
    print(child.stdout + child.stderr)
    assert child.returncode == 0 and "StepTimeout" in child.stdout, child.returncode
    ok("watchdog")


def hang(tmp: Path):
    """A kernel whose lm_head tiles wait forever: the step must time out with a report, and the process exit."""
    bundle = B.write(tmp / "hang", meta(target="2"), ptx(tmp, hang=True))
    mk = R.Megakernel(bundle, weights(), timeout_s=2.0)
    t0 = time.perf_counter()
    try:
        mk(torch.tensor([1, 2, 3]), torch.tensor([0, 0, 0]), [torch.zeros(3, 4, device="cuda")],
           [torch.zeros(3, 4, device="cuda")])
    except R.StepTimeout as e:
        print(f"StepTimeout after {time.perf_counter() - t0:.2f} s:\n{e}")
    try:
        mk(torch.tensor([1]), torch.tensor([0]), [torch.zeros(1, 4, device="cuda")], [torch.zeros(1, 4, device="cuda")])
    except EtcError as e:
        print(f"next call: {e}")
    mk.close()
    print(f"exiting at {time.perf_counter() - t0:.2f} s", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--hang":
        hang(Path(sys.argv[2]))
    else:
        with tempfile.TemporaryDirectory() as d:
            main(Path(d))
