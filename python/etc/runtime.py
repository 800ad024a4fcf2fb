"""Run a compiled megakernel bundle on a GPU: the ctypes binding of libetc_runtime and `Megakernel`.

    mk = Megakernel("out/llama", weights)                  # weights: {state-dict name: CUDA tensor}
    mk = Megakernel.from_model("out/llama", model)         # the same, from a torch model
    logits, k_caches, v_caches = mk(tokens, positions, k_caches, v_caches)   # one decode step
    ids = mk.generate([[1, 2, 3], [4, 5, 6]], max_new_tokens=16)           # greedy, [B, P + 16]
    step = mk.prepare(tokens, positions, k_caches, v_caches)  # bound once; step() = one launch

The library is found at $ETC_RUNTIME_LIB, else runtime/build/libetc_runtime.so of the checkout
(tools/gpu/build_runtime.sh), else built with CMake into $ETC_CACHE_DIR (default ~/.cache/etc).
No MLIR here (nor in etc.bundle): GPU machines have none.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from etc.bundle import Bundle, load
from etc.codegen.abi import PROFILE_BUFFER  # abi imports nothing: no MLIR on the GPU machine
from etc.errors import EtcError

if TYPE_CHECKING:
    import torch

ABI_VERSION = 3
OK, ERROR, NO_DRIVER, TIMEOUT, FAULT = range(5)
PROGRESS_WORDS = 5  # = etc.codegen.abi.PROGRESS_WORDS
_SOURCE = Path(__file__).resolve().parents[2] / "runtime"
_LIB_NAME = "libetc_runtime.so"


class RuntimeUnavailable(EtcError):
    """No CUDA driver on this machine (libcuda.so.1 could not be loaded)."""


class StepTimeout(EtcError):
    """A step did not finish within its timeout; the message lists what each stuck worker waits on."""


class GpuFault(EtcError):
    """A step faulted on the GPU (e.g. a misaligned address): the CUDA context is lost, so nothing else can
    run on this GPU in this process."""


# ------------------------------------------------------------------ finding and building the library


def _sources() -> list[Path]:
    return sorted(p for p in _SOURCE.rglob("*") if p.is_file() and "build" not in p.relative_to(_SOURCE).parts
                  and p.suffix in (".cpp", ".h", ".txt"))


def _source_key() -> str:
    h = hashlib.sha256()
    for p in _sources():
        h.update(str(p.relative_to(_SOURCE)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def build_library(cache_dir: str | os.PathLike | None = None) -> Path:
    """Build libetc_runtime with CMake (Release) into a cache directory keyed by the sources' hash."""
    if not (_SOURCE / "CMakeLists.txt").is_file():
        raise EtcError(f"{_LIB_NAME} not found and no runtime sources at {_SOURCE} to build it from; "
                       "set ETC_RUNTIME_LIB to the library")
    if shutil.which("cmake") is None:
        raise EtcError(f"cannot build {_LIB_NAME}: cmake is not on PATH (run tools/gpu/build_runtime.sh where it "
                       "is, or set ETC_RUNTIME_LIB)")
    root = Path(cache_dir or os.environ.get("ETC_CACHE_DIR") or Path.home() / ".cache" / "etc")
    target = root / "runtime" / _source_key()
    lib = target / _LIB_NAME
    if lib.is_file():
        return lib
    target.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; the others then find the library
        if lib.is_file():
            return lib
        build = target / "build"
        for cmd in (["cmake", "-S", str(_SOURCE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
                    ["cmake", "--build", str(build), "--target", "etc_runtime", "-j", str(os.cpu_count() or 2)]):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
                raise EtcError(f"building {_LIB_NAME} failed ({' '.join(cmd[:2])}):\n{tail}")
        tmp = target / f".{_LIB_NAME}.{os.getpid()}"
        shutil.copy2(build / _LIB_NAME, tmp)
        os.replace(tmp, lib)
    return lib


def library_path() -> Path:
    """$ETC_RUNTIME_LIB, else runtime/build's library when newer than the sources, else a cached build."""
    env = os.environ.get("ETC_RUNTIME_LIB")
    if env:
        if not Path(env).is_file():
            raise EtcError(f"ETC_RUNTIME_LIB={env}: no such file")
        return Path(env)
    built = _SOURCE / "build" / _LIB_NAME
    if built.is_file():
        newest = max((p.stat().st_mtime for p in _sources()), default=0)
        if built.stat().st_mtime >= newest:
            return built
    return build_library()


_lib = None
_lib_lock = threading.Lock()


def library() -> ctypes.CDLL:
    """The loaded C ABI (etc/etc_runtime.h), with argument types declared."""
    global _lib
    with _lib_lock:
        if _lib is None:
            path = library_path()
            try:
                lib = ctypes.CDLL(str(path))
            except OSError as e:
                raise EtcError(f"cannot load {path}: {e}") from None
            if not hasattr(lib, "etc_rt_abi_version") or lib.etc_rt_abi_version() != ABI_VERSION:
                found = lib.etc_rt_abi_version() if hasattr(lib, "etc_rt_abi_version") else "none"
                raise EtcError(f"{path} has C ABI version {found}, this ETC needs {ABI_VERSION}; rebuild it "
                               "(tools/gpu/build_runtime.sh)")
            _declare(lib)
            _lib = lib
        return _lib


def _declare(lib):
    c = ctypes
    i32p, i64p, u32p, u64p = (c.POINTER(t) for t in (c.c_int32, c.c_int64, c.c_uint32, c.c_uint64))
    handle = c.c_void_p
    sigs = {
        "etc_rt_last_error": (c.c_char_p, []),
        "etc_rt_driver_info": (c.c_int, [c.POINTER(c.c_int), c.POINTER(c.c_int)]),
        "etc_rt_create": (c.c_int, [c.c_char_p, c.c_char_p, c.c_uint64, c.c_char_p, c.c_int, c.c_int, c.c_int, c.c_int, c.c_int, c.c_int,
                                    c.c_uint64, i32p, i32p, c.c_int64, c.c_uint64, c.POINTER(handle)]),
        "etc_rt_destroy": (None, [handle]),
        "etc_rt_describe_buffer": (c.c_int, [handle, c.c_int, c.c_char_p]),
        "etc_rt_describe_task": (c.c_int, [handle, c.c_int, c.c_char_p]),
        "etc_rt_describe_counter": (c.c_int, [handle, c.c_char_p, c.c_uint64, c.c_uint64, c.c_int, i64p]),
        "etc_rt_bind": (c.c_int, [handle, c.c_int, i32p, u64p]),
        "etc_rt_allocate": (c.c_int, [handle, c.c_int, c.c_uint64, u64p]),
        "etc_rt_launch": (c.c_int, [handle, i64p, c.c_uint64, c.c_double]),
        "etc_rt_wait": (c.c_int, [handle, c.c_double]),
        "etc_rt_step": (c.c_int, [handle, i64p, c.c_uint64, c.c_double]),
        "etc_rt_epoch": (c.c_uint64, [handle]),
        "etc_rt_image": (c.c_char_p, [handle]),
        "etc_rt_read_progress": (c.c_int, [handle, u32p, c.c_uint64]),
        "etc_rt_read_counters": (c.c_int, [handle, u64p, c.c_uint64, c.c_double]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args


def _check(lib, status: int) -> None:
    if status == OK:
        return
    message = (lib.etc_rt_last_error() or b"").decode("utf-8", errors="replace") or f"status {status}"
    raise {NO_DRIVER: RuntimeUnavailable, TIMEOUT: StepTimeout, FAULT: GpuFault}.get(status, EtcError)(message)


def _array(ctype, values):
    values = list(values)
    return (ctype * max(len(values), 1))(*values)


def driver_info() -> tuple[int, int]:
    """(driver version, device count); RuntimeUnavailable without a driver."""
    lib = library()
    version, devices = ctypes.c_int(), ctypes.c_int()
    _check(lib, lib.etc_rt_driver_info(ctypes.byref(version), ctypes.byref(devices)))
    return version.value, devices.value


# ------------------------------------------------------------------ the low-level runtime


class Runtime:
    """One bundle's kernel loaded on one device (the C ABI's etc_rt handle); no torch needed."""

    def __init__(self, bundle: Bundle, device: int = 0):
        self._lib = lib = library()
        self.bundle = bundle
        self._handle = ctypes.c_void_p()
        b = bundle
        cubin = b.cubin if b.cubin and os.environ.get("ETC_JIT") != "1" else None  # ETC_JIT=1: always the PTX
        _check(lib, lib.etc_rt_create(
            b.ptx.encode(), cubin, len(cubin or b""), b.kernel.encode(), int(device), b.num_workers, b.block_size, b.shared_bytes,
            len(b.buffers), len(b.symbols), b.counter_words, _array(ctypes.c_int32, b.queue_offsets),
            _array(ctypes.c_int32, b.queue_entries), len(b.queue_entries), b.ready_words,
            ctypes.byref(self._handle)))
        for i, buf in enumerate(b.buffers):
            _check(lib, lib.etc_rt_describe_buffer(self._handle, i, buf.name.encode()))
        for t in b.tasks:
            _check(lib, lib.etc_rt_describe_task(self._handle, t.id, t.name.encode()))
        for c in b.counters:
            extents = c.extents or ()
            _check(lib, lib.etc_rt_describe_counter(self._handle, c.name.encode(), c.offset, c.words, len(extents),
                                                    _array(ctypes.c_int64, extents)))

    def close(self) -> None:
        if getattr(self, "_handle", None):
            self._lib.etc_rt_destroy(self._handle)
            self._handle = None

    def __del__(self):
        self.close()

    def _h(self):
        if not self._handle:
            raise EtcError("the runtime is closed")
        return self._handle

    def bind(self, addresses: Mapping[int, int]) -> None:
        """Buffer index -> device address (owned by the caller)."""
        items = list(addresses.items())
        _check(self._lib, self._lib.etc_rt_bind(self._h(), len(items), _array(ctypes.c_int32, (i for i, _ in items)),
                                                _array(ctypes.c_uint64, (a for _, a in items))))

    def allocate(self, index: int, nbytes: int) -> int:
        """A zeroed device allocation owned by the runtime, bound to buffer `index`; its address."""
        address = ctypes.c_uint64()
        _check(self._lib, self._lib.etc_rt_allocate(self._h(), index, nbytes, ctypes.byref(address)))
        return address.value

    def launch(self, sizes: Sequence[int], stream: int = 0, timeout_s: float = 10.0) -> None:
        _check(self._lib, self._lib.etc_rt_launch(self._h(), _array(ctypes.c_int64, sizes), stream, timeout_s))

    def wait(self, timeout_s: float = 10.0) -> None:
        _check(self._lib, self._lib.etc_rt_wait(self._h(), timeout_s))

    def step(self, sizes: Sequence[int], stream: int = 0, timeout_s: float = 10.0) -> None:
        """Launch one step with sizes (bundle symbol order) on `stream` and wait for it (StepTimeout)."""
        _check(self._lib, self._lib.etc_rt_step(self._h(), _array(ctypes.c_int64, sizes), stream, timeout_s))

    @property
    def epoch(self) -> int:
        return self._lib.etc_rt_epoch(self._h())

    @property
    def image(self) -> str:
        """What was loaded: "cubin" (assembled at compile time) or "ptx" (JIT at load)."""
        return self._lib.etc_rt_image(self._h()).decode()

    def progress(self) -> list[tuple[int, ...]]:
        """Per worker (state, task id, tile, counter word waited on, its target count), read from
        host-mapped memory (also while a step runs)."""
        n = self.bundle.num_workers * PROGRESS_WORDS
        out = (ctypes.c_uint32 * n)()
        _check(self._lib, self._lib.etc_rt_read_progress(self._h(), out, n))
        return [tuple(out[i:i + PROGRESS_WORDS]) for i in range(0, n, PROGRESS_WORDS)]

    def counters(self, timeout_s: float = 2.0) -> list[int]:
        n = self.bundle.counter_words
        out = (ctypes.c_uint64 * max(n, 1))()
        _check(self._lib, self._lib.etc_rt_read_counters(self._h(), out, n, timeout_s))
        return list(out[:n])


# ------------------------------------------------------------------ Megakernel


def torch_dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32, "f64": torch.float64,
            "i64": torch.int64, "i32": torch.int32, "i16": torch.int16, "i8": torch.int8, "u8": torch.uint8,
            "i1": torch.bool, "bool": torch.bool}[name]


def _names(names, limit=6) -> str:
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


class Megakernel:
    """A compiled decode step on one GPU, called like the model: weights bound once by name; sizes
    (batch, KV length) inferred from each call's inputs within the bundle's ranges, no recompilation.

    Each call waits for its step under the watchdog (`timeout_s`): a step that does not finish raises
    StepTimeout listing the stuck workers, and the Megakernel is unusable afterwards."""

    ALIGNMENT = 16  # bytes: bound tensors must start on this boundary (vector loads)

    def __init__(self, bundle: Bundle | str | os.PathLike, weights: Mapping[str, "torch.Tensor"], *,
                 device="cuda", timeout_s: float = 10.0):
        import torch

        self.bundle = bundle if isinstance(bundle, Bundle) else load(bundle)
        self.timeout_s = float(timeout_s)
        if not torch.cuda.is_available():
            raise EtcError("Megakernel needs a CUDA device, and torch.cuda is not available here")
        device = torch.device(device)
        if device.type != "cuda":
            raise EtcError(f"Megakernel runs on a CUDA device, not {device}")
        self.device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
        torch.empty(0, device=self.device)  # PyTorch's context is the device's primary context, which we share
        self._rt = Runtime(self.bundle, self.device.index)
        self._failed: str | None = None
        self._dummy = torch.empty(64, dtype=torch.uint8, device=self.device)  # bound in place of empty tensors
        self._weights = self._bind_weights(weights)
        max_sizes = self.bundle.max_sizes()
        self._outputs = {}
        for i, b in enumerate(self.bundle.buffers):
            numel = max(1, self.bundle.nbytes(b.name, max_sizes) // b.itemsize)
            if b.role == "output":
                self._outputs[b.name] = torch.empty(numel, dtype=torch_dtype(b.dtype), device=self.device)
                self._rt.bind({i: self._outputs[b.name].data_ptr()})
            elif b.name == PROFILE_BUFFER:  # the profiling build's tile records, read back by profile()
                self._profile = torch.zeros(numel, dtype=torch.int64, device=self.device)
                self._rt.bind({i: self._profile.data_ptr()})
            elif b.role == "workspace":
                self._rt.allocate(i, numel * b.itemsize)
        self._per_call = [b.name for b in self.bundle.buffers if b.role in ("input", "kv_cache")]
        self._bound = None  # the input addresses bound last
        self.num_layers = sum(1 for n in self._per_call if n.startswith("k_caches."))

    @property
    def image(self) -> str:
        """What the runtime loaded: "cubin" or "ptx" (JIT)."""
        return self._rt.image

    def profile(self):
        """The last step's tile records (a profiling bundle only): etc.profile.Record per tile that ran."""
        from etc.profile import records

        if getattr(self, "_profile", None) is None:
            raise EtcError("this bundle was not compiled with profile=True")
        import torch

        torch.cuda.synchronize(self.device)
        return records(self.bundle.meta, self._profile.cpu().tolist())

    @classmethod
    def from_model(cls, bundle, model, *, device="cuda", **kwargs) -> "Megakernel":
        """Weights from a torch model's named_parameters and named_buffers (copied to the device)."""
        bundle = bundle if isinstance(bundle, Bundle) else load(bundle)
        tensors = dict(model.named_parameters())
        tensors.update(dict(model.named_buffers()))
        wanted = {b.name for b in bundle.by_role("weight")}
        weights = {n: t.detach().to(device).contiguous() for n, t in tensors.items() if n in wanted}
        return cls(bundle, weights, device=device, **kwargs)

    def close(self) -> None:
        rt = getattr(self, "_rt", None)
        if rt is not None:
            rt.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _usable(self):
        """After a timeout the kernel may still hold the stream: refuse before any torch work queues behind it."""
        if self._failed:
            raise EtcError(f"this Megakernel is unusable: {self._failed}")

    # ---------------------------------------------------------- binding

    def _check_tensor(self, name: str, t, what: str):
        import torch

        b = self.bundle.buffer(name)
        if not isinstance(t, torch.Tensor):
            raise EtcError(f"{what} {name!r} must be a torch.Tensor, got {type(t).__name__}")
        if t.device != self.device:
            raise EtcError(f"{what} {name!r} is on {t.device}, the Megakernel runs on {self.device}")
        if t.dtype != torch_dtype(b.dtype):
            raise EtcError(f"{what} {name!r} has dtype {t.dtype}, the bundle expects {b.dtype} ({torch_dtype(b.dtype)})")
        if not t.is_contiguous():
            raise EtcError(f"{what} {name!r} is not contiguous (the kernel reads dense row-major buffers)")
        if t.numel() and t.data_ptr() % self.ALIGNMENT:
            raise EtcError(f"{what} {name!r} does not start on a {self.ALIGNMENT}-byte boundary")

    def _address(self, t) -> int:
        return t.data_ptr() if t.numel() else self._dummy.data_ptr()

    def _bind_weights(self, weights: Mapping[str, "torch.Tensor"]) -> dict:
        wanted = [b.name for b in self.bundle.by_role("weight")]
        missing = [n for n in wanted if n not in weights]
        extra = [n for n in weights if n not in set(wanted)]
        if missing:
            raise EtcError(f"missing weights: {_names(missing)} (the bundle needs {len(wanted)})")
        if extra:
            raise EtcError(f"weights the bundle does not use: {_names(extra)}")
        max_sizes = self.bundle.max_sizes()
        addresses = {}
        for name in wanted:
            t = weights[name]
            self._check_tensor(name, t, "weight")
            expected = self.bundle.shape(name, max_sizes)
            if tuple(t.shape) != expected:
                raise EtcError(f"weight {name!r} has shape {tuple(t.shape)}, the bundle expects {expected}")
            addresses[self.bundle.buffer_index(name)] = self._address(t)
        self._rt.bind(addresses)
        return {n: weights[n] for n in wanted}  # kept alive while bound

    # ---------------------------------------------------------- steps

    def _bind_inputs(self, inputs: Mapping[str, "torch.Tensor"]) -> tuple[dict, dict[str, int]]:
        """Check the inputs and bind them: ({buffer index: address}, the sizes they imply)."""
        missing = [n for n in self._per_call if n not in inputs]
        extra = [n for n in inputs if n not in set(self._per_call)]
        if missing:
            raise EtcError(f"missing inputs: {_names(missing)}")
        if extra:
            raise EtcError(f"not inputs of the bundle: {_names(extra)}")
        for name, t in inputs.items():
            self._check_tensor(name, t, "input")
        sizes = self.bundle.infer_sizes(inputs)
        addresses = {self.bundle.buffer_index(n): self._address(t) for n, t in inputs.items()}
        self._rt.bind(addresses)
        self._bound = addresses
        return addresses, sizes

    def _output_views(self, sizes: Mapping[str, int]) -> dict[str, "torch.Tensor"]:
        shapes = self.bundle.shapes(sizes)
        out = {}
        for name, flat in self._outputs.items():
            shape = shapes[name]
            n = 1
            for d in shape:
                n *= d
            out[name] = flat[:n].view(shape)
        return out

    def _launch(self, sizes: list[int], wait: bool) -> None:
        import torch

        stream = torch.cuda.current_stream(self.device).cuda_stream
        with self._lost_on_failure():
            if wait:
                self._rt.step(sizes, stream, self.timeout_s)
            else:
                self._rt.launch(sizes, stream, self.timeout_s)

    def wait(self) -> None:
        """Wait for the last launched step under the watchdog (StepTimeout)."""
        with self._lost_on_failure():
            self._rt.wait(self.timeout_s)

    @contextlib.contextmanager
    def _lost_on_failure(self):
        """A step that hangs (StepTimeout) or faults (GpuFault) makes this Megakernel unusable (_usable)."""
        try:
            yield
        except StepTimeout:
            self._failed = f"step {self._rt.epoch} timed out and its kernel may still be running (restart the process)"
            raise
        except GpuFault:
            self._failed = f"step {self._rt.epoch} faulted on the GPU and the CUDA context is lost (restart the process)"
            raise

    def step(self, inputs: Mapping[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """One step with every input and KV-cache buffer by bundle name; the outputs (role "output") by
        name, as views of the Megakernel's own memory (overwritten by the next step)."""
        self._usable()
        _, sizes = self._bind_inputs(inputs)
        self._launch([sizes[s.name] for s in self.bundle.symbols], wait=True)
        return self._output_views(sizes)

    def _host_input(self, name: str, value, limit: int | None):
        """An input converted to the bundle's dtype on the device; range-checked when it comes from the host."""
        import torch

        b = self.bundle.buffer(name)
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        if t.device.type == "cpu" and limit is not None and t.numel():
            lo, hi = int(t.min()), int(t.max())
            if lo < 0 or hi >= limit:
                raise EtcError(f"{name} must lie in [0, {limit}), got values in [{lo}, {hi}]")
        return t.to(device=self.device, dtype=torch_dtype(b.dtype)).contiguous()

    def _decoder_inputs(self, tokens, positions, k_caches, v_caches) -> dict:
        """The decoder's forward arguments as bundle inputs by name (tokens and positions on the device)."""
        import torch

        n = self.num_layers
        for label, caches in (("k_caches", k_caches), ("v_caches", v_caches)):
            if not isinstance(caches, (list, tuple)) or len(caches) != n:
                raise EtcError(f"{label} must be a list of {n} tensors (one per layer)")
        kv_len = None  # positions index the caches' KV-length dimension: checked when they come from the host
        if n and isinstance(k_caches[0], torch.Tensor):
            shape = self.bundle.buffer("k_caches.0").shape
            batch_sym = self.bundle.buffer("tokens").shape[0].symbol
            dims = [i for i, e in enumerate(shape) if e.symbol and e.symbol != batch_sym]
            if len(dims) == 1 and k_caches[0].dim() == len(shape):
                kv_len = k_caches[0].shape[dims[0]]
        inputs = {"tokens": self._host_input("tokens", tokens, self.bundle.model.get("vocab_size")),
                  "positions": self._host_input("positions", positions, kv_len)}
        inputs.update({f"k_caches.{i}": k for i, k in enumerate(k_caches)})
        inputs.update({f"v_caches.{i}": v for i, v in enumerate(v_caches)})
        return inputs

    def __call__(self, tokens, positions, k_caches, v_caches):
        """The decoder's forward: (logits, k_caches, v_caches), the caches updated in place (the same
        objects are returned). positions[b] is the cache slot written for sequence b."""
        self._usable()
        out = self.step(self._decoder_inputs(tokens, positions, k_caches, v_caches))
        results = [out[b.name].clone() for b in self.bundle.outputs() if b.role == "output"]
        return (*results, k_caches, v_caches)

    def prepare(self, tokens=None, positions=None, k_caches=None, v_caches=None, *,
                inputs: Mapping[str, "torch.Tensor"] | None = None) -> "PreparedStep":
        """A step bound once to these tensors (the decoder's arguments, or every input by bundle name in
        `inputs`), for replay like a CUDA graph: each call of the result only launches (asynchronously, on
        the current stream) and reads the bound tensors' contents at that time. Update them in place
        between calls through the result's `inputs` (tokens or positions that were not already device
        tensors of the bundle's dtype were copied here). Replays check nothing: positions must stay
        within the caches. `outputs` are the output views (valid once the step is done: `wait()` or a
        stream synchronization)."""
        self._usable()
        if inputs is None:
            inputs = self._decoder_inputs(tokens, positions, k_caches, v_caches)
        return PreparedStep(self, inputs)

    def new_caches(self, batch: int, max_context: int):
        """Zeroed (k_caches, v_caches) for `batch` sequences of up to `max_context` slots."""
        import torch

        sizes = self._decode_sizes(batch, max_context)
        shapes = self.bundle.shapes(sizes)
        caches = {}
        for name in self._per_call:
            if name.startswith(("k_caches.", "v_caches.")):
                b = self.bundle.buffer(name)
                caches[name] = torch.zeros(shapes[name], dtype=torch_dtype(b.dtype), device=self.device)
        return ([caches[f"k_caches.{i}"] for i in range(self.num_layers)],
                [caches[f"v_caches.{i}"] for i in range(self.num_layers)])

    def _decode_symbols(self) -> tuple[str, str]:
        """(batch symbol, KV-length symbol): tokens' dim 0, and the other symbol of the k caches' shapes."""
        batch_sym = self.bundle.buffer("tokens").shape[0].symbol
        kv_syms = {e.symbol for n in self._per_call if n.startswith("k_caches.")
                   for e in self.bundle.buffer(n).shape if e.symbol and e.symbol != batch_sym}
        others = {s.name for s in self.bundle.symbols} - {batch_sym} - kv_syms
        if batch_sym is None or len(kv_syms) != 1 or others:
            raise EtcError("generate needs a bundle whose only sizes are the batch (tokens dim 0) and the KV "
                           f"length (a cache dimension); this one has {_names(s.name for s in self.bundle.symbols)}")
        return batch_sym, next(iter(kv_syms))

    def _decode_sizes(self, batch: int, kv_len: int) -> dict[str, int]:
        batch_sym, kv_sym = self._decode_symbols()
        return self.bundle.check_sizes({batch_sym: batch, kv_sym: kv_len})

    def kv_range(self) -> tuple[int, int]:
        """(min, max) KV length of the bundle."""
        kv_sym = self._decode_symbols()[1]
        s = next(s for s in self.bundle.symbols if s.name == kv_sym)
        return s.min, s.max

    def generate(self, prompt_ids, max_new_tokens: int, *, max_context: int | None = None):
        """Greedy decoding: the prompts ([B, P], equal lengths) go through the kernel one token at a time
        (prefill), then max_new_tokens tokens are chosen by argmax. Returns [B, P + max_new_tokens] int64,
        on the prompt tensor's device (CPU for lists). Caches hold max_context slots (default: just enough,
        P + max_new_tokens - 1, at least the bundle's minimum KV length)."""
        import torch

        self._usable()
        try:
            prompt = torch.as_tensor(prompt_ids, dtype=torch.int64)
        except (ValueError, TypeError):
            raise EtcError("prompt_ids must be a [B, P] tensor or B lists of the same length P") from None
        if prompt.dim() != 2 or prompt.shape[1] < 1:
            raise EtcError(f"prompt_ids must have shape [B, P] with P >= 1, got {tuple(prompt.shape)}")
        if max_new_tokens < 0:
            raise EtcError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        result_device = prompt_ids.device if isinstance(prompt_ids, torch.Tensor) else torch.device("cpu")
        vocab = self.bundle.model.get("vocab_size")
        if vocab is not None and prompt.numel() and (int(prompt.min()) < 0 or int(prompt.max()) >= vocab):
            raise EtcError(f"prompt token ids must lie in [0, {vocab})")
        batch, length = prompt.shape
        total = length + max_new_tokens
        if max_new_tokens == 0:
            return prompt.to(result_device)
        slots = total - 1  # the last token is chosen but never fed back
        kv_min, kv_max = self.kv_range()
        context = max(slots, kv_min) if max_context is None else int(max_context)
        if context < slots:
            raise EtcError(f"max_context {context} is too small: {length} prompt + {max_new_tokens} new tokens need "
                           f"{slots} cache slots")
        if context > kv_max:
            raise EtcError(f"{slots if max_context is None else context} cache slots exceed the bundle's maximum "
                           f"KV length {kv_max}")
        k_caches, v_caches = self.new_caches(batch, context)
        out = torch.empty(batch, total, dtype=torch.int64, device=self.device)
        out[:, :length] = prompt.to(self.device)
        logits_name = next(b.name for b in self.bundle.outputs() if b.role == "output")
        inputs = {f"k_caches.{i}": k for i, k in enumerate(k_caches)}
        inputs.update({f"v_caches.{i}": v for i, v in enumerate(v_caches)})
        positions = torch.empty(batch, dtype=torch.int64, device=self.device)
        tokens = torch.empty(batch, dtype=torch.int64, device=self.device)  # aligned, unlike a column of out
        for t in range(slots):
            positions.fill_(t)
            tokens.copy_(out[:, t])
            inputs["tokens"] = tokens
            inputs["positions"] = positions
            logits = self.step(inputs)[logits_name]
            if t + 1 >= length:
                out[:, t + 1] = logits.argmax(-1)
        return out.to(result_device)


class PreparedStep:
    """Megakernel.prepare's result: call it to launch one step with the bound tensors (no checks, no wait)."""

    def __init__(self, mk: Megakernel, inputs: Mapping[str, "torch.Tensor"]):
        self._mk = mk
        self.inputs = dict(inputs)  # the bound tensors, by bundle name (kept alive while bound)
        self._addresses, sizes = mk._bind_inputs(self.inputs)
        self.sizes = dict(sizes)
        self._sizes = [sizes[s.name] for s in mk.bundle.symbols]
        self.outputs = mk._output_views(sizes)

    def __call__(self) -> None:
        mk = self._mk
        mk._usable()
        if mk._bound is not self._addresses:  # another step bound other tensors since
            mk._rt.bind(self._addresses)
            mk._bound = self._addresses
        mk._launch(self._sizes, wait=False)

    def wait(self) -> None:
        self._mk.wait()
