"""``digiplat serve``: start the Dash demonstrator (same as ``python -m app``)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="start the web demonstrator")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    serve.add_argument("--debug", action="store_true", help="Dash debug mode (hot reload, dev tools)")
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    from app.server import serve

    serve(host=args.host, port=args.port, debug=args.debug)
    return None
