"""User-facing errors. The command-line tools print str(error) and exit non-zero, never a traceback."""


class EtcError(Exception):
    """An error with a clear message for the user (one line per problem)."""


class PipelineError(EtcError):
    """A malformed pass pipeline: unknown pass, bad option, bad nesting."""


class PassFailure(EtcError):
    """A pass failed; `pass_name` names it and `reproducer` is the file that replays it."""

    def __init__(self, message: str, pass_name: str, diagnostics=(), reproducer: str | None = None):
        super().__init__(message)
        self.pass_name = pass_name
        self.diagnostics = list(diagnostics)
        self.reproducer = reproducer
