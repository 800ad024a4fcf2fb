"""What every ETC pass is: a name, a one-line summary, typed options, and run(module_op).

A pass reports a problem with `self.error(op, message)`: the message becomes an MLIR error
diagnostic at the op's location, and the pass fails once `run` returns.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from etc import mlir_adapter as mlir
from etc.errors import PipelineError


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    type: type
    default: Any
    help: str
    choices: tuple = ()

    def convert(self, text: str, pass_name: str) -> Any:
        where = f"option '{self.name}' of pass '{pass_name}'"
        if self.type is bool:
            if text.lower() in ("1", "true", "on", "yes"):
                return True
            if text.lower() in ("0", "false", "off", "no"):
                return False
            raise PipelineError(f"{where} takes true or false, got '{text}'")
        try:
            value = self.type(text)
        except ValueError:
            raise PipelineError(f"{where} takes {self.type.__name__}, got '{text}'") from None
        if self.choices and value not in self.choices:
            raise PipelineError(f"{where} takes one of {', '.join(map(str, self.choices))}, got '{text}'")
        return value


class Pass:
    NAME: ClassVar[str] = ""
    SUMMARY: ClassVar[str] = ""
    OPTIONS: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, **options: Any):
        known = {o.name: o for o in self.OPTIONS}
        self.options = {o.name: o.default for o in self.OPTIONS}
        for key, value in options.items():
            key = key.replace("_", "-")
            if key not in known:
                raise PipelineError(f"pass '{self.NAME}' has no option '{key}'{_known(known)}")
            self.options[key] = known[key].convert(value, self.NAME) if isinstance(value, str) else value
        self.failed = False

    def option(self, name: str) -> Any:
        return self.options[name]

    def error(self, op, message: str) -> None:
        """Attach an error diagnostic to op's location; the pass fails when run() returns."""
        op.location.emit_error(message)
        self.failed = True

    def report(self, problems) -> bool:
        """error() each (op, message) pair; True when there was any."""
        for op, message in problems:
            self.error(op, message)
        return bool(problems)

    def run(self, module_op) -> None:
        raise NotImplementedError

    def pipeline_text(self) -> str:
        """This pass with its non-default options, as written in a pipeline."""
        opts = [f"{k}={_fmt(v)}" for k, v in self.options.items()
                if v != next(o.default for o in self.OPTIONS if o.name == k)]
        return self.NAME + ("{" + " ".join(opts) + "}" if opts else "")

    def apply(self, module, ctx) -> None:
        def body(op, pass_):
            self.failed = False
            self.run(op)
            if self.failed:
                pass_.signal_pass_failure()

        mlir.run_python_pass(module, body, self.NAME, ctx)


def _fmt(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _known(known: dict) -> str:
    return f" (options: {', '.join(known)})" if known else " (it takes no options)"
