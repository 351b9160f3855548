"""The ``digiplat`` command line.

Each subcommand lives in ``app/commands/<noun>.py`` with ``register(subparsers)``; its ``run(args)``
returns a JSON-serializable summary dict. With ``--json`` that dict is printed as the last line of
stdout. Every expected failure (bad input, infeasible data, solver trouble) becomes one line on
stderr and exit code 2; no traceback reaches the user. Heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Callable, Sequence

import importlib

# Subcommand modules, in the order ``digiplat --help`` lists them.
COMMAND_MODULES = ("grid", "linearize", "clear", "day", "mlopf", "serve")
# Outputs derived from OpenStreetMap data carry the ODbL credit.
OSM_DERIVED_COMMANDS = frozenset({"grid", "linearize", "clear", "day"})


def parser_for_cli() -> argparse.ArgumentParser:
    """Return the argument parser of ``digiplat`` with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="digiplat",
        description="Privacy-preserving TSO-DSO flexibility demonstrator (map data © OpenStreetMap contributors, ODbL).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO messages to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"app.commands.{name}").register(subparsers)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from gridgen._errors import GridGenError
    from optim._errors import OptimError

    return (GridGenError, OptimError, FileNotFoundError, PermissionError, IsADirectoryError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``digiplat``; return the process exit code (0 ok, 2 user error, 130 interrupted)."""
    parser = parser_for_cli()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run: Callable[[argparse.Namespace], dict[str, Any] | None] = args.func
    try:
        summary = run(args)
    except KeyboardInterrupt:
        print("digiplat: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"digiplat {args.command}: error: {message}", file=sys.stderr)
        return 2
    if summary is not None and args.command in OSM_DERIVED_COMMANDS:
        from gridgen.grid import credit

        summary.setdefault("credit", credit())
    if summary is not None and getattr(args, "json", False):
        print(json.dumps(summary, default=_json_default))
    return 0


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
