"""One error type that every stage raises for bad input or a failed build.

The CLI prints it as one line (what went wrong, which file/tensor/node, what to do) and exits with its code;
tracebacks appear only with --debug.
"""

from __future__ import annotations

import re

USAGE = 2  # the user asked for something invalid (bad flag, bad config, missing file)
FAILURE = 1  # the input was valid but a stage failed (a check did not hold, a backend refused)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")  # CSI sequences (colours) and 2-byte escapes


def strip_ansi(text: str) -> str:
    """`text` without terminal escape codes (colours that tools such as torch.export put into their messages)."""
    return _ANSI.sub("", text)


class EdgeDeployError(Exception):
    """A failure the user can act on: `what` happened, `where` (file/tensor/node), and `fix` (what to do).
    `log` optionally carries a tool's whole output (the exporter's), which --debug prints."""

    log: str | None = None

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None, exit_code: int = FAILURE):
        self.what = strip_ansi(what)
        self.where = None if where is None else strip_ansi(where)
        self.fix = None if fix is None else strip_ansi(fix)
        self.exit_code = exit_code
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if not self.fix:
            return text
        return f"{text.rstrip().rstrip('.')}. {self.fix}"  # a `what` quoting a library's sentence ends in "." already


class UsageError(EdgeDeployError):
    """Invalid request: bad flag, config, or input file. Exit code 2."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        super().__init__(what, where=where, fix=fix, exit_code=USAGE)
