"""Pass pipelines: parse 'etc-a{opt=1},canonicalize,func.func(cse)' and run it.

ETC passes are Python passes, which MLIR's own pipeline parser cannot see, so this module splits a
pipeline into steps: an ETC pass from the registry (with its options), or upstream MLIR text handed
to MLIR's PassManager. ETC passes run on the builtin.module, so they are not nested under an anchor.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import shlex
import sys
import tempfile

from mlir import ir

from etc import mlir_adapter as mlir
from etc.errors import EtcError, PassFailure, PipelineError
from etc.passes import DEFAULT_PIPELINE, REGISTRY, Pass


@dataclasses.dataclass
class Step:
    text: str  # as written in a pipeline
    etc_pass: Pass | None = None  # None: an upstream MLIR step

    @property
    def name(self) -> str:
        return self.etc_pass.NAME if self.etc_pass else self.text.split("{")[0].split("(")[0]


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside (), {} and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
            if depth < 0:
                raise PipelineError(f"unbalanced '{ch}' in pass pipeline '{text}'")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0 or quote:
        raise PipelineError(f"unbalanced brackets or quotes in pass pipeline '{text}'")
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _parse_options(name: str, text: str) -> dict[str, str]:
    options = {}
    for item in shlex.split(text):
        key, eq, value = item.partition("=")
        if not eq or not key or not value:
            raise PipelineError(f"malformed option '{item}' of pass '{name}': write {name}{{key=value}}")
        options[key] = value
    return options


def _known_passes() -> str:
    return ", ".join(REGISTRY)


def parse_pipeline(text: str, ctx: ir.Context) -> list[Step]:
    text = text.strip()
    if text.startswith("builtin.module("):
        elements = _split_top(text)
        if len(elements) != 1 or not text.endswith(")"):
            raise PipelineError(f"a pipeline anchored on builtin.module must be one 'builtin.module(...)': '{text}'")
        text = text[len("builtin.module("):-1]
    steps = []
    for element in _split_top(text):
        if not element:
            raise PipelineError(f"empty element in pass pipeline '{text}'")
        name = element.split("{")[0].split("(")[0].strip()
        if name in REGISTRY:
            rest = element[len(name):].strip()
            if rest.startswith("("):
                raise PipelineError(f"ETC pass '{name}' runs on the module and takes no nested pipeline")
            options = {}
            if rest:
                if not (rest.startswith("{") and rest.endswith("}")):
                    raise PipelineError(f"malformed options '{rest}' of pass '{name}': write {name}{{key=value}}")
                options = _parse_options(name, rest[1:-1])
            steps.append(Step(element, REGISTRY[name](**options)))
            continue
        if any(n in element for n in REGISTRY):
            raise PipelineError(f"ETC passes cannot be nested under an anchor: '{element}'")
        if name.startswith("etc-"):
            raise PipelineError(f"unknown pass '{name}'; ETC passes: {_known_passes()}")
        try:
            mlir.check_upstream(element, ctx)
        except ValueError as e:
            detail = " ".join(line.strip() for line in str(e).splitlines() if line.strip() and line.strip() != "^")
            if "does not refer to a registered pass" in detail:
                raise PipelineError(f"unknown pass '{name}'; ETC passes: {_known_passes()} "
                                    "(upstream MLIR passes are accepted too)") from None
            raise PipelineError(f"malformed upstream pass '{element}': {detail}") from None
        steps.append(Step(element))
    return steps


def run_steps(module, steps: list[Step], ctx: ir.Context) -> None:
    """Run the steps in order; raise PassFailure naming the failing step (diagnostics attached)."""
    for step in steps:
        try:
            if step.etc_pass is not None:
                step.etc_pass.apply(module, ctx)
            else:
                mlir.run_upstream(module, step.text, ctx)
        except ir.MLIRError as e:
            diags = mlir.diagnostics_of(e, with_notes=False)
            lines = "\n".join(str(d) for d in diags if d.severity == "error") or str(e).splitlines()[0]
            raise PassFailure(f"pass '{step.name}' failed: {lines}", step.name, diags) from None
        except EtcError as e:
            raise PassFailure(f"pass '{step.name}' failed: {e}", step.name) from None
        except Exception as e:  # a bug in a pass: still name it and keep the reproducer
            raise PassFailure(f"pass '{step.name}' failed with an internal error: {type(e).__name__}: {e}",
                              step.name) from e


_repro_counter = itertools.count()


def write_reproducer(input_text: str, steps: list[Step], failing: str) -> str:
    """Write the input IR and print the etc-opt command that replays the pipeline up to the failure."""
    upto = []
    for step in steps:
        upto.append(step.text)
        if step.name == failing:
            break
    directory = os.environ.get("ETC_REPRODUCER_DIR") or tempfile.gettempdir()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"etc-reproducer-{os.getpid()}-{next(_repro_counter)}.mlir")
    with open(path, "w") as f:
        f.write(input_text)
    command = f"etc-opt --allow-unregistered-dialect -p {shlex.quote(','.join(upto))} {shlex.quote(path)}"
    print(f"etc: pass '{failing}' failed; reproduce with: {command}", file=sys.stderr)
    return path


def run_pipeline(module, pipeline: str | None = None, *, source_name: str = "<input>"):
    """Run `pipeline` (default: the ETC default pipeline) on an mlir.ir.Module or IR text.

    Returns the module (the same object when one is given; a new one parsed from text otherwise).
    On failure raises PassFailure that names the failing pass, and writes a reproducer file.
    """
    if isinstance(module, str):
        ctx = mlir.new_context(allow_unregistered=True)
        module = mlir.parse(module, ctx, source_name)
    elif not isinstance(getattr(module, "operation", None), ir.Operation):
        raise EtcError(f"run_pipeline takes an mlir.ir.Module or IR text, not {type(module).__name__}")
    else:
        ctx = module.context
        mlir.load_dialects(ctx)
    steps = parse_pipeline(pipeline or DEFAULT_PIPELINE, ctx)
    input_text = mlir.to_text(module, debug_info=True)
    try:
        run_steps(module, steps, ctx)
    except PassFailure as failure:
        failure.reproducer = write_reproducer(input_text, steps, failure.pass_name)
        raise
    return module


SCHEDULES = ("static", "dynamic", "hybrid")


def scheduling_pipeline(schedule: str, num_sms: int, early_push: bool = False, block_size: int = 256) -> str:
    """The pipeline text that lowers event_tensor IR to scheduled sm_task IR.

    schedule: "static" (per-worker queues fixed at compile time), "dynamic" (an on-GPU ready queue) or
    "hybrid" (static for grids of constant extent, dynamic for grids whose extent depends on sizes).
    """
    if schedule not in SCHEDULES:
        raise PipelineError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if not isinstance(num_sms, int) or isinstance(num_sms, bool) or num_sms < 1:
        raise PipelineError(f"num_sms must be a positive integer, got {num_sms!r}")
    if not isinstance(block_size, int) or isinstance(block_size, bool) or not 32 <= block_size <= 1024 \
            or block_size % 32:
        raise PipelineError(f"block_size must be a multiple of 32 in [32, 1024], got {block_size!r}")
    return (f"etc-lower-to-sm-task{{policy={schedule} block-size={block_size}}},"
            f"etc-static-schedule{{num-sms={num_sms}}},"
            f"etc-dynamic-schedule{{early-push={'true' if early_push else 'false'}}}")


FUSIONS = ("norm-linear", "linear-residual", "silu-mul", "rope-kv-append", "head-norm-attention", "attention-merge",
           "attention-merge-last")
# fusions that are an option of etc-form-task-grids rather than a pass etc-fuse-<name>; attention-merge-last
# (its merge-last-split: each kv group's last split merges) leaves no merge grid for attention-merge to fold
FORM_FUSIONS = ("attention-merge", "attention-merge-last")
# The attention merge in each kv group's last split (attention-merge-last; else folded into o_proj) at one
# row only, its own stage at more rows (etc-form-task-grids merge-per-batch): off here unless named in a fuse
# dict; etc.compile and etc.compile_to_tasks turn it on for the static schedule (measured on the H200: the
# merge grid 8-20% faster than the last split's merge at batch 4 and 16, BENCHMARKS.md), and a ready queue
# cannot run it (a wait on a grid with no tiles is never released).
MERGE_PER_BATCH = "attention-merge-per-batch"


def frontend_pipeline(*, fuse=True, num_sms: int = 132, tile_n: int = 0, kv_chunk: int = 128,
                      split_heads: bool = True, wide_kv: bool = True) -> str:
    """The pipeline text from imported torch IR to event_tensor IR: raise, fuse, tile, form event tensors.

    fuse: True (all fusions), False (none) or a dict fusion name -> bool (names in FUSIONS, and
    MERGE_PER_BATCH: the attention merge folded at one row only, off unless given, needs attention-merge).
    """
    if isinstance(fuse, bool):
        fuse = dict.fromkeys(FUSIONS, fuse)
    unknown = set(fuse) - set(FUSIONS) - {MERGE_PER_BATCH}
    if unknown:
        raise PipelineError(f"unknown fusion {sorted(unknown)[0]!r}; fusions: {', '.join(FUSIONS)}")
    per_batch = fuse.get(MERGE_PER_BATCH, False)
    if per_batch and not (fuse.get("attention-merge", True) or fuse.get("attention-merge-last", True)):
        raise PipelineError(f"{MERGE_PER_BATCH} folds the attention merge at one row: it needs the "
                            "attention-merge or attention-merge-last fusion, both off")
    for name, value in (("num_sms", num_sms), ("kv_chunk", kv_chunk)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise PipelineError(f"{name} must be a positive integer, got {value!r}")
    on = {name: "true" if fuse.get(name, True) else "false" for name in FUSIONS}
    fusions = [f"etc-fuse-{name}{{enable={on[name]}}}" for name in FUSIONS if name not in FORM_FUSIONS]
    return ",".join(["etc-raise-torch", "etc-raise-elementwise", *fusions,
                     f"etc-tile{{num-sms={num_sms} tile-n={tile_n} kv-chunk={kv_chunk} "
                     f"split-heads={'true' if split_heads else 'false'} wide-kv={'true' if wide_kv else 'false'}}}",
                     f"etc-form-task-grids{{fuse-attention-merge={on['attention-merge']} "
                     f"merge-per-batch={'true' if per_batch else 'false'} "
                     f"merge-last-split={on['attention-merge-last']}}}",
                     "etc-derive-wait-counts", "etc-verify-event-tensor"])


def gpu_lowering_pipeline(target: str = "sm_90a") -> str:
    """Upstream passes from a gpu.module to PTX (a `gpu.binary` whose assembly is the PTX)."""
    if not isinstance(target, str) or not target.startswith("sm_"):
        raise PipelineError(f"target must name an NVIDIA chip such as 'sm_90a', got {target!r}")
    return (f"nvvm-attach-target{{chip={target} features=+ptx80 O=3}},"
            "gpu.module(convert-scf-to-cf,arith-expand,convert-gpu-to-nvvm),reconcile-unrealized-casts,"
            "gpu-module-to-binary{format=isa}")


def codegen_pipeline(target: str = "sm_90a", profile: bool = False, weight_stream: bool = True,
                     spin_sleep_ns: int = 32, ring_kib: int = 0) -> str:
    """The pipeline text from scheduled sm_task IR to PTX: the megakernel as a gpu.module, then upstream
    GPU -> NVVM -> PTX. ring_kib: etc-lower-to-gpu's ring-kib (0: chosen from the model's size)."""
    from etc.codegen.weight_stream import ring_option_problem

    problem = ring_option_problem("ring_kib", ring_kib)
    if problem:  # checked here too so that etc.compile fails before importing the model
        raise PipelineError(problem)
    flag = {True: "true", False: "false"}
    return (f"etc-lower-to-gpu{{profile={flag[bool(profile)]} weight-stream={flag[bool(weight_stream)]} "
            f"spin-sleep={int(spin_sleep_ns)} ring-kib={int(ring_kib)}}},"
            + gpu_lowering_pipeline(target))
