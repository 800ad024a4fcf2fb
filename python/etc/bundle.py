"""Compiled megakernel bundles: a directory with `bundle.json`, `kernel.ptx` and, where ptxas was found at
compile time, `kernel.cubin` (no weights).

    bundle = etc.bundle.load("out/llama")          # EtcError (one line) if it is not a readable v1 bundle
    bundle.shapes({"batch": 2, "kv_len": 100})     # {buffer name: shape}
    bundle.infer_sizes({"tokens": (2,), "k_caches.0": (2, 8, 100, 64), ...})   # {"batch": 2, "kv_len": 100}
    etc.bundle.write("out/llama", meta, ptx, cubin)  # what the compiler calls

bundle.json, format version 1:
    format "etc-bundle", version 1, etc_version, kernel (entry name), ptx (file name), optional cubin
    {file, arch} (the PTX assembled by ptxas for arch; the runtime prefers it), num_workers,
    block_size, shared_bytes (dynamic shared memory per block),
    symbols   [{name, min, max}]: the symbolic sizes; the kernel's `sizes` parameter is i64[len(symbols)]
    buffers   [{name, role, dtype, shape, output_index}]: the kernel's `buffers` parameter is
              u64[len(buffers)] in this order; shape entries are extent expressions (below)
    counter_words, counters [{name, offset, words or extents}]: words [offset, offset + words); extents,
              the counter's ints at max sizes (row-major: words defaults to their product, at least 1), name
              elements in the runtime's timeout report; other keys ("target", "symbols") are kept, not read
    static_queues {offsets: [num_workers + 1], entries: [3 n]}: worker w runs the (task, first, stride)
              triples entries[offsets[w]:offsets[w+1]] (offsets count i32 words)
    ready_queue {words} or null, tasks [{id, name, kind, schedule, grid}], model {free-form}

Extent expressions are strings over symbol names and integers with + - * // (floor) % and
cdiv(a, b), min(a, b), max(a, b), e.g. "batch", "cdiv(kv_len, 8)", "2048". Nothing else is evaluated.

This module must not import MLIR (nor etc.mlir_adapter): it runs on GPU machines that have none.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping

from etc.errors import EtcError

# Kept equal to etc.codegen.abi (a test checks); not imported so that this module stays light.
BUNDLE_FORMAT = "etc-bundle"
BUNDLE_VERSION = 1
KERNEL_NAME = "etc_megakernel"
BUNDLE_FILE = "bundle.json"
PTX_FILE = "kernel.ptx"
CUBIN_FILE = "kernel.cubin"

ROLES = ("input", "output", "weight", "kv_cache", "workspace")
DTYPE_BYTES = {"bf16": 2, "f16": 2, "f32": 4, "f64": 8, "i64": 8, "i32": 4, "i16": 2, "i8": 1, "u8": 1, "i1": 1,
               "bool": 1}


# ------------------------------------------------------------------ extent expressions


class Expr:
    """A parsed extent expression; `expr(env)` evaluates it with env: name -> int."""

    MAX_LENGTH = 500
    _BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
               ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b}
    _CALLS = {"cdiv": lambda a, b: -(-a // b), "min": min, "max": max}

    def __init__(self, text: str, names=None):
        """names: the allowed variable names (None: any identifier that is not a function name)."""
        if not isinstance(text, str):
            raise EtcError(f"an extent expression must be a string, got {text!r}")
        if len(text) > self.MAX_LENGTH:
            raise EtcError(f"extent expression longer than {self.MAX_LENGTH} characters")
        self.text = text
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError:
            raise EtcError(f"extent expression {text!r} is not valid syntax") from None
        self.names: set[str] = set()
        self._fn = self._compile(tree.body, names)
        # The symbol name when the expression is exactly one name, e.g. "batch" (what sizes are inferred from).
        self.symbol: str | None = tree.body.id if isinstance(tree.body, ast.Name) else None

    def __call__(self, env: Mapping[str, int]) -> int:
        try:
            return self._fn(env)
        except ZeroDivisionError:
            raise EtcError(f"extent expression {self.text!r} divides by zero for "
                           f"{_fmt_sizes({n: env[n] for n in sorted(self.names) if n in env})}") from None
        except KeyError as e:
            raise EtcError(f"extent expression {self.text!r}: no value for {e.args[0]!r}") from None

    def __repr__(self):
        return f"Expr({self.text!r})"

    def __eq__(self, other):
        return isinstance(other, Expr) and other.text == self.text

    def __hash__(self):
        return hash(self.text)

    def _compile(self, node, names):
        bad = f"extent expression {self.text!r}"
        if isinstance(node, ast.Constant):
            if type(node.value) is not int:
                raise EtcError(f"{bad}: only integer constants are allowed, not {node.value!r}")
            value = node.value
            return lambda env: value
        if isinstance(node, ast.Name):
            if node.id in self._CALLS or (names is not None and node.id not in names):
                known = f" (known: {', '.join(sorted(names))})" if names else ""
                raise EtcError(f"{bad}: unknown name {node.id!r}{known}")
            name = node.id
            self.names.add(name)
            return lambda env: env[name]
        if isinstance(node, ast.BinOp) and type(node.op) in self._BINOPS:
            op, left, right = self._BINOPS[type(node.op)], self._compile(node.left, names), self._compile(node.right, names)
            return lambda env: op(left(env), right(env))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self._compile(node.operand, names)
            return (lambda env: -operand(env)) if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in self._CALLS:
                raise EtcError(f"{bad}: only cdiv, min and max may be called")
            if node.keywords or len(node.args) != 2 or any(isinstance(a, ast.Starred) for a in node.args):
                raise EtcError(f"{bad}: {node.func.id} takes exactly two arguments")
            fn = self._CALLS[node.func.id]
            a, b = (self._compile(arg, names) for arg in node.args)
            return lambda env: fn(a(env), b(env))
        raise EtcError(f"{bad}: {type(node).__name__} is not allowed (only integers, names, + - * // %, "
                       "cdiv, min, max)")


def _fmt_sizes(sizes: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sizes.items()) or "no sizes"


# ------------------------------------------------------------------ the bundle


@dataclasses.dataclass(frozen=True)
class Symbol:
    name: str
    min: int
    max: int


@dataclasses.dataclass(frozen=True)
class BufferSpec:
    name: str
    role: str
    dtype: str
    shape: tuple[Expr, ...]
    output_index: int | None

    @property
    def itemsize(self) -> int:
        return DTYPE_BYTES[self.dtype]


@dataclasses.dataclass(frozen=True)
class CounterSpec:
    name: str
    offset: int
    words: int
    extents: tuple[int, ...] | None = None


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    id: int
    name: str
    kind: str
    schedule: str | None
    grid: tuple[Expr, ...]


@dataclasses.dataclass
class Bundle:
    path: Path | None
    meta: dict  # the bundle.json contents as read
    ptx: str
    kernel: str
    num_workers: int
    block_size: int
    shared_bytes: int
    symbols: list[Symbol]
    buffers: list[BufferSpec]
    counter_words: int
    counters: list[CounterSpec]
    queue_offsets: list[int]
    queue_entries: list[int]
    ready_words: int
    tasks: list[TaskSpec]
    model: dict
    cubin: bytes | None = None  # the PTX assembled for cubin_arch
    cubin_arch: str | None = None

    # ---------------------------------------------------------- lookups

    def buffer(self, name: str) -> BufferSpec:
        for b in self.buffers:
            if b.name == name:
                return b
        raise EtcError(f"the bundle has no buffer {name!r}")

    def buffer_index(self, name: str) -> int:
        for i, b in enumerate(self.buffers):
            if b.name == name:
                return i
        raise EtcError(f"the bundle has no buffer {name!r}")

    def by_role(self, *roles: str) -> list[BufferSpec]:
        return [b for b in self.buffers if b.role in roles]

    def outputs(self) -> list[BufferSpec]:
        """Buffers with an output_index, in output order."""
        return sorted((b for b in self.buffers if b.output_index is not None), key=lambda b: b.output_index)

    def max_sizes(self) -> dict[str, int]:
        return {s.name: s.max for s in self.symbols}

    # ---------------------------------------------------------- sizes and shapes

    def check_sizes(self, sizes: Mapping[str, int]) -> dict[str, int]:
        """sizes, complete and in range, in symbol order; EtcError otherwise."""
        known = {s.name for s in self.symbols}
        extra = [k for k in sizes if k not in known]
        if extra:
            raise EtcError(f"unknown size {extra[0]!r}; the bundle's symbols are {', '.join(sorted(known)) or 'none'}")
        out = {}
        for s in self.symbols:
            if s.name not in sizes:
                raise EtcError(f"no value for size {s.name!r}")
            value = sizes[s.name]
            if isinstance(value, bool) or not isinstance(value, int):
                try:
                    value = int(value.__index__())
                except (AttributeError, TypeError):
                    raise EtcError(f"size {s.name} must be an integer, got {value!r}") from None
            if not s.min <= value <= s.max:
                raise EtcError(f"{s.name} = {value} is outside the bundle's range [{s.min}, {s.max}]")
            out[s.name] = value
        return out

    def shapes(self, sizes: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
        """{buffer name: shape} at these sizes (every symbol given, in range)."""
        env = self.check_sizes(sizes)
        return {b.name: tuple(e(env) for e in b.shape) for b in self.buffers}

    def shape(self, name: str, sizes: Mapping[str, int]) -> tuple[int, ...]:
        env = self.check_sizes(sizes)
        return tuple(e(env) for e in self.buffer(name).shape)

    def nbytes(self, name: str, sizes: Mapping[str, int]) -> int:
        """Bytes of a buffer at these sizes (row-major, dense)."""
        b = self.buffer(name)
        n = b.itemsize
        for extent in self.shape(name, sizes):
            n *= max(extent, 0)
        return n

    def infer_sizes(self, bound: Mapping[str, Any], given: Mapping[str, int] | None = None) -> dict[str, int]:
        """The symbol values implied by bound buffers (name -> shape, or anything with .shape).

        A symbol takes its value from every bound dimension whose extent expression is exactly that
        symbol; those must agree and lie in the symbol's range, and then every bound buffer must have
        exactly the shape the bundle gives it at those sizes. `given` fixes symbols directly."""
        shapes = {}
        for name, value in bound.items():
            self.buffer(name)  # unknown names are errors
            shape = getattr(value, "shape", value)
            shapes[name] = tuple(int(d) for d in shape)
        found: dict[str, tuple[int, str]] = {}
        for name, value in (given or {}).items():
            found[name] = (value, "given")
        for b in self.buffers:
            if b.name not in shapes:
                continue
            shape = shapes[b.name]
            if len(shape) != len(b.shape):
                raise EtcError(f"{b.name} has {len(shape)} dimensions {shape}, the bundle expects {len(b.shape)}: "
                               f"({', '.join(e.text for e in b.shape)})")
            for dim, (extent, expr) in enumerate(zip(shape, b.shape)):
                sym = expr.symbol
                if sym is None:
                    continue
                where = f"{b.name} dim {dim}"
                if sym in found and found[sym][0] != extent:
                    raise EtcError(f"inconsistent sizes: {sym} is {found[sym][0]} from {found[sym][1]} "
                                   f"but {extent} from {where}")
                found.setdefault(sym, (extent, where))
        sizes = {}
        for s in self.symbols:
            if s.name not in found:
                raise EtcError(f"cannot infer size {s.name!r}: no bound buffer has a dimension that is exactly "
                               f"{s.name!r}")
            value, where = found[s.name]
            if not s.min <= value <= s.max:
                raise EtcError(f"{s.name} = {value} (from {where}) is outside the bundle's range [{s.min}, {s.max}]")
            sizes[s.name] = value
        sizes = self.check_sizes(sizes)
        expected = self.shapes(sizes)
        for name, shape in shapes.items():
            if shape != expected[name]:
                raise EtcError(f"{name} has shape {shape}, expected {expected[name]} for {_fmt_sizes(sizes)}")
        return sizes

    def counter_at(self, word: int) -> tuple[str, tuple[int, ...]] | None:
        """(counter name, element coordinates) of a counter word; coordinates () without extents."""
        for c in self.counters:
            if c.offset <= word < c.offset + c.words:
                element, coords = word - c.offset, []
                for extent in reversed(c.extents or ()):
                    coords.append(element % max(extent, 1))
                    element //= max(extent, 1)
                return c.name, tuple(reversed(coords)) if c.extents else (element,)
        return None


# ------------------------------------------------------------------ reading and writing


class _Reader:
    """Field access on the parsed JSON with one-line errors that name the file and the field."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, field: str, problem: str):
        raise EtcError(f"{self.where}: {field}: {problem}")

    def get(self, obj: dict, key: str, types, field: str | None = None, optional=False, default=None):
        field = field or key
        if not isinstance(obj, dict):
            self.fail(field.rsplit(".", 1)[0] if "." in field else field, "expected an object")
        if key not in obj or (optional and obj[key] is None):
            if optional:
                return default
            self.fail(field, "missing")
        value = obj[key]
        if types is int and (isinstance(value, bool) or not isinstance(value, int)):
            self.fail(field, f"expected an integer, got {value!r}")
        if types is not int and not isinstance(value, types):
            names = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
            self.fail(field, f"expected {names}, got {type(value).__name__}")
        return value

    def ints(self, obj, key, field=None, optional=False):
        values = self.get(obj, key, list, field, optional=optional)
        if values is None:
            return None
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, int):
                self.fail(f"{field or key}[{i}]", f"expected an integer, got {v!r}")
        return values

    def expr(self, text, names, field) -> Expr:
        try:
            return Expr(text, names)
        except EtcError as e:
            self.fail(field, str(e))


def _parse(meta: Any, ptx: str, where: str, path: Path | None, cubin: bytes | None = None) -> Bundle:
    r = _Reader(where)
    if not isinstance(meta, dict):
        raise EtcError(f"{where}: not an ETC bundle (expected a JSON object, got {type(meta).__name__})")
    fmt = meta.get("format")
    if fmt != BUNDLE_FORMAT:
        raise EtcError(f"{where}: not an ETC bundle (format {fmt!r}, expected {BUNDLE_FORMAT!r})")
    version = meta.get("version")
    if version != BUNDLE_VERSION:
        raise EtcError(f"{where}: bundle format version {version!r} (written by ETC {meta.get('etc_version', '?')}) "
                       f"is not supported: this ETC reads version {BUNDLE_VERSION}; recompile the model")
    kernel = r.get(meta, "kernel", str)
    num_workers = r.get(meta, "num_workers", int)
    block_size = r.get(meta, "block_size", int)
    shared_bytes = r.get(meta, "shared_bytes", int)
    if num_workers < 1 or block_size < 1 or shared_bytes < 0:
        r.fail("num_workers", f"need num_workers >= 1, block_size >= 1, shared_bytes >= 0 (got {num_workers}, "
                              f"{block_size}, {shared_bytes})")

    symbols = []
    for i, s in enumerate(r.get(meta, "symbols", list)):
        f = f"symbols[{i}]"
        name = r.get(s, "name", str, f + ".name")
        lo, hi = r.get(s, "min", int, f + ".min"), r.get(s, "max", int, f + ".max")
        if not name.isidentifier() or name in Expr._CALLS or name.startswith("d") and name[1:].isdigit():
            r.fail(f + ".name", f"{name!r} cannot be a symbol name")
        if not 0 <= lo <= hi:
            r.fail(f, f"bad range [{lo}, {hi}]")
        if any(x.name == name for x in symbols):
            r.fail(f + ".name", f"duplicate symbol {name!r}")
        symbols.append(Symbol(name, lo, hi))
    names = {s.name for s in symbols}

    buffers = []
    for i, b in enumerate(r.get(meta, "buffers", list)):
        f = f"buffers[{i}]"
        name = r.get(b, "name", str, f + ".name")
        role = r.get(b, "role", str, f + ".role")
        dtype = r.get(b, "dtype", str, f + ".dtype")
        if role not in ROLES:
            r.fail(f + ".role", f"{role!r} is not one of {', '.join(ROLES)}")
        if dtype not in DTYPE_BYTES:
            r.fail(f + ".dtype", f"{dtype!r} is not one of {', '.join(DTYPE_BYTES)}")
        shape = tuple(r.expr(e, names, f"{f}.shape[{k}]") for k, e in enumerate(r.get(b, "shape", list, f + ".shape")))
        out = r.get(b, "output_index", int, f + ".output_index", optional=True)
        if any(x.name == name for x in buffers):
            r.fail(f + ".name", f"duplicate buffer {name!r}")
        buffers.append(BufferSpec(name, role, dtype, shape, out))

    counter_words = r.get(meta, "counter_words", int)
    counters = []
    for i, c in enumerate(r.get(meta, "counters", list)):
        f = f"counters[{i}]"
        name = r.get(c, "name", str, f + ".name")
        offset = r.get(c, "offset", int, f + ".offset")
        extents = r.ints(c, "extents", f + ".extents", optional=True)
        if extents is not None and any(e < 0 for e in extents):
            r.fail(f + ".extents", f"negative extent in {extents}")
        if extents is None or "words" in c:
            words = r.get(c, "words", int, f + ".words")
        else:
            words = 1
            for e in extents:
                words *= e
            words = max(words, 1)
        if offset < 0 or words < 0 or offset + words > counter_words:
            r.fail(f, f"words [{offset}, {offset + words}) outside counter_words {counter_words}")
        counters.append(CounterSpec(name, offset, words, tuple(extents) if extents is not None else None))

    queues = r.get(meta, "static_queues", dict)
    offsets = r.ints(queues, "offsets", "static_queues.offsets")
    entries = r.ints(queues, "entries", "static_queues.entries")
    if len(offsets) != num_workers + 1:
        r.fail("static_queues.offsets", f"{len(offsets)} offsets for {num_workers} workers (need num_workers + 1)")
    if len(entries) % 3:
        r.fail("static_queues.entries", f"{len(entries)} values, not (task, first, stride) triples")
    if offsets[0] != 0 or offsets[-1] != len(entries) or any(a > b for a, b in zip(offsets, offsets[1:])):
        r.fail("static_queues.offsets", f"must rise from 0 to {len(entries)} (the number of entries)")

    ready = r.get(meta, "ready_queue", dict, optional=True)
    ready_words = 0 if ready is None else r.get(ready, "words", int, "ready_queue.words")
    if ready_words < 0:
        r.fail("ready_queue.words", f"negative ({ready_words})")

    tasks = []
    for i, t in enumerate(r.get(meta, "tasks", list)):
        f = f"tasks[{i}]"
        tasks.append(TaskSpec(r.get(t, "id", int, f + ".id"), r.get(t, "name", str, f + ".name"),
                              r.get(t, "kind", str, f + ".kind"),
                              r.get(t, "schedule", str, f + ".schedule", optional=True),
                              tuple(r.expr(e, names, f"{f}.grid[{k}]")
                                    for k, e in enumerate(r.get(t, "grid", list, f + ".grid")))))
    model = r.get(meta, "model", dict, optional=True, default={})
    cubin_info = r.get(meta, "cubin", dict, optional=True, default=None)
    cubin_arch = r.get(cubin_info, "arch", str, "cubin.arch") if cubin_info is not None else None
    return Bundle(path, meta, ptx, kernel, num_workers, block_size, shared_bytes, symbols, buffers, counter_words,
                  counters, offsets, entries, ready_words, tasks, model, cubin if cubin_info else None, cubin_arch)


def load(path) -> Bundle:
    """Read and check a bundle directory (or its bundle.json); EtcError with one line otherwise."""
    path = Path(path)
    if path.is_file() and path.name == BUNDLE_FILE:
        path = path.parent
    meta_file = path / BUNDLE_FILE
    if not path.is_dir():
        raise EtcError(f"{path}: no such bundle directory")
    try:
        text = meta_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EtcError(f"{path}: not a bundle (no {BUNDLE_FILE})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EtcError(f"{meta_file}: cannot read: {e}") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise EtcError(f"{meta_file}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    # Format and version first: a bundle of another version may lay out everything else differently.
    if isinstance(meta, dict) and meta.get("format") == BUNDLE_FORMAT and meta.get("version") == BUNDLE_VERSION:
        ptx_name = meta.get("ptx", PTX_FILE)
        if not isinstance(ptx_name, str) or not ptx_name or Path(ptx_name).name != ptx_name:
            raise EtcError(f"{meta_file}: ptx: expected a file name in the bundle directory, got {ptx_name!r}")
        try:
            ptx = (path / ptx_name).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise EtcError(f"{path}: the bundle's PTX file {ptx_name} is missing") from None
        except (OSError, UnicodeDecodeError) as e:
            raise EtcError(f"{path / ptx_name}: cannot read: {e}") from None
        cubin = _read_cubin(path, meta, meta_file)
    else:
        ptx, cubin = "", None
    return _parse(meta, ptx, str(meta_file), path, cubin)


def _read_cubin(path: Path, meta: dict, meta_file: Path) -> bytes | None:
    info = meta.get("cubin")
    if info is None:
        return None
    name = info.get("file") if isinstance(info, dict) else None
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise EtcError(f"{meta_file}: cubin.file: expected a file name in the bundle directory, got {name!r}")
    try:
        data = (path / name).read_bytes()
    except FileNotFoundError:
        raise EtcError(f"{path}: the bundle's cubin file {name} is missing") from None
    except OSError as e:
        raise EtcError(f"{path / name}: cannot read: {e}") from None
    if data[:4] != b"\x7fELF" or len(data) < 64:  # the driver reads it without a length: check it is an image
        raise EtcError(f"{path / name}: not a cubin (no ELF header)")
    return data


def etc_version() -> str:
    try:
        from importlib.metadata import version

        return version("etc-compiler")
    except Exception:  # not installed: running from the checkout
        return "0.1.0+checkout"


def write(path, meta: dict, ptx: str, cubin: bytes | None = None, cubin_arch: str = "sm_90a") -> Bundle:
    """Write a bundle directory (bundle.json, kernel.ptx, kernel.cubin when `cubin` is given) and return it
    as loaded.

    meta: the bundle.json fields; "format", "version", "etc_version", "kernel" and "ptx" are filled in
    when absent. It is checked exactly as `load` checks it, before anything is written."""
    meta = dict(meta)
    if cubin:
        meta["cubin"] = {"file": CUBIN_FILE, "arch": cubin_arch}
    else:
        meta.pop("cubin", None)
    meta.setdefault("format", BUNDLE_FORMAT)
    meta.setdefault("version", BUNDLE_VERSION)
    meta.setdefault("etc_version", etc_version())
    meta.setdefault("kernel", KERNEL_NAME)
    meta.setdefault("ptx", PTX_FILE)
    meta.setdefault("model", {})
    if not isinstance(ptx, str) or not ptx:
        raise EtcError("bundle.write: the PTX must be a non-empty string")
    path = Path(path)
    try:
        text = json.dumps(meta, indent=1)
    except (TypeError, ValueError) as e:
        raise EtcError(f"bundle.write: the metadata is not JSON: {e}") from None
    bundle = _parse(json.loads(text), ptx, f"{path / BUNDLE_FILE}", path, cubin)
    if not isinstance(meta["ptx"], str) or Path(meta["ptx"]).name != meta["ptx"]:
        raise EtcError(f"bundle.write: ptx must be a plain file name, got {meta['ptx']!r}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        files = [(meta["ptx"], ptx.encode())] + ([(CUBIN_FILE, bytes(cubin))] if cubin else [])
        if not cubin and (path / CUBIN_FILE).exists():
            (path / CUBIN_FILE).unlink()  # a stale cubin from an earlier compile must not stay beside new PTX
        for name, content in files + [(BUNDLE_FILE, (text + "\n").encode())]:  # bundle.json last
            tmp = path / f".{name}.tmp{os.getpid()}"
            tmp.write_bytes(content)
            os.replace(tmp, path / name)
    except OSError as e:
        raise EtcError(f"{path}: cannot write the bundle: {e}") from None
    return bundle
