"""The ``digiplat`` command line.

Each subcommand lives in ``app/commands/<noun>.py`` with ``register(subparsers)``; its ``run(args)``
returns a JSON-serializable summary dict. With ``--json`` that dict is printed as the last line of
stdout. Heavy imports happen inside ``run``.

The contract (issue 9): bad input of any kind gives one first line on stderr that says what is
wrong and what to do (an error listing bad rows of a file may add up to 10 lines below it) and exit
code 2; no traceback reaches the user. :func:`user_error_message` maps the domain errors
(``gridgen._errors``, ``optim._errors``), an ``OSError`` on a user path, JSON and text-decoding
errors of user files and ``MemoryError``. Anything else is a bug: one line naming the error and
where to report it, exit code 1, and the traceback only with ``DIGIPLAT_DEBUG=1``. A command may
set ``exit_code_of(summary)`` (``clear`` answers an infeasible request with code 3).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import traceback
from typing import Any, Callable, Sequence

# Subcommand modules, in the order ``digiplat --help`` lists them.
COMMAND_MODULES = ("grid", "linearize", "clear", "day", "audit", "mlopf", "serve")
# Outputs derived from OpenStreetMap data carry the ODbL credit.
OSM_DERIVED_COMMANDS = frozenset({"grid", "linearize", "clear", "day"})

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USER_ERROR = 2
EXIT_INFEASIBLE = 3
EXIT_INTERRUPTED = 130
#: Lines an error may add below its first one (e.g. one per bad row of a bid file).
MAX_DETAIL_LINES = 10
#: Environment variable that makes errors print their traceback.
DEBUG_ENV = "DIGIPLAT_DEBUG"
#: Where bugs go (the one line of an unexpected error names it).
REPORT_TO = "the project's issue tracker"

EXIT_CODES_HELP = (
    "exit codes: 0 done; 2 bad input (one line on stderr says what is wrong and what to do); "
    "3 the request cannot be delivered (clear: the result is printed, status infeasible); "
    "1 an internal error (a bug: please report it; DIGIPLAT_DEBUG=1 shows the traceback); 130 interrupted."
)


def parser_for_cli() -> argparse.ArgumentParser:
    """Return the argument parser of ``digiplat`` with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="digiplat",
        description="Privacy-preserving TSO-DSO flexibility demonstrator (map data © OpenStreetMap contributors, ODbL).",
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO messages (and library warnings) to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"app.commands.{name}").register(subparsers)
    return parser


def _domain_errors() -> tuple[type[BaseException], ...]:
    from gridgen._errors import GridGenError
    from optim._errors import OptimError

    return (GridGenError, OptimError)


def _first_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def _os_error_message(exc: OSError) -> str:
    """One line for an OSError: the path, the reason and what to check."""
    if exc.filename is None:
        return _first_line(str(exc)) or type(exc).__name__
    reason = exc.strerror or type(exc).__name__
    paths = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{paths}: {reason}; check the path and its permissions"


def user_error_message(exc: BaseException) -> tuple[str, tuple[str, ...]] | None:
    """Return ``(first line, detail lines)`` if ``exc`` is a user error, None if it is a bug.

    User errors: the domain errors, ``OSError`` (a path given by the user), JSON, text-decoding
    and nesting errors of a user file, and ``MemoryError`` (an input too large for this machine).
    """
    if isinstance(exc, _domain_errors()):
        details = tuple(str(line) for line in getattr(exc, "details", ()))[:MAX_DETAIL_LINES]
        return (_first_line(str(exc)) or type(exc).__name__), details
    if isinstance(exc, OSError):
        return _os_error_message(exc), ()
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); fix or replace the file", ()
    if isinstance(exc, UnicodeDecodeError):
        return f"a file is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8", ()
    if isinstance(exc, RecursionError):
        return "an input file is nested too deeply to read; check the files given", ()
    if isinstance(exc, MemoryError):
        return "out of memory; give smaller inputs (the limits are in --help)", ()
    return None


def _bug_message(exc: BaseException) -> str:
    where = ""
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        frame = tb[-1]
        where = f" at {os.path.basename(frame.filename)}:{frame.lineno}"
    text = _first_line(str(exc))
    return (f"internal error {type(exc).__name__}{': ' + text[:200] if text else ''}{where}; this is a bug, please "
            f"report it with the command line to {REPORT_TO} ({DEBUG_ENV}=1 shows the traceback)")


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # library warnings (pandapower, pandas, ...) go through logging and show only with -v, so that
    # the first line on stderr is digiplat's own
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.WARNING if verbose else logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``digiplat``; return the process exit code (see :data:`EXIT_CODES_HELP`)."""
    parser = parser_for_cli()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    run: Callable[[argparse.Namespace], dict[str, Any] | None] = args.func
    debug = os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")
    prefix = f"digiplat {args.command}"
    try:
        summary = run(args)
        if summary is not None and args.command in OSM_DERIVED_COMMANDS:
            from gridgen.grid import credit

            summary.setdefault("credit", credit())
        if summary is not None and getattr(args, "json", False):
            print(json.dumps(summary, default=_json_default))
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place that turns every failure into one line
        if debug:
            traceback.print_exc()
        mapped = user_error_message(exc)
        if mapped is None:
            print(f"{prefix}: {_bug_message(exc)}", file=sys.stderr)
            return EXIT_BUG
        first, details = mapped
        print(f"{prefix}: error: {first}", file=sys.stderr)
        for line in details:
            print(line, file=sys.stderr)
        return EXIT_USER_ERROR
    exit_code_of = getattr(args, "exit_code_of", None)
    return int(exit_code_of(summary)) if exit_code_of is not None and summary is not None else EXIT_OK


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
