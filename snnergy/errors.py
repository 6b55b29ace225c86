"""The one error layer of the command-line tools: what a user can get wrong (a bad value, a
missing or unwritable file, a foreign checkpoint) becomes one line and exit code 2, as
does an error class that marks itself ``one_line`` (a Lava hang; a stop signal, whose exit
code is 128 + the signal number); ``--debug`` shows the traceback instead. Anything else
is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

# CheckpointError and OutputError are ValueErrors; OSError covers missing data roots,
# unreadable inputs and output folders without write permission.
USER_ERRORS = (ValueError, OSError)


def run_reporting_errors(prog: str, func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return func(args)
    except Exception as error:
        if getattr(args, "debug", False) or not (isinstance(error, USER_ERRORS) or getattr(error, "one_line", False)):
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 128 + error.signum if hasattr(error, "signum") else 2
