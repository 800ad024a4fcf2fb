"""--verify-diagnostics: match emitted diagnostics against `// expected-error {{...}}` comments.

As in mlir-opt: `expected-<severity> [@+N | @-N | @above | @below] {{message substring}}`
names a diagnostic expected on that line. Every expected one must be emitted and every emitted
error, warning or remark must be expected; notes are checked only where expected.
"""
from __future__ import annotations

import dataclasses
import re

from etc.mlir_adapter import Diagnostic, DiagnosticsError

_EXPECT = re.compile(r"expected-(error|warning|note|remark)\s*(@above|@below|@[+-]\d+)?\s*\{\{(.*?)\}\}")


@dataclasses.dataclass
class Expectation:
    severity: str
    line: int
    message: str
    seen: bool = False


_ANY_EXPECT = re.compile(r"expected-[A-Za-z]+[^{]*\{\{")  # anything written like an expectation


def _error(file: str, line: int, message: str) -> DiagnosticsError:
    return DiagnosticsError([Diagnostic("error", file, line, None, message)])


def expectations(text: str, first_line: int = 1, file: str = "<input>") -> list[Expectation]:
    """The expectations in one input; a malformed one is an EtcError at its own line."""
    found = []
    lines = text.splitlines()
    last_line = first_line + len(lines) - 1
    for offset, line in enumerate(lines):
        lineno = first_line + offset
        if len(_ANY_EXPECT.findall(line)) != len(_EXPECT.findall(line)):
            raise _error(file, lineno, "malformed expectation; write "
                                       "expected-<error|warning|note|remark> [@+N|@-N|@above|@below] {{message}}")
        for m in _EXPECT.finditer(line):
            where = m.group(2)
            target = lineno
            if where == "@above":
                target -= 1
            elif where == "@below":
                target += 1
            elif where:
                target += int(where[1:])
            if not first_line <= target <= last_line:
                raise _error(file, lineno, f"expected-{m.group(1)} points at line {target}, "
                                           f"outside this input (lines {first_line}-{last_line})")
            found.append(Expectation(m.group(1), target, m.group(3)))
    return found


def check(diagnostics: list[Diagnostic], expected: list[Expectation], file: str) -> list[str]:
    """Return mismatch messages (empty when everything matched)."""
    problems = []
    for diag in diagnostics:
        match = next((e for e in expected if not e.seen and e.severity == diag.severity and e.line == diag.line
                      and diag.file == file and e.message in diag.message), None)
        if match is not None:
            match.seen = True
        elif diag.severity != "note":
            problems.append(f"{diag.file}:{diag.line}:{diag.col}: error: unexpected {diag.severity}: {diag.message}")
    for e in expected:
        if not e.seen:
            problems.append(f"{file}:{e.line}: error: expected {e.severity} \"{e.message}\" was not produced")
    return problems
