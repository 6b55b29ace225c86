"""The one error layer of the command-line tools: what a user can get wrong (a bad value, a
missing or unwritable file, a foreign checkpoint) becomes one line and exit code 2;
``--debug`` shows the traceback instead. Anything else is a bug and keeps its traceback."""

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
    except USER_ERRORS as error:
        if getattr(args, "debug", False):
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
