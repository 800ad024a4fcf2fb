"""PTX from a gpu.module (upstream pipeline) and `ptxas -v` resource reports.

    ptx = compile_ptx_text(module_text)          # through PIPELINE, in its own MLIR context
    report = ptxas_report(ptx)                   # {"etc_megakernel": {"registers": 96, "spill_stores": 0, ...}}
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

from etc.errors import EtcError

# The tile functions use scf, so the gpu.module needs convert-scf-to-cf before convert-gpu-to-nvvm.
PIPELINE = ("builtin.module(gpu.module(convert-scf-to-cf), "
            "nvvm-attach-target{chip=sm_90a features=+ptx80 O=3}, gpu.module(convert-gpu-to-nvvm), "
            "reconcile-unrealized-casts, gpu-module-to-binary{format=isa})")
ARCH = "sm_90a"


def compile_ptx_text(module_text: str, pipeline: str = PIPELINE) -> str:
    """PTX of the one gpu.module in `module_text` (a builtin.module with gpu.container_module)."""
    from mlir import ir, passmanager

    from etc import mlir_adapter as mlir

    ctx = ir.Context()
    with ctx:
        try:
            module = ir.Module.parse(module_text)
            passmanager.PassManager.parse(pipeline).run(module.operation)
        except ir.MLIRError as e:
            raise mlir.DiagnosticsError(mlir.diagnostics_of(e)) from None
        for op in module.body.operations:
            if op.operation.name == "gpu.binary":
                obj = ir.ArrayAttr(op.operation.attributes["objects"])[0]
                return _object_assembly(obj)
    raise EtcError("the pipeline produced no gpu.binary")


def _object_assembly(obj) -> str:
    """The PTX text of a #gpu.object (its `assembly` property; older bindings: the object string)."""
    for attr in ("object", "properties"):
        try:
            value = getattr(obj, attr)
        except AttributeError:
            continue
        if attr == "object":
            text = value if isinstance(value, str) else bytes(value).decode()
            if ".version" in text:
                return text
        else:
            from mlir import ir
            if value is not None and "assembly" in value:
                return ir.StringAttr(value["assembly"]).value
    text = str(obj)
    start = text.index('assembly = "') + len('assembly = "')
    end = text.index('"', start)
    raw = text[start:end]
    return re.sub(r"\\([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), raw)


def ptxas_path() -> str | None:
    return shutil.which("ptxas") or (os.path.exists("/usr/local/bin/ptxas") and "/usr/local/bin/ptxas") or None


def run_ptxas(ptx_text: str, arch: str = ARCH) -> str:
    """`ptxas -arch=<arch> -v` on the PTX; its report (stderr). EtcError when it does not assemble."""
    exe = ptxas_path()
    if exe is None:
        raise EtcError("ptxas is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx_text)
        proc = subprocess.run([exe, f"-arch={arch}", "-v", src, "-o", os.path.join(tmp, "k.cubin")],
                              capture_output=True, text=True)
    if proc.returncode:
        raise EtcError("ptxas failed: " + " ".join((proc.stderr or proc.stdout).split())[:2000])
    return proc.stderr + proc.stdout


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
