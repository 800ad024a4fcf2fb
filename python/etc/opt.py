"""etc-opt: the ETC pass driver, shaped like mlir-opt.

  etc-opt [FILE|-] [-p PIPELINE] [--split-input-file] [--verify-diagnostics] [-o OUT]

Reads IR, runs ETC passes mixed with upstream MLIR passes, prints the result. Errors are one line
each, `file:line:col: error: message`, and the exit status is 1.
"""
from __future__ import annotations

import argparse
import sys

from etc import mlir_adapter as mlir
from etc import verify_diagnostics
from etc.errors import EtcError, PassFailure
from etc.passes import DEFAULT_PIPELINE, REGISTRY

SPLIT_MARKER = "// -----"


def _pass_list() -> str:
    width = max(len(n) for n in REGISTRY) + 2
    lines = ["ETC passes (any upstream MLIR pass may be mixed in):"]
    for name, cls in REGISTRY.items():
        lines.append(f"  {name.ljust(width)}{cls.SUMMARY}")
        for opt in cls.OPTIONS:
            lines.append(f"  {'':{width}}  {{{opt.name}={opt.default}}}  {opt.help}")
    lines.append(f"\nDefault pipeline (run_pipeline with no pipeline): {DEFAULT_PIPELINE}")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise EtcError(f"{message} (see etc-opt --help)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="etc-opt", description="Run ETC and MLIR passes on IR and print the result.",
        epilog=_pass_list(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", default="-", help="input IR file, or - for stdin (default)")
    p.add_argument("-p", "--pass-pipeline", default="", help="comma-separated passes, e.g. 'etc-x{a=1},canonicalize'")
    p.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    p.add_argument("--split-input-file", action="store_true", help=f"treat '{SPLIT_MARKER}' lines as separate inputs")
    p.add_argument("--verify-diagnostics", action="store_true",
                   help="check emitted diagnostics against expected-error comments")
    p.add_argument("--allow-unregistered-dialect", action="store_true", help="accept ops of unknown dialects (torch)")
    p.add_argument("--mlir-print-debuginfo", action="store_true", help="print locations")
    p.add_argument("--mlir-print-op-generic", action="store_true", help="print ops in generic form")
    p.add_argument("--mlir-print-local-scope", action="store_true", help="print attributes inline, without #map aliases")
    p.add_argument("--schedule-summary", action="store_true",
                   help="print the schedule's work per worker, critical path and imbalance instead of the IR")
    p.add_argument("--sizes", default="", help="sizes for --schedule-summary, e.g. batch=1,kv_len=1024")
    return p


def _chunks(text: str, split: bool) -> list[tuple[int, str]]:
    """(first line number, text) per input; chunks keep their line numbers from the file."""
    if not split:
        return [(1, text)]
    chunks, current, start = [], [], 1
    for lineno, line in enumerate(text.splitlines(keepends=True), 1):
        if line.strip() == SPLIT_MARKER:
            chunks.append((start, "".join(current)))
            current, start = [], lineno + 1
        else:
            current.append(line)
    chunks.append((start, "".join(current)))
    return chunks


def _run_chunk(text: str, first_line: int, source: str, steps_text: str, args) -> tuple[str | None, list]:
    """Parse and run one input; return (printed IR or None, diagnostics)."""
    from etc.pipeline import parse_pipeline, run_steps

    ctx = mlir.new_context(allow_unregistered=args.allow_unregistered_dialect)
    padded = "\n" * (first_line - 1) + text  # keep file line numbers
    try:
        module = mlir.parse(padded, ctx, source)
        if steps_text:
            run_steps(module, parse_pipeline(steps_text, ctx), ctx)
    except mlir.DiagnosticsError as e:
        return None, e.diagnostics
    except PassFailure as e:
        if not e.diagnostics:
            raise
        return None, e.diagnostics
    if args.schedule_summary:
        from etc.cost_model import parse_sizes
        from etc.schedule_summary import summarize
        from etc.sm_task_ir import SmTaskProgram

        return summarize(SmTaskProgram.of(module), parse_sizes(args.sizes)).format() + "\n", []
    printed = mlir.to_text(module, debug_info=args.mlir_print_debuginfo, generic=args.mlir_print_op_generic,
                           local_scope=args.mlir_print_local_scope)
    return printed, []


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    source = "<stdin>" if args.input == "-" else args.input
    try:
        if args.input == "-":
            if sys.stdin is None:
                raise EtcError("no input: stdin is closed")
            text = sys.stdin.read()
        else:
            with open(args.input, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise EtcError(f"cannot read input file '{args.input}': {e.strerror}") from None
    except UnicodeDecodeError:
        raise EtcError(f"input '{source}' is not UTF-8 text") from None
    if args.pass_pipeline:
        # Fail early on a bad pipeline, before any input is parsed.
        from etc.pipeline import parse_pipeline

        parse_pipeline(args.pass_pipeline, mlir.new_context())

    outputs, failed = [], False
    for first_line, chunk in _chunks(text, args.split_input_file):
        printed, diagnostics = _run_chunk(chunk, first_line, source, args.pass_pipeline, args)
        if args.verify_diagnostics:
            expected = verify_diagnostics.expectations(chunk, first_line, source)
            problems = verify_diagnostics.check(diagnostics, expected, source)
            for line in problems:
                print(line, file=sys.stderr)
            failed |= bool(problems)
        else:
            for diag in diagnostics:
                if diag.severity == "error":
                    print(str(diag), file=sys.stderr)
            failed |= any(d.severity == "error" for d in diagnostics)
        if printed is not None:
            outputs.append(printed)
    result = ("\n" + SPLIT_MARKER + "\n").join(o.rstrip("\n") for o in outputs) + "\n" if outputs else ""
    if args.output == "-":
        sys.stdout.write(result)
    else:
        try:
            with open(args.output, "w") as f:
                f.write(result)
        except OSError as e:
            raise EtcError(f"cannot write output file '{args.output}': {e.strerror}") from None
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except mlir.DiagnosticsError as e:
        print(str(e), file=sys.stderr)  # already file:line:col: error: ...
        return 1
    except EtcError as e:
        print(f"etc-opt: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug in ETC: still one line, and say it is ours
        print(f"etc-opt: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
