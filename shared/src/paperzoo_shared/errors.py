"""One way for every paperzoo CLI to report a known error: one clear line and exit status 2.

A known error is bad input the user can fix (a wrong flag value, a missing file, a malformed config or data
file). Its traceback helps nobody, so it is printed only with ``--debug`` (or ``PAPERZOO_DEBUG=1``). Anything
else is a bug and keeps its traceback.

    def _main(argv: list[str]) -> int: ...          # parse and run
    def main(argv: list[str] | None = None) -> int:
        return run_cli("paperzoo-dckd", _main, argv)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from paperzoo_shared.config import ConfigError
from paperzoo_shared.data.errors import DataError

DEBUG_FLAG = "--debug"


class UserError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""


KNOWN_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    ConfigError,
    DataError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ValueError,
)


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--debug`` to ``parser`` so that ``--help`` lists it (:func:`run_cli` reads it)."""
    parser.add_argument(
        DEBUG_FLAG, action="store_true", help="show the full traceback of an error (or set PAPERZOO_DEBUG=1)"
    )


def run_cli(prog: str, main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Run ``main(argv)``; a known error becomes ``prog: error: <message>`` on stderr and exit status 2.

    ``--debug`` anywhere in ``argv`` (or ``PAPERZOO_DEBUG=1``) re-raises instead. ``main`` receives ``argv``
    unchanged, so a parser built with :func:`add_debug_flag` accepts the flag.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or bool(os.environ.get("PAPERZOO_DEBUG"))
    try:
        return main(args) or 0
    except KNOWN_ERRORS as error:
        if debug:
            raise
        message = str(error) or type(error).__name__
        if isinstance(error, OSError) and error.filename is not None and str(error.filename) not in message:
            message = f"{message}: {error.filename}"
        print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
        print(f"(run again with {DEBUG_FLAG} for the traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
