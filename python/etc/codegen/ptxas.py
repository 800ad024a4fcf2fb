"""PTX from a gpu.module (upstream pipeline) and `ptxas -v` resource reports.

    ptx = compile_ptx_text(module_text)          # the megakernel's upstream lowering, in its own context
    report = ptxas_report(ptx)                   # {"etc_megakernel": {"registers": 96, "spill_stores": 0, ...}}
    sizes = function_code_bytes(cubin)           # {"etc_megakernel": 1536000, "$etc_megakernel$etc_tile_1": ...}
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile

from etc.errors import EtcError

ARCH = "sm_90a"


def compile_ptx_text(module_text: str, chip: str = ARCH) -> str:
    """PTX of the one gpu.module in `module_text` (a builtin.module with gpu.container_module), through
    the megakernel's upstream lowering (etc.pipeline.gpu_lowering_pipeline)."""
    from etc import mlir_adapter as mlir
    from etc.codegen.kernel import ptx_of
    from etc.pipeline import gpu_lowering_pipeline

    ctx = mlir.new_context()
    module = mlir.parse(module_text, ctx, source_name="<gpu module>")
    mlir.run_upstream(module, gpu_lowering_pipeline(chip), ctx)
    return ptx_of(module)


def ptxas_path() -> str | None:
    return shutil.which("ptxas") or (os.path.exists("/usr/local/bin/ptxas") and "/usr/local/bin/ptxas") or None


def assemble(ptx_text: str, arch: str = ARCH) -> tuple[bytes, str]:
    """`ptxas -arch=<arch> -v` on the PTX: (the cubin, ptxas's report). EtcError when it does not assemble."""
    exe = ptxas_path()
    if exe is None:
        raise EtcError("ptxas is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "k.ptx"), os.path.join(tmp, "k.cubin")
        with open(src, "w") as f:
            f.write(ptx_text)
        proc = subprocess.run([exe, f"-arch={arch}", "-v", src, "-o", out], capture_output=True, text=True)
        if proc.returncode:
            raise EtcError("ptxas failed: " + " ".join((proc.stderr or proc.stdout).split())[:2000])
        with open(out, "rb") as f:
            cubin = f.read()
    return cubin, proc.stderr + proc.stdout


def run_ptxas(ptx_text: str, arch: str = ARCH) -> str:
    """ptxas's report on the PTX (see assemble)."""
    return assemble(ptx_text, arch)[1]


_FUNC = re.compile(r"(?:Compiling entry function|Function properties for) '?([\w$.]+)'?")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS = re.compile(r"Used (\d+) registers")


def parse_ptxas_report(report: str) -> dict[str, dict]:
    """{function: {"registers", "spill_stores", "spill_loads", "stack"}} from `ptxas -v` output."""
    out: dict[str, dict] = {}
    current = None
    for line in report.splitlines():
        m = _FUNC.search(line)
        if m:
            current = out.setdefault(m.group(1), {"registers": None, "spill_stores": 0, "spill_loads": 0,
                                                  "stack": 0})
            continue
        if current is None:
            continue
        m = _SPILL.search(line)
        if m:
            current["stack"], current["spill_stores"], current["spill_loads"] = map(int, m.groups())
        m = _REGS.search(line)
        if m:
            current["registers"] = int(m.group(1))
    return out


def ptxas_report(ptx_text: str) -> dict[str, dict]:
    """Registers, spill stores/loads (bytes) and stack frame per function of the PTX, from `ptxas -v`."""
    return parse_ptxas_report(run_ptxas(ptx_text))


def function_code_bytes(cubin: bytes) -> dict[str, int]:
    """Bytes of machine code per function of a cubin (its ELF symbol table's FUNC symbols): the kernel
    itself, with everything inlined into it, and every function it still calls (named
    `$<kernel>$<function>`). Code size matters: the megakernel's instruction fetch pays for it."""
    if cubin[:5] != b"\x7fELF\x02":
        raise EtcError("not a 64-bit ELF cubin")
    shoff, = struct.unpack_from("<Q", cubin, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", cubin, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", cubin, shoff + i * shentsize) for i in range(shnum)]
    out = {}
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != 2 or not entsize:  # SHT_SYMTAB
            continue
        names = sections[link][4]
        for k in range(size // entsize):
            name, info, _, _, _, nbytes = struct.unpack_from("<IBBHQQ", cubin, offset + k * entsize)
            if info & 0xF == 2:  # STT_FUNC
                end = cubin.index(b"\0", names + name)
                out[cubin[names + name:end].decode()] = nbytes
    return out


def code_summary(cubin: bytes, kernel: str) -> dict[str, int]:
    """{"code_bytes": the kernel's own code, "functions": how many functions it calls (tile functions,
    companions, math slow paths), "function_bytes": their code}."""
    sizes = function_code_bytes(cubin)
    called = {n: b for n, b in sizes.items() if n != kernel}
    return {"code_bytes": sizes.get(kernel, 0), "functions": len(called), "function_bytes": sum(called.values())}
