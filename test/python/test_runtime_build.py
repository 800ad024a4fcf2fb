"""The C++ runtime builds with CMake on a machine with no GPU and no CUDA toolkit, and says why it cannot run.

With a fake libcuda.so.1 (runtime/test/fake_cuda.cpp, host memory for device memory) the host side is
tested too: the launch parameters, epochs, the buffer table and sizes, the ready-queue reset, counters
that are never reset, the JIT log, and the watchdog's report on a step that never finishes.
"""
import ctypes
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
needs_tools = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("c++") is None,
                                 reason="needs cmake and a C++ compiler")


def has_driver() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


@needs_tools
def test_runtime_builds_and_reports_the_driver(tmp_path):
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"], check=True,
                   capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j2"], check=True, capture_output=True)
    probe = subprocess.run([str(build / "runtime" / "etc-runtime-probe")], capture_output=True, text=True)
    if probe.returncode == 3:  # no GPU here: a one-line reason, not a crash
        assert probe.stderr.startswith("etc-runtime-probe: no CUDA driver:")
        assert len(probe.stderr.strip().splitlines()) == 1
    else:
        assert probe.returncode == 0, probe.stderr
        assert "device(s)" in probe.stdout
    assert (build / "runtime" / "libetc_runtime.so").is_file()


@pytest.fixture(scope="module")
def runtime_lib(tmp_path_factory):
    """libetc_runtime built by etc.runtime.build_library (the on-demand build) into a fresh cache."""
    if shutil.which("cmake") is None or shutil.which("c++") is None:
        pytest.skip("needs cmake and a C++ compiler")
    from etc import runtime as R

    cache = tmp_path_factory.mktemp("cache")
    lib = R.build_library(cache)
    assert lib.is_file() and cache in lib.parents
    assert R.build_library(cache) == lib  # cached: the same sources build once
    return lib


@pytest.fixture
def runtime_module(runtime_lib, monkeypatch):
    from etc import runtime as R

    monkeypatch.setenv("ETC_RUNTIME_LIB", str(runtime_lib))
    monkeypatch.setattr(R, "_lib", None)
    return R


def test_c_abi_loads_through_ctypes(runtime_module):
    R = runtime_module
    lib = R.library()
    assert lib.etc_rt_abi_version() == R.ABI_VERSION
    for name in ("etc_rt_create", "etc_rt_destroy", "etc_rt_bind", "etc_rt_allocate", "etc_rt_launch", "etc_rt_wait",
                 "etc_rt_step", "etc_rt_epoch", "etc_rt_read_progress", "etc_rt_read_counters", "etc_rt_last_error",
                 "etc_rt_describe_buffer", "etc_rt_describe_task", "etc_rt_describe_counter", "etc_rt_driver_info"):
        assert hasattr(lib, name), name


def tiny_bundle(path: Path, cubin: bytes | None = None):
    from etc import bundle as B

    meta = {
        "num_workers": 4, "block_size": 128, "shared_bytes": 65536,
        "symbols": [{"name": "batch", "min": 1, "max": 8}, {"name": "kv_len", "min": 2, "max": 64}],
        "buffers": [
            {"name": "tokens", "role": "input", "dtype": "i64", "shape": ["batch"], "output_index": None},
            {"name": "w", "role": "weight", "dtype": "bf16", "shape": ["16", "32"], "output_index": None},
            {"name": "k_caches.0", "role": "kv_cache", "dtype": "bf16", "shape": ["batch", "2", "kv_len", "8"],
             "output_index": 1},
            {"name": "ws", "role": "workspace", "dtype": "f32", "shape": ["batch", "cdiv(kv_len, 8)"],
             "output_index": None},
            {"name": "logits", "role": "output", "dtype": "f32", "shape": ["batch", "256"], "output_index": 0}],
        "counter_words": 6,
        "counters": [{"name": "a", "offset": 0, "words": 2}, {"name": "b", "offset": 2, "extents": [2, 2]}],
        "static_queues": {"offsets": [0, 3, 6, 6, 6], "entries": [0, 0, 1, 1, 0, 2]},
        "ready_queue": {"words": 5},
        "tasks": [{"id": 0, "name": "embed", "kind": "gather", "schedule": "static", "grid": ["batch"]},
                  {"id": 1, "name": "attn", "kind": "attention", "schedule": "static", "grid": ["batch", "2"]},
                  {"id": 2, "name": "lm_head", "kind": "matmul", "schedule": "static", "grid": ["16"]}],
        "model": {}}
    ptx = ".version 8.0\n.target sm_90a\n.address_size 64\n.visible .entry etc_megakernel()\n{\n ret;\n}\n"
    return B.write(path, meta, ptx, cubin)


def test_no_driver_is_a_one_line_error(runtime_module, tmp_path):
    if has_driver():
        pytest.skip("this machine has a CUDA driver")
    R = runtime_module
    with pytest.raises(R.RuntimeUnavailable) as e:
        R.driver_info()
    assert str(e.value).startswith("no CUDA driver: ") and "\n" not in str(e.value)
    with pytest.raises(R.RuntimeUnavailable) as e:
        R.Runtime(tiny_bundle(tmp_path / "b"))
    assert str(e.value).startswith("no CUDA driver: ") and "\n" not in str(e.value)


def test_megakernel_needs_cuda(runtime_module, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(runtime_module.EtcError, match="Megakernel needs a CUDA device"):
        runtime_module.Megakernel(tiny_bundle(tmp_path / "b"), {})


def test_library_path_errors(monkeypatch, tmp_path):
    from etc import runtime as R

    monkeypatch.setenv("ETC_RUNTIME_LIB", str(tmp_path / "missing.so"))
    with pytest.raises(R.EtcError, match=r"ETC_RUNTIME_LIB=.*missing.so: no such file$"):
        R.library_path()


# The host side against a fake driver, in a child process (libcuda.so.1 is found through LD_LIBRARY_PATH).
FAKE_DRIVER_SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, sys.argv[1])
    sys.path.insert(0, sys.argv[2])
    from test_runtime_build import tiny_bundle
    from pathlib import Path
    from etc import runtime as R

    b = tiny_bundle(Path(sys.argv[3]))
    rt = R.Runtime(b, 0)
    try:
        rt.step([3, 10], 0, 1.0)
        raise SystemExit("launched with unbound buffers")
    except R.EtcError as e:
        print("UNBOUND", e)
    rt.bind({0: 0x1000, 1: 0x2000, 2: 0x3000, 4: 0x5000})
    ws = rt.allocate(3, 100)
    rt.step([3, 10], 0, 1.0)
    rt.step([2, 20], 0, 1.0)
    rt.step([2, 20], 0, 1.0)  # same buffer table and sizes: nothing to upload
    print("RESULT", json.dumps({"epoch": rt.epoch, "ws": ws, "counters": rt.counters(), "progress": rt.progress()}))
    cubin = tiny_bundle(Path(sys.argv[3] + "-cubin"), cubin=b"\\x7fELF\\x00fake cubin")
    images = [rt.image, R.Runtime(cubin, 0).image]
    os.environ["FAKE_CUDA_MODE"] = "other_arch"
    images.append(R.Runtime(cubin, 0).image)
    print("IMAGES", json.dumps(images))
    os.environ["FAKE_CUDA_MODE"] = "jit_error"
    try:
        R.Runtime(b, 0)
    except R.EtcError as e:
        print("JIT", json.dumps(str(e)))
    os.environ["FAKE_CUDA_MODE"] = "fault"
    try:
        rt.step([3, 10], 0, 1.0)
    except R.GpuFault as e:
        print("FAULT", json.dumps(str(e)))
    os.environ["FAKE_CUDA_MODE"] = "hang"
    try:
        rt.step([3, 10], 0, 0.2)
    except R.StepTimeout as e:
        print("TIMEOUT", json.dumps(str(e)))
    try:
        rt.step([3, 10], 0, 0.2)
    except R.EtcError as e:
        print("AFTER", type(e).__name__, e)
    rt.close()
    print("CLOSED")
""")


def test_host_side_with_a_fake_driver(runtime_lib, tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    subprocess.run(["c++", "-std=c++17", "-shared", "-fPIC", "-o", str(fake / "libcuda.so.1"),
                    str(ROOT / "runtime" / "test" / "fake_cuda.cpp")], check=True)
    log = tmp_path / "launches.log"
    env = dict(os.environ, LD_LIBRARY_PATH=str(fake), ETC_RUNTIME_LIB=str(runtime_lib), FAKE_CUDA_LOG=str(log),
               FAKE_CUDA_BUFFERS="5", FAKE_CUDA_SYMBOLS="2", FAKE_CUDA_COUNTERS="6", FAKE_CUDA_READY="5",
               FAKE_CUDA_WAIT_WORD="5")
    script = tmp_path / "drive.py"
    script.write_text(FAKE_DRIVER_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(ROOT / "python"), str(Path(__file__).parent),
                           str(tmp_path / "bundle")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in done.stdout.splitlines() if " " in line}
    assert out["UNBOUND"] == "buffer 'tokens' (index 0) is not bound"

    result = json.loads(out["RESULT"])
    assert result["epoch"] == 3
    assert result["counters"] == [(3 << 32) + 1] * 6  # the fake signals every word once a step; never reset
    assert result["progress"] == [[3, 0, w, 0, 0] for w in range(4)]
    lines = log.read_text().splitlines()
    launches = [line for line in lines if line.startswith("launch")]
    at = [i for i, line in enumerate(lines) if line.startswith("launch")]
    # the buffer table (5 addresses) and sizes (2) go up before steps 1 and 2, not before step 3
    assert lines[at[0] - 1] == lines[at[1] - 1] == "upload 56 bytes" and lines[at[2] - 1] == lines[at[1]]
    ws = result["ws"]
    assert launches[0] == (f"launch epoch=1 grid=4 block=128 shared=65536 buffers=4096,8192,12288,{ws},20480 "
                           "sizes=3,10 ready_sum=0 counters=0,0,0,0,0,0")
    # the ready queue the fake dirtied was cleared before step 2; the counters kept step 1's signals
    assert launches[1] == (f"launch epoch=2 grid=4 block=128 shared=65536 buffers=4096,8192,12288,{ws},20480 "
                           "sizes=2,20 ready_sum=0 counters=" + ",".join(["100000001"] * 6))

    # a cubin is loaded as is; one for another architecture falls back to the PTX
    assert json.loads(out["IMAGES"]) == ["ptx", "cubin", "ptx"]

    jit = json.loads(out["JIT"])
    assert jit.startswith("cuModuleLoadDataEx (JIT of the kernel's PTX for device 0 (Fake GPU)) failed: "
                          "CUDA_ERROR_INVALID_PTX (218): a PTX JIT compilation failed\nJIT log:\nptxas fatal: line 3")

    # a faulted step: the runtime's own status, so Python raises GpuFault whatever the message says
    assert json.loads(out["FAULT"]) == ("step 4 failed on the GPU (cuEventQuery after the kernel): "
                                        "CUDA_ERROR_MISALIGNED_ADDRESS (716): misaligned address; the CUDA "
                                        "context is unusable from now on")

    report = json.loads(out["TIMEOUT"]).splitlines()
    assert report[0] == ("step 5 did not finish within 0.2 s; its kernel may still be running, so this runtime "
                         "launches nothing more (restart the process). 2 of 4 workers are stuck (2 done, 0 idle):")
    assert report[1] == ("  worker 0: waiting in task 2 'lm_head' tile 5 on counter word 5 = 'b'[1, 1]: "
                         "value epoch 5 count 1, needs epoch 5 count >= 4")
    assert report[2] == "  worker 1: running task 1 'attn' tile 3 (inside its tile function)"
    assert out["AFTER"].startswith("EtcError step 5 timed out and its kernel may still be running")
    assert "CLOSED" in done.stdout
